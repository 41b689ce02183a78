"""harmonygraph: LangGraph state machines driving gpt-oss through harmony tool calls.

```python
from harmonygraph import Agent, tool
```

The layers, each importing only those below it (checked by tests/test_architecture.py):
`cli`, `doctor`, `task`, `serve`, `batch` → `graphs` (report, survey) → `engine` (the loop and the `Agent`)
→ `tracing` (traces, replay, test doubles) → `tools` → `sandbox` → `models` → `harmony`
→ foundations (`settings`, `concurrency`, `bounds`, `safe_yaml`, `schema_errors`, `lazy`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from harmonygraph.lazy import lazy_exports

__version__ = "0.1.0"

if TYPE_CHECKING:
    from harmonygraph.engine.agent import Agent, ChatSession
    from harmonygraph.engine.limits import RunLimits
    from harmonygraph.engine.result import (
        AgentCheckpointError,
        AgentInputError,
        AgentModelError,
        AgentRunError,
        OutputValidationError,
        RunLimitExceeded,
        RunResult,
        ThreadNotAwaitingApprovalError,
        UnknownThreadError,
    )
    from harmonygraph.harmony.messages import Message
    from harmonygraph.models import make_model
    from harmonygraph.tools.base import Tool, ToolContext, ToolOutput, Toolset, tool

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
    "ThreadNotAwaitingApprovalError",
    "Tool",
    "ToolContext",
    "ToolOutput",
    "Toolset",
    "UnknownThreadError",
    "__version__",
    "make_model",
    "tool",
]

_LAZY = {
    "Agent": "harmonygraph.engine.agent",
    "AgentCheckpointError": "harmonygraph.engine.result",
    "AgentInputError": "harmonygraph.engine.result",
    "AgentModelError": "harmonygraph.engine.result",
    "AgentRunError": "harmonygraph.engine.result",
    "ChatSession": "harmonygraph.engine.agent",
    "Message": "harmonygraph.harmony.messages",
    "OutputValidationError": "harmonygraph.engine.result",
    "RunLimitExceeded": "harmonygraph.engine.result",
    "RunLimits": "harmonygraph.engine.limits",
    "RunResult": "harmonygraph.engine.result",
    "ThreadNotAwaitingApprovalError": "harmonygraph.engine.result",
    "UnknownThreadError": "harmonygraph.engine.result",
    "Tool": "harmonygraph.tools.base",
    "ToolContext": "harmonygraph.tools.base",
    "ToolOutput": "harmonygraph.tools.base",
    "Toolset": "harmonygraph.tools.base",
    "make_model": "harmonygraph.models",
    "tool": "harmonygraph.tools.base",
}

__getattr__ = lazy_exports(__name__, _LAZY)
