"""The loop's state: data only (messages, counters, usage), so any checkpointer can save it.

`initial_state` owns the values a new run starts from: a field added to `LoopState` gets
its starting value there, and nowhere else. Everything a node writes passes
`storable` first, so Postgres JSONB (no NUL, no lone surrogate) takes every checkpoint.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, TypedDict

from harmonygraph.bounds import clean_text
from harmonygraph.engine.limits import RunStatus
from harmonygraph.harmony.messages import Message
from harmonygraph.models.base import Usage

__all__ = ["LoopState", "initial_state", "storable"]


def _append(left: list[Any], right: list[Any]) -> list[Any]:
    return left + right


class LoopState(TypedDict, total=False):
    messages: Annotated[list[Message], _append]
    steps: int
    tool_calls: int
    usage: Usage
    step_usage: Annotated[list[dict[str, Any]], _append]
    artifacts: Annotated[list[dict[str, Any]], _append]
    output_retries: int
    output_errors: list[str]
    status: RunStatus
    output: Any
    error: str | None
    repeat_key: str | None
    repeat_count: int


def initial_state(messages: Sequence[Message]) -> LoopState:
    """The state a new run starts from, with `messages` as its input."""
    return {
        "messages": list(messages),
        "status": "running",
        "steps": 0,
        "tool_calls": 0,
        "usage": Usage(),
        "output_retries": 0,
        "output_errors": [],
        "error": None,
        "output": None,
        "repeat_key": None,
        "repeat_count": 0,
    }


def storable(update: dict[str, Any]) -> dict[str, Any]:
    """`update` with its strings (an error, the answer, a status) cleaned for storage."""
    for key, value in update.items():
        if isinstance(value, str):
            update[key] = clean_text(value)
        elif isinstance(value, list) and value and isinstance(value[0], str):
            update[key] = [clean_text(v) if isinstance(v, str) else v for v in value]
    return update
