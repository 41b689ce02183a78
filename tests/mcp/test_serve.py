"""`harmonygraph mcp serve` as a real MCP server in a subprocess, used by MCP clients:
harmonygraph's own `MCPToolset` (stdio and streamable HTTP) and the SDK's plain client."""

from __future__ import annotations

import asyncio
import functools
import http.server
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from harmonygraph.tools import ToolContext
from harmonygraph.tools.mcp import MCPToolset
from harmonygraph.tools.registry import ToolCall, ToolRegistry

from .conftest import alive, free_port, stop, wait_port

SERVE = [sys.executable, "-m", "harmonygraph", "mcp", "serve"]


def _sandbox_env() -> dict[str, str]:
    """The local sandbox (bubblewrap) unless Docker is asked for."""
    if os.environ.get("HARMONYGRAPH_SANDBOX") == "docker":
        return {"HARMONYGRAPH_SANDBOX": "docker"}
    if shutil.which("bwrap") is None:
        pytest.skip("the python tool needs Docker or bubblewrap (bwrap) for the local sandbox")
    return {"HARMONYGRAPH_SANDBOX": "local"}


async def run(registry: ToolRegistry, recipient: str, args: str, ctx: ToolContext):
    return await registry.call(ToolCall(recipient, args), ctx)


@pytest.fixture(scope="module")
def python_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MCPToolset]:
    cwd = tmp_path_factory.mktemp("serve")  # the server keeps its artifacts under its cwd
    toolset = MCPToolset(
        command=[*SERVE, "--tools", "python"], env=_sandbox_env(), timeout=60, cwd=cwd
    )
    yield toolset
    toolset.close_sync()


def test_serve_python_is_the_builtin_python_namespace_with_state(
    python_server: MCPToolset, tmp_path: Path
) -> None:
    assert python_server.namespace == "python" and python_server.builtin
    assert python_server.recipients() == ["python"]
    assert "stateful Jupyter notebook" in (python_server.namespace_config().description or "")
    registry = ToolRegistry([python_server])
    ctx = ToolContext(artifacts_dir=tmp_path)

    async def go() -> list:
        return [
            await run(registry, "python", "x = 6 * 7\nprint('set')", ctx),
            await run(registry, "python", "x", ctx),
            await run(registry, "python", "1/0", ctx),
            await run(
                registry,
                "python",
                "import matplotlib\nmatplotlib.use('Agg')\nimport matplotlib.pyplot as plt\n"
                "plt.plot([1, 2, 3])\nplt.savefig('/mnt/data/line.png')\nplt.close()",
                ctx,
            ),
            await run(registry, "python", "open('/etc/hostname').read(); import socket\n"
                      "socket.create_connection(('1.1.1.1', 53), timeout=2)", ctx),
        ]  # fmt: skip

    first, second, error, chart, net = asyncio.run(go())
    assert first.status == "ok" and first.output.text == "set"
    assert second.status == "ok" and second.output.text == "42"  # the session kept state
    assert error.status == "error" and "ZeroDivisionError" in error.output.text
    assert (
        chart.status == "ok" and "[file saved: /mnt/data/line.png (image/png)]" in chart.output.text
    )
    (png,) = [a for a in chart.output.artifacts if a.mime_type == "image/png"]
    assert png.path.read_bytes().startswith(b"\x89PNG")
    # the same isolation as runs: no network in the sandbox
    assert net.status == "error" and "Error" in net.output.text


def test_the_python_server_killed_mid_call_is_one_error(tmp_path: Path) -> None:
    toolset = MCPToolset(
        command=[*SERVE, "--tools", "python"], env=_sandbox_env(), timeout=60, cwd=tmp_path
    )
    registry = ToolRegistry([toolset])
    ctx = ToolContext(artifacts_dir=tmp_path)
    try:
        warm = asyncio.run(run(registry, "python", "print('warm')", ctx))
        assert warm.status == "ok"  # the kernel is up: the next call is the one killed
        # The server is this process's child; its children (the kernel) go with it.
        server_pids = _children_named(os.getpid(), "harmonygraph")
        threading.Timer(2.0, lambda: [os.kill(p, signal.SIGKILL) for p in server_pids]).start()
        started = time.monotonic()
        killed = asyncio.run(run(registry, "python", "import time; time.sleep(30)", ctx))
        assert time.monotonic() - started < 25
        assert killed.status == "error"
        assert "connection closed during the call to `python`" in killed.output.text
        again = asyncio.run(run(registry, "python", "print('back')", ctx))
        assert again.status == "ok" and again.output.text == "back"
    finally:
        toolset.close_sync()


