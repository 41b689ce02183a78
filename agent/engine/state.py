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
from langgraph.channels.delta import DeltaChannel

__all__ = ["LoopState", "initial_state", "storable"]


def _extend(left: list[Any], writes: Sequence[list[Any]]) -> list[Any]:
    """The list with each write's items appended, in order (a new list: values already
    handed out stay as they were)."""
    out = list(left)
    for items in writes:
        out.extend(items)
    return out


def _appended() -> DeltaChannel[list[Any]]:
    # A delta channel: a checkpoint stores each step's new items (its writes), not the
    # whole list again, so saving a step costs the same at step 1 and step 500; the list
    # is rebuilt from the writes on load, with a full snapshot every 100 updates.
    # Checkpoints written before (the whole list in each) are read as they are.
    return DeltaChannel(_extend)


class LoopState(TypedDict, total=False):
    messages: Annotated[list[Message], _appended()]
    steps: int
    tool_calls: int
    usage: Usage
    step_usage: Annotated[list[dict[str, Any]], _appended()]
    artifacts: Annotated[list[dict[str, Any]], _appended()]
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
