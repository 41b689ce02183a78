"""OpenTelemetry spans for runs, model calls and tool calls (the GenAI semantic conventions).

One trace per run: an `invoke_agent {name}` span, with a `chat {model}` span for each
model call and an `execute_tool {tool}` span for each tool call as its children.

- Attributes: `gen_ai.operation.name`, `gen_ai.provider.name`, `gen_ai.request.model`
  (and the sampling settings), `gen_ai.response.model`, `gen_ai.usage.input_tokens` /
  `output_tokens`, `gen_ai.response.finish_reasons`, `gen_ai.tool.name`,
  `gen_ai.tool.call.id`, `gen_ai.tool.type`, `gen_ai.agent.name`, `gen_ai.conversation.id`
  (the thread), `error.type` and an error status for a failed call or run.
- Content (messages, reasoning, tool arguments and results) only when
  `OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT` is true: a
  `gen_ai.client.inference.operation.details` event on each chat span carrying
  `gen_ai.input.messages` (the messages new since the run's previous model call) and
  `gen_ai.output.messages` (reasoning as `reasoning` parts), in the conventions' JSON
  shape; `gen_ai.tool.call.arguments` / `.result` on tool spans. Redacted like traces.
- Configured the standard way: `OTEL_EXPORTER_OTLP_ENDPOINT` (or
  `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, or `OTEL_TRACES_EXPORTER`) turns spans on, exported
  over OTLP/HTTP by a batch processor; `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES`
  name the service; `OTEL_SDK_DISABLED=true` turns them off. A tracer provider the
  application set itself (`trace.set_tracer_provider`) is used as it is. `configure(provider)`
  sets one in code (tests use the SDK's in-memory exporter).
- With none of that, nothing here imports `opentelemetry`: `run_spans` returns None and
  the loop's only cost is one `is None` test per step.

The JSONL traces (`tracing.trace`) are separate and stay: replay needs them.
"""

from __future__ import annotations

import itertools
import json
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from harmonygraph.tracing.redaction import Redactor

if TYPE_CHECKING:
    from harmonygraph.harmony.messages import Message
    from harmonygraph.models.base import ModelRequest, ModelResponse, Usage
    from harmonygraph.tools.registry import ToolCallResult

__all__ = [
    "CAPTURE_ENV",
    "RunSpans",
    "configure",
    "enabled",
    "run_spans",
    "span_messages",
]

CAPTURE_ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
_ENDPOINT_ENVS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
SCOPE = "harmonygraph"

# The tracer provider in use: set by `configure`, or built from the environment on the
# first run that finds it configured. `_from_env` caches the environment's answer.
_provider: Any = None
_from_env: bool | None = None


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def _env_wants_spans() -> bool:
    env = os.environ
    if _truthy(env.get("OTEL_SDK_DISABLED")):
        return False
    if any(env.get(name) for name in _ENDPOINT_ENVS):
        return True
    exporter = (env.get("OTEL_TRACES_EXPORTER") or "").strip().lower()
    return bool(exporter) and exporter != "none"


def _app_provider() -> Any:
    """A real tracer provider the application set itself, without importing anything:
    if `opentelemetry.trace` was never imported, nobody set one."""
    otel_trace = sys.modules.get("opentelemetry.trace")
    if otel_trace is None:
        return None
    provider = otel_trace.get_tracer_provider()
    if isinstance(provider, otel_trace.ProxyTracerProvider | otel_trace.NoOpTracerProvider):
        return None
    return provider


def _provider_from_env() -> Any:
    """The application's provider, or an SDK provider exporting over OTLP/HTTP (made global,
    so that instrumented HTTP clients nest their spans under ours)."""
    found = _app_provider()
    if found is not None:
        return found
    try:
        from opentelemetry import trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        raise ImportError(
            "OpenTelemetry is configured (OTEL_EXPORTER_OTLP_ENDPOINT) but not installed: "
            "pip install 'harmonygraph[opentelemetry]'"
        ) from None
    resource = Resource.create(
        {} if os.environ.get("OTEL_SERVICE_NAME") else {"service.name": SCOPE}
    )
    provider = TracerProvider(resource=resource)
    exporter_name = (os.environ.get("OTEL_TRACES_EXPORTER") or "otlp").strip().lower()
    if exporter_name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    return trace.get_tracer_provider()


def configure(provider: Any = None) -> None:
    """Emit spans through `provider` (an OpenTelemetry `TracerProvider`) from now on; with
    None, go back to the environment's configuration (off when it names no exporter)."""
    global _provider, _from_env
    _provider = provider
    _from_env = None


def enabled() -> bool:
    """Whether runs started now get spans."""
    return _current_provider() is not None


