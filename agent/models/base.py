"""The model protocol every backend implements, and the types that cross it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, runtime_checkable

from harmonygraph.harmony.messages import Message
from harmonygraph.harmony.parser import ParseEvent, StreamParser
from harmonygraph.harmony.prompt import DeveloperConfig, ReasoningLevel, SystemConfig
from harmonygraph.harmony.repairs import Repair

__all__ = [
    "Model",
    "ModelAuthError",
    "ModelConnectionError",
    "ModelError",
    "ModelNotFoundError",
    "ModelRequest",
    "ModelResponse",
    "ModelSettings",
    "ModelTimeoutError",
    "ResponseDone",
    "StreamEvent",
    "Usage",
    "replay_as_stream",
]


class ModelError(RuntimeError):
    """A model call failed; the message says what to check."""


class ModelConnectionError(ModelError):
    """The server could not be reached (wrong URL, server down)."""


class ModelAuthError(ModelError):
    """The server refused the API key."""


class ModelNotFoundError(ModelError):
    """The server does not serve the model asked for."""


class ModelTimeoutError(ModelError):
    """The server did not answer in time."""


@dataclass(frozen=True)
class ModelSettings:
    """Sampling and request settings. gpt-oss's recommended sampling is the default."""

    max_tokens: int = 4096
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    timeout: float = 120.0
    max_retries: int = 3
    extra_body: dict[str, Any] = field(default_factory=dict)
    # Generate the final answer's body under the response format's JSON-Schema grammar,
    # where the backend can (`supports_constrained_output`); the reasoning stays free.
    enforce_output: bool = False


def effective_settings(own: ModelSettings, requested: ModelSettings) -> ModelSettings:
    """A client's settings for one request: the request's, unless it kept every default.

    A run that only asks for enforcement keeps the client's own sampling settings.
    """
    if replace(requested, enforce_output=False) == ModelSettings():
        return replace(own, enforce_output=own.enforce_output or requested.enforce_output)
    return requested


@dataclass(frozen=True)
class ModelRequest:
    """One step's request: the rendered-ready conversation and how to sample."""

    system: SystemConfig
    developer: DeveloperConfig
    messages: tuple[Message, ...]
    settings: ModelSettings = field(default_factory=ModelSettings)

    @property
    def reasoning(self) -> ReasoningLevel:
        return self.system.reasoning


@dataclass(frozen=True, slots=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    # Some count was not the server's: it reported 0 (or nothing) and the client counted
    # the rendered prompt or the completion itself (a close estimate, not the bill).
    estimated: bool = False

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cached_tokens + other.cached_tokens,
            self.estimated or other.estimated,
        )

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def to_dict(self) -> dict[str, int | bool]:
        out: dict[str, int | bool] = {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cached_tokens": self.cached_tokens,
        }
        if self.estimated:
            out["estimated"] = True
        return out


@dataclass(frozen=True)
class ModelResponse:
    """What one model call produced: parsed messages, usage, and the raw completion."""

    messages: tuple[Message, ...]
    usage: Usage
    raw: str
    token_ids: tuple[int, ...] | None = None
    finish_reason: str | None = None
    model: str = ""
    latency_s: float = 0.0
    # The rendered prompt's identity, for traces: its sha256 and length in tokens.
    prompt_sha256: str = ""
    prompt_tokens: int = 0
    # What the tolerant harmony reader recovered in this completion (empty when it was
    # well-formed, or when the server parsed it: chat, responses).
    repairs: tuple[Repair, ...] = ()
    # The final answer's body was generated under the response format's grammar, and the
    # server is known to enforce the field it was sent in. False whenever that is not
    # certain; the engine validates the answer either way.
    constrained: bool = False


@dataclass(frozen=True, slots=True)
class ResponseDone:
    """The last event of a stream, carrying the whole response."""

    response: ModelResponse


StreamEvent = ParseEvent | ResponseDone


@runtime_checkable
class Model(Protocol):
    """A gpt-oss backend. `complete` returns the parsed turn; `stream` yields it as it comes."""

    name: str

    async def complete(self, request: ModelRequest) -> ModelResponse: ...

    def stream(self, request: ModelRequest) -> AsyncIterator[StreamEvent]: ...

    async def aclose(self) -> None: ...


async def replay_as_stream(
    response: ModelResponse, tools: Sequence[str] = ()
) -> AsyncIterator[StreamEvent]:
    """A whole response (a constrained answer made by two requests) as the events a
    stream of it would have given, then `ResponseDone`."""
    replay = StreamParser(tools=tools)
    for event in replay.feed_text(response.raw):
        yield event
    events, _ = replay.finish_events()
    for event in events:
        yield event
    yield ResponseDone(response)
