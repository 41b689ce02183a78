"""What a run produced (`RunResult`), and the errors that carry it when it ends badly."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

from harmonygraph.engine.limits import RunStatus
from harmonygraph.harmony.messages import Message
from harmonygraph.models.base import Usage
from harmonygraph.tracing.trace import Trace

if TYPE_CHECKING:
    from harmonygraph.tools.browser.history import BrowserHistory

__all__ = [
    "AgentCheckpointError",
    "AgentInputError",
    "AgentModelError",
    "AgentRunError",
    "OutputValidationError",
    "RunLimitExceeded",
    "RunResult",
    "ThreadNotAwaitingApprovalError",
    "UnknownThreadError",
]

T = TypeVar("T")


@dataclass
class RunResult(Generic[T]):
    """What a run produced, and everything needed to understand how."""

    output: T | str | None
    status: RunStatus | Literal["awaiting_approval"]
    messages: list[Message]
    new_messages: list[Message]
    usage: Usage
    cost_usd: float | None
    steps: int
    tool_calls: int
    step_usage: list[dict[str, Any]]
    artifacts: list[dict[str, Any]]
    trace: Trace
    run_id: str
    thread_id: str
    error: str | None = None
    trace_path: Path | None = None
    output_errors: list[str] = field(default_factory=list)
    interrupt: dict[str, Any] | None = None
    # The pages the browser showed in this run (cursor n: the n-th display), for
    # `format_references(result.text, result.sources)`; None when it used no browser.
    sources: BrowserHistory | None = None

    @property
    def text(self) -> str:
        """The final answer's text (empty when the run has none)."""
        for m in reversed(self.new_messages):
            if m.is_final:
                return m.content
        return ""

    @property
    def reasoning(self) -> list[str]:
        """The run's chain of thought. Keep it from end users unless they ask for it."""
        return [m.content for m in self.new_messages if m.is_reasoning]

    @property
    def ok(self) -> bool:
        return self.status == "completed"


class AgentRunError(RuntimeError):
    """A run ended without a valid answer. `result` keeps everything the run did."""

    def __init__(self, message: str, result: RunResult[Any]) -> None:
        super().__init__(message)
        self.result = result


class OutputValidationError(AgentRunError):
    """The final answer never validated against the output type."""

    @property
    def errors(self) -> list[str]:
        return self.result.output_errors

    @property
    def last_output(self) -> str:
        return self.result.text


class RunLimitExceeded(AgentRunError):
    """A limit (steps, tool calls, tokens, wall time, repeated calls) ended the run."""


class AgentModelError(AgentRunError):
    """The model could not be called (server down, auth, timeout)."""


class AgentInputError(AgentRunError):
    """The conversation cannot be sent to the model (text it cannot encode in bounded
    time); `result` keeps the run so far."""


class AgentCheckpointError(AgentRunError):
    """A checkpoint could not be written, so the run stopped rather than go on unsaved.

    `result` holds what the run did up to there; the checkpointer holds the run up to
    its last saved step, from which the same `thread_id` (and no input) goes on. The
    saver's error is the `__cause__`.
    """


class UnknownThreadError(LookupError):
    """A run asked to continue a thread (`resume=`, or no input) that the agent's
    checkpointer has never saved: nothing ran."""

    def __init__(self, message: str, thread_id: str | None) -> None:
        super().__init__(message)
        self.thread_id = thread_id


class ThreadNotAwaitingApprovalError(ValueError):
    """`resume=` was given for a thread that is not stopped at an approval: nothing ran."""

    def __init__(self, message: str, thread_id: str) -> None:
        super().__init__(message)
        self.thread_id = thread_id
