"""A run's bounds and the statuses it can end with."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["RunLimits", "RunStatus"]

RunStatus = Literal[
    "running",
    "completed",
    "invalid_output",
    "max_steps",
    "max_tool_calls",
    "max_tokens",
    "timeout",
    "repeated_tool_call",
    "model_error",
    # The input cannot be encoded for the model (see harmony.encoding.encode_text).
    "invalid_input",
    # Set by the Agent, not a node: a checkpoint could not be written.
    "checkpoint_error",
]



@dataclass(frozen=True)
class RunLimits:
    """Bounds on a run; each ends it with its own status when reached."""

    max_steps: int = 25
    max_tool_calls: int = 40
    max_tokens: int = 500_000
    max_wall_s: float = 600.0
    # The same call (recipient and arguments) this many times in a row stops the run.
    max_repeated_calls: int = 3
    output_retries: int = 2
