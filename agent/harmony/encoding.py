"""Loading the harmony encoding (o200k_harmony), with one clear error when it cannot load."""

from __future__ import annotations

import functools
import os
import re
import unicodedata
from collections.abc import Callable
from pathlib import Path

from openai_harmony import HarmonyEncoding, HarmonyEncodingName, load_harmony_encoding

__all__ = [
    "CALL",
    "CHANNEL",
    "CONSTRAIN",
    "END",
    "MAX_RUN_CHARS",
    "MESSAGE",
    "RETURN",
    "START",
    "STOP_TOKENS",
    "TextEncodingError",
    "VocabularyError",
    "encode_text",
    "get_encoding",
    "guard_panic",
    "longest_run",
    "shorten_runs",
    "vocabulary_status",
]

# Special token ids of o200k_harmony. They are fixed by the format; tests check them
# against the loaded encoding so a future vocabulary change cannot slip through.
START = 200006
END = 200007
MESSAGE = 200008
CHANNEL = 200005
CONSTRAIN = 200003
RETURN = 200002
CALL = 200012
# What ends an assistant turn: a final answer (<|return|>) or a tool call (<|call|>).
STOP_TOKENS = (RETURN, CALL)


class VocabularyError(RuntimeError):
    """The o200k_base vocabulary that openai-harmony needs could not be loaded."""


def _vocab_hint() -> str:
    base = os.environ.get("TIKTOKEN_ENCODINGS_BASE")
    if base:
        path = Path(base) / "o200k_base.tiktoken"
        where = f"TIKTOKEN_ENCODINGS_BASE={base}, but {path} " + (
            "exists and could not be read" if path.exists() else "does not exist"
        )
    else:
        where = "TIKTOKEN_ENCODINGS_BASE is not set, so openai-harmony tried to download it"
    return (
        f"could not load the harmony vocabulary (o200k_base): {where}. Offline, set "
        "TIKTOKEN_ENCODINGS_BASE to a folder holding o200k_base.tiktoken (downloaded once "
        "from https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken)."
    )


@functools.cache
def get_encoding() -> HarmonyEncoding:
    """The gpt-oss harmony encoding, loaded once per process."""
    try:
        return load_harmony_encoding(HarmonyEncodingName.HARMONY_GPT_OSS)
    except Exception as exc:  # the Rust side raises HarmonyError for every kind of failure
        raise VocabularyError(
            f"{_vocab_hint()} (cause: {str(exc).splitlines()[0][:200]})"
        ) from None


def vocabulary_status() -> tuple[bool, str]:
    """(ok, one line) for `harmonygraph doctor`."""
    try:
        enc = get_encoding()
    except VocabularyError as exc:
        return False, str(exc)
    return True, f"harmony vocabulary loaded ({enc.name})"


# -- encoding text, bounded ------------------------------------------------------------
#
# The tokenizer splits text into pieces with the o200k regex (a run of letters, of
# punctuation, of whitespace, or up to three digits, give or take one leading character)
# and runs byte-pair merging on each piece, in time quadratic in the piece: 40,000 `a`s
# take over a second and 1 MB of one character takes minutes, or ends in a Rust panic
# (`PanicException`, a BaseException). A piece is never longer than about twice the
# longest run of one character class, so bounding those runs bounds the time per
# character (a few microseconds at worst, against ~0.3 for prose) and leaves the tokens
# of every text within the bound exactly what the tokenizer makes of the whole.

# Runs of letters, punctuation or whitespace longer than this are refused. Prose, code,
# tables and base64 stay far below; a few hundred characters without a break is already
# rare (a long rule of `=`, a DNA sequence).
MAX_RUN_CHARS = 1024


class TextEncodingError(ValueError):
    """Text the harmony tokenizer cannot encode in bounded time, or at all."""


# Unicode White_Space, as the tokenizer's regex (Rust) reads `\s`.
_WHITE_SPACE = frozenset(
    chr(c)
    for c in (
        *range(0x09, 0x0E), 0x20, 0x85, 0xA0, 0x1680, *range(0x2000, 0x200B),
        0x2028, 0x2029, 0x202F, 0x205F, 0x3000,
    )
)  # fmt: skip
# Each character's class: L letter or mark, P other (punctuation, symbols, controls),
# W whitespace, N number (a number is never part of a long piece), A unsure (unassigned
# in this Python's Unicode tables, or whitespace to Python but not to the tokenizer):
# an unsure character is counted in every run it touches, so the bound stays safe.
_CLASS: dict[int, str] = {}
_KEEP = {c: {ord(o): " " for o in "LPWNA" if o not in (c, "A")} for c in "LPW"}


