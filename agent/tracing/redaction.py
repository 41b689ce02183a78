"""Redaction: secrets never reach a trace, a result's error or an exception message."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from harmonygraph.bounds import clean_text

# -- redaction ----------------------------------------------------------------------

_SECRET_PATTERNS = [
    re.compile(r"\bsk-[A-Za-z0-9_\-]{8,}"),
    re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._\-~+/=]{8,}"),
    re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b"),
    re.compile(r"\bgh[pousr]_[A-Za-z0-9]{20,}"),
]
_SECRET_KEYS = re.compile(r"(?i)(api[_-]?key|authorization|password|secret|token)$")
# Lower-case strings one of which is in the JSON of any record the patterns above would
# change: their literal starts, and a secret-named key with its closing quote.
_TELLTALES = (
    *("sk-", "bearer", "akia", "asia", "ghp_", "gho_", "ghu_", "ghs_", "ghr_"),
    *('key"', 'authorization"', 'password"', 'secret"', 'token"'),
)
_SECRET_KEY_IN_JSON = re.compile(
    _SECRET_KEYS.pattern.removeprefix("(?i)").rstrip("$") + r'"\s*:', re.I
)

__all__ = ["REASONING_MASK", "Redactor", "model_secrets", "without_reasoning"]


@dataclass
class Redactor:
    """Removes API keys, `Authorization` headers and any configured secret strings."""

    secrets: Sequence[str] = ()
    mask: str = "[REDACTED]"

    def text(self, value: str) -> str:
        # Longest first, so a secret that contains another is replaced whole.
        for s in sorted(self.secrets, key=len, reverse=True):
            if s and len(s) >= 4:
                value = value.replace(s, self.mask)
        for pat in _SECRET_PATTERNS:
            value = pat.sub(self.mask, value)
        return value

    def might_change(self, line: str) -> bool:
        """Whether `__call__` could change the record whose JSON is `line` (a superset).

        Substring tests, not the patterns themselves: a regex search per record would
        cost as much as the walk it saves.
        """
        # Configured secrets, as they read inside a JSON string; matched case-sensitively,
        # as `text` replaces them. Read each time: the list may grow after the first record.
        for secret in self.secrets:
            if secret and len(secret) >= 4 and json.dumps(secret, ensure_ascii=False)[1:-1] in line:
                return True
        low = line.lower()
        if any(mark in low for mark in _TELLTALES):
            return True
        # Unicode case folding (`ſ` is `s` to re.I) is beyond lower(): such lines take the
        # key pattern itself.
        return not line.isascii() and _SECRET_KEY_IN_JSON.search(line) is not None

    def record(self, record: dict[str, Any]) -> tuple[dict[str, Any], str]:
        """The record, redacted, and its JSON line.

        Most records hold no secret, and `might_change` says so cheaply: the walk over
        every string of the record only runs for the few that might.
        """
        line = json.dumps(record, ensure_ascii=False)
        if self.might_change(line):
            record = self(record)
            line = json.dumps(record, ensure_ascii=False)
        if not line.isascii() and _SURROGATE.search(line):
            # A lone surrogate (no UTF-8 for it) that got past the run's boundaries: the
            # record is written with U+FFFD in its place rather than not at all.
            record = _clean_strings(record)
            line = json.dumps(record, ensure_ascii=False)
        return record, line

    def __call__(self, obj: Any) -> Any:
        if isinstance(obj, str):
            return self.text(obj)
        if isinstance(obj, dict):
            return {
                k: (
                    self.mask
                    if isinstance(k, str) and _SECRET_KEYS.search(k) and v and k != "max_tokens"
                    else self(v)
                )
                for k, v in obj.items()
            }
        if isinstance(obj, list | tuple):
            return [self(v) for v in obj]
        return obj


_SURROGATE = re.compile("[\ud800-\udfff]")


def _clean_strings(obj: Any) -> Any:
    if isinstance(obj, str):
        return clean_text(obj)
    if isinstance(obj, dict):
        return {_clean_strings(k): _clean_strings(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean_strings(v) for v in obj]
    return obj


def model_secrets(model: Any) -> list[str]:
    """The secrets a model client was configured with (`secrets`: its API key, its URL's
    credentials, custom header values), for a `Redactor`; none for models without."""
    found = getattr(model, "secrets", None)
    if found is None and hasattr(model, "inner"):  # a wrapper (RecordingModel)
        return model_secrets(model.inner)
    return [s for s in (found or ()) if isinstance(s, str) and s]


# -- reasoning ------------------------------------------------------------------------

REASONING_MASK = "[reasoning redacted]"


def _is_reasoning(message: dict[str, Any]) -> bool:
    """A model's chain of thought: the analysis channel, addressed to no tool (a call to
    the built-in `python` is on that channel too, and is kept)."""
    return (
        message.get("role") == "assistant"
        and message.get("channel") == "analysis"
        and not message.get("recipient")
    )


def without_reasoning(
    records: Sequence[dict[str, Any]], mask: str = REASONING_MASK
) -> list[dict[str, Any]]:
    """A trace's records with every reasoning message's text replaced by `mask`.

    For a reader not allowed to see reasoning. The same message reads the same wherever it
    occurs (in a model call's answer and in the later requests that carry it), so the trace
    still replays strictly: the replayed answers are the masked ones, and the requests they
    lead to are the masked ones recorded. A model call's `raw` completion (the reasoning in
    harmony markup) is dropped; a replay does not read it.
    """
    out: list[dict[str, Any]] = []
    for record in records:
        if record.get("type") != "model_call":
            out.append(record)
            continue
        copy = {k: v for k, v in record.items() if k != "raw"}
        for key in ("messages", "new_messages"):
            if isinstance(record.get(key), list):
                copy[key] = [
                    {**m, "content": mask} if isinstance(m, dict) and _is_reasoning(m) else m
                    for m in record[key]
                ]
        out.append(copy)
    return out
