"""Shared test set-up: the offline harmony vocabulary and the corpora beside the checkout."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
CORPORA = SHARED / "corpora"

if (
    not os.environ.get("TIKTOKEN_ENCODINGS_BASE")
    and (SHARED / "vocab" / "o200k_base.tiktoken").exists()
):
    os.environ["TIKTOKEN_ENCODINGS_BASE"] = str(SHARED / "vocab")


@pytest.fixture(scope="session")
def corpora() -> Path:
    if not CORPORA.exists():
        pytest.skip(f"the shared corpora are not beside the checkout ({CORPORA})")
    return CORPORA
