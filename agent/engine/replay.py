"""Replaying a trace on its own: the run's configuration, model turns and tool results all
come from the trace, and the loop runs again for real. A strict replay fails at the first
request that differs from the recorded one, which is how a change in the framework that
alters what the model would see shows up in a test.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harmonygraph.concurrency import run_sync
from harmonygraph.engine.agent import Agent
from harmonygraph.engine.result import AgentRunError, RunResult
from harmonygraph.harmony.prompt import ResponseFormat
from harmonygraph.tools.registry import ToolRegistry
from harmonygraph.tracing.replay import (
    RecordedToolset,
    ReplayModel,
    ReplayToolRegistry,
    check_replay_end,
    turn_inputs,
)
from harmonygraph.tracing.trace import Trace, TraceError, settings_from_params
from openai_harmony import ToolNamespaceConfig

__all__ = ["agent_from_trace", "replay_trace"]


def agent_from_trace(trace: Trace, *, strict: bool = True) -> Agent[Any]:
    """An agent configured, answered and tooled entirely from `trace`."""
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
    first_call = next(iter(trace.model_calls), None)
    params = first_call.get("params") if first_call else None
    agent: Agent[Any] = Agent(
        ReplayModel(trace, strict=strict),
        registry,
        instructions=developer.get("instructions"),
        reasoning=header.get("reasoning", "medium"),
        output_type=fmt["schema"] if fmt else None,
        response_format=(
            ResponseFormat(fmt["name"], fmt["schema"], fmt.get("description", "")) if fmt else None
        ),
        identity=system.get("identity"),
        knowledge_cutoff=system.get("knowledge_cutoff", "2024-06"),
        current_date=system.get("current_date"),
        name=header.get("agent", "agent"),
        settings=settings_from_params(params) if params else None,
    )
    return agent


def replay_trace(path: str | Path | Trace, *, strict: bool = True) -> dict[str, Any]:
    """Replay every run in a trace file (every turn of a saved chat, on one thread);
    returns what was replayed, raises `ReplayDivergence`."""

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
