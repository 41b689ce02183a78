"""Tools from MCP servers: `MCPToolset(command=[...])` (stdio) or `MCPToolset(url=...)`.

```python
from harmonygraph import Agent
from harmonygraph.concurrency import run_in_thread
from harmonygraph.tools.mcp import MCPToolset

git = MCPToolset(command=["mcp-server-git", "--repository", "."], needs_approval=["git_commit"])
async with Agent(model, tools=[git]) as agent:   # the server stops with the agent
    result = await agent.arun("What changed in the last commit?")
```

The server is started (or reached) and its tools listed when the toolset is built, since
the model's prompt declares them. Each server becomes one harmony namespace: its own name
(`git.git_status`), or, where its tools are a built-in's, the built-in namespace as vLLM
maps the gpt-oss reference servers: a lone `python` tool taking the code is `python`, and
`search`/`open`/`find` are `browser`. Parameters go through the same normalisation,
validation and flattening as every other tool's.

The connection lives on a thread of its own (with its own event loop), so runs on any
loop (`agent.run` from sync code, `await agent.arun`) share it, and it lives as long as
the agent: `close()`/`aclose()` (or `async with`) stop it; a later run reconnects. A call
never hangs a run: it has a timeout, a server that dies mid-call is reported at once, and
the next call starts it again.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import os
import shlex
import sys
import tempfile
import threading
import uuid
import weakref
from collections.abc import Callable, Collection, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from harmonygraph.concurrency import run_in_thread
from harmonygraph.harmony.schema import flatten_schema
from harmonygraph.tools.base import (
    SchemaTool,
    Tool,
    ToolContext,
    ToolOutput,
    Toolset,
)
from harmonygraph.tools.mcp.content import result_to_output
from harmonygraph.tools.mcp.errors import (
    MCPCallError,
    MCPConnectionError,
    MCPNotInstalledError,
    MCPSchemaError,
    MCPServerDiedError,
    MCPSetupError,
    MCPTimeoutError,
)
from harmonygraph.tools.schema import identifier, normalize_schema
from openai_harmony import ToolDescription, ToolNamespaceConfig

__all__ = ["MCPTool", "MCPToolset"]

Transport = Literal["stdio", "http", "sse"]
Approval = bool | Collection[str] | Callable[[Any], bool]
_T = TypeVar("_T")

_BROWSER_TOOLS = {"search", "open", "find"}
_STDERR_TAIL = 1500


def _require_mcp() -> None:
    try:
        import mcp  # noqa: F401
    except ImportError as exc:
        raise MCPNotInstalledError(
            f"MCP toolsets need the mcp package ({exc}): pip install 'harmonygraph[mcp]'"
        ) from None


def _root(exc: BaseException) -> BaseException:
    """The error inside anyio's exception groups (the first that is not a cancellation)."""
    while isinstance(exc, BaseExceptionGroup):
        inner = [e for e in exc.exceptions if not isinstance(e, asyncio.CancelledError)]
        exc = (inner or list(exc.exceptions))[0]
    return exc


def _connection_closed(exc: BaseException) -> bool:
    from mcp import MCPError
    from mcp_types import CONNECTION_CLOSED

    exc = _root(exc)
    if isinstance(exc, MCPError):
        return exc.code == CONNECTION_CLOSED
    import anyio

    return isinstance(exc, anyio.ClosedResourceError | anyio.BrokenResourceError | EOFError)


@dataclass(frozen=True, slots=True)
class _Listing:
    name: str
    instructions: str | None
    tools: list[Any]  # mcp_types.Tool


