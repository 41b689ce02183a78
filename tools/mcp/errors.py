"""What can go wrong with MCP servers, as exception classes that say what to do.

Set-up problems (a server that does not start, a schema that cannot be used) are raised
to the program building the agent. Problems during a call (the server died, hung or
refused) are `ToolError`s: the model reads them as the tool's result and the run goes on.
"""

from __future__ import annotations

from harmonygraph.tools.base import ToolError

__all__ = [
    "MCPCallError",
    "MCPConnectionError",
    "MCPNotInstalledError",
    "MCPSchemaError",
    "MCPServerDiedError",
    "MCPSetupError",
    "MCPTimeoutError",
]


class MCPSetupError(Exception):
    """An MCP toolset that cannot be set up; raised where the agent is built."""


class MCPNotInstalledError(MCPSetupError, ImportError):
    """The `mcp` package is missing."""


class MCPConnectionError(MCPSetupError, ConnectionError):
    """The server could not be started or reached, or did not finish the handshake."""


class MCPSchemaError(MCPSetupError, ValueError):
    """A server's tool declares parameters that are not a usable JSON Schema."""


class MCPCallError(ToolError):
    """The server refused a call (a protocol-level error, not a tool's own error result)."""


class MCPServerDiedError(MCPCallError):
    """The server's process exited or its connection closed during a call."""


class MCPTimeoutError(MCPCallError):
    """The server did not answer a call in time."""
