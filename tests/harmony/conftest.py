"""Shared set-up for the harmony codec tests: the offline vocabulary and the corpora."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
# openai-harmony reads o200k_base from here instead of downloading it (CI is offline).
os.environ.setdefault("TIKTOKEN_ENCODINGS_BASE", str((ROOT.parent / "shared" / "vocab").resolve()))


@pytest.fixture(scope="session")
def enc() -> Any:
    from harmonygraph.harmony import get_encoding

    return get_encoding()