@dataclass(frozen=True, slots=True)
class _Server:
    """How to reach one server."""

    transport: Transport
    command: tuple[str, ...] = ()
    env: Mapping[str, str] | None = None
    cwd: str | None = None
    url: str | None = None
    headers: Mapping[str, str] | None = None
    session_id: str = field(default_factory=lambda: uuid.uuid4().hex)

    def session_headers(self) -> dict[str, str]:
        """The headers sent, with `x-session-id` (vLLM's convention for a tool session), so
        that a server keeps this client's state (a python kernel) across calls even on
        protocol versions without sessions."""
        headers = dict(self.headers or {})
        if not any(k.lower() == "x-session-id" for k in headers):
            headers["x-session-id"] = self.session_id
        return headers

    @property
    def label(self) -> str:
        if self.transport == "stdio":
            return shlex.join(self.command)
        return str(self.url)

    def client(self, errlog: Any, connect_timeout: float) -> Any:
        from mcp import Client, StdioServerParameters

        if self.transport == "stdio":
            from mcp.client.stdio import stdio_client

            params = StdioServerParameters(
                command=self.command[0],
                args=list(self.command[1:]),
                env=dict(self.env) if self.env else None,
                cwd=self.cwd,
            )
            return Client(stdio_client(params, errlog=errlog), cache=None)
        assert self.url is not None
        if self.transport == "sse":
            from mcp.client.sse import sse_client

            return Client(
                sse_client(self.url, headers=self.session_headers(), timeout=connect_timeout),
                cache=None,
            )
        from mcp.client.streamable_http import streamable_http_client
        from mcp.shared._httpx_utils import create_mcp_http_client

        http = create_mcp_http_client(headers=self.session_headers())
        return Client(streamable_http_client(self.url, http_client=http), cache=None)


_open_connections: weakref.WeakSet[_Connection] = weakref.WeakSet()


@atexit.register
def _close_all_at_exit() -> None:
    for conn in list(_open_connections):
        with contextlib.suppress(Exception):
            conn.close_sync(timeout=5)


