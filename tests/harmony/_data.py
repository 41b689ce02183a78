"""The shared harmony corpora: real completions and openai-harmony's rendering fixtures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
HARMONY = ROOT.parent / "shared" / "corpora" / "harmony"
COMPLETIONS = HARMONY / "completions.jsonl"
MORE = HARMONY / "completions_more.jsonl"
FIXTURES = HARMONY / "openai_harmony_test_data"


def corpus_rows() -> list[Any]:
    """Every completion as a pytest param with a readable id (`07-malformed`)."""
    if not COMPLETIONS.exists():
        return [pytest.param(None, marks=pytest.mark.skip(reason=f"no corpus at {COMPLETIONS}"))]
    rows = [
        json.loads(line) for line in COMPLETIONS.read_text(encoding="utf-8").splitlines() if line
    ]
    return [
        pytest.param(dict(row, index=i), id=f"{i:02d}-{row['kinds'][0]}")
        for i, row in enumerate(rows)
    ]


def more_rows() -> list[Any]:
    """completions_more.jsonl (real captures with the messages to recover) as params."""
    if not MORE.exists():
        return [pytest.param(None, marks=pytest.mark.skip(reason=f"no corpus at {MORE}"))]
    rows = [json.loads(line) for line in MORE.read_text(encoding="utf-8").splitlines() if line]
    return [
        pytest.param(dict(row, index=i), id=f"{i:02d}-{row['kinds'][0]}")
        for i, row in enumerate(rows)
    ]


def fixture_text(name: str) -> str:
    path = FIXTURES / f"{name}.txt"
    if not path.exists():
        pytest.skip(f"no openai-harmony fixture {path}")
    return path.read_text(encoding="utf-8").rstrip()
