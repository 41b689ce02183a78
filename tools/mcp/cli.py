"""`harmonygraph mcp ...`: serve the built-in tools over MCP, or look at an MCP server."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer
from harmonygraph.concurrency import run_sync

__all__ = ["app"]

app = typer.Typer(
    rich_markup_mode=None,
    help="MCP: serve harmonygraph's tools, or inspect an MCP server.",
    no_args_is_help=True,
)


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.secho(f"error: {message}", err=True, fg="red")
    return typer.Exit(code)


@app.command("serve")
def serve(
    tools: Annotated[
        str, typer.Option("--tools", help="comma-separated: python, browser, retrieval")
    ] = "python,browser",
    transport: Annotated[
        str, typer.Option("--transport", help="stdio (for a client that starts us) or http")
    ] = "stdio",
    host: Annotated[
        str, typer.Option("--host", help="http: the address to listen on")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="http: the port")] = 8000,
    path: Annotated[str, typer.Option("--path", help="http: the endpoint path")] = "/mcp",
    collection: Annotated[
        str, typer.Option("--collection", help="retrieval: the collection searched")
    ] = "default",
    tool_timeout: Annotated[
        float,
        typer.Option(
            "--tool-timeout",
            help="seconds a call may take (python: its own sandbox limit applies first)",
        ),
    ] = 120.0,
) -> None:
    """Serve the built-in tools to any MCP client, with the same sandbox and limits as runs.

    The python tool runs in the sandbox (HARMONYGRAPH_SANDBOX=docker|local), the browser
    under its fetch rules (HARMONYGRAPH_BROWSER_ALLOW_HOSTS, HARMONYGRAPH_SEARCH_BACKEND).
    """
    from harmonygraph.tools.mcp.errors import MCPSetupError
    from harmonygraph.tools.mcp.server import ToolServer, build_toolsets

    if transport not in ("stdio", "http"):
        raise _fail(f"--transport must be stdio or http, not {transport!r}")
    names = [n.strip() for n in tools.split(",") if n.strip()]
    try:
        server = ToolServer(build_toolsets(names, collection=collection), tool_timeout=tool_timeout)
    except (MCPSetupError, ValueError) as exc:
        raise _fail(str(exc)) from None
    if transport == "stdio":
        # stdout is the protocol's: anything else printed there would break it.
        run_sync(server.serve_stdio())
    else:
        typer.echo(f"serving {', '.join(server.tools)} at http://{host}:{port}{path}", err=True)
        run_sync(server.serve_http(host, port, path))


@app.command("tools")
def list_tools(
    command: Annotated[list[str], typer.Argument(help="the server's command (after --), or a URL")],
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """List an MCP server's tools as the model will see them: `harmonygraph mcp tools -- CMD`."""
    from harmonygraph.tools.mcp.client import MCPToolset
    from harmonygraph.tools.mcp.errors import MCPSetupError

    target = command[0] if len(command) == 1 and command[0].startswith("http") else None
    try:
        toolset = MCPToolset(url=target) if target else MCPToolset(command=command)
    except MCPSetupError as exc:
        raise _fail(str(exc), 1) from None
    with toolset:
        rows = [
            {
                "recipient": r,
                "description": t.description,
                "parameters": t.parameters,
                "needs_approval": t.needs_approval,
            }
            for r, t in zip(toolset.recipients(), toolset.tools.values(), strict=False)
        ]
        if as_json:
            sys.stdout.write(
                json.dumps(
                    {"namespace": toolset.namespace, "builtin": toolset.builtin, "tools": rows},
                    indent=2,
                )
                + "\n"
            )
        else:
            kind = " (built-in)" if toolset.builtin else ""
            typer.echo(f"namespace {toolset.namespace}{kind}: {len(rows)} tool(s)")
            for row in rows:
                first = str(row["description"] or "").strip().splitlines()[:1]
                typer.echo(f"  {row['recipient']}: {first[0] if first else ''}")
