"""The engine: the agent loop and everything that runs it, in one home.

    task → Agent (agent.py) → loop graph (loop.py: model → tools → validate) → RunResult
             state.py    the loop's state and its initial values
             runtime.py  what a run needs that is not state (LangGraph's context)
             limits.py   RunLimits and the statuses a run ends with
             output.py   validation of the final answer against the output type
             events.py   the typed events `Agent.astream` yields
             checkpoint.py  savers (memory, SQLite, Postgres), failures raised
             pricing.py  cost estimates; replay.py  an agent run over a trace

Application graphs (`harmonygraph.graphs`) use only this package's public names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from harmonygraph.lazy import lazy_exports

if TYPE_CHECKING:
    from harmonygraph.engine.agent import Agent, ChatSession
    from harmonygraph.engine.events import (
        AgentEvent,
        CommentaryDelta,
        FinalDelta,
        ReasoningDelta,
        RunDone,
        StepDone,
        ToolCallEvent,
        ToolResultEvent,
    )
    from harmonygraph.engine.limits import RunLimits, RunStatus
    from harmonygraph.engine.loop import build_agent_graph
    from harmonygraph.engine.output import OutputInvalid, OutputSpec
    from harmonygraph.engine.pricing import Price, estimate_cost
    from harmonygraph.engine.replay import agent_from_trace, replay_trace
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
    from harmonygraph.engine.runtime import LoopRuntime
    from harmonygraph.engine.state import LoopState, initial_state

__all__ = [
    "Agent",
    "AgentCheckpointError",
    "AgentEvent",
    "AgentInputError",
    "AgentModelError",
    "AgentRunError",
    "ChatSession",
    "CommentaryDelta",
    "FinalDelta",
    "LoopRuntime",
    "LoopState",
    "OutputInvalid",
    "OutputSpec",
    "OutputValidationError",
    "Price",
    "ReasoningDelta",
    "RunDone",
    "RunLimitExceeded",
    "RunLimits",
    "RunResult",
    "RunStatus",
    "StepDone",
    "ThreadNotAwaitingApprovalError",
    "ToolCallEvent",
    "ToolResultEvent",
    "UnknownThreadError",
    "agent_from_trace",
    "build_agent_graph",
    "estimate_cost",
    "initial_state",
    "replay_trace",
]

_LAZY = {
    "Agent": "harmonygraph.engine.agent",
    "AgentCheckpointError": "harmonygraph.engine.result",
    "AgentEvent": "harmonygraph.engine.events",
    "AgentInputError": "harmonygraph.engine.result",
    "AgentModelError": "harmonygraph.engine.result",
    "AgentRunError": "harmonygraph.engine.result",
    "ChatSession": "harmonygraph.engine.agent",
    "CommentaryDelta": "harmonygraph.engine.events",
    "FinalDelta": "harmonygraph.engine.events",
    "LoopRuntime": "harmonygraph.engine.runtime",
    "LoopState": "harmonygraph.engine.state",
    "OutputInvalid": "harmonygraph.engine.output",
    "OutputSpec": "harmonygraph.engine.output",
    "OutputValidationError": "harmonygraph.engine.result",
    "Price": "harmonygraph.engine.pricing",
    "ReasoningDelta": "harmonygraph.engine.events",
    "RunDone": "harmonygraph.engine.events",
    "RunLimitExceeded": "harmonygraph.engine.result",
    "RunLimits": "harmonygraph.engine.limits",
    "RunResult": "harmonygraph.engine.result",
    "ThreadNotAwaitingApprovalError": "harmonygraph.engine.result",
    "UnknownThreadError": "harmonygraph.engine.result",
    "RunStatus": "harmonygraph.engine.limits",
    "StepDone": "harmonygraph.engine.events",
    "ToolCallEvent": "harmonygraph.engine.events",
    "ToolResultEvent": "harmonygraph.engine.events",
    "agent_from_trace": "harmonygraph.engine.replay",
    "build_agent_graph": "harmonygraph.engine.loop",
    "estimate_cost": "harmonygraph.engine.pricing",
    "initial_state": "harmonygraph.engine.state",
    "replay_trace": "harmonygraph.engine.replay",
}

__getattr__ = lazy_exports(__name__, _LAZY)