def _current_provider() -> Any:
    global _provider, _from_env
    if _provider is not None:
        return _provider
    if _from_env is None:
        _from_env = _env_wants_spans()
        if _from_env:
            _provider = _provider_from_env()
            return _provider
    # Not configured by the environment: an application may still have set a provider.
    return _app_provider()


def run_spans(
    *,
    agent: str,
    model: str,
    run_id: str,
    thread_id: str,
    redactor: Redactor,
    instructions: str | None = None,
) -> RunSpans | None:
    """The spans of one run, its `invoke_agent` span started; None when spans are off."""
    provider = _current_provider()
    if provider is None:
        return None
    return RunSpans(
        provider.get_tracer(SCOPE),
        agent=agent,
        model=model,
        run_id=run_id,
        thread_id=thread_id,
        redactor=redactor,
        capture=_truthy(os.environ.get(CAPTURE_ENV)),
        instructions=instructions,
    )


def _provider_name(model: str) -> str:
    """gpt-oss is OpenAI's model, whichever server runs it."""
    return "openai"


def span_messages(messages: Sequence[Message]) -> list[dict[str, Any]]:
    """Messages in the GenAI conventions' JSON shape (`gen_ai.input.messages`): each with
    its role and parts, reasoning as a `reasoning` part, a tool call as a `tool_call` part,
    a tool's answer as a `tool_call_response` part."""
    out: list[dict[str, Any]] = []
    for m in messages:
        role = m.role.value
        part: dict[str, Any]
        if m.is_tool_call:
            try:
                arguments: Any = json.loads(m.content)
            except ValueError:
                arguments = m.content
            part = {"type": "tool_call", "name": m.recipient, "arguments": arguments}
        elif role == "tool":
            part = {"type": "tool_call_response", "name": m.name, "response": m.content}
        elif m.channel == "analysis":
            part = {"type": "reasoning", "content": m.content}
        else:
            part = {"type": "text", "content": m.content}
        entry: dict[str, Any] = {"role": role, "parts": [part]}
        if m.channel is not None:
            entry["channel"] = m.channel
        if role == "assistant" and m.stop is not None:
            entry["finish_reason"] = _finish_reason(m.stop)
        out.append(entry)
    return out


def _finish_reason(stop: str | None) -> str:
    return {"call": "tool_call", "return": "stop", "end": "stop"}.get(stop or "", "length")


class RunSpans:
    """The spans of one run: the `invoke_agent` span and its model and tool children."""

    def __init__(
        self,
        tracer: Any,
        *,
        agent: str,
        model: str,
        run_id: str,
        thread_id: str,
        redactor: Redactor,
        capture: bool,
        instructions: str | None = None,
    ) -> None:
        from opentelemetry import trace
        from opentelemetry.trace import SpanKind

        self._trace = trace
        self.tracer = tracer
        self.model = model
        self.run_id = run_id
        self.redactor = redactor
        self.capture = capture
        self._seen = 0  # messages already sent as some chat span's input
        self._calls = itertools.count(1)
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.provider.name": _provider_name(model),
            "gen_ai.agent.name": agent,
            "gen_ai.agent.id": run_id,
            "gen_ai.conversation.id": thread_id,
            "gen_ai.request.model": model,
        }
        if capture and instructions:
            attributes["gen_ai.system_instructions"] = json.dumps(
                [{"type": "text", "content": self.redactor.text(instructions)}],
                ensure_ascii=False,
            )
        self.span = tracer.start_span(
            f"invoke_agent {agent}", kind=SpanKind.INTERNAL, attributes=attributes
        )
        self._parent = trace.set_span_in_context(self.span)
        self._ended = False

    def _json(self, value: Any) -> str:
        return self.redactor.text(json.dumps(value, ensure_ascii=False))

    # -- model calls ------------------------------------------------------------------
    @contextmanager
    def chat(self, request: ModelRequest) -> Iterator[ChatSpan]:
        """A `chat` span around one model call, current while it runs (so an instrumented
        HTTP client's spans are its children)."""
        from opentelemetry.trace import SpanKind

        s = request.settings
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": _provider_name(self.model),
            "gen_ai.request.model": self.model,
            "gen_ai.request.max_tokens": s.max_tokens,
            "gen_ai.request.temperature": s.temperature,
            "gen_ai.request.top_p": s.top_p,
            "gen_ai.output.type": "json" if request.developer.response_format else "text",
        }
        if s.seed is not None:
            attributes["gen_ai.request.seed"] = s.seed
        span = self.tracer.start_span(
            f"chat {self.model}", context=self._parent, kind=SpanKind.CLIENT, attributes=attributes
        )
        new = request.messages[min(self._seen, len(request.messages)) :]
        self._seen = len(request.messages)
        handle = ChatSpan(self, span, new, len(request.messages))
        with self._trace.use_span(span, end_on_exit=True):
            yield handle

    # -- tool calls -------------------------------------------------------------------
    @contextmanager
    def tool(self, recipient: str, arguments: str, builtin: bool) -> Iterator[ToolSpan]:
        """An `execute_tool` span around one tool call, current while it runs."""
        from opentelemetry.trace import SpanKind

        call_id = f"call_{self.run_id}_{next(self._calls)}"
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": recipient,
            "gen_ai.tool.call.id": call_id,
            "gen_ai.tool.type": "extension" if builtin else "function",
        }
        if self.capture:
            attributes["gen_ai.tool.call.arguments"] = self.redactor.text(arguments)
        span = self.tracer.start_span(
            f"execute_tool {recipient}",
            context=self._parent,
            kind=SpanKind.INTERNAL,
            attributes=attributes,
        )
        handle = ToolSpan(self, span, recipient)
        with self._trace.use_span(span, end_on_exit=True):
            yield handle

    # -- the run ----------------------------------------------------------------------
    def end(self, status: str, usage: Usage, steps: int, error: str | None = None) -> None:
        """End the run's span with what the run came to."""
        if self._ended:
            return
        self._ended = True
        span = self.span
        span.set_attribute("gen_ai.usage.input_tokens", usage.input_tokens)
        span.set_attribute("gen_ai.usage.output_tokens", usage.output_tokens)
        span.set_attribute("harmonygraph.run.status", status)
        span.set_attribute("harmonygraph.run.steps", steps)
        if status not in ("completed", "awaiting_approval"):
            span.set_attribute("error.type", status)
            span.set_status(self._trace.StatusCode.ERROR, self.redactor.text(error or status)[:500])
        span.end()

    def fail(self, exc: BaseException) -> None:
        """End the run's span for a run that raised out of the loop."""
        if self._ended:
            return
        self._ended = True
        self.span.set_attribute("error.type", type(exc).__qualname__)
        self.span.set_status(self._trace.StatusCode.ERROR, self.redactor.text(str(exc))[:500])
        self.span.end()


