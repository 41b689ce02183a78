"""Conversation messages as the framework keeps them.

A light, immutable record per harmony message. System and developer messages are not
stored as messages: they are built from `SystemConfig` and `DeveloperConfig` (see
`agent.harmony.prompt`) at render time, so a conversation is only what happened.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

from harmonygraph.bounds import clean_text

__all__ = ["Channel", "Message", "Role", "StopReason"]


class Role(StrEnum):
    USER = "user"
    ASSISTANT = "assistant"
    TOOL = "tool"


Channel = Literal["analysis", "commentary", "final"]
# How an assistant message ended in a completion: `<|end|>`, `<|call|>`, `<|return|>`,
# or None when the completion stopped before any of them (max tokens, a cut stream).
StopReason = Literal["end", "call", "return"]


@dataclass(frozen=True, slots=True)
class Message:
    role: Role
    content: str
    channel: str | None = None
    recipient: str | None = None
    content_type: str | None = None
    # The author of a tool message: the tool's recipient name, e.g. `functions.lookup`.
    name: str | None = None
    stop: StopReason | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        # Every message a run keeps is storable: NUL and lone surrogates (which no
        # database, trace or UTF-8 encoder takes) become U+FFFD as the message is made.
        for key in ("content", "channel", "recipient", "content_type", "name"):
            value = getattr(self, key)
            if isinstance(value, str):
                cleaned = clean_text(value)
                if cleaned is not value:
                    object.__setattr__(self, key, cleaned)

    # -- constructors ---------------------------------------------------------
    @classmethod
    def user(cls, text: str) -> Message:
        return cls(Role.USER, text)

    @classmethod
    def assistant(
        cls,
        text: str,
        *,
        channel: str = "final",
        recipient: str | None = None,
        content_type: str | None = None,
    ) -> Message:
        return cls(Role.ASSISTANT, text, channel, recipient, content_type)

    @classmethod
    def tool_result(cls, name: str, text: str, *, channel: str = "commentary") -> Message:
        """A tool's answer, authored by the tool and addressed to the assistant."""
        return cls(Role.TOOL, text, channel=channel, recipient="assistant", name=name)

    # -- what the message is --------------------------------------------------
    @property
    def is_tool_call(self) -> bool:
        return (
            self.role is Role.ASSISTANT
            and self.recipient is not None
            and self.recipient not in ("assistant", "user", "all")
        )

    @property
    def is_final(self) -> bool:
        return self.role is Role.ASSISTANT and self.channel == "final" and not self.is_tool_call

    @property
    def is_reasoning(self) -> bool:
        return self.role is Role.ASSISTANT and self.channel == "analysis" and not self.is_tool_call

    @property
    def is_preamble(self) -> bool:
        """Commentary meant for the user while tools run (no recipient)."""
        return (
            self.role is Role.ASSISTANT and self.channel == "commentary" and not self.is_tool_call
        )

    # -- serialisation --------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        # Written out rather than dataclasses.asdict, which deep-copies and is slow.
        data: dict[str, Any] = {"role": self.role.value, "content": self.content}
        for key in ("channel", "recipient", "content_type", "name", "stop"):
            value = getattr(self, key)
            if value is not None:
                data[key] = value
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Message:
        known = {"role", "content", "channel", "recipient", "content_type", "name", "stop"}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown message fields: {sorted(unknown)}")
        if "role" not in data or "content" not in data:
            raise ValueError("a message needs `role` and `content`")
        return cls(
            role=Role(data["role"]),
            content=str(data["content"]),
            channel=data.get("channel"),
            recipient=data.get("recipient"),
            content_type=data.get("content_type"),
            name=data.get("name"),
            stop=data.get("stop"),
        )
