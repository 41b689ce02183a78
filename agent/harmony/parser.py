"""Parsing gpt-oss completions: whole or streamed, well-formed or as the model really emits them.

The parser works on text in which harmony's special tokens appear as their strings
(`<|channel|>`, ...), or on token ids, where only special token ids are markers inside
a message's content, and a `<|constrain|>` the model spelled out as plain-text tokens
in a header reads the same as the special token. What it tolerates, and why:

- the recipient before or after the channel (`to=` in the role or the channel part);
- `<|constrain|>json`, `<|constrain|> JSON`, a bare ` json`/` code`, or none;
- a tool call on the analysis channel (it is still a call);
- a message that stops without `<|end|>` (cut by max tokens, or the next header begins);
- a header without `<|message|>` (the words after the channel become the content);
- a message without any header at the start of a completion (content, no channel);
- a completion that begins after `<|start|>assistant` (the role is implied).

Text after `<|call|>` is ignored, as a server stops there; it is kept in
`ParseResult.ignored`. What cannot be understood raises `HarmonyParseError` with the
offset and an excerpt.
"""

from __future__ import annotations

import codecs
import functools
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import NoReturn

from harmonygraph.harmony.encoding import get_encoding
from harmonygraph.harmony.messages import Message, Role, StopReason
from harmonygraph.harmony.repairs import (
    Repair,
    RepairKind,
    known_tool_names,
    resolve_recipient,
    split_stripped,
)

__all__ = [
    "ContentDelta",
    "HarmonyParseError",
    "HeaderDone",
    "MessageDone",
    "ParseEvent",
    "ParseResult",
    "Repair",
    "RepairKind",
    "StreamParser",
    "parse_completion",
    "parse_completion_text",
    "parse_completion_tokens",
]

KNOWN_CHANNELS = ("analysis", "commentary", "final")
_MARKERS = ("start", "end", "message", "channel", "constrain", "return", "call")
_MARKER_TEXT = {f"<|{m}|>": m for m in _MARKERS}
_ANY_MARKER = re.compile(r"<\|([A-Za-z_][A-Za-z0-9_]*)\|>")
_MARKER_AT = re.compile(r"<\|([A-Za-z0-9_]{0,40})(\|>)?")
_ROLE_WORDS = {"assistant": Role.ASSISTANT, "user": Role.USER, "tool": Role.TOOL}
_TOOL_NAME = re.compile(r"^[A-Za-z_][\w-]*(\.[A-Za-z_][\w-]*)*$")


class HarmonyParseError(ValueError):
    """A completion that cannot be understood as harmony messages."""

    def __init__(self, problem: str, offset: int, text: str) -> None:
        self.problem = problem
        self.offset = offset
        lo = max(0, offset - 25)
        self.excerpt = text[lo : offset + 25]
        super().__init__(f"{problem} at offset {offset} (near {self.excerpt!r})")


# -- events -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HeaderDone:
    """A message header was read: from here on its content streams."""

    index: int
    role: Role
    channel: str | None
    recipient: str | None
    content_type: str | None


@dataclass(frozen=True, slots=True)
class ContentDelta:
    index: int
    channel: str | None
    recipient: str | None
    delta: str


@dataclass(frozen=True, slots=True)
class MessageDone:
    index: int
    message: Message


ParseEvent = HeaderDone | ContentDelta | MessageDone

# The per-token event, made without the frozen dataclass's __init__ (a Python call and
# an object.__setattr__ per field): object.__new__ and each slot's own setter. The
# fields are checked here, so a field added to ContentDelta cannot be left unset.
if ContentDelta.__slots__ != ("index", "channel", "recipient", "delta"):
    raise TypeError(f"ContentDelta's fields changed: {ContentDelta.__slots__}")
_new_delta = object.__new__
_set_index, _set_channel, _set_recipient, _set_delta = (
    ContentDelta.__dict__[name].__set__ for name in ContentDelta.__slots__
)


def _content_delta(
    index: int, channel: str | None, recipient: str | None, text: str
) -> ContentDelta:
    """`ContentDelta(index, channel, recipient, text)`, the same object, made faster."""
    delta: ContentDelta = _new_delta(ContentDelta)
    _set_index(delta, index)
    _set_channel(delta, channel)
    _set_recipient(delta, recipient)
    _set_delta(delta, text)
    return delta


