"""Fixtures for the model clients: a fake vLLM-like server over real HTTP, and requests."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

_VOCAB = Path(__file__).resolve().parents[3] / "shared" / "vocab"
if "TIKTOKEN_ENCODINGS_BASE" not in os.environ and _VOCAB.is_dir():
    # Offline: openai-harmony would otherwise try to download o200k_base.
    os.environ["TIKTOKEN_ENCODINGS_BASE"] = str(_VOCAB)

from harmonygraph.tracing import FakeOpenAIServer  # noqa: E402


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    """A fake vLLM serving openai/gpt-oss-20b on 127.0.0.1; tests script it with `add`.

    After the test, nothing the client sent may be a field vLLM would ignore in silence.
    """
    with FakeOpenAIServer() as fake:
        yield fake
    assert fake.ignored_fields == [], (
        f"the client sent fields vLLM {fake.vllm_version} ignores: {sorted(set(fake.ignored_fields))}"
    )
