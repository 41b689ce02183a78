"""OpenTelemetry spans: one trace per run (invoke_agent → chat, execute_tool), the GenAI
semantic conventions' attributes, content only on request and redacted, nothing imported
when not configured, and a real OTLP/HTTP export to a receiver on 127.0.0.1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk")

from harmonygraph import Agent, AgentModelError
from harmonygraph.models.base import ModelConnectionError, ModelRequest
from harmonygraph.tools import tool
from harmonygraph.tracing import ScriptedModel, otel
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)
from opentelemetry.trace import StatusCode

ROOT = Path(__file__).resolve().parents[2]
CALL = "<|start|>assistant<|channel|>commentary to=functions.{name} <|constrain|>json<|message|>{args}<|call|>"


def call(name: str, args: str, thought: str = "Need a tool.") -> str:
    return f"<|channel|>analysis<|message|>{thought}<|end|>" + CALL.format(name=name, args=args)


def final(text: str, thought: str = "Done.") -> str:
    return f"<|channel|>analysis<|message|>{thought}<|end|><|start|>assistant<|channel|>final<|message|>{text}<|return|>"


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@tool
def explode(text: str) -> str:
    """Always fails."""
    raise RuntimeError(f"cannot handle {text}")


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    otel.configure(provider)
    try:
        yield memory
    finally:
        otel.configure(None)
        provider.shutdown()


def by_operation(spans: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [s for s in spans if (s.attributes or {}).get("gen_ai.operation.name") == name]


def test_a_run_is_one_trace_of_agent_chat_and_tool_spans(
    exporter: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(otel.CAPTURE_ENV, raising=False)
    model = ScriptedModel(
        [call("add", '{"a": 2, "b": 3}'), call("add", '{"a": 5, "b": 1}'), final("6")],
        name="openai/gpt-oss-20b",
    )
    agent = Agent(model, tools=[add], name="sums", checkpointer=None)
    result = agent.run("What is 2 + 3 + 1?", thread_id="thread-7")
    assert result.output == "6"

    spans = exporter.get_finished_spans()
    [run] = by_operation(spans, "invoke_agent")
    chats = by_operation(spans, "chat")
    tools = by_operation(spans, "execute_tool")
    assert len(chats) == 3 and len(tools) == 2 and len(spans) == 6
    assert run.name == "invoke_agent sums"
    assert run.parent is None
    trace_id = run.context.trace_id
    for child in [*chats, *tools]:
        assert child.context.trace_id == trace_id
        assert child.parent is not None and child.parent.span_id == run.context.span_id
    # In time order: chat, tool, chat, tool, chat, each inside the run's span.
    ordered = sorted([*chats, *tools], key=lambda s: s.start_time or 0)
    assert [s.attributes["gen_ai.operation.name"] for s in ordered] == [
        "chat", "execute_tool", "chat", "execute_tool", "chat",
    ]  # fmt: skip
    assert all(run.start_time <= s.start_time and s.end_time <= run.end_time for s in ordered)

    assert run.attributes["gen_ai.agent.name"] == "sums"
    assert run.attributes["gen_ai.conversation.id"] == "thread-7"
    assert run.attributes["gen_ai.request.model"] == "openai/gpt-oss-20b"
    assert run.attributes["gen_ai.usage.input_tokens"] == result.usage.input_tokens
    assert run.attributes["gen_ai.usage.output_tokens"] == result.usage.output_tokens
    assert run.status.status_code is not StatusCode.ERROR

    for chat, usage in zip(
        sorted(chats, key=lambda s: s.start_time or 0), result.step_usage, strict=True
    ):
        assert chat.name == "chat openai/gpt-oss-20b"
        assert chat.attributes["gen_ai.request.model"] == "openai/gpt-oss-20b"
        assert chat.attributes["gen_ai.provider.name"] == "openai"
        assert chat.attributes["gen_ai.usage.input_tokens"] == usage["input_tokens"] > 0
        assert chat.attributes["gen_ai.usage.output_tokens"] == usage["output_tokens"] > 0
    reasons = [
        c.attributes["gen_ai.response.finish_reasons"]
        for c in sorted(chats, key=lambda s: s.start_time or 0)
    ]
    assert reasons == [("tool_call",), ("tool_call",), ("stop",)]

    assert [t.name for t in tools] == ["execute_tool functions.add"] * 2
    assert [t.attributes["gen_ai.tool.name"] for t in tools] == ["functions.add"] * 2
    assert tools[0].attributes["gen_ai.tool.type"] == "function"
    ids = {t.attributes["gen_ai.tool.call.id"] for t in tools}
    assert len(ids) == 2 and all(result.run_id in i for i in ids)
    # No content without OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT.
    for s in spans:
        assert not s.events
        assert "gen_ai.tool.call.arguments" not in (s.attributes or {})
        assert "gen_ai.system_instructions" not in (s.attributes or {})


def test_content_events_only_when_asked_and_redacted(
    exporter: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(otel.CAPTURE_ENV, "true")
    secret = "hunter2-launch-code"
    model = ScriptedModel(
        [
            call("add", '{"a": 2, "b": 3}', thought=f"The user said {secret}; add."),
            final("5 sk-abcdefghijklmnop", thought="Reasoning done."),
        ]
    )
    agent = Agent(
        model, tools=[add], instructions=f"Never say {secret}.", redact=[secret], checkpointer=None
    )
    agent.run(f"Add 2 and 3, code {secret}.")
    spans = exporter.get_finished_spans()
    dumped = json.dumps([[dict(e.attributes or {}) for e in s.events] for s in spans])
    dumped += json.dumps([dict(s.attributes or {}) for s in spans])
    assert secret not in dumped and "sk-abcdefghijklmnop" not in dumped
    assert "[REDACTED]" in dumped

    [run] = by_operation(spans, "invoke_agent")
    assert "[REDACTED]" in run.attributes["gen_ai.system_instructions"]
    first, second = sorted(by_operation(spans, "chat"), key=lambda s: s.start_time or 0)
    [event] = first.events
    assert event.name == "gen_ai.client.inference.operation.details"
    inputs = json.loads(event.attributes["gen_ai.input.messages"])
    outputs = json.loads(event.attributes["gen_ai.output.messages"])
    assert inputs == [
        {"role": "user", "parts": [{"type": "text", "content": "Add 2 and 3, code [REDACTED]."}]}
    ]
    assert [o["parts"][0]["type"] for o in outputs] == ["reasoning", "tool_call"]
    assert outputs[0]["parts"][0]["content"] == "The user said [REDACTED]; add."
    assert outputs[1]["parts"][0] == {
        "type": "tool_call", "name": "functions.add", "arguments": {"a": 2, "b": 3},
    }  # fmt: skip
    assert outputs[1]["finish_reason"] == "tool_call"
    # The second call's input is only what is new: the tool's answer.
    [event2] = second.events
    inputs2 = json.loads(event2.attributes["gen_ai.input.messages"])
    assert inputs2 == [
        {
            "role": "tool",
            "parts": [{"type": "tool_call_response", "name": "functions.add", "response": "5"}],
            "channel": "commentary",
        }
    ]
    outputs2 = json.loads(event2.attributes["gen_ai.output.messages"])
    assert outputs2[-1]["parts"][0] == {"type": "text", "content": "5 [REDACTED]"}
    [tool_span] = by_operation(spans, "execute_tool")
    assert json.loads(tool_span.attributes["gen_ai.tool.call.arguments"]) == {"a": 2, "b": 3}
    assert tool_span.attributes["gen_ai.tool.call.result"] == "5"


def test_failures_set_error_status(exporter: InMemorySpanExporter) -> None:
    model = ScriptedModel([call("explode", '{"text": "x"}'), final("gave up")])
    Agent(model, tools=[explode], checkpointer=None).run("Try it.")
    [tool_span] = by_operation(exporter.get_finished_spans(), "execute_tool")
    assert tool_span.status.status_code is StatusCode.ERROR
    assert tool_span.attributes["error.type"] == "error"
    assert "cannot handle x" in (tool_span.status.description or "")
    exporter.clear()

    def refuse(request: ModelRequest) -> str:
        raise ModelConnectionError("could not reach http://user:pw-secret-1@host/v1")

    with pytest.raises(AgentModelError):
        Agent(ScriptedModel(refuse), checkpointer=None, redact=["pw-secret-1"]).run("Hi")
    spans = exporter.get_finished_spans()
    [chat] = by_operation(spans, "chat")
    [run] = by_operation(spans, "invoke_agent")
    assert chat.status.status_code is StatusCode.ERROR
    assert chat.attributes["error.type"] == "model_error"
    assert run.status.status_code is StatusCode.ERROR
    assert run.attributes["error.type"] == "model_error"
    assert "pw-secret-1" not in (chat.status.description or "") + (run.status.description or "")
    assert chat.parent is not None and chat.parent.span_id == run.context.span_id


def test_approval_interrupt_ends_the_run_span_without_error(
    exporter: InMemorySpanExporter,
) -> None:
    @tool(needs_approval=True)
    def wipe(path: str) -> str:
        """Delete a folder."""
        return f"wiped {path}"

    model = ScriptedModel([call("wipe", '{"path": "/tmp/x"}'), final("done")])
    agent = Agent(model, tools=[wipe])
    first = agent.run("Wipe /tmp/x", thread_id="t1")
    assert first.status == "awaiting_approval"
    second = agent.run(thread_id="t1", resume=True)
    assert second.output == "done"
    runs = by_operation(exporter.get_finished_spans(), "invoke_agent")
    assert [r.attributes["harmonygraph.run.status"] for r in runs] == [
        "awaiting_approval", "completed",
    ]  # fmt: skip
    assert all(r.status.status_code is not StatusCode.ERROR for r in runs)
    assert {r.attributes["gen_ai.conversation.id"] for r in runs} == {"t1"}
    [tool_span] = by_operation(exporter.get_finished_spans(), "execute_tool")
    assert tool_span.parent is not None and tool_span.parent.span_id == runs[1].context.span_id


NOT_CONFIGURED = textwrap.dedent(
    """
    import sys, traceback
    ours = ({roots!r})
    culprits = []

    class Watch:
        def find_spec(self, name, path, target=None):
            if name.split(".")[0] == "opentelemetry":
                # The module whose import statement asked for it (langchain_core's
                # langsmith imports the SDK whenever it is installed: not ours).
                files = [f.filename for f in traceback.extract_stack()[:-1]]
                importer = [f for f in files if not f.startswith("<frozen")][-1]
                if importer.startswith(ours):
                    culprits.append((name, importer))
            return None

    sys.meta_path.insert(0, Watch())
    from harmonygraph import Agent
    from harmonygraph.tools import tool
    from harmonygraph.tracing import ScriptedModel, otel

    @tool
    def add(a: int, b: int) -> int:
        "Add."
        return a + b

    done = "<|channel|>final<|message|>ok<|return|>"
    call = ('<|channel|>commentary to=functions.add <|constrain|>json<|message|>'
            '{{"a": 1, "b": 2}}<|call|>')
    result = Agent(ScriptedModel([call, done]), tools=[add]).run("hi", thread_id="t")
    assert result.output == "ok", result
    assert not otel.enabled()
    print("CULPRITS", culprits)
    """
)


def test_nothing_configured_imports_nothing_of_opentelemetry() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    roots = tuple(str(ROOT / d) for d in ("agent", "tools", "graphs", "sandbox"))
    done = subprocess.run(
        [sys.executable, "-c", NOT_CONFIGURED.format(roots=roots)],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "CULPRITS []" in done.stdout, done.stdout


def test_runs_without_opentelemetry_installed() -> None:
    blocker = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name.split('.')[0] == 'opentelemetry':\n"
        "            raise ImportError('blocked: ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
    )
    code = blocker + NOT_CONFIGURED.format(roots=("/nowhere",)).replace(
        "sys.meta_path.insert(0, Watch())", ""
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT,
        timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]


# -- end to end: OTLP/HTTP to a receiver on 127.0.0.1 ----------------------------------


class Receiver:
    """An OTLP/HTTP trace receiver: decodes each protobuf export request it is sent."""

    def __init__(self) -> None:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
            ExportTraceServiceResponse,
        )

        self.requests: list[Any] = []
        self.paths: list[str] = []
        self.content_types: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                outer.requests.append(request)
                outer.paths.append(self.path)
                outer.content_types.append(self.headers.get("Content-Type", ""))
                reply = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


RUN_TRACED = textwrap.dedent(
    """
    from harmonygraph import Agent
    from harmonygraph.tools import tool
    from harmonygraph.tracing import ScriptedModel

    @tool
    def add(a: int, b: int) -> int:
        "Add."
        return a + b

    call = ('<|channel|>analysis<|message|>Add.<|end|><|start|>assistant<|channel|>commentary '
            'to=functions.add <|constrain|>json<|message|>{"a": 1, "b": 2}<|call|>')
    done = "<|channel|>final<|message|>3<|return|>"
    agent = Agent(ScriptedModel([call, done], name="openai/gpt-oss-20b"), tools=[add], name="e2e")
    print(agent.run("1 + 2?").output)
    """
)


def test_spans_arrive_over_otlp_http_with_their_structure() -> None:
    with Receiver() as receiver:
        env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
        env |= {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url, "OTEL_SERVICE_NAME": "sums-service"}
        done = subprocess.run(
            [sys.executable, "-c", RUN_TRACED], capture_output=True, text=True, env=env,
            cwd=ROOT, timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-2000:]
        assert done.stdout.strip() == "3"
    # The batch processor flushes at exit: everything has arrived once the process ended.
    assert receiver.paths and set(receiver.paths) == {"/v1/traces"}
    assert all(ct == "application/x-protobuf" for ct in receiver.content_types)
    spans: list[Any] = []
    services = set()
    for request in receiver.requests:
        for rs in request.resource_spans:
            attrs = {a.key: a.value.string_value for a in rs.resource.attributes}
            services.add(attrs.get("service.name"))
            for ss in rs.scope_spans:
                assert ss.scope.name == "harmonygraph"
                spans.extend(ss.spans)
    assert services == {"sums-service"}

    def attr(span: Any, key: str) -> Any:
        for a in span.attributes:
            if a.key == key:
                v = a.value
                return (
                    v.string_value
                    or v.int_value
                    or list(x.string_value for x in v.array_value.values)
                )
        return None

    names = sorted(s.name for s in spans)
    assert names == [
        "chat openai/gpt-oss-20b", "chat openai/gpt-oss-20b",
        "execute_tool functions.add", "invoke_agent e2e",
    ]  # fmt: skip
    [root] = [s for s in spans if s.name == "invoke_agent e2e"]
    assert root.parent_span_id == b""
    for s in spans:
        assert s.trace_id == root.trace_id
        if s is not root:
            assert s.parent_span_id == root.span_id
    chats = sorted(
        (s for s in spans if s.name.startswith("chat")), key=lambda s: s.start_time_unix_nano
    )
    assert [attr(c, "gen_ai.response.finish_reasons") for c in chats] == [["tool_call"], ["stop"]]
    assert all(attr(c, "gen_ai.usage.input_tokens") > 0 for c in chats)
    [tool_span] = [s for s in spans if s.name.startswith("execute_tool")]
    assert attr(tool_span, "gen_ai.tool.name") == "functions.add"
    assert attr(tool_span, "gen_ai.operation.name") == "execute_tool"
    assert str(attr(tool_span, "gen_ai.tool.call.id")).startswith("call_")