class _Connection:
    """One MCP session, held by a task on a private event loop in a daemon thread.

    anyio (which the SDK runs on) wants a connection opened and closed in one task; the
    agent's runs may come from any loop. So a keeper task on this thread's loop opens the
    client, waits until told to stop, and closes it; calls are sent to the loop and
    awaited from the caller's.
    """

    def __init__(self, server: _Server, *, connect_timeout: float) -> None:
        self.server = server
        self.connect_timeout = connect_timeout
        self._guard = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        # Owned by the private loop:
        self._client: Any = None
        self._listing: _Listing | None = None
        self._stop: asyncio.Event | None = None
        self._keeper: asyncio.Task[None] | None = None
        self._opening: asyncio.Lock | None = None
        self.starts = 0
        self._errlog = tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace")

    # -- the private loop -------------------------------------------------------------
    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._guard:
            if self._loop is None or self._loop.is_closed():
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=loop.run_forever, name="harmonygraph-mcp", daemon=True
                )
                thread.start()
                self._loop, self._thread = loop, thread
                _open_connections.add(self)
            return self._loop

    def submit(self, coro: Coroutine[Any, Any, _T]) -> concurrent.futures.Future[_T]:
        return asyncio.run_coroutine_threadsafe(coro, self._ensure_loop())

    def stderr_size(self) -> int:
        try:
            self._errlog.flush()
            return self._errlog.seek(0, os.SEEK_END)
        except (OSError, ValueError):
            return 0

    def stderr_tail(self, since: int = 0) -> str:
        """The end of what the server wrote on stderr (stdio servers) after offset `since`."""
        try:
            size = self.stderr_size()
            self._errlog.seek(max(since, size - _STDERR_TAIL * 4))
            tail = self._errlog.read()[-_STDERR_TAIL:].strip()
        except (OSError, ValueError):
            return ""
        return tail

    def _with_stderr(self, message: str, since: int = 0) -> str:
        tail = self.stderr_tail(since)
        return f"{message}; its stderr ends with:\n{tail}" if tail else message

    # -- on the private loop ----------------------------------------------------------
    async def open(self) -> _Listing:
        """Connect (if not connected) and list the tools."""
        if self._opening is None:
            self._opening = asyncio.Lock()
        async with self._opening:
            if self._client is not None and self._listing is not None:
                return self._listing
            loop = asyncio.get_running_loop()
            ready: asyncio.Future[_Listing] = loop.create_future()
            # Retrieved even when nobody waits any more (a handshake that timed out).
            ready.add_done_callback(lambda f: f.cancelled() or f.exception())
            self._stop = asyncio.Event()
            self._keeper = asyncio.create_task(self._keep(ready, self._stop))
            self.starts += 1
            try:
                return await asyncio.wait_for(asyncio.shield(ready), self.connect_timeout)
            except TimeoutError:
                await self._end_keeper(grace=0)
                raise MCPConnectionError(
                    self._with_stderr(
                        f"the MCP server {self.server.label} did not finish the handshake "
                        f"within {self.connect_timeout:g} s; check that it is an MCP server "
                        "and starts quickly (or raise connect_timeout)"
                    )
                ) from None

    async def _keep(self, ready: asyncio.Future[_Listing], stop: asyncio.Event) -> None:
        try:
            async with self.server.client(self._errlog, self.connect_timeout) as client:
                listing = await self._list(client)
                self._client, self._listing = client, listing
                ready.set_result(listing)
                await stop.wait()
        except BaseException as exc:  # handed to whoever waits for the connection
            if not ready.done():
                ready.set_exception(self._connect_error(exc))
            if isinstance(exc, asyncio.CancelledError | KeyboardInterrupt | SystemExit):
                raise
        finally:
            self._client = None

    async def _list(self, client: Any) -> _Listing:
        tools: list[Any] = []
        cursor: str | None = None
        for _ in range(100):  # pages; a server that never stops paging is cut off
            page = await client.list_tools(cursor=cursor)
            tools.extend(page.tools)
            cursor = page.next_cursor
            if not cursor:
                break
        info = client.server_info
        name = info.name if info is not None and info.name else ""
        return _Listing(name=name, instructions=client.instructions, tools=tools)

    def _connect_error(self, exc: BaseException) -> MCPConnectionError:
        exc = _root(exc)
        where = self.server.label
        if isinstance(exc, FileNotFoundError):
            return MCPConnectionError(
                f"cannot start the MCP server {where}: {exc.strerror}: {self.server.command[0]!r} "
                "is not installed or not on PATH; install it (e.g. pip install mcp-server-git) "
                "or give its full path"
            )
        if isinstance(exc, OSError) and self.server.transport == "stdio":
            return MCPConnectionError(f"cannot start the MCP server {where}: {exc}")
        if _connection_closed(exc):
            return MCPConnectionError(
                self._with_stderr(
                    f"the MCP server {where} closed the connection before the handshake "
                    "finished (did it exit? run the command by hand to see why)"
                )
            )
        if self.server.transport != "stdio":
            hint = (
                "; streamable HTTP endpoints usually end in /mcp, SSE ones in /sse "
                "(pass transport='sse' for those)"
            )
            return MCPConnectionError(
                f"cannot connect to the MCP server at {where}: {type(exc).__name__}: {exc}{hint}"
            )
        return MCPConnectionError(
            self._with_stderr(
                f"the MCP server {where} failed during the handshake: {type(exc).__name__}: {exc}"
            )
        )

    async def _end_keeper(self, grace: float = 10.0) -> None:
        keeper, self._keeper = self._keeper, None
        self._client, self._listing = None, None
        if self._stop is not None:
            self._stop.set()
        if keeper is None:
            return
        done, _ = await asyncio.wait({keeper}, timeout=grace) if grace else (set(), set())
        if keeper not in done:
            keeper.cancel()
            # The transport's own shutdown (stop the process, close the streams) is
            # shielded and bounded in the SDK.
            await asyncio.wait({keeper}, timeout=30)

    async def call(self, name: str, arguments: dict[str, Any], limit_s: float) -> Any:
        from mcp import MCPError

        restarted = self._client is None and self.starts > 0
        try:
            await self.open()
        except MCPConnectionError as exc:
            raise MCPServerDiedError(
                f"the MCP server could not be {'restarted' if restarted else 'started'}: {exc}"
            ) from None
        client = self._client
        mark = self.stderr_size()
        if client is None:
            raise MCPServerDiedError(
                self._with_stderr(f"the MCP server's connection closed before `{name}` was sent")
            )
        try:
            return await asyncio.wait_for(client.call_tool(name, arguments), limit_s)
        except TimeoutError:
            alive = await self._answers()
            if not alive:
                await self._end_keeper(grace=0)
            state = (
                "it still answers other requests, so it is only slow"
                if alive
                else "it does not answer other requests either, so it was stopped and will be "
                "restarted on the next call (state it kept is lost)"
            )
            raise MCPTimeoutError(
                f"the MCP server did not answer `{name}` within {limit_s:g} s and the call was "
                f"cancelled; {state}. Try a smaller request or another way."
            ) from None
        except Exception as exc:
            if _connection_closed(exc):
                await self._end_keeper(grace=0)
                raise MCPServerDiedError(
                    self._with_stderr(
                        f"the MCP server's connection closed during the call to `{name}` (the "
                        "server exited or crashed); it will be started again on the next call",
                        since=mark,
                    )
                ) from None
            root = _root(exc)
            if isinstance(root, MCPError):
                raise MCPCallError(
                    f"the MCP server refused the call to `{name}`: {root.message} "
                    f"(JSON-RPC error {root.code})"
                ) from None
            raise

    async def _answers(self) -> bool:
        client = self._client
        if client is None:
            return False
        try:
            # A cheap request any server answers (ping is gone from newer protocol versions).
            await asyncio.wait_for(client.list_tools(cache_mode="refresh"), 3)
        except Exception:
            return False
        return True

    async def shutdown(self) -> None:
        await self._end_keeper()

    # -- from any thread ----------------------------------------------------------------
    def close_sync(self, timeout: float = 40.0) -> None:
        with self._guard:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or loop.is_closed():
            return
        if thread is threading.current_thread():
            raise RuntimeError("an MCP connection cannot be closed from its own thread")
        try:
            asyncio.run_coroutine_threadsafe(self.shutdown(), loop).result(timeout)
        except Exception:  # closing goes on: the process dies with the loop's transports
            pass
        loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(timeout=5)
        if not loop.is_running():
            loop.close()
        _open_connections.discard(self)


