"""harmonygraph: LangGraph state machines driving gpt-oss through harmony tool calls."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from harmonygraph.agent import (
        Agent,
        AgentCheckpointError,
        AgentInputError,
        AgentModelError,
        AgentRunError,
        ChatSession,
        OutputValidationError,
        RunLimitExceeded,
        RunResult,
    )
    from harmonygraph.graphs.agent_loop import RunLimits
    from harmonygraph.harmony.messages import Message

__all__ = [
    "Agent",
    "AgentCheckpointError",
    "AgentInputError",
    "AgentModelError",
    "AgentRunError",
    "ChatSession",
    "Message",
    "OutputValidationError",
    "RunLimitExceeded",
    "RunLimits",
    "RunResult",
    "__version__",
]

_LAZY = {
    "Agent": "harmonygraph.agent",
    "AgentCheckpointError": "harmonygraph.agent",
    "AgentInputError": "harmonygraph.agent",
    "AgentModelError": "harmonygraph.agent",
    "AgentRunError": "harmonygraph.agent",
    "ChatSession": "harmonygraph.agent",
    "OutputValidationError": "harmonygraph.agent",
    "RunLimitExceeded": "harmonygraph.agent",
    "RunResult": "harmonygraph.agent",
    "Message": "harmonygraph.harmony.messages",
    "RunLimits": "harmonygraph.graphs.agent_loop",
}


def __getattr__(name: str) -> Any:
    # Lazy so that `import agent` (and the CLI's --help) does not pull in LangGraph.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'agent' has no attribute {name!r}")
