"""Replaying a trace on its own: the run's configuration, model turns and tool results all
come from the trace, and the loop runs again for real. A strict replay fails at the first
request that differs from the recorded one, which is how a change in the framework that
alters what the model would see shows up in a test.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harmonygraph.harmony.messages import Message, Role
from harmonygraph.harmony.prompt import ResponseFormat
from harmonygraph.models.base import run_sync
from harmonygraph.tools.base import Toolset
from harmonygraph.tools.registry import ToolRegistry
from harmonygraph.trace import (
    ReplayModel,
    ReplayToolRegistry,
    Trace,
    TraceError,
    check_replay_end,
    settings_from_params,
)
from openai_harmony import ToolNamespaceConfig

__all__ = ["RecordedToolset", "agent_from_trace", "replay_trace", "turn_inputs"]


class RecordedToolset(Toolset):
    """A namespace as a trace recorded it: described to the model, answered from the trace."""

    def __init__(self, config: ToolNamespaceConfig, *, builtin: bool) -> None:
        super().__init__(namespace=config.name, description=config.description)
        self._config = config
        self.builtin = builtin

    def namespace_config(self) -> ToolNamespaceConfig:
        return self._config

    def recipients(self) -> list[str]:
        if self.builtin and self.namespace == "python":
            return ["python"]
        return [f"{self.namespace}.{t.name}" for t in self._config.tools]


def agent_from_trace(trace: Trace, *, strict: bool = True) -> Any:
    from harmonygraph.agent import Agent

    header = trace.header
    system = header.get("system")
    developer = header.get("developer")
    if system is None or developer is None:
        raise TraceError(
            "the trace header lacks the system and developer configuration; it cannot replay alone"
        )
    toolsets = [
        RecordedToolset(ToolNamespaceConfig(**ns), builtin=True)
        for ns in system.get("builtin_tools", [])
    ]
    toolsets += [
        RecordedToolset(ToolNamespaceConfig(**ns), builtin=False)
        for ns in developer.get("tools", [])
    ]
    registry = ReplayToolRegistry(trace, ToolRegistry(toolsets), strict=strict)
    fmt = developer.get("response_format")
    agent: Agent[Any] = Agent(
        ReplayModel(trace, strict=strict),
        instructions=developer.get("instructions"),
        reasoning=header.get("reasoning", "medium"),
        output_type=fmt["schema"] if fmt else None,
        identity=system.get("identity"),
        knowledge_cutoff=system.get("knowledge_cutoff", "2024-06"),
        current_date=system.get("current_date"),
        name=header.get("agent", "agent"),
    )
    agent.registry = registry
    first_call = next(iter(trace.model_calls), None)
    if first_call and first_call.get("params"):
        agent.settings = settings_from_params(first_call["params"])
    if fmt:
        agent._response_format = ResponseFormat(
            fmt["name"], fmt["schema"], fmt.get("description", "")
        )
    return agent


def turn_inputs(trace: Trace) -> list[tuple[str | None, list[Message]]]:
    """Each recorded run's reasoning effort and the messages it was given.

    A chat's trace holds one run per turn on one thread: the first turn's input is all
    its first request held; a later turn's is the user messages its first request added.
    """
    turns: list[tuple[str | None, list[Message]]] = []
    reasoning: str | None = None
    awaiting_first_call = False
    for record in trace.records:
        if record.get("type") == "run":
            reasoning, awaiting_first_call = record.get("reasoning"), True
        elif record.get("type") == "model_call" and awaiting_first_call:
            awaiting_first_call = False
            new = [Message.from_dict(d) for d in record.get("new_messages", [])]
            if turns:
                k = len(new)
                while k and new[k - 1].role is Role.USER:
                    k -= 1
                new = new[k:]
            turns.append((reasoning, new))
    return turns


def replay_trace(path: str | Path | Trace, *, strict: bool = True) -> dict[str, Any]:
    """Replay every run in a trace file (every turn of a saved chat, on one thread);
    returns what was replayed, raises `ReplayDivergence`."""
    from harmonygraph.agent import AgentRunError, RunResult

    trace = path if isinstance(path, Trace) else Trace.load(path)
    agent = agent_from_trace(trace, strict=strict)
    turns = turn_inputs(trace)
    if not turns:
        raise TraceError("the trace has no model calls to replay")
    thread = "replay" if len(turns) > 1 else None
    results: list[RunResult[Any]] = []
    for reasoning, inputs in turns:
        try:
            results.append(run_sync(agent.arun(inputs, thread_id=thread, reasoning=reasoning)))
        except AgentRunError as exc:  # a chat goes on after a turn that ended early
            results.append(exc.result)
    result = results[-1]
    model = agent.model
    assert isinstance(model, ReplayModel)
    if strict:
        check_replay_end(trace, model, result.status, sum(r.steps for r in results))
    return {
        "ok": True,
        "status": result.status,
        "turns": len(results),
        "model_calls": len(trace.model_calls) - model.remaining,
        "tool_calls": sum(r.tool_calls for r in results),
        "output": _jsonable(result.output),
    }


def _jsonable(output: Any) -> Any:
    dump = getattr(output, "model_dump", None)
    return dump() if callable(dump) else output