class MCPTool(SchemaTool):
    """One tool of an MCP server, called through its toolset's connection."""

    def __init__(self, toolset: MCPToolset, spec: Any, *, needs_approval: bool) -> None:
        original = spec.name
        try:
            params = normalize_schema(
                dict(spec.input_schema or {"type": "object", "properties": {}})
            )
            params.pop("title", None)  # the argument model's name, of no use to the model
            super().__init__(
                identifier(original),
                spec.description or spec.title or "",
                params,
                self._no_handler,
                timeout=toolset.call_timeout + 15,  # the toolset's own timeout comes first
                needs_approval=needs_approval,
            )
            flatten_schema(params)  # what the prompt will render must be renderable
        except ValueError as exc:
            raise MCPSchemaError(
                f"the MCP server {toolset.server_label} declares tool {original!r} with "
                f"parameters that cannot be used: {exc}; leave it out with "
                f"exclude=[{original!r}]"
            ) from None
        self.cancellable = True
        self.original_name = original
        self.toolset = toolset
        self.annotations = spec.annotations

    @staticmethod
    def _no_handler(args: dict[str, Any]) -> Any:  # pragma: no cover - invoke replaces it
        raise NotImplementedError

    async def invoke(self, args: Any, ctx: ToolContext) -> ToolOutput:
        return await self.toolset.call(self.original_name, dict(args or {}), ctx)


class _MCPPythonTool(Tool):
    """The built-in `python` over a server's `python` tool: the message body is the code."""

    def __init__(self, toolset: MCPToolset, spec: Any, param: str, *, needs_approval: bool):
        super().__init__(
            "python",
            spec.description or "",
            None,
            input_kind="text",
            timeout=toolset.call_timeout + 15,
            needs_approval=needs_approval,
        )
        self.toolset = toolset
        self.original_name = spec.name
        self.param = param

    async def invoke(self, args: Any, ctx: ToolContext) -> ToolOutput:
        if not str(args).strip():
            return ToolOutput.error("error: the message was empty; send Python code to run")
        return await self.toolset.call(self.original_name, {self.param: str(args)}, ctx)


def _python_param(spec: Any) -> str | None:
    """The code parameter of a reference-style `python` tool (one string), or None."""
    schema = spec.input_schema or {}
    props = schema.get("properties") or {}
    strings = [k for k, v in props.items() if isinstance(v, dict) and v.get("type") == "string"]
    if spec.name == "python" and len(props) == 1 and len(strings) == 1:
        return strings[0]
    return None


