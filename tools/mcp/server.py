"""harmonygraph's built-in tools served over MCP, for any MCP client.

`harmonygraph mcp serve --tools python,browser` (stdio) or `--transport http`. The tools
run exactly as they do for an agent: calls go through the same `ToolRegistry` (argument
validation, timeouts, result caps), the python tool in the same sandbox (Docker, or the
local bubblewrap sandbox) with the same limits, the browser through the same fetcher and
its address rules. Each MCP client connection is one "run": its own sandbox session (state
kept between its calls, as in a notebook) and its own browser page history.

Tool names follow the gpt-oss reference servers, so clients that map those to the
built-in namespaces (vLLM, harmonygraph's `MCPToolset`) do so here too: `python` (one
`code` parameter) and `search`/`open`/`find`. A server with only the python tool calls
itself `python`, with only the browser `browser`.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import logging
import time
import weakref
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harmonygraph.tools.base import ToolContext, ToolOutput, Toolset
from harmonygraph.tools.mcp.errors import MCPSetupError
from harmonygraph.tools.registry import ToolCall, ToolRegistry

__all__ = ["SERVABLE", "ServedTool", "ToolServer", "build_toolsets"]

log = logging.getLogger(__name__)

SERVABLE = ("python", "browser", "retrieval")
MAX_IMAGE_BYTES = 5 * 1024 * 1024  # larger images are named in the text, not sent

_CODE_SCHEMA = {
    "type": "object",
    "properties": {
        "code": {
            "type": "string",
            "description": "Python code to run as one notebook cell; state persists between calls",
        }
    },
    "required": ["code"],
}


def build_toolsets(names: Sequence[str], *, collection: str = "default") -> list[Toolset]:
    """The built-in toolsets named (python, browser, retrieval), configured from the
    environment as for `harmonygraph run`."""
    unknown = [n for n in names if n not in SERVABLE]
    if unknown or not names:
        raise MCPSetupError(
            f"unknown tool(s) {unknown} to serve; choose from {', '.join(SERVABLE)}"
            if unknown
            else f"name at least one tool to serve: {', '.join(SERVABLE)}"
        )
    out: list[Toolset] = []
    for name in dict.fromkeys(names):
        if name == "python":
            from harmonygraph.tools.python import PythonToolset

            out.append(PythonToolset())
        elif name == "browser":
            from harmonygraph.tools.browser import BrowserToolset

            out.append(BrowserToolset())
        else:
            try:
                from harmonygraph.tools.retrieval.tool import RetrievalToolset
            except ImportError as exc:
                raise MCPSetupError(
                    f"serving retrieval needs the retrieval extra ({exc}): "
                    "pip install 'harmonygraph[retrieval]'"
                ) from None
            out.append(_shared_retrieval(RetrievalToolset, collection))
    return out


def _shared_retrieval(base: type[Any], collection: str) -> Toolset:
    """The retrieval toolset over one store for every connection: opened by the first,
    closed when the server stops (not when a connection ends)."""
    import asyncio

    from harmonygraph.tools.retrieval.store import RetrievalStore

    class SharedStoreRetrieval(base):
        _lock = asyncio.Lock()

        async def start(self, ctx: ToolContext) -> None:
            async with self._lock:
                await self.store.open()

        async def close(self, ctx: ToolContext) -> None:
            pass

        async def aclose(self) -> None:
            await self.store.close()

    toolset: Toolset = SharedStoreRetrieval(RetrievalStore(), collection=collection)
    return toolset


@dataclass(frozen=True, slots=True)
class ServedTool:
    name: str  # the MCP tool name
    recipient: str  # the harmony recipient the registry resolves
    description: str
    input_schema: dict[str, Any]
    text_param: str | None = None  # built-in text tools: the parameter holding the body


class _Client:
    """One MCP client's run state: its tool context, started on its first call."""

    def __init__(self, ctx: ToolContext, owner: Any = None) -> None:
        self.owner = weakref.ref(owner) if owner is not None else None
        self.ctx = ctx
        self.started = False
        self.last_used = time.monotonic()

    def gone(self, idle_timeout_s: float) -> bool:
        dead = self.owner is not None and self.owner() is None
        return dead or time.monotonic() - self.last_used > idle_timeout_s