def _classify(ch: str) -> str:
    cat = unicodedata.category(ch)
    if ch in _WHITE_SPACE:
        return "W"
    if ch.isspace() or cat == "Cn":
        return "A"
    if cat[0] in "LM":
        return "L"
    if cat[0] == "N":
        return "N"
    return "P"


def _classes(text: str) -> str:
    """One class letter per character of `text`."""
    table = _CLASS
    for ch in set(text):
        if ord(ch) not in table:
            table[ord(ch)] = _classify(ch)
    return text.translate(table)


def _long_runs(text: str, limit: int) -> list[tuple[int, int]]:
    """(start, end) of each run of one class longer than `limit`, in order."""
    if len(text) <= limit:
        return []
    classes = _classes(text)
    runs: list[tuple[int, int]] = []
    for c in "LPW":
        kept = classes.translate(_KEEP[c])
        if max(map(len, kept.split()), default=0) > limit:
            runs.extend(
                (m.start(), m.end())
                for m in re.finditer(r"\S+", kept)
                if m.end() - m.start() > limit
            )
    return sorted(runs)


def longest_run(text: str) -> int:
    """The length of the longest run of one character class (letters, punctuation,
    whitespace) in `text`: what bounds the tokenizer's time per character."""
    if not text:
        return 0
    classes = _classes(text)
    return max(max(map(len, classes.translate(_KEEP[c]).split()), default=0) for c in "LPW")


def _describe(text: str, start: int, end: int) -> str:
    sample = text[start : start + 12]
    return f"{end - start} characters with no break at character {start} ({sample!r}...)"


def encode_text(text: str, *, limit: int = MAX_RUN_CHARS) -> list[int]:
    """Ordinary text (special-token strings stay text) as o200k_harmony tokens.

    Raises `TextEncodingError` for a run of one character class over `limit` characters
    (see `MAX_RUN_CHARS`), and turns a panic of the Rust tokenizer into the same error.
    """
    runs = _long_runs(text, limit)
    if runs:
        start, end = runs[0]
        raise TextEncodingError(
            f"the text has a run of {_describe(text, start, end)}; runs of letters, "
            f"punctuation or whitespace are limited to {limit} characters, because "
            "tokenizing one takes time quadratic in its length. Break the run up or "
            "shorten it (or bound what the tool that produced it returns)"
        )
    return guard_panic(lambda: get_encoding().encode(text, disallowed_special=()))


def shorten_runs(text: str, *, limit: int = MAX_RUN_CHARS) -> str:
    """`text` with each run over `limit` characters cut to `limit`, and a note saying so.

    For text the run may go on with (a tool's result): the model reads what the tool
    said, minus the part of the run that could not be encoded in bounded time.
    """
    runs = _long_runs(text, limit)
    if not runs:
        return text
    parts: list[str] = []
    at = 0
    for start, end in runs:
        if start < at:  # overlaps a run already cut (an unsure character joins two)
            start = at
            if end - start <= limit:
                continue
        parts.append(text[at : start + limit])
        parts.append(f" [... {end - start - limit} more characters of this run cut] ")
        at = end
    parts.append(text[at:])
    return "".join(parts)


def guard_panic(encode: Callable[[], list[int]]) -> list[int]:
    """`encode()`, with an error or a panic of the Rust tokenizer (which pyo3 raises as a
    BaseException) raised as `TextEncodingError`."""
    try:
        return encode()
    except Exception as exc:
        if type(exc).__name__ != "HarmonyError":
            raise
        raise TextEncodingError(
            f"the harmony tokenizer refused this text ({str(exc).splitlines()[0][:200]})"
        ) from None
    except BaseException as exc:  # pyo3's PanicException derives from BaseException
        if type(exc).__name__ != "PanicException":
            raise
        raise TextEncodingError(
            f"the harmony tokenizer failed on this text ({str(exc).splitlines()[0][:200]}); "
            "shorten the text or break up long runs of one character"
        ) from None
