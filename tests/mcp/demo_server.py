"""A small MCP server (the SDK's MCPServer) for the client tests, run as a subprocess:
text, structured, image and resource results, a tool error, a slow call, a crash."""

from __future__ import annotations

import asyncio
import base64
import os
import sys

import mcp_types as types
from mcp.server.mcpserver import MCPServer
from pydantic import BaseModel, Field

# The smallest valid PNG (1x1, transparent).
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII="
)

server = MCPServer("demo-tools", instructions="Tools for testing harmonygraph's MCP client.")


class Point(BaseModel):
    x: float
    y: float = Field(0, ge=-100, le=100)


@server.tool()
def echo(text: str, times: int = 1) -> str:
    """Repeat a text."""
    return text * times


@server.tool()
def norm(point: Point, scale: float | None = None) -> float:
    """Manhattan length of a point, optionally scaled."""
    return (abs(point.x) + abs(point.y)) * (scale or 1)


@server.tool()
def chart() -> list[types.ContentBlock]:
    """A picture and a note."""
    return [
        types.TextContent(type="text", text="here is the chart"),
        types.ImageContent(
            type="image", data=base64.b64encode(PNG).decode(), mime_type="image/png"
        ),
        types.EmbeddedResource(
            type="resource",
            resource=types.TextResourceContents(
                uri="memo://notes", text="the notes", mime_type="text/plain"
            ),
        ),
    ]


@server.tool()
def fail(reason: str) -> str:
    """Always fails."""
    raise ValueError(reason)


@server.tool()
def pid() -> int:
    """This server's process id."""
    return os.getpid()


@server.tool()
async def sleep(seconds: float) -> str:
    """Wait, then say so."""
    await asyncio.sleep(seconds)
    return f"slept {seconds}"


@server.tool()
def crash() -> str:
    """Exit the process in the middle of the call."""
    sys.stderr.write("demo server: crashing on purpose\n")
    sys.stderr.flush()
    os._exit(3)


if __name__ == "__main__":
    if sys.argv[1:] == ["http"]:
        server.run("streamable-http", host="127.0.0.1", port=int(os.environ["PORT"]))
    else:
        server.run()