class ToolServer:
    """An MCP server over harmonygraph toolsets (the built-ins, or any others)."""

    def __init__(
        self,
        toolsets: Sequence[Toolset],
        *,
        name: str | None = None,
        artifacts_dir: str | Path = Path(".harmonygraph") / "mcp-artifacts",
        tool_timeout: float = 120.0,
        max_result_chars: int = 20_000,
        idle_timeout_s: float = 1800.0,
    ) -> None:
        self.registry = ToolRegistry(
            toolsets, default_timeout=tool_timeout, max_result_chars=max_result_chars
        )
        self.artifacts_dir = Path(artifacts_dir)
        spaces = [ts.namespace for ts in toolsets]
        self.name = name or (spaces[0] if spaces in (["python"], ["browser"]) else "harmonygraph")
        self.tools = self._served(toolsets)
        self.idle_timeout_s = idle_timeout_s
        self._clients: dict[Any, _Client] = {}
        self._ids = itertools.count(1)

    @staticmethod
    def _served(toolsets: Sequence[Toolset]) -> dict[str, ServedTool]:
        out: dict[str, ServedTool] = {}
        for ts in toolsets:
            for tool in ts.tools.values():
                if tool.input_kind == "text":
                    served = ServedTool(
                        tool.name,
                        ts.recipients()[0] if ts.builtin else f"{ts.namespace}.{tool.name}",
                        tool.description,
                        _CODE_SCHEMA,
                        text_param="code",
                    )
                else:
                    served = ServedTool(
                        tool.name,
                        f"{ts.namespace}.{tool.name}",
                        tool.description,
                        dict(tool.parameters or {"type": "object", "properties": {}}),
                    )
                name = served.name
                if name in out:  # two namespaces with one tool name: the later is prefixed
                    name = f"{ts.namespace}_{tool.name}"
                    served = ServedTool(
                        name,
                        *(
                            served.recipient,
                            served.description,
                            served.input_schema,
                            served.text_param,
                        ),
                    )
                out[name] = served
        return out

    # -- the MCP server -------------------------------------------------------------------
    def lowlevel(self) -> Any:
        """The SDK's low-level `Server` with this server's handlers."""
        import mcp_types as types
        from mcp.server import Server

        async def list_tools(ctx: Any, params: Any) -> Any:
            return types.ListToolsResult(
                tools=[
                    types.Tool(name=t.name, description=t.description, input_schema=t.input_schema)
                    for t in self.tools.values()
                ]
            )

        async def call_tool(ctx: Any, params: Any) -> Any:
            return await self.call(params.name, dict(params.arguments or {}), ctx)

        return Server(
            self.name, instructions=self.instructions(), on_list_tools=list_tools,
            on_call_tool=call_tool,
        )  # fmt: skip

    def instructions(self) -> str:
        """A lone built-in's own description (what vLLM puts in the prompt for a server
        named `python` or `browser`), else a summary."""
        spaces = {ts.namespace: ts for ts in self.registry.toolsets}
        if self.name in ("python", "browser") and self.name in spaces:
            return spaces[self.name].namespace_config().description or ""
        return (
            "harmonygraph's built-in tools: " + ", ".join(self.tools) + ". Each connection "
            "keeps its own python session and browser history."
        )

    @staticmethod
    def _client_key(request_ctx: Any) -> tuple[Any, Any]:
        """Who is calling: (a key, an object whose life is the client's, or None).

        stdio serves one client per process. Over HTTP, the protocol's `mcp-session-id`
        (older protocol versions) or the `x-session-id` header that vLLM and `MCPToolset`
        send (newer versions have no sessions); otherwise the connection object the SDK
        keeps for it (one request, on a stateless client).
        """
        request = getattr(request_ctx, "request", None)
        headers = getattr(request, "headers", None)
        if headers is not None:
            for header in ("mcp-session-id", "x-session-id"):
                sid = headers.get(header)
                if sid:
                    return (header, sid), None
        connection = getattr(request_ctx.session, "_connection", None)
        if connection is not None and request is not None:
            return ("connection", id(connection)), connection
        return ("process", None), None

    async def _context(self, request_ctx: Any) -> ToolContext:
        await self._sweep()
        key, owner = self._client_key(request_ctx)
        client = self._clients.get(key)
        if client is None or (client.owner is not None and client.owner() is not owner):
            n = next(self._ids)
            ctx = ToolContext(run_id=f"mcp-{n}", artifacts_dir=self.artifacts_dir / f"mcp-{n}")
            client = _Client(ctx, owner)
            self._clients[key] = client
        client.last_used = time.monotonic()
        if not client.started:
            client.started = True
            await self.registry.start(client.ctx)
        return client.ctx

    async def _sweep(self) -> None:
        """Close the run state of clients that are gone or idle too long."""
        for key, client in list(self._clients.items()):
            if client.gone(self.idle_timeout_s):
                del self._clients[key]
                await self._close_client(client)

    async def _close_client(self, client: _Client) -> None:
        if client.started:
            try:
                await self.registry.close(client.ctx)
            except Exception as exc:  # the other connections go on
                log.warning("closing an MCP connection's tools failed: %s", exc)

    async def call(self, name: str, arguments: dict[str, Any], request_ctx: Any) -> Any:
        import mcp_types as types

        served = self.tools.get(name)
        if served is None:
            return _error(f"unknown tool {name!r}; the tools are: {', '.join(self.tools)}")
        if served.text_param is not None:
            body = arguments.get(served.text_param)
            if not isinstance(body, str):
                return _error(f"`{served.text_param}` (a string) is required")
            raw = body
        else:
            raw = json.dumps(arguments)
        ctx = await self._context(request_ctx)
        result = await self.registry.call(ToolCall(served.recipient, raw), ctx)
        content: list[Any] = [types.TextContent(type="text", text=result.output.text)]
        content += _images(result.output)
        return types.CallToolResult(
            content=content,
            is_error=result.status != "ok",
            structured_content=None,
        )

    async def close(self) -> None:
        """Close every connection's run state and what the toolsets keep (warm pools)."""
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await self._close_client(client)
        await self.registry.aclose()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Any]:
        self.registry.prepare()
        try:
            yield self.lowlevel()
        finally:
            await self.close()

    async def serve_stdio(self) -> None:
        from mcp.server.stdio import stdio_server

        async with self.running() as server, stdio_server() as (read, write):
            await server.run(read, write, server.create_initialization_options())

    async def serve_http(
        self, host: str = "127.0.0.1", port: int = 8000, path: str = "/mcp"
    ) -> None:
        import uvicorn

        async with self.running() as server:
            app = server.streamable_http_app(streamable_http_path=path, host=host)
            config = uvicorn.Config(app, host=host, port=port, log_level="warning")
            await uvicorn.Server(config).serve()


def _error(text: str) -> Any:
    import mcp_types as types

    return types.CallToolResult(
        content=[types.TextContent(type="text", text=f"error: {text}")], is_error=True
    )


def _images(output: ToolOutput) -> list[Any]:
    """The images a tool saved (a matplotlib chart), sent inline when small enough."""
    import mcp_types as types

    out: list[Any] = []
    for art in output.artifacts:
        if not art.mime_type.startswith("image/"):
            continue
        try:
            if art.path.stat().st_size > MAX_IMAGE_BYTES:
                continue
            data = art.path.read_bytes()
        except OSError:
            continue
        out.append(
            types.ImageContent(
                type="image", data=base64.b64encode(data).decode("ascii"), mime_type=art.mime_type
            )
        )
    return out
