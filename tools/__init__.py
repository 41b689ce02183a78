"""Tools for harmonygraph agents: the contract, the registry and the built-in tools."""

from harmonygraph.tools.base import (
    ArgumentError,
    Artifact,
    FunctionTool,
    SchemaTool,
    Tool,
    ToolContext,
    ToolError,
    ToolOutput,
    Toolset,
    tool,
    tools_from_schemas,
)

__all__ = [
    "ArgumentError",
    "Artifact",
    "FunctionTool",
    "SchemaTool",
    "Tool",
    "ToolContext",
    "ToolError",
    "ToolOutput",
    "Toolset",
    "tool",
    "tools_from_schemas",
]