class MCPToolset(Toolset):
    """The tools of one MCP server, as one harmony namespace.

    - `command`: a stdio server to start (`["uvx", "mcp-server-git"]` or one string);
      `env` and `cwd` for its process (it inherits this process's safe defaults: PATH,
      HOME, ...). Its stderr is kept and quoted when it fails.
    - `url`: a running server; `transport` "http" (streamable HTTP, the default) or "sse"
      (a URL ending in /sse picks it); `headers` for authentication.
    - `namespace`: the harmony namespace; by default the server's name as an identifier,
      or `python`/`browser` where its tools are those built-ins'.
    - `tools` / `exclude`: which of the server's tools to offer.
    - `needs_approval`: True (every tool), a collection of tool names, or a function of
      the MCP tool declaration (e.g. `lambda t: not (t.annotations and
      t.annotations.read_only_hint)`).
    - `timeout`: seconds a call may take; `connect_timeout`: for starting and the handshake.
    """

    def __init__(
        self,
        command: Sequence[str] | str | None = None,
        *,
        url: str | None = None,
        transport: Transport | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | Path | None = None,
        headers: Mapping[str, str] | None = None,
        namespace: str | None = None,
        tools: Iterable[str] | None = None,
        exclude: Iterable[str] = (),
        needs_approval: Approval = False,
        timeout: float = 60.0,
        connect_timeout: float = 30.0,
        description: str | None = None,
    ) -> None:
        _require_mcp()
        server = _server_spec(command, url, transport, env, cwd, headers)
        if timeout <= 0 or connect_timeout <= 0:
            raise ValueError("timeout and connect_timeout must be positive seconds")
        self.server_label = server.label
        self.call_timeout = float(timeout)
        self._connection = _Connection(server, connect_timeout=connect_timeout)
        try:
            listing = self._connection.submit(self._connection.open()).result(connect_timeout + 40)
        except concurrent.futures.TimeoutError:
            self._connection.close_sync(timeout=5)
            raise MCPConnectionError(
                f"the MCP server {server.label} could not be reached in time"
            ) from None
        except BaseException:
            self._connection.close_sync(timeout=10)
            raise
        try:
            self._build(listing, namespace, tools, exclude, needs_approval, description)
        except BaseException:
            self._connection.close_sync(timeout=10)
            raise

    @classmethod
    async def create(cls, *args: Any, **kwargs: Any) -> MCPToolset:
        """Build one from async code without blocking the event loop while it connects."""
        return await run_in_thread(lambda: cls(*args, **kwargs))

    def _build(
        self,
        listing: _Listing,
        namespace: str | None,
        only: Iterable[str] | None,
        exclude: Iterable[str],
        needs_approval: Approval,
        description: str | None,
    ) -> None:
        self.server_name = listing.name
        offered = {t.name: t for t in listing.tools}
        wanted = list(only) if only is not None else list(offered)
        unknown = [n for n in [*wanted, *exclude] if n not in offered]
        if unknown:
            raise MCPSetupError(
                f"the MCP server {self.server_label} has no tool(s) {unknown}; it offers: "
                f"{', '.join(offered) or 'none'}"
            )
        skip = set(exclude)
        specs = [offered[n] for n in wanted if n not in skip]
        names = {s.name for s in specs}
        python_param = _python_param(specs[0]) if len(specs) == 1 else None

        kind: str | None
        if namespace in ("python", "browser"):
            kind = namespace
        elif namespace is not None:
            kind = None
        elif python_param:
            kind = "python"
        elif names == _BROWSER_TOOLS:
            kind = "browser"
        else:
            kind = None
        if kind == "python" and not python_param:
            raise MCPSetupError(
                f"namespace 'python' needs a server offering one tool `python` with one string "
                f"parameter (the code); {self.server_label} offers {sorted(names)}"
            )
        if kind == "browser" and not names <= _BROWSER_TOOLS:
            raise MCPSetupError(
                f"namespace 'browser' takes only search, open and find; "
                f"{self.server_label} offers {sorted(names)} (use tools=[...] to pick)"
            )
        if namespace == "functions":
            raise MCPSetupError(
                "namespace 'functions' is the agent's own; give the MCP server a namespace of "
                "its own (e.g. namespace='git')"
            )
        ns = kind or namespace or identifier(listing.name or "mcp").lower()
        if ns == "functions":
            ns = "mcp_functions"
        super().__init__(namespace=ns, description=description or listing.instructions or None)
        self.builtin = kind is not None
        self.kind = kind
        approve = _approval(needs_approval)
        for spec in specs:
            if kind == "python":
                assert python_param is not None
                self.add(_MCPPythonTool(self, spec, python_param, needs_approval=approve(spec)))
            else:
                self.add(MCPTool(self, spec, needs_approval=approve(spec)))

    # -- harmony plumbing -------------------------------------------------------------
    def resolve(self, recipient: str) -> Tool | None:
        if self.kind == "python" and (recipient == "python" or recipient.startswith("python.")):
            return self.tools["python"]
        return super().resolve(recipient)

    def recipients(self) -> list[str]:
        return ["python"] if self.kind == "python" else super().recipients()

    def namespace_config(self) -> ToolNamespaceConfig:
        if self.kind == "python":
            tool = self.tools["python"]
            base = ToolNamespaceConfig.python()
            return ToolNamespaceConfig(
                name="python",
                description=self.description or tool.description or base.description,
                tools=[],
            )
        if self.kind == "browser":
            base = ToolNamespaceConfig.browser()
            return ToolNamespaceConfig(
                name="browser",
                description=self.description or base.description,
                tools=[
                    ToolDescription.new(
                        t.name,
                        t.description,
                        flatten_schema(t.parameters) if t.parameters else None,
                    )
                    for t in self.tools.values()
                ],
            )
        return super().namespace_config()

    # -- calls and lifetime ---------------------------------------------------------------
    async def call(self, name: str, arguments: dict[str, Any], ctx: ToolContext) -> ToolOutput:
        """Call the server's tool `name` (its own name) and map the result."""
        future = self._connection.submit(self._connection.call(name, arguments, self.call_timeout))
        result = await asyncio.wrap_future(future)
        return result_to_output(
            result, namespace=self.namespace, tool=name, server=self.server_label, ctx=ctx
        )

    @property
    def restarts(self) -> int:
        """How many times the server was started again after the first start."""
        return max(0, self._connection.starts - 1)

    def stderr_tail(self) -> str:
        return self._connection.stderr_tail()

    async def aclose(self) -> None:
        """Stop the server (stdio) or end the session (HTTP); a later call reconnects."""
        await run_in_thread(self._connection.close_sync)

    def close_sync(self) -> None:
        self._connection.close_sync()

    async def __aenter__(self) -> MCPToolset:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __enter__(self) -> MCPToolset:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close_sync()

    def __repr__(self) -> str:
        return (
            f"MCPToolset({self.server_label!r}, namespace={self.namespace!r}, "
            f"tools={list(self.tools)})"
        )


