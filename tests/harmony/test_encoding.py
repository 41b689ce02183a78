"""The encoding: token ids the codec relies on, and one clear error without a vocabulary."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from harmonygraph.harmony import STOP_TOKENS, vocabulary_status
from harmonygraph.harmony.encoding import CALL, CHANNEL, CONSTRAIN, END, MESSAGE, RETURN, START

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("token_id", "text"),
    [
        (START, "<|start|>"),
        (END, "<|end|>"),
        (MESSAGE, "<|message|>"),
        (CHANNEL, "<|channel|>"),
        (CONSTRAIN, "<|constrain|>"),
        (RETURN, "<|return|>"),
        (CALL, "<|call|>"),
    ],
)
def test_special_token_ids_match_the_vocabulary(token_id: int, text: str, enc: Any) -> None:
    assert enc.encode(text, allowed_special="all") == [token_id]
    assert enc.decode([token_id]) == text


def test_stop_tokens_are_harmonys(enc: Any) -> None:
    assert sorted(STOP_TOKENS) == sorted(enc.stop_tokens_for_assistant_actions())


def test_vocabulary_status_ok() -> None:
    ok, line = vocabulary_status()
    assert ok and "harmony vocabulary loaded" in line


def _without_vocabulary(tmp_path: Path, *, base: str | None) -> subprocess.CompletedProcess[str]:
    """A fresh interpreter with no vocabulary and no network (proxies that refuse)."""
    env = {
        k: v for k, v in os.environ.items() if k not in ("TIKTOKEN_ENCODINGS_BASE", "PYTHONPATH")
    }
    if base is not None:
        env["TIKTOKEN_ENCODINGS_BASE"] = base
    dead = "http://127.0.0.1:9"  # the discard port: nothing listens there
    env.update(
        HTTP_PROXY=dead,
        HTTPS_PROXY=dead,
        ALL_PROXY=dead,
        http_proxy=dead,
        https_proxy=dead,
        all_proxy=dead,
        NO_PROXY="",
        TIKTOKEN_RS_CACHE_DIR=str(tmp_path / "cache"),  # no cached download either
        PYTHONPATH=str(ROOT),
    )
    code = (
        "from agent.harmony import get_encoding, VocabularyError, vocabulary_status\n"
        "try:\n"
        "    get_encoding()\n"
        "except VocabularyError as exc:\n"
        "    print(exc)\n"
        "    print(vocabulary_status()[0])\n"
    )
    try:
        return subprocess.run(
            [sys.executable, "-c", code],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
    except subprocess.TimeoutExpired:  # pragma: no cover - the failure this test exists for
        pytest.fail("loading the encoding without a vocabulary hangs instead of failing fast")


def test_missing_vocabulary_is_one_clear_error(tmp_path: Path) -> None:
    empty = tmp_path / "vocab"
    empty.mkdir()
    proc = _without_vocabulary(tmp_path, base=str(empty))
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""  # no traceback
    message, ok = proc.stdout.splitlines()
    assert ok == "False"
    assert "TIKTOKEN_ENCODINGS_BASE" in message
    assert str(empty / "o200k_base.tiktoken") in message and "does not exist" in message


def test_unset_vocabulary_fails_fast_offline(tmp_path: Path) -> None:
    proc = _without_vocabulary(tmp_path, base=None)
    assert proc.returncode == 0, proc.stderr
    if not proc.stdout:  # pragma: no cover - the download got through the dead proxy
        pytest.skip("this machine reached the network; the offline case cannot be shown here")
    message, ok = proc.stdout.splitlines()
    assert ok == "False"
    assert "TIKTOKEN_ENCODINGS_BASE is not set" in message