@dataclass(slots=True)
class ParseResult:
    messages: list[Message]
    # Text the parser skipped: stray text between messages, or what followed `<|call|>`.
    ignored: list[str] = field(default_factory=list)
    # What the tolerant reader recovered, in completion order; empty when well-formed.
    repairs: list[Repair] = field(default_factory=list)

    @property
    def repair_counts(self) -> dict[str, int]:
        """How many repairs of each kind (for traces and metrics)."""
        counts: dict[str, int] = {}
        for r in self.repairs:
            counts[r.kind.value] = counts.get(r.kind.value, 0) + 1
        return counts

    @property
    def truncated(self) -> bool:
        """The last message did not end with a stop marker (max tokens, a cut stream)."""
        return bool(self.messages) and self.messages[-1].stop is None


# -- lexer --------------------------------------------------------------------


class _Tok(Enum):
    TEXT = 0
    MARKER = 1
    UNKNOWN = 2  # something shaped like a special token that harmony does not have


class _Lexer:
    """Splits streamed text into text and special-token markers.

    A marker may arrive split across chunks (`<|chan` + `nel|>`), so a trailing piece
    that could still become a marker is held back until the next chunk or the end.
    """

    def __init__(self) -> None:
        self._buf = ""
        self.offset = 0  # offset in the whole completion of the start of `_buf`

    @property
    def pending(self) -> bool:
        """Whether text is held back, waiting to see if it becomes a marker."""
        return bool(self._buf)

    def feed(self, chunk: str, final: bool = False) -> Iterator[tuple[_Tok, str, int]]:
        self._buf += chunk
        buf = self._buf
        pos = 0
        while True:
            i = buf.find("<|", pos)
            if i < 0:
                # Hold back a final "<" that may begin a marker.
                cut = len(buf) - 1 if (buf.endswith("<") and not final) else len(buf)
                if cut > pos:
                    yield _Tok.TEXT, buf[pos:cut], self.offset + pos
                pos = cut
                break
            # A marker is `<|name|>` with nothing but name characters inside, so an
            # earlier `<|` (code, a diagram) cannot swallow the real marker after it.
            m = _MARKER_AT.match(buf, i)
            assert m is not None  # the pattern matches any "<|"
            if m.group(2) is None:
                if not final and buf[m.end() :] in ("", "|"):
                    # It may still become a marker with the next chunk: hold it back.
                    if i > pos:
                        yield _Tok.TEXT, buf[pos:i], self.offset + pos
                    pos = i
                    break
                # Not a marker: "<|" is plain text here.
                yield _Tok.TEXT, buf[pos : i + 2], self.offset + pos
                pos = i + 2
                continue
            if i > pos:
                yield _Tok.TEXT, buf[pos:i], self.offset + pos
            token = m.group(0)
            name = _MARKER_TEXT.get(token)
            if name is not None:
                yield _Tok.MARKER, name, self.offset + i
            elif _ANY_MARKER.fullmatch(token):
                yield _Tok.UNKNOWN, token, self.offset + i
            else:
                yield _Tok.TEXT, token, self.offset + i
            pos = m.end()
        self._buf = buf[pos:]
        self.offset += pos


# Each ordinary token's bytes, decoded once per process (only the ids a process meets:
# a few thousand, not the 200k of the vocabulary). Special tokens are never cached here.
_TOKEN_BYTES: dict[int, bytes] = {}
# The text of each cached token whose bytes are whole UTF-8 by themselves (most of them):
# such a token needs no incremental decoder when none is mid-character.
_TOKEN_TEXT: dict[int, str] = {}


def _token_bytes(token: int) -> bytes:
    """An ordinary token's bytes (cached); ValueError for an id outside the vocabulary."""
    try:
        data = bytes(get_encoding()._inner.decode_bytes([token]))
    except Exception:  # the Rust side's error for an id outside the vocabulary
        raise ValueError(token) from None
    _TOKEN_BYTES[token] = data
    try:
        _TOKEN_TEXT[token] = data.decode("utf-8")
    except UnicodeDecodeError:
        pass  # part of a character: it goes through the incremental decoder
    return data


@functools.cache
def _special_ids() -> dict[int, str]:
    """Every special token of the harmony encoding: id -> its text."""
    enc = get_encoding()
    return {enc.encode(t, allowed_special="all")[0]: t for t in enc.special_tokens_set}


