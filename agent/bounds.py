"""Bounds and cleaning at a run's boundaries, where text from models and tools comes in.

Two rules, applied where outside text enters a run (messages, tool results, the
final answer, error text), so that what a run keeps can always be stored and read back:

* **Storable text.** A NUL character (U+0000) cannot be stored in a Postgres `text` or
  `jsonb` value, and a lone surrogate (U+D800–U+DFFF, which `json.loads` makes from
  `"\\ud800"`) cannot be encoded as UTF-8 at all (traces, msgpack, any database). Both
  become U+FFFD, the replacement character, at the boundary: `clean_text`.
* **Bounded JSON.** Model-written JSON (tool arguments, a structured answer) is checked
  for nesting depth before it is parsed, so a hostile `[[[[…]]]]` is a clear error and
  not a `RecursionError` in the parser or the validator: `loads_bounded`.
"""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = [
    "MAX_JSON_DEPTH",
    "REPLACEMENT",
    "JSONDepthError",
    "clean_text",
    "json_depth_exceeds",
    "loads_bounded",
]

REPLACEMENT = "\ufffd"
# Arguments and answers nest a few levels; 64 leaves room for any real schema and keeps
# the parser and validators (which recurse per level) far from Python's recursion limit.
MAX_JSON_DEPTH = 64

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def clean_text(text: str) -> str:
    """`text` with NUL characters and lone surrogates replaced by U+FFFD (the same object
    when there are none, which is the usual case and costs one scan)."""
    if text.isascii():
        return text.replace("\x00", REPLACEMENT) if "\x00" in text else text
    if _UNSTORABLE.search(text) is None:
        return text
    return _UNSTORABLE.sub(REPLACEMENT, text)


class JSONDepthError(ValueError):
    """JSON nested deeper than the bound allows."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        super().__init__(
            f"the JSON nests deeper than {limit} levels; send flatter JSON "
            f"(at most {limit} levels of arrays and objects)"
        )


# What matters to nesting: brackets, and the quotes and escapes that hide them in strings.
_SIGNIFICANT = re.compile(r'[\[\]{}"\\]')


def json_depth_exceeds(text: str, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether the JSON in `text` nests arrays/objects more than `limit` deep.

    One linear, iterative pass. Text with at most `limit` opening brackets cannot exceed
    it and costs two counts; otherwise only brackets, quotes and backslashes are visited.
    For text that is not JSON the answer may be `True` where a parser would have failed
    anyway; either way it is refused.
    """
    if text.count("[") + text.count("{") <= limit:
        return False
    depth = 0
    in_string = False
    skip_to = -1  # the character after a backslash inside a string is escaped
    for m in _SIGNIFICANT.finditer(text):
        i = m.start()
        if i < skip_to:
            continue
        ch = text[i]
        if in_string:
            if ch == "\\":
                skip_to = i + 2
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > limit:
                return True
        elif ch in "]}":
            depth -= 1
    return False


def loads_bounded(text: str, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """`json.loads(text)`, refusing (with `JSONDepthError`) JSON nested over `max_depth`."""
    if json_depth_exceeds(text, max_depth):
        raise JSONDepthError(max_depth)
    return json.loads(text)
