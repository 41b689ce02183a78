"""MCP both ways: tools from MCP servers (`MCPToolset`) and harmonygraph's built-in tools
served to MCP clients (`harmonygraph mcp serve`). Needs the `mcp` extra."""

from harmonygraph.tools.mcp.client import MCPTool, MCPToolset
from harmonygraph.tools.mcp.errors import (
    MCPCallError,
    MCPConnectionError,
    MCPNotInstalledError,
    MCPSchemaError,
    MCPServerDiedError,
    MCPSetupError,
    MCPTimeoutError,
)

__all__ = [
    "MCPCallError",
    "MCPConnectionError",
    "MCPNotInstalledError",
    "MCPSchemaError",
    "MCPServerDiedError",
    "MCPSetupError",
    "MCPTimeoutError",
    "MCPTool",
    "MCPToolset",
]