# -- header interpretation ----------------------------------------------------


@dataclass(slots=True)
class _Header:
    implicit_role: bool  # the completion began after `<|start|>assistant`
    start: int
    parts: list[tuple[str, str]] = field(default_factory=list)  # (section, text)
    starts: list[int] = field(default_factory=list)  # where each part's text begins
    # ` to=f` cut from the end of the message before (RepairKind.RECIPIENT_FROM_CONTENT).
    carried_recipient: str | None = None

    def add_text(self, text: str, offset: int) -> None:
        if self.parts:
            section, prev = self.parts[-1]
            self.parts[-1] = (section, prev + text)
        else:
            self.parts.append(("role", text))
            self.starts.append(offset)

    def open(self, section: str, marker_offset: int) -> None:
        self.parts.append((section, ""))
        self.starts.append(marker_offset + len(section) + 4)  # after `<|section|>`


@dataclass(slots=True)
class _HeaderInfo:
    role: Role
    name: str | None
    channel: str | None
    recipient: str | None
    content_type: str | None
    leftover: str  # words that were not header syntax (content, when <|message|> is missing)
    repairs: list[Repair] = field(default_factory=list)
    # Header tokens on lines of their own: a newline before a marker is layout.
    newline_layout: bool = False


# A role written twice with nothing between (`assistantassistant`).
_REPEATED_ROLE = re.compile(r"(assistant|user|tool)\1+")


def _interpret(
    header: _Header,
    full_text: str,
    *,
    allow_leftover: bool,
    known: frozenset[str] | None = None,
) -> _HeaderInfo:
    role: Role = Role.ASSISTANT
    name: str | None = None
    channel: str | None = None
    recipient: str | None = None
    content_type: str | None = None
    unknown: list[str] = []
    unknown_at = channel_at = header.start
    leftover = ""
    repairs: list[Repair] = []

    for idx, (section, text) in enumerate(header.parts):
        at = header.starts[idx]
        words = text.split()
        if section == "role":
            if header.implicit_role and words and words[0] == "assistant":
                words.pop(0)  # the completion repeated the role the prompt ended with
            repeated = _REPEATED_ROLE.fullmatch(words[0]) if words else None
            if repeated is not None:
                first = words.pop(0)
                repairs.append(Repair(RepairKind.REPEATED_ROLE, at + text.find(first), first))
                if not header.implicit_role:
                    role = _ROLE_WORDS[repeated.group(1)]
            elif not header.implicit_role:
                if not words:
                    # `<|start|>` and straight on to the channel: the model's own message.
                    repairs.append(Repair(RepairKind.MISSING_ROLE, header.start))
                else:
                    first = words.pop(0)
                    if first in _ROLE_WORDS:
                        role = _ROLE_WORDS[first]
                    elif first.startswith("to="):
                        words.insert(0, first)
                    elif _TOOL_NAME.match(first):
                        role, name = Role.TOOL, first
                    else:
                        raise HarmonyParseError(
                            f"unknown author {first!r} in message header",
                            at + text.find(first),
                            full_text,
                        )
            while words and words[0] == role.value:
                repairs.append(Repair(RepairKind.REPEATED_ROLE, at + text.find(words[0])))
                words.pop(0)
        elif section == "channel":
            if not words:
                raise HarmonyParseError("expected a channel name after <|channel|>", at, full_text)
            if channel is not None:
                repairs.append(Repair(RepairKind.DOUBLE_CHANNEL, at, f"{channel} then {words[0]}"))
            channel = words.pop(0)
            channel_at = at + text.find(channel)
        elif section == "constrain":
            if not words:
                raise HarmonyParseError("expected a type after <|constrain|>", at, full_text)
            content_type = "<|constrain|>" + words.pop(0)
        rest: list[str] = []
        for w in words:
            if w.startswith("to=") and len(w) > 3:
                recipient = w[3:]
            elif w in ("json", "code") and content_type is None:
                content_type = w
            else:
                rest.append(w)
        if rest:
            if allow_leftover and idx == len(header.parts) - 1:
                # A header that never reached <|message|>: from the first word that is
                # not header syntax on, the text is the message's content.
                leftover = _after_words(text, text.split().index(rest[0]))
            else:
                if not unknown:
                    unknown_at = at + text.find(rest[0])
                unknown.extend(rest)

    if len(unknown) == 1 and content_type is None and _TOOL_NAME.match(unknown[0]):
        # `to=functions.f abc`: one bare word is a content type the model chose.
        content_type = unknown.pop()
    if unknown:
        raise HarmonyParseError(
            f"unrecognised text {' '.join(unknown)!r} in message header", unknown_at, full_text
        )
    if channel is not None and channel not in KNOWN_CHANNELS:
        # Kept as written: it is neither reasoning nor a final answer, and the
        # messages after it are read as usual.
        repairs.append(Repair(RepairKind.UNKNOWN_CHANNEL, channel_at, channel))
    if recipient is None and header.carried_recipient is not None:
        recipient = header.carried_recipient
    if recipient == "assistant" and role is Role.ASSISTANT:
        recipient = None  # a stray `to=assistant` on the model's own message means nothing
    if known is not None and recipient is not None and role is Role.ASSISTANT:
        resolved, ctype = resolve_recipient(recipient, known)
        if ctype is not None:
            repairs.append(Repair(RepairKind.RECIPIENT_CTYPE, header.start, recipient))
            recipient = resolved
            content_type = content_type or ctype
    layout = any(t.endswith("\n") for _, t in header.parts)
    return _HeaderInfo(role, name, channel, recipient, content_type, leftover, repairs, layout)


