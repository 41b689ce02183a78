"""Loading the harmony encoding (o200k_harmony), with one clear error when it cannot load."""

from __future__ import annotations

import functools
import os
from pathlib import Path

from openai_harmony import HarmonyEncoding, HarmonyEncodingName, load_harmony_encoding

__all__ = [
    "CALL",
    "CHANNEL",
    "CONSTRAIN",
    "END",
    "MESSAGE",
    "RETURN",
    "START",
    "STOP_TOKENS",
    "VocabularyError",
    "get_encoding",
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
        f"could not load the harmony vocabulary (o200k_base): {where}. Offline, point "
        "TIKTOKEN_ENCODINGS_BASE at a folder holding o200k_base.tiktoken "
        "(in this repository's CI: ../shared/vocab)."
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