def _approval(rule: Approval) -> Callable[[Any], bool]:
    if isinstance(rule, bool):
        return lambda spec: rule
    if callable(rule):
        return lambda spec: bool(rule(spec))
    if isinstance(rule, str):
        names = {rule}
    else:
        names = set(rule)
    return lambda spec: spec.name in names


def _server_spec(
    command: Sequence[str] | str | None,
    url: str | None,
    transport: Transport | None,
    env: Mapping[str, str] | None,
    cwd: str | Path | None,
    headers: Mapping[str, str] | None,
) -> _Server:
    if (command is None) == (url is None):
        raise MCPSetupError(
            "give an MCP server as command=[...] (stdio) or url='http://host/mcp', not both"
        )
    if command is not None:
        argv = tuple(shlex.split(command) if isinstance(command, str) else command)
        if not argv or not all(isinstance(a, str) and a for a in argv):
            raise MCPSetupError(
                f"command must be a non-empty list of strings, e.g. ['mcp-server-git'], "
                f"got {command!r}"
            )
        if transport not in (None, "stdio"):
            raise MCPSetupError(f"a command is a stdio server; transport={transport!r} needs url=")
        if headers:
            raise MCPSetupError("headers= is for url= servers; a stdio server takes env=")
        if argv[0] in ("python", "python3") and not _on_path(argv[0]):
            argv = (sys.executable, *argv[1:])
        return _Server("stdio", command=argv, env=env, cwd=str(cwd) if cwd else None)
    assert url is not None
    if not url.startswith(("http://", "https://")):
        raise MCPSetupError(f"url must be http:// or https://, got {url!r}")
    if transport == "stdio":
        raise MCPSetupError("transport='stdio' needs command=[...], not url=")
    if env or cwd:
        raise MCPSetupError("env= and cwd= are for command= servers")
    kind: Transport = transport or ("sse" if url.rstrip("/").endswith("/sse") else "http")
    return _Server(kind, url=url, headers=headers)


def _on_path(name: str) -> bool:
    import shutil

    return shutil.which(name) is not None