def _after_words(text: str, n: int) -> str:
    """`text` with its first `n` whitespace-separated words removed, inner spacing kept."""
    rest = text
    for _ in range(n):
        rest = rest.lstrip()
        k = 0
        while k < len(rest) and not rest[k].isspace():
            k += 1
        rest = rest[k:]
    return rest.strip()


# ` to=functions.f` ending a message that the next header cut: that header's recipient.
_TAIL_RECIPIENT = re.compile(r"\s+to=([A-Za-z_][\w\-]*(?:\.[A-Za-z_][\w\-]*)*)\s*\Z")


# -- the parser -----------------------------------------------------------------


class _State(Enum):
    HEADER = 1
    CONTENT = 2
    BETWEEN = 3
    DONE = 4


class StreamParser:
    """Incremental harmony parser: feed text or token ids, get typed events.

    `feed_text`/`feed_tokens` return the events the new input completed; `finish()`
    closes the stream and returns the `ParseResult`. The completion is assumed to begin
    right after the prompt's `<|start|>assistant`, as a server returns it.

    `tools`: the names of the registered tools (`shell` or `functions.shell`), so that
    a recipient glued to its content type (`to=functions.shelljson`) is read as the
    tool it names. Without them recipients are kept as written.
    """

    def __init__(self, *, stop_at_call: bool = True, tools: Iterable[str] | None = None) -> None:
        self.stop_at_call = stop_at_call
        self._known = known_tool_names(tools) if tools is not None else None
        self._repairs: list[Repair] = []
        self._held = ""  # a trailing newline of content not yet sent as a delta
        self._lexer = _Lexer()
        self._text: list[str] = []  # everything fed, for error excerpts
        self._state = _State.HEADER
        self._header: _Header | None = _Header(implicit_role=True, start=0)
        self._info: _HeaderInfo | None = None
        self._content: list[str] = []
        self._messages: list[Message] = []
        self._ignored: list[str] = []
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._specials = _special_ids()
        # What `feed_tokens` may skip, kept true only while it holds: `_in_content`,
        # inside a message's content with nothing held back by the lexer (text goes
        # straight to the content); `_partial`, the decoder may hold part of a character
        # (so token bytes must go through it). Whatever may change them clears or sets
        # them first, so an exception leaves them on the safe side.
        self._in_content = False
        self._partial = False
        self._finished = False
        self._tail_open = False

    def _settle(self) -> None:
        """Recompute `_in_content` after anything that may have moved the state."""
        self._in_content = self._state is _State.CONTENT and not self._lexer.pending

    # -- input ---------------------------------------------------------------
    def feed_text(self, chunk: str) -> list[ParseEvent]:
        self._in_content = False
        self._text.append(chunk)
        events: list[ParseEvent] = []
        for kind, value, offset in self._lexer.feed(chunk):
            self._step(kind, value, offset, events)
        self._settle()
        return events

    def feed_tokens(self, tokens: Iterable[int]) -> list[ParseEvent]:
        """Token ids: a special token id is a marker; ordinary tokens are text.

        Message content is never lexed for markers here, so a final answer that writes
        "<|end|>" as text keeps it. Header text still is: a `<|constrain|>` the model
        spelled out in plain-text tokens reads as the marker, as it does from text.

        The ordinary tokens between two special tokens (or the ends of `tokens`) are
        read as one piece of text, as if decoded together.
        """
        events: list[ParseEvent] = []
        texts = _TOKEN_TEXT
        # Text of the whole-UTF-8 tokens since the last special token, while the decoder
        # is not mid-character; `pending` (their bytes) takes over once it must be used.
        run: list[str] = []
        pending: list[bytes] | None = [] if self._partial else None
        for token in tokens:
            if pending is None:
                text = texts.get(token)
                if text is not None:
                    run.append(text)
                    continue
            special = self._specials.get(token)
            if special is not None:
                if run:
                    self._feed_decoded(run[0] if len(run) == 1 else "".join(run), events)
                    run = []
                elif pending:
                    self._feed_bytes(b"".join(pending), events)
                self._feed_special(special, events)
                pending = None  # the special token ended any character the decoder held
                continue
            data = _TOKEN_BYTES.get(token)
            if data is None:
                try:
                    data = _token_bytes(token)
                except ValueError:
                    if run:
                        self._feed_decoded("".join(run), events)
                    elif pending:
                        self._feed_bytes(b"".join(pending), events)
                    self._invalid_token([token])
                if pending is None and token in texts:
                    run.append(texts[token])  # met for the first time: now cached
                    continue
            if pending is None:
                pending = [t.encode() for t in run]
                run = []
            pending.append(data)
        if run:
            text = run[0] if len(run) == 1 else "".join(run)
            if self._in_content:
                # The common case, token by token inside a message: `_append_content`
                # inlined, and its ContentDelta made without the dataclass __init__.
                # (`text` is never empty: every ordinary token has at least one byte.)
                self._text.append(text)
                self._content.append(text)
                self._lexer.offset += len(text)
                if self._held:
                    text = self._held + text
                    self._held = ""
                if text[-1] == "\n":
                    # A newline right before the next marker may be layout, not content
                    # (see `_close`): it goes out with the text after it, or at the end.
                    text, self._held = text[:-1], "\n"
                    if not text:
                        return events
                info = self._info
                assert info is not None
                delta = _new_delta(ContentDelta)
                _set_index(delta, len(self._messages))
                _set_channel(delta, info.channel)
                _set_recipient(delta, info.recipient)
                _set_delta(delta, text)
                events.append(delta)
            else:
                self._feed_decoded(text, events)
        elif pending:
            self._feed_bytes(pending[0] if len(pending) == 1 else b"".join(pending), events)
        return events

    def _feed_bytes(self, data: bytes, events: list[ParseEvent]) -> None:
        # Bytes first, so a character split across tokens is decoded whole.
        self._partial = True
        text = self._utf8.decode(data)
        self._partial = bool(self._utf8.getstate()[0])
        if text:
            self._feed_decoded(text, events)

    def _feed_decoded(self, text: str, events: list[ParseEvent]) -> None:
        """Text decoded from ordinary tokens (never lexed inside a message's content)."""
        self._in_content = False
        self._text.append(text)
        if self._state is _State.CONTENT and not self._lexer.pending:
            # What `_step` does with text inside a message's content, without its tests.
            self._append_content(text, events)
            self._lexer.offset += len(text)
        else:
            for kind, value, offset in self._lexer.feed(text):
                self._step(kind, value, offset, events)
        self._settle()

    def _feed_special(self, token_text: str, events: list[ParseEvent]) -> None:
        # A special token ends whatever plain text came before it.
        self._in_content = False
        self._partial = True
        tail = self._utf8.decode(b"", final=True)
        self._partial = False
        if tail:
            self._text.append(tail)
        for kind, value, offset in self._lexer.feed(tail, final=True):
            self._step(kind, value, offset, events)
        self._text.append(token_text)
        name = _MARKER_TEXT.get(token_text)
        if name is not None:
            self._step(_Tok.MARKER, name, self._lexer.offset, events)
        else:
            self._step(_Tok.UNKNOWN, token_text, self._lexer.offset, events)
        self._lexer.offset += len(token_text)
        self._settle()

    def _invalid_token(self, ids: list[int]) -> NoReturn:
        enc = get_encoding()

        def decodes(token: int) -> bool:
            try:
                enc._inner.decode_bytes([token])
            except Exception:
                return False
            return True

        k = next((k for k, token in enumerate(ids) if not decodes(token)), 0)
        good = bytes(enc._inner.decode_bytes(ids[:k]))
        full = self._full() + good.decode("utf-8", errors="replace")
        raise HarmonyParseError(
            f"expected a token id of the harmony vocabulary, got {ids[k]!r}", len(full), full
        )

    def finish(self) -> ParseResult:
        return self.finish_events()[1]

    def finish_events(self) -> tuple[list[ParseEvent], ParseResult]:
        """Like `finish`, also returning the events the end of the stream completed
        (held-back text, the header of a message cut short, its MessageDone)."""
        events: list[ParseEvent] = []
        if not self._finished:
            self._in_content = False
            self._partial = True
            tail = self._utf8.decode(b"", final=True)
            if tail:
                self._text.append(tail)
            for kind, value, offset in self._lexer.feed(tail, final=True):
                self._step(kind, value, offset, events)
            self._close(events, at_eos=True)
            self._finished = True
        return events, ParseResult(list(self._messages), list(self._ignored), list(self._repairs))

    # -- state machine -------------------------------------------------------
    def _full(self) -> str:
        return "".join(self._text)

    def _step(self, kind: _Tok, value: str, offset: int, events: list[ParseEvent]) -> None:
        state = self._state
        if state is _State.DONE:
            self._ignored_append(value if kind is not _Tok.MARKER else f"<|{value}|>")
            return
        if kind is _Tok.UNKNOWN:
            if state is _State.CONTENT:
                self._append_content(value, events)
                return
            raise HarmonyParseError(f"unknown special token {value!r}", offset, self._full())

        if state is _State.HEADER:
            assert self._header is not None
            if kind is _Tok.TEXT:
                self._header.add_text(value, offset)
            elif value in ("channel", "constrain"):
                self._header.open(value, offset)
            elif value == "message":
                self._info = _interpret(
                    self._header, self._full(), allow_leftover=False, known=self._known
                )
                if self._info.repairs:
                    self._repairs.extend(self._info.repairs)
                self._header = None
                self._state = _State.CONTENT
                i = self._info
                events.append(
                    HeaderDone(len(self._messages), i.role, i.channel, i.recipient, i.content_type)
                )
            elif value == "start":
                # A header that never got its <|message|>, cut by a new message.
                self._close(events, at_eos=False, cut=offset)
                self._header = _Header(implicit_role=False, start=offset)
                self._state = _State.HEADER
            else:  # end / return / call ends a header that lacks <|message|>
                self._close(events, at_eos=False, stop=_stop(value), at=offset)
                self._after_stop(value)
            return

        if state is _State.CONTENT:
            if kind is _Tok.TEXT:
                self._append_content(value, events)
            elif value in ("end", "return", "call"):
                self._close(events, at_eos=False, stop=_stop(value), at=offset)
                self._after_stop(value)
            elif value == "start":
                self._close(events, at_eos=False, cut=offset)
                self._header = _Header(implicit_role=False, start=offset)
                self._state = _State.HEADER
            elif value == "channel":
                # A new header without <|end|><|start|>: the model skipped them.
                carried = self._close(events, at_eos=False, cut=offset, new_channel=True)
                self._header = _Header(implicit_role=True, start=offset)
                self._header.carried_recipient = carried
                self._header.open("channel", offset)
                self._state = _State.HEADER
            elif value == "message":
                raise HarmonyParseError(
                    "unexpected <|message|> inside message content", offset, self._full()
                )
            else:  # a stray <|constrain|> in content: keep it as text
                self._append_content(f"<|{value}|>", events)
            return

        # BETWEEN messages
        if kind is _Tok.TEXT:
            if value.strip():
                self._ignored_append(value)
                self._repairs.append(Repair(RepairKind.STRAY_TEXT, offset, value.strip()[:40]))
        elif value == "start":
            self._header = _Header(implicit_role=False, start=offset)
            self._state = _State.HEADER
        elif value == "channel":
            self._repairs.append(Repair(RepairKind.MISSING_START, offset))
            self._header = _Header(implicit_role=True, start=offset)
            self._header.open("channel", offset)
            self._state = _State.HEADER
        elif value in ("end", "return"):
            pass  # a repeated end marker carries nothing
        elif value == "call":
            self._state = _State.DONE if self.stop_at_call else _State.BETWEEN
        else:
            raise HarmonyParseError(
                f"unexpected <|{value}|> between messages", offset, self._full()
            )

    def _ignored_append(self, text: str) -> None:
        if self._state is _State.DONE and self._tail_open:
            self._ignored[-1] += text
        else:
            self._ignored.append(text)
            self._tail_open = self._state is _State.DONE

    def _after_stop(self, marker: str) -> None:
        if marker == "call" and self.stop_at_call:
            self._state = _State.DONE
        else:
            self._state = _State.BETWEEN

    def _append_content(self, text: str, events: list[ParseEvent]) -> None:
        self._content.append(text)
        info = self._info
        assert info is not None
        if self._held:
            text = self._held + text
            self._held = ""
        if text.endswith("\n"):
            # A newline right before the next marker may be layout, not content (see
            # `_close`): it goes out with the text after it, or at the message's end.
            text, self._held = text[:-1], "\n"
            if not text:
                return
        events.append(_content_delta(len(self._messages), info.channel, info.recipient, text))

    def _drop_header(self, header: _Header, why: str, leftover: str = "") -> None:
        self._repairs.append(Repair(RepairKind.GARBLED_HEADER, header.start, why))
        if leftover:
            self._ignored.append(leftover)
        self._header = None

    def _emit_stripped(
        self, header: _Header, text: str, events: list[ParseEvent], stop: StopReason | None
    ) -> bool:
        """Messages of a completion whose special tokens the server stripped."""
        found = split_stripped(text, header.starts[0] if header.starts else header.start)
        if not found:
            return False
        self._repairs.append(Repair(RepairKind.STRIPPED_TOKENS, found[0].offset, str(len(found))))
        for m in found:
            recipient, ctype = m.recipient, m.content_type
            if recipient is not None and self._known is not None:
                resolved, split = resolve_recipient(recipient, self._known)
                if split is not None:
                    self._repairs.append(Repair(RepairKind.RECIPIENT_CTYPE, m.offset, recipient))
                    recipient, ctype = resolved, ctype or split
            index = len(self._messages)
            events.append(HeaderDone(index, Role.ASSISTANT, m.channel, recipient, ctype))
            if m.content:
                events.append(ContentDelta(index, m.channel, recipient, m.content))
            msg = Message(
                role=Role.ASSISTANT,
                content=m.content,
                channel=m.channel,
                recipient=recipient,
                content_type=ctype,
                stop="end" if m.ended else stop,
            )
            events.append(MessageDone(index, msg))
            self._messages.append(msg)
        self._header = None
        return True

    def _close(
        self,
        events: list[ParseEvent],
        *,
        at_eos: bool,
        stop: StopReason | None = None,
        cut: int | None = None,
        new_channel: bool = False,
        at: int = 0,
    ) -> str | None:
        """Close the message being read. `cut`: the offset of the marker of a new
        header that closed it (no stop marker came). Returns a recipient the message's
        end passed on to that new header (RepairKind.RECIPIENT_FROM_CONTENT). `at`: the
        offset of the stop marker that closed it."""
        if self._state is _State.HEADER and self._header is not None:
            header = self._header
            has_text = any(t.strip() for _, t in header.parts)
            if not header.parts or (
                not has_text and len(header.parts) <= 1 and header.parts[0][0] == "role"
            ):
                self._header = None
                return None  # nothing was said
            pure = header.implicit_role and all(s == "role" for s, _ in header.parts)
            if pure and self._emit_stripped(
                header, "".join(t for _, t in header.parts), events, stop
            ):
                return None
            if pure and not at_eos:
                # "I must refuse<|end|>": text with no header at all is the content.
                text = "".join(t for _, t in header.parts)
                info = _HeaderInfo(Role.ASSISTANT, None, None, None, None, "")
                kind = RepairKind.NO_HEADER
                if text.lstrip().startswith("to="):
                    info = _interpret(header, self._full(), allow_leftover=True, known=self._known)
                    text = info.leftover
                    kind = RepairKind.MISSING_MESSAGE
                info.repairs.append(Repair(kind, header.start))
                self._info, self._content = info, [text]
            else:
                # At the end of the stream a header is only cut short, so words that are
                # not header syntax are garbage, not content.
                info = _interpret(
                    header, self._full(), allow_leftover=not at_eos, known=self._known
                )
                if cut is not None:
                    # Abandoned for a new message before its content began.
                    self._drop_header(header, "cut by a new header", info.leftover)
                    return None
                if info.channel is None and info.recipient is None and info.role is Role.ASSISTANT:
                    # Nothing that makes a message (a stray `<|constrain|>…`, a role alone).
                    self._repairs.extend(info.repairs)
                    if info.leftover or any(s != "role" for s, _ in header.parts):
                        self._drop_header(header, "no channel or recipient", info.leftover)
                    self._header = None
                    return None
                if info.leftover and not any(ch.isalnum() for ch in info.leftover):
                    self._drop_header(header, "only punctuation after the header", info.leftover)
                    return None
                if not at_eos:
                    info.repairs.append(Repair(RepairKind.MISSING_MESSAGE, header.start))
                self._info = info
                self._content = [info.leftover] if info.leftover else []
            self._header = None
            self._repairs.extend(info.repairs)
            i = self._info
            events.append(
                HeaderDone(len(self._messages), i.role, i.channel, i.recipient, i.content_type)
            )
        if self._info is None:
            return None
        i = self._info
        carried: str | None = None
        content = "".join(self._content)
        if cut is not None:
            self._repairs.append(Repair(RepairKind.MISSING_END, cut))
            if new_channel and i.recipient is None:
                m = _TAIL_RECIPIENT.search(content, max(0, len(content) - 200))
                if m is not None:
                    carried = m.group(1)
                    content = content[: m.start()]
                    self._repairs.append(Repair(RepairKind.RECIPIENT_FROM_CONTENT, cut, carried))
            if content.endswith("\n"):
                content = content[:-1]
        elif stop is not None and i.newline_layout and content.endswith("\n"):
            content = content[:-1]
            self._repairs.append(Repair(RepairKind.NEWLINE_SEPARATORS, at - 1))
        if self._held:
            # What the deltas have not carried yet: the held newline, if it stayed.
            sent = sum(map(len, self._content)) - len(self._held)
            if len(content) > sent:
                events.append(
                    ContentDelta(len(self._messages), i.channel, i.recipient, content[sent:])
                )
            self._held = ""
        msg = Message(
            role=i.role,
            content=content,
            channel=i.channel,
            recipient=i.recipient,
            content_type=i.content_type,
            name=i.name,
            stop=stop,
        )
        events.append(MessageDone(len(self._messages), msg))
        self._messages.append(msg)
        self._info = None
        self._content = []
        return carried


