"""The harmony built-in `python` tool through `PythonToolset`, as the agent loop uses it."""

from __future__ import annotations

from pathlib import Path

import pytest
from harmonygraph.sandbox import DockerSandbox, LocalSandbox, SandboxConfig, SandboxPool
from harmonygraph.tools.base import ToolContext, ToolOutput
from harmonygraph.tools.python import PythonToolset
from sandbox_testkit import SWALLOW_INTERRUPTS, sandbox_config


async def _call(ts: PythonToolset, code: str, ctx: ToolContext) -> ToolOutput:
    tool = ts.resolve("python")
    assert tool is not None and tool.input_kind == "text"
    return await tool.invoke(tool.validate(code), ctx)


def test_namespace_is_harmony_builtin_python() -> None:
    ts = PythonToolset(SandboxConfig(timeout_s=42))
    cfg = ts.namespace_config()
    assert ts.builtin and cfg.name == "python" and cfg.tools == []
    assert "stateful Jupyter notebook" in cfg.description
    assert "time out after 42 seconds" in cfg.description
    assert "Internet access for this session is disabled" in cfg.description
    assert ts.resolve("python") is ts.tools["python"]
    assert ts.resolve("functions.python") is None
    tool = ts.tools["python"]
    # The registry must not cancel the call before the sandbox reports its own timeout.
    assert tool.timeout is not None and tool.timeout > 42


async def test_python_tool_on_local_sandbox(tmp_path: Path) -> None:
    cfg = SandboxConfig(backend="local", preload=[], timeout_s=3, interrupt_grace_s=1)
    ts = PythonToolset(sandbox=LocalSandbox(cfg), pool=SandboxPool(LocalSandbox(cfg), size=0))
    ctx = ToolContext(run_id="r1", artifacts_dir=tmp_path / "artifacts")
    await ts.start(ctx)
    try:
        out = await _call(ts, "x = 2\nprint('hello')\nx * 21", ctx)
        assert out.text == "hello\n42" and not out.is_error
        out = await _call(ts, "open('/mnt/data/r.txt' if False else 'r.txt', 'w').write('z')", ctx)
        assert [a.path.name for a in out.artifacts] == ["r.txt"]
        out = await _call(ts, "   ", ctx)
        assert out.is_error and "empty" in out.text
    finally:
        await ts.close(ctx)
        await ts.aclose()
    assert "python" not in ctx.state


@pytest.mark.docker
async def test_python_tool_on_docker(docker_sandbox: DockerSandbox, tmp_path: Path) -> None:
    cfg = sandbox_config(preload=["numpy", "pandas", "matplotlib.pyplot"])
    ts = PythonToolset(sandbox=DockerSandbox(cfg))
    await ts.warm()
    ctx = ToolContext(run_id="run-7", artifacts_dir=tmp_path / "artifacts")
    await ts.start(ctx)
    try:
        out = await _call(ts, "import pandas as pd\ndf = pd.DataFrame({'a': [1, 2, 3]})", ctx)
        assert out.text == "(no output)" and not out.is_error
        out = await _call(ts, "df['a'].sum()", ctx)
        assert out.text.strip() == "6"
        out = await _call(
            ts,
            "import matplotlib.pyplot as plt\nplt.bar(df.index, df['a'])\n"
            "plt.savefig('/mnt/data/bars.png')\nplt.close()\nprint('saved')",
            ctx,
        )
        assert not out.is_error, out.text
        [art] = out.artifacts
        assert art.mime_type == "image/png" and art.path.read_bytes().startswith(b"\x89PNG")
        assert art.path.is_relative_to(tmp_path / "artifacts")
        assert art.source == "python:/mnt/data/bars.png"
        assert "[file saved: /mnt/data/bars.png" in out.text
        out = await _call(ts, "1/0", ctx)
        assert out.is_error and "ZeroDivisionError" in out.text
        assert out.metadata["status"] == "error"
        out = await _call(ts, "while True:\n    pass", ctx)
        assert out.is_error and "timed out after 3 s" in out.text
        assert out.metadata["state_lost"] is False
        out = await _call(ts, SWALLOW_INTERRUPTS, ctx)
        assert "the session was restarted, state lost" in out.text
        assert out.metadata["state_lost"] is True
        out = await _call(ts, "'df' in globals()", ctx)
        assert out.text == "False"
    finally:
        await ts.close(ctx)
        await ts.aclose()


async def test_unavailable_sandbox_is_reported_to_the_model(tmp_path: Path) -> None:
    cfg = SandboxConfig(backend="local", local_python="/nonexistent/python3", preload=[])
    ts = PythonToolset(cfg)
    ctx = ToolContext(run_id="r", artifacts_dir=tmp_path)
    await ts.start(ctx)
    out = await _call(ts, "print(1)", ctx)
    assert out.is_error and "python tool is unavailable" in out.text
    await ts.close(ctx)
    await ts.aclose()