class ChatSpan:
    """One model call's span, told what the call returned."""

    def __init__(self, run: RunSpans, span: Any, new: Sequence[Message], before: int) -> None:
        self.run = run
        self.span = span
        self.new = new
        self.before = before

    def response(self, response: ModelResponse) -> None:
        span = self.span
        # The next call's new input starts after this call's output.
        self.run._seen = self.before + len(response.messages)
        usage = response.usage
        span.set_attribute("gen_ai.response.model", response.model or self.run.model)
        span.set_attribute("gen_ai.usage.input_tokens", usage.input_tokens)
        span.set_attribute("gen_ai.usage.output_tokens", usage.output_tokens)
        if usage.cached_tokens:
            span.set_attribute("gen_ai.usage.cache_read.input_tokens", usage.cached_tokens)
        last = response.messages[-1] if response.messages else None
        reason = response.finish_reason or _finish_reason(last.stop if last else None)
        if last is not None and last.is_tool_call and reason == "stop":
            reason = "tool_call"
        span.set_attribute("gen_ai.response.finish_reasons", [reason])
        if self.run.capture:
            span.add_event(
                "gen_ai.client.inference.operation.details",
                {
                    "gen_ai.input.messages": self.run._json(span_messages(self.new)),
                    "gen_ai.output.messages": self.run._json(span_messages(response.messages)),
                },
            )

    def error(self, kind: str, message: str) -> None:
        self.span.set_attribute("error.type", kind)
        self.span.set_status(
            self.run._trace.StatusCode.ERROR, self.run.redactor.text(message)[:500]
        )


class ToolSpan:
    """One tool call's span, told how the call went."""

    def __init__(self, run: RunSpans, span: Any, recipient: str) -> None:
        self.run = run
        self.span = span
        self.recipient = recipient

    def result(self, result: ToolCallResult) -> None:
        span = self.span
        if result.recipient != self.recipient:  # resolved: `add` is `functions.add`
            span.set_attribute("gen_ai.tool.name", result.recipient)
        span.set_attribute("harmonygraph.tool.status", result.status)
        if self.run.capture:
            span.set_attribute(
                "gen_ai.tool.call.result", self.run.redactor.text(result.output.text)
            )
        if result.output.is_error:
            span.set_attribute("error.type", result.status)
            span.set_status(
                self.run._trace.StatusCode.ERROR,
                self.run.redactor.text(result.output.text)[:500],
            )
