"""Typed events an agent run streams: reasoning and answer deltas, tool calls, steps."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harmonygraph.engine.result import RunResult

__all__ = [
    "AgentEvent",
    "CommentaryDelta",
    "FinalDelta",
    "ReasoningDelta",
    "RunDone",
    "StepDone",
    "ToolCallEvent",
    "ToolResultEvent",
]


@dataclass(frozen=True, slots=True)
class ReasoningDelta:
    """Chain of thought (the analysis channel): not for end users unless asked for."""

    step: int
    text: str


@dataclass(frozen=True, slots=True)
class CommentaryDelta:
    """A preamble the model addresses to the user while it works."""

    step: int
    text: str


@dataclass(frozen=True, slots=True)
class FinalDelta:
    step: int
    text: str


@dataclass(frozen=True, slots=True)
class ToolCallEvent:
    step: int
    recipient: str
    arguments: str


@dataclass(frozen=True, slots=True)
class ToolResultEvent:
    step: int
    recipient: str
    status: str
    text: str
    duration_s: float
    artifacts: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True, slots=True)
class StepDone:
    step: int
    input_tokens: int
    output_tokens: int
    latency_s: float


@dataclass(frozen=True, slots=True)
class RunDone:
    result: RunResult[Any]


AgentEvent = (
    ReasoningDelta
    | CommentaryDelta
    | FinalDelta
    | ToolCallEvent
    | ToolResultEvent
    | StepDone
    | RunDone
)
