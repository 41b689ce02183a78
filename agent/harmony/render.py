"""Rendering a conversation for completion, incrementally.

An agent's conversation grows by a message or two a step. Re-rendering it from scratch
each step costs time proportional to the whole history; this renderer keeps the token
buffer of the messages already rendered (and a running hash of it) and only renders
what is new, so a step costs the same at 1k and at 100k tokens of history. The buffer
is rebuilt only when earlier messages change, which happens once per user turn when
the previous turn's analysis is dropped, and then only back to that turn.

Beside the ids it keeps them JSON-encoded, the form a server's `prompt` field takes:
encoding 100k ids anew each step (11 ms) would be most of a step's client time.
"""

from __future__ import annotations

import functools
import hashlib
import operator
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from harmonygraph.harmony.encoding import START, encode_text, get_encoding, guard_panic
from harmonygraph.harmony.messages import Message, Role
from harmonygraph.harmony.prompt import (
    DeveloperConfig,
    SystemConfig,
    render_developer,
    render_system,
)
from openai_harmony import Author
from openai_harmony import Message as HMessage
from openai_harmony import Role as HRole

__all__ = ["ConversationRenderer", "RenderedPrompt", "json_ids", "to_harmony", "visible_history"]

_HROLE = {Role.USER: HRole.USER, Role.ASSISTANT: HRole.ASSISTANT, Role.TOOL: HRole.TOOL}


def to_harmony(message: Message) -> HMessage:
    """Our message as openai-harmony's, for its renderer."""
    if message.role is Role.TOOL:
        author = Author.new(HRole.TOOL, message.name or "tool")
    else:
        author = Author(role=_HROLE[message.role])
    msg = HMessage.from_author_and_content(author, message.content)
    if message.channel:
        msg = msg.with_channel(message.channel)
    if message.recipient:
        msg = msg.with_recipient(message.recipient)
    if message.content_type:
        msg = msg.with_content_type(message.content_type)
    return msg


def visible_history(messages: Sequence[Message]) -> list[Message]:
    """The messages the model sees again: earlier turns' reasoning is dropped.

    The format drops chain of thought once a turn has ended in a final message, and
    keeps it while a turn's tool calls are ongoing. Tool calls and their results are
    kept even on the analysis channel (the python and browser tools are called there),
    so every result still follows its call.
    """
    last_final = -1
    for i in range(len(messages) - 1, -1, -1):
        if messages[i].is_final:
            last_final = i
            break
    if last_final < 0:
        return list(messages)
    return [m for i, m in enumerate(messages) if i > last_final or not m.is_reasoning]


@dataclass(frozen=True, slots=True)
class RenderedPrompt:
    """A prompt ready to send. `tokens` builds the list; `length` and `sha256` are free."""

    _buffer: list[int]
    _size: int
    suffix: tuple[int, ...]
    sha256: str
    # The ids of _buffer[:_size] as JSON without brackets, and its length in bytes.
    _json: bytearray
    _json_size: int

    def tokens_json(self) -> bytes:
        """`tokens` as a JSON array (`[1,2,3]`), with no per-id work for the history."""
        parts = [p for p in (self._json[: self._json_size], json_ids(self.suffix)) if p]
        return b"".join((b"[", b",".join(parts), b"]"))

    @property
    def length(self) -> int:
        return self._size + len(self.suffix)

    @property
    def tokens(self) -> list[int]:
        return self._buffer[: self._size] + list(self.suffix)

    @property
    def text(self) -> str:
        return get_encoding().decode(self.tokens)