def _stop(marker: str) -> StopReason:
    return "end" if marker == "end" else "return" if marker == "return" else "call"


# -- one-shot helpers -----------------------------------------------------------


def parse_completion_text(
    text: str, *, stop_at_call: bool = True, tools: Iterable[str] | None = None
) -> ParseResult:
    """Parse a completion given as text with special tokens written out.

    `tools`: the registered tool names, for recipients glued to their content type.
    """
    parser = StreamParser(stop_at_call=stop_at_call, tools=tools)
    parser.feed_text(text)
    return parser.finish()


def parse_completion_tokens(
    tokens: Sequence[int], *, stop_at_call: bool = True, tools: Iterable[str] | None = None
) -> ParseResult:
    """Parse a completion given as token ids (e.g. vLLM's `token_ids`)."""
    parser = StreamParser(stop_at_call=stop_at_call, tools=tools)
    parser.feed_tokens(tokens)
    return parser.finish()


def parse_completion(
    completion: str | Sequence[int],
    *,
    stop_at_call: bool = True,
    tools: Iterable[str] | None = None,
) -> ParseResult:
    if isinstance(completion, str):
        return parse_completion_text(completion, stop_at_call=stop_at_call, tools=tools)
    return parse_completion_tokens(completion, stop_at_call=stop_at_call, tools=tools)
