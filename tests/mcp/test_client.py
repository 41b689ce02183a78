"""MCPToolset against a real MCP server in a subprocess (tests/mcp/demo_server.py)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from harmonygraph import Agent
from harmonygraph.harmony.encoding import get_encoding
from harmonygraph.harmony.prompt import flatten_namespace
from harmonygraph.models import make_model
from harmonygraph.tools import ToolContext
from harmonygraph.tools.mcp import (
    MCPConnectionError,
    MCPSetupError,
    MCPToolset,
)
from harmonygraph.tools.registry import ToolCall, ToolRegistry
from harmonygraph.tracing import FakeOpenAIServer, ScriptedModel

from .conftest import DEMO, HERE, alive, free_port, stop, wait_gone, wait_port

CALL = (
    "<|channel|>analysis<|message|>{thought}<|end|><|start|>assistant<|channel|>commentary "
    "to={recipient} <|constrain|>json<|message|>{args}<|call|>"
)


def call(recipient: str, args: str, thought: str = "Use the tool.") -> str:
    return CALL.format(recipient=recipient, args=args, thought=thought)


def final(text: str) -> str:
    return (
        "<|channel|>analysis<|message|>Done.<|end|><|start|>assistant<|channel|>final"
        f"<|message|>{text}<|return|>"
    )


async def run_call(registry: ToolRegistry, recipient: str, args: str, tmp_path: Path):
    return await registry.call(ToolCall(recipient, args), ToolContext(artifacts_dir=tmp_path))


def test_the_server_is_a_namespace_with_schemas_flattened_for_harmony(demo: MCPToolset) -> None:
    assert demo.namespace == "demo_tools" and not demo.builtin
    assert demo.description == "Tools for testing harmonygraph's MCP client."
    assert set(demo.tools) == {"echo", "norm", "chart", "fail", "pid", "sleep", "crash"}
    assert "demo_tools.echo" in demo.recipients()
    ns = flatten_namespace(demo.namespace_config())
    norm = next(t for t in ns.tools if t.name == "norm")
    # pydantic's $ref and Optional are inlined and constraints kept as words
    point = norm.parameters["properties"]["point"]
    assert point["type"] == "object" and set(point["properties"]) == {"x", "y"}
    assert point["properties"]["y"]["description"] == "Minimum -100; maximum 100"
    assert norm.parameters["properties"]["scale"]["type"] == ["number", "null"]


async def test_calls_map_text_structured_images_and_resources(
    demo: MCPToolset, tmp_path: Path
) -> None:
    registry = ToolRegistry([demo])
    echoed = await run_call(registry, "demo_tools.echo", '{"text": "ab", "times": 2}', tmp_path)
    assert echoed.status == "ok" and echoed.output.text == "abab"
    assert echoed.output.metadata["structured"] == {"result": "abab"}

    normed = await run_call(registry, "demo_tools.norm", '{"point": {"x": 3, "y": -4}}', tmp_path)
    assert normed.status == "ok" and normed.output.text == "7.0"

    chart = await run_call(registry, "demo_tools.chart", "", tmp_path)
    assert chart.status == "ok"
    (image,) = chart.output.artifacts
    assert image.mime_type == "image/png" and image.source == "mcp:demo_tools.chart"
    assert image.path.parent == tmp_path / "mcp" / "demo_tools"
    assert image.path.read_bytes().startswith(b"\x89PNG")
    assert chart.output.text.splitlines() == [
        "here is the chart",
        f"[image saved: {image.path.name} (image/png)]",
        "[resource memo://notes]",
        "the notes",
    ]


async def test_invalid_arguments_and_tool_errors_are_answers_to_the_model(
    demo: MCPToolset, tmp_path: Path
) -> None:
    registry = ToolRegistry([demo])
    missing = await run_call(registry, "demo_tools.echo", '{"times": 2}', tmp_path)
    assert missing.status == "invalid_arguments"
    assert "'text' is a required property" in missing.output.text
    typed = await run_call(registry, "demo_tools.norm", '{"point": {"x": "far"}}', tmp_path)
    assert typed.status == "invalid_arguments" and "`point.x`" in typed.output.text
    failed = await run_call(registry, "demo_tools.fail", '{"reason": "nope"}', tmp_path)
    assert failed.status == "error" and failed.output.text.startswith("error: ")
    assert "fail" in failed.output.text


async def test_a_server_killed_mid_call_is_one_error_and_the_next_call_restarts_it(
    tmp_path: Path,
) -> None:
    toolset = MCPToolset(command=DEMO, timeout=30)
    try:
        registry = ToolRegistry([toolset])
        first = int((await run_call(registry, "demo_tools.pid", "", tmp_path)).output.text)
        threading.Timer(1.0, os.kill, (first, signal.SIGKILL)).start()
        started = time.monotonic()
        killed = await run_call(registry, "demo_tools.sleep", '{"seconds": 20}', tmp_path)
        assert time.monotonic() - started < 10  # at once, not at the 30 s timeout
        assert killed.status == "error"
        assert "connection closed during the call to `sleep`" in killed.output.text
        assert "started again on the next call" in killed.output.text

        crashed = await run_call(registry, "demo_tools.crash", "", tmp_path)
        assert crashed.status == "error" and "crashing on purpose" in crashed.output.text

        again = await run_call(registry, "demo_tools.pid", "", tmp_path)
        assert again.status == "ok" and int(again.output.text) != first
        assert toolset.restarts == 2
    finally:
        await toolset.aclose()


async def test_a_hung_server_is_a_timeout_error_never_a_hung_run(tmp_path: Path) -> None:
    toolset = MCPToolset(command=DEMO, timeout=2)
    try:
        registry = ToolRegistry([toolset])
        slow = await run_call(registry, "demo_tools.sleep", '{"seconds": 30}', tmp_path)
        assert slow.status == "error"
        assert "did not answer `sleep` within 2 s" in slow.output.text
        assert "only slow" in slow.output.text  # it still answers other requests

        pid = int((await run_call(registry, "demo_tools.pid", "", tmp_path)).output.text)
        os.kill(pid, signal.SIGSTOP)  # frozen: answers nothing
        try:
            frozen = await run_call(registry, "demo_tools.echo", '{"text": "x"}', tmp_path)
            assert frozen.status == "error" and frozen.duration_s < 15
            assert "does not answer other requests either" in frozen.output.text
            assert wait_gone(pid), "the frozen server was not stopped"
        finally:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        back = await run_call(registry, "demo_tools.echo", '{"text": "x"}', tmp_path)
        assert back.status == "ok" and back.output.text == "x"
    finally:
        await toolset.aclose()


def test_servers_that_cannot_start_are_clear_set_up_errors() -> None:
    with pytest.raises(MCPConnectionError, match="not installed or not on PATH"):
        MCPToolset(command=["no-such-mcp-server-here"])
    died = [sys.executable, "-c", "import sys; sys.stderr.write('bad config\\n'); sys.exit(3)"]
    with pytest.raises(MCPConnectionError, match=r"(?s)before the handshake.*bad config"):
        MCPToolset(command=died)
    with pytest.raises(MCPConnectionError, match="cannot connect to the MCP server at"):
        MCPToolset(url=f"http://127.0.0.1:{free_port()}/mcp", connect_timeout=5)
    with pytest.raises(MCPSetupError, match=re.escape("command=[...] (stdio) or url=")):
        MCPToolset()
    with pytest.raises(MCPSetupError, match=re.escape("has no tool(s) ['nope']")):
        MCPToolset(command=DEMO, tools=["echo", "nope"])


def test_needs_approval_per_tool_interrupts_the_run() -> None:
    toolset = MCPToolset(command=DEMO, tools=["echo", "pid"], needs_approval=["echo"])
    assert toolset.tools["echo"].needs_approval and not toolset.tools["pid"].needs_approval
    model = ScriptedModel([call("demo_tools.echo", '{"text": "hi"}'), final("Said hi.")])
    with Agent(model, tools=[toolset]) as agent:
        pending = agent.run("Say hi", thread_id="t")
        assert pending.status == "awaiting_approval"
        assert pending.interrupt["recipient"] == "demo_tools.echo"
        done = agent.run(thread_id="t", resume=True)
    assert done.status == "completed"
    assert [m.content for m in done.messages if m.role.value == "tool"] == ["hi"]


# The completions API only: harmonygraph's chat client offers the model `functions.*` alone
# (vLLM's chat endpoint declares no other namespace), so MCP namespaces need completions.
@pytest.mark.parametrize("api", ["completions"])
def test_an_agent_run_over_http_gets_the_mcp_tools_result(api: str) -> None:
    toolset = MCPToolset(command=DEMO)
    pid_call = call("demo_tools.pid", "{}")
    script = [call("demo_tools.echo", '{"text": "mcp", "times": 3}'), pid_call, final("mcpmcpmcp")]
    with FakeOpenAIServer(script) as server:
        model = make_model(base_url=server.base_url, model="openai/gpt-oss-20b", api=api)
        agent = Agent(model, tools=[toolset], reasoning="low")
        result = agent.run("Say mcp three times.")
        body = server.requests[0].body
        declared = agent.developer_config().tools
        agent.close()
    assert result.status == "completed" and result.text == "mcpmcpmcp"
    tool_msgs = [m.content for m in result.messages if m.role.value == "tool"]
    assert tool_msgs[0] == "mcpmcpmcp"
    # the server's tools were declared to the model as their own namespace
    assert [ns.name for ns in declared] == ["demo_tools"]
    if api == "completions":  # the rendered prompt the model read
        prompt = get_encoding().decode_utf8(body["prompt"])
        assert "namespace demo_tools {" in prompt and "// Repeat a text." in prompt
    # the server's lifetime follows the agent's: closed with it
    assert wait_gone(int(tool_msgs[1]))


async def test_the_server_lives_as_long_as_the_agent_and_reconnects_after_close() -> None:
    toolset = await MCPToolset.create(command=DEMO)
    model = ScriptedModel([call("demo_tools.pid", "{}"), final("ok")] * 2)
    async with Agent(model, tools=[toolset]) as agent:
        first = await agent.arun("pid?")
        pid = int(next(m.content for m in first.messages if m.role.value == "tool"))
        assert alive(pid)
    assert wait_gone(pid)
    second = await agent.arun("pid again?")  # a later run starts it again
    again = int(next(m.content for m in second.messages if m.role.value == "tool"))
    assert again != pid and alive(again)
    await agent.aclose()
    assert wait_gone(again)


def test_streamable_http_servers(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [*DEMO, "http"], env={**os.environ, "PORT": str(port)}, stderr=subprocess.DEVNULL
    )
    try:
        wait_port(port, proc)
        with MCPToolset(url=f"http://127.0.0.1:{port}/mcp") as toolset:
            assert toolset.namespace == "demo_tools"
            out = ToolRegistry([toolset])
            import asyncio

            res = asyncio.run(run_call(out, "demo_tools.echo", '{"text": "web"}', tmp_path))
            assert res.status == "ok" and res.output.text == "web"
    finally:
        stop(proc)


def test_a_task_file_with_an_mcp_server(tmp_path: Path) -> None:
    from harmonygraph.task import agent_for_task, load_task

    task = tmp_path / "task.yaml"
    task.write_text(
        "input: Echo hi.\n"
        "tools:\n"
        f"  - mcp: {{command: [{sys.executable}, demo_server.py], cwd: ., tools: [echo],\n"
        "           namespace: demo, needs_approval: false, timeout: 20}\n"
    )
    (tmp_path / "demo_server.py").write_text((HERE / "demo_server.py").read_text())
    spec = load_task(task)
    script = [call("demo.echo", '{"text": "hi"}'), final("hi")]
    with FakeOpenAIServer(script) as server:
        agent = agent_for_task(spec, base_url=server.base_url, model="openai/gpt-oss-20b")
        try:
            result = agent.run(spec.input)
        finally:
            agent.close()
    assert result.text == "hi"
    assert [m.content for m in result.messages if m.role.value == "tool"] == ["hi"]

    task.write_text("input: x\ntools: [{mcp: {command: [a], url: 'http://x/mcp'}}]\n")
    from harmonygraph.task import TaskError

    with pytest.raises(
        TaskError, match=re.escape("`tools.0.mcp`: give `command: [...]` or `url: ...`")
    ):
        load_task(task)