def _children_named(parent: int, word: str) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().split(") ", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == parent and word in cmdline and "serve" in cmdline:
            out.append(int(stat.parent.name))
    assert out, "the MCP server process was not found"
    return out


@pytest.fixture
def local_site(tmp_path: Path) -> Iterator[str]:
    site = tmp_path / "site"
    site.mkdir()
    (site / "page.html").write_text(
        "<html><head><title>Harmony notes</title></head><body><h1>Harmony notes</h1>"
        "<p>The answer to the question is forty-two.</p></body></html>"
    )
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    handler.log_message = lambda *a: None  # type: ignore[method-assign,assignment]
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()


def test_serve_browser_is_the_builtin_browser_namespace_on_local_pages(
    local_site: str, tmp_path: Path
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "notes.md").write_text("# Local notes\n\nharmony encodes tool calls.\n")
    env = {
        "HARMONYGRAPH_BROWSER_ALLOW_HOSTS": "127.0.0.1",
        "HARMONYGRAPH_SEARCH_BACKEND": "local",
        "HARMONYGRAPH_LOCAL_SEARCH_DIR": str(docs),
    }
    with MCPToolset(command=[*SERVE, "--tools", "browser"], env=env, cwd=tmp_path) as toolset:
        assert toolset.namespace == "browser" and toolset.builtin
        assert sorted(toolset.tools) == ["find", "open", "search"]
        registry = ToolRegistry([toolset])
        ctx = ToolContext(artifacts_dir=tmp_path)

        async def go():
            return (
                await run(registry, "browser.open", f'{{"id": "{local_site}/page.html"}}', ctx),
                await run(registry, "browser.find", '{"pattern": "forty-two"}', ctx),
                await run(registry, "browser.search", '{"query": "harmony"}', ctx),
                await run(registry, "browser.open", '{"id": "http://10.255.255.1/"}', ctx),
            )

        opened, found, searched, refused = asyncio.run(go())
    assert opened.status == "ok" and "forty-two" in opened.output.text
    assert "Harmony notes" in opened.output.text
    assert found.status == "ok" and "forty-two" in found.output.text  # the page history is kept
    assert searched.status == "ok" and "Local notes" in searched.output.text
    # the fetcher's address rules hold for MCP clients too
    assert refused.status == "error" and "private" in refused.output.text


def test_serve_over_streamable_http_with_a_session_per_client(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [*SERVE, "--tools", "python", "--transport", "http", "--port", str(port)],
        env={**os.environ, **_sandbox_env()},
        stderr=subprocess.DEVNULL,
        cwd=tmp_path,
    )
    try:
        wait_port(port, proc)
        url = f"http://127.0.0.1:{port}/mcp"
        ctx = ToolContext(artifacts_dir=tmp_path)
        with MCPToolset(url=url) as one, MCPToolset(url=url) as two:
            assert one.namespace == "python" and one.builtin
            r1, r2 = ToolRegistry([one]), ToolRegistry([two])

            async def go():
                return (
                    await run(r1, "python", "secret = 'one'", ctx),
                    await run(r2, "python", "'secret' in globals()", ctx),
                    await run(r1, "python", "secret", ctx),
                )

            _, other, same = asyncio.run(go())
        assert other.output.text == "False"  # each client has its own kernel
        assert same.output.text == "'one'"
    finally:
        stop(proc)
    assert not alive(proc.pid)


def test_the_sdk_client_sees_the_reference_tool_names(tmp_path: Path) -> None:
    """Any MCP client: the SDK's own, over stdio, as an MCP host would use the server."""
    from mcp import Client, StdioServerParameters
    from mcp.client.stdio import stdio_client

    env = {**_sandbox_env(), "HARMONYGRAPH_BROWSER_ALLOW_HOSTS": "127.0.0.1"}
    params = StdioServerParameters(
        command=SERVE[0], args=[*SERVE[1:], "--tools", "python,browser"], env=env,
        cwd=str(tmp_path),
    )  # fmt: skip

    errlog = (tmp_path / "stderr.log").open("w")

    async def go():
        async with Client(stdio_client(params, errlog=errlog)) as client:
            listed = await client.list_tools()
            ok = await client.call_tool("python", {"code": "print(2 + 2)"})
            bad = await client.call_tool("python", {})
            unknown = await client.call_tool("rm_rf", {})
            return client.server_info.name, listed, ok, bad, unknown

    with errlog:
        name, listed, ok, bad, unknown = asyncio.run(go())
    assert name == "harmonygraph"
    assert [t.name for t in listed.tools] == ["python", "search", "open", "find"]
    python = listed.tools[0]
    assert python.input_schema["required"] == ["code"]
    assert not ok.is_error and ok.content[0].text == "4"
    assert bad.is_error and "`code` (a string) is required" in bad.content[0].text
    assert unknown.is_error and "unknown tool 'rm_rf'" in unknown.content[0].text


def test_serve_refuses_unknown_tools() -> None:
    res = subprocess.run([*SERVE, "--tools", "python,shell"], capture_output=True, text=True)
    assert res.returncode == 2
    assert (
        "unknown tool(s) ['shell'] to serve; choose from python, browser, retrieval" in res.stderr
    )
