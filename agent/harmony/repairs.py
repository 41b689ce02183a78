"""Tolerant harmony reading: the named repairs the parser may make, and the pieces of it
that stand alone (completions whose special tokens a server stripped, tool names).

Every repair the parser makes is recorded in `ParseResult.repairs` as a `Repair`: its
kind (a `RepairKind`, a plain string in traces), the offset in the completion where it
applied, and a short detail. A well-formed completion has no repairs; a trace or a
metric can count them with `ParseResult.repair_counts`.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "Repair",
    "RepairKind",
    "StrippedMessage",
    "ToolNameError",
    "clean_tool_name",
    "known_tool_names",
    "resolve_recipient",
    "split_stripped",
]


class RepairKind(StrEnum):
    """What the tolerant reader recovered, one name per class of damage."""

    # The server stripped the special tokens: `analysis…assistantfinal…`.
    STRIPPED_TOKENS = "stripped_tokens"
    # `<|start|>` with no role after it (`<|start|>\n<|channel|>…`): the assistant.
    MISSING_ROLE = "missing_role"
    # The role written twice (`assistantassistant`, `assistant assistant`).
    REPEATED_ROLE = "repeated_role"
    # A channel name that is not analysis/commentary/final, kept as written.
    UNKNOWN_CHANNEL = "unknown_channel"
    # Two `<|channel|>` sections in one header: the last one counts.
    DOUBLE_CHANNEL = "double_channel"
    # Header tokens each on their own line: the newline before a marker is layout.
    NEWLINE_SEPARATORS = "newline_separators"
    # A header closed without `<|message|>`: what follows its fields is the content.
    MISSING_MESSAGE = "missing_message"
    # Content with no header at all (`I must refuse<|end|>`).
    NO_HEADER = "no_header"
    # A header with no usable fields or only garbage, never opened: dropped.
    GARBLED_HEADER = "garbled_header"
    # A message closed by the next header instead of `<|end|>`/`<|call|>`/`<|return|>`.
    MISSING_END = "missing_end"
    # `<|channel|>` after a message's end with no `<|start|>assistant` before it.
    MISSING_START = "missing_start"
    # ` to=functions.f` at the end of a message cut by the next header: the next
    # header's recipient (the model wrote the call header into its reasoning).
    RECIPIENT_FROM_CONTENT = "recipient_from_content"
    # A recipient glued to its content type (`functions.shelljson`), split against the
    # registered tool names.
    RECIPIENT_CTYPE = "recipient_ctype"
    # Non-space text between messages, skipped (kept in `ParseResult.ignored`).
    STRAY_TEXT = "stray_text"


@dataclass(frozen=True, slots=True)
class Repair:
    kind: RepairKind
    offset: int  # where in the completion (text offset) the repair applied
    detail: str = ""

    def to_dict(self) -> dict[str, object]:
        return {"kind": self.kind.value, "offset": self.offset, "detail": self.detail}


# -- tool names ---------------------------------------------------------------------


class ToolNameError(ValueError):
    """A tool name from a server's own parser that names no registered tool."""


def known_tool_names(tools: Iterable[str]) -> frozenset[str]:
    """Registered tool names as recipients: `shell` is also `functions.shell`."""
    names = set()
    for name in tools:
        names.add(name)
        if "." not in name:
            names.add(f"functions.{name}")
    return frozenset(names)


_CTYPE_SUFFIXES = ("json", "code")


def resolve_recipient(recipient: str, known: Collection[str]) -> tuple[str, str | None]:
    """`(recipient, content type split off it)`: `functions.shelljson` is the tool
    `functions.shell` with content type `json` when `shell` is registered and
    `shelljson` is not. A recipient that is registered, or that no split explains,
    is returned as it is (the loop answers an unknown tool to the model)."""
    if recipient in known:
        return recipient, None
    for suffix in _CTYPE_SUFFIXES:
        if recipient.endswith(suffix) and recipient[: -len(suffix)] in known:
            return recipient[: -len(suffix)], suffix
    return recipient, None


_LEAK = re.compile(r"<\|[A-Za-z_]*\|?>?")


def clean_tool_name(name: str, tools: Iterable[str] | None = None) -> str:
    """A tool-call name as a server's own harmony parser returned it, cleaned.

    Servers leak header tokens into the name (`create_event<|channel|>analysis`,
    ollama#11704's `assistant<|channel|>analysis`): the name is what precedes the
    first token, and a glued content type (`shelljson`) is split off against `tools`.
    Raises `ToolNameError` when nothing of a tool name is left, or when `tools` is
    given and the cleaned name is none of them.
    """
    cut = _LEAK.search(name)
    base = (name[: cut.start()] if cut else name).strip()
    if base.startswith("functions."):
        base = base[len("functions.") :]
    known = known_tool_names(tools) if tools is not None else None
    if known is not None and base not in known:
        base, _ = resolve_recipient(base, known)
    if (
        not base
        or base in ("assistant", "user", "system", "developer")
        or (known is not None and base not in known)
    ):
        expected = f"; registered tools: {', '.join(sorted(tools or ()))}" if tools else ""
        raise ToolNameError(
            f"tool name {name!r} names no tool (header tokens leaked into it by the "
            f"server's parser){expected}; answer the model that the call was not "
            "understood, or fix the server's tool-call parser"
        )
    return base


# -- completions with their special tokens stripped ------------------------------------


@dataclass(frozen=True, slots=True)
class StrippedMessage:
    offset: int  # of the channel word in the text
    channel: str
    recipient: str | None
    content_type: str | None
    content: str
    ended: bool  # another message followed (its `<|end|>` was stripped)


_CHANNEL_WORDS = "analysis|commentary|final"
# A channel word as a stripped header: glued to its content (`finalYes`), or followed
# by ` to=` (`commentary to=functions.bash json{…}`). A lower-case letter or a space
# after it means an ordinary word (`finalize`, `analysis of`), not a header.
_STRIPPED_HEAD = re.compile(
    rf"(?P<channel>{_CHANNEL_WORDS})"
    r"(?:[ \t]*to=(?P<recipient>[A-Za-z_][\w.\-]*)(?:[ \t]*(?P<ctype>json|code))?)?"
)
_STRIPPED_NEXT = re.compile(rf"assistant(?=(?:{_CHANNEL_WORDS})(?:[ \t]*to=|[^a-z \t]|\Z))")


def _head_at(text: str, pos: int) -> re.Match[str] | None:
    m = _STRIPPED_HEAD.match(text, pos)
    if m is None:
        return None
    if m.group("recipient") is None:
        nxt = text[m.end() : m.end() + 1]
        if nxt and ((nxt.islower() and nxt.isascii()) or nxt in " \t"):
            return None
    return m


def split_stripped(text: str, base_offset: int = 0) -> list[StrippedMessage] | None:
    """Messages of a completion whose special tokens the server removed, or None when
    `text` does not read as one (`analysisWe need…assistantfinalThe answer…`)."""
    start = len(text) - len(text.lstrip())
    first = _head_at(text, start)
    if first is None:
        return None
    heads = [first]
    for sep in _STRIPPED_NEXT.finditer(text, first.end()):
        m = _head_at(text, sep.end())
        if m is not None:
            heads.append(m)
    out = []
    for k, m in enumerate(heads):
        end = heads[k + 1].start() - len("assistant") if k + 1 < len(heads) else len(text)
        out.append(
            StrippedMessage(
                offset=base_offset + m.start(),
                channel=m.group("channel"),
                recipient=m.group("recipient"),
                content_type=m.group("ctype"),
                content=text[m.end() : end],
                ended=k + 1 < len(heads),
            )
        )
    return out