class ConversationRenderer:
    """Renders one agent's conversations; holds the rendered prefix between steps.

    Per step, the work is proportional to what changed, not to the history: the new
    messages are compared with the previous call's by identity (one C-level pass), the
    visible history is only recomputed from the last final message on, and when earlier
    messages change (a finished turn's analysis dropped) the buffer and hash are rolled
    back to the first changed message rather than rebuilt from the start.
    """

    def __init__(self, system: SystemConfig, developer: DeveloperConfig | None = None) -> None:
        self.system = system
        self.developer = developer or DeveloperConfig()
        enc = get_encoding()
        self._prefix = render_system(system, has_function_tools=self.developer.has_function_tools)
        self._prefix += render_developer(self.developer)
        self._assistant_suffix = (START, *enc.encode("assistant"))
        self._cache: dict[Message, tuple[list[int], bytes]] = {}
        self._reset()

    def _reset(self) -> None:
        # The messages of the last call, and for each i the number of visible messages
        # among source[:i] (so source index -> rendered index).
        self._source: list[Message] = []
        self._visible_before: list[int] = [0]
        self._last_final = -1  # index in _source of the last final message
        # The visible messages rendered, and the buffer length and hash state before each.
        self._rendered: list[Message] = []
        self._marks: list[tuple[int, int, Any]] = []
        self._buffer: list[int] = list(self._prefix)
        self._json = bytearray(json_ids(self._prefix))
        self._hash = hashlib.sha256(_pack(self._prefix))

    @property
    def prefix_tokens(self) -> list[int]:
        """The system and developer messages, rendered."""
        return list(self._prefix)

    def message_tokens(self, message: Message) -> list[int]:
        return self._rendered_message(message)[0]

    def _rendered_message(self, message: Message) -> tuple[list[int], bytes]:
        cached = self._cache.get(message)
        if cached is None:
            tokens = render_message(message)
            cached = (tokens, json_ids(tokens))
            self._cache[message] = cached
        return cached

    def render(self, messages: Sequence[Message]) -> RenderedPrompt:
        """The prompt for the assistant's next message (the visible history, rendered)."""
        source = self._source
        n = len(source)
        if len(messages) >= n and all(map(operator.is_, source, messages)):
            common = n  # the usual step: messages were only appended
        else:
            common = 0
            for a, b in zip(source, messages, strict=False):
                if a is not b and a != b:
                    break
                common += 1
        old_final = self._last_final
        last_final = old_final  # -1: there was no final message at all
        if old_final >= common:  # the old last final was replaced: look again
            last_final = next((i for i in range(common - 1, -1, -1) if source[i].is_final), -1)
        for i in range(len(messages) - 1, common - 1, -1):
            if messages[i].is_final:
                last_final = i
                break
        # Messages before `keep` are unchanged, and so is whether they are visible (that
        # changes only for reasoning between the old and the new last final).
        keep = common if last_final == old_final else min(common, old_final + 1, last_final + 1)
        self._truncate(keep)
        for i in range(keep, len(messages)):
            message = messages[i]
            source.append(message)
            if i > last_final or not message.is_reasoning:
                self._append(message)
            self._visible_before.append(len(self._rendered))
        self._last_final = last_final
        h = self._hash.copy()
        h.update(_pack(self._assistant_suffix))
        # The buffer only grows in place (a roll-back starts a new list) and the prompt
        # remembers its own length, so a prompt taken earlier keeps its own tokens.
        return RenderedPrompt(
            self._buffer,
            len(self._buffer),
            self._assistant_suffix,
            h.hexdigest(),
            self._json,
            len(self._json),
        )

    def _append(self, message: Message) -> None:
        tokens, encoded = self._rendered_message(message)
        self._marks.append((len(self._buffer), len(self._json), self._hash.copy()))
        self._buffer.extend(tokens)
        if encoded:
            if self._json:
                self._json += b","
            self._json += encoded
        self._hash.update(_pack(tokens))
        self._rendered.append(message)

    def _truncate(self, keep: int) -> None:
        """Forget source messages from index `keep` on (and what they rendered)."""
        if keep >= len(self._source):
            return
        del self._source[keep:]
        del self._visible_before[keep + 1 :]
        k = self._visible_before[keep]
        if k < len(self._rendered):
            size, json_size, state = self._marks[k]
            del self._rendered[k:]
            del self._marks[k:]
            # New buffers, so prompts taken before keep reading their own tokens.
            self._buffer = self._buffer[:size]
            self._json = self._json[:json_size]
            self._hash = state.copy()

    def render_text(self, messages: Sequence[Message]) -> str:
        return self.render(messages).text


@functools.lru_cache(maxsize=1024)
def _frame(
    role: Role,
    name: str | None,
    channel: str | None,
    recipient: str | None,
    content_type: str | None,
) -> tuple[tuple[int, ...], int]:
    """harmony's own rendering of a message's header, and the token that closes it."""
    empty = Message(role, "", channel, recipient, content_type, name)
    tokens = guard_panic(lambda: get_encoding().render(to_harmony(empty)))
    return tuple(tokens[:-1]), tokens[-1]


def render_message(message: Message) -> list[int]:
    """One message's tokens, as openai-harmony renders them.

    harmony renders the header (cached per header: an agent's messages share a handful)
    and ends every message but a tool call with <|end|>, so a final answer stored with
    <|return|> goes back into history as <|end|>, as the format says. The body is encoded
    on its own, which is exact because <|message|> before it is a special token; this
    skips harmony's per-message JSON round trip, most of a short message's cost.

    A body with a run of one character class over `MAX_RUN_CHARS` raises
    `TextEncodingError` (see `encode_text`): its encoding time would be unbounded.
    """
    head, close = _frame(
        message.role, message.name, message.channel, message.recipient, message.content_type
    )
    if not message.content:
        return [*head, close]
    body = encode_text(message.content)
    return [*head, *body, close]


def _pack(tokens: Sequence[int]) -> bytes:
    return array("I", tokens).tobytes()


def json_ids(tokens: Sequence[int]) -> bytes:
    """Token ids as the inside of a JSON array: `1,2,3` (empty for none)."""
    return ",".join(map(str, tokens)).encode("ascii")
