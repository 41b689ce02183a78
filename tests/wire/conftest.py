"""Fixtures for the wire tests: offline vocabulary (openai-harmony would download it)."""

from __future__ import annotations

import os
from pathlib import Path

_VOCAB = Path(__file__).resolve().parents[3] / "shared" / "vocab"
if "TIKTOKEN_ENCODINGS_BASE" not in os.environ and _VOCAB.is_dir():
    os.environ["TIKTOKEN_ENCODINGS_BASE"] = str(_VOCAB)
