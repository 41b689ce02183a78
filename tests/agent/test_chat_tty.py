"""`harmonygraph chat` driven as a person would, through a pseudo-terminal (pexpect)."""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path

import pexpect
import pytest
from harmonygraph.tracing import FakeOpenAIServer

from .test_loop import final

ROOT = Path(__file__).resolve().parents[2]


def test_chat_streams_answers_switches_reasoning_and_saves(tmp_path: Path) -> None:
    script = [
        final("Hello! How can I help?", thought="Greet back."),
        final("2 + 2 = 4.", thought="Simple arithmetic."),
    ]
    with FakeOpenAIServer(script) as server:
        env = dict(os.environ, PYTHONUNBUFFERED="1", COLUMNS="120", TERM="dumb")
        child = pexpect.spawn(
            sys.executable,
            [
                "-m",
                "harmonygraph.cli",
                "chat",
                "--base-url",
                server.base_url,
                "--model",
                "openai/gpt-oss-20b",
                "--show-reasoning",
            ],
            cwd=str(ROOT),
            env=env,
            encoding="utf-8",
            timeout=30,
        )
        try:
            child.expect("you> ")
            child.sendline("hi there")
            child.expect("Greet back.")
            child.expect("Hello! How can I help?")
            child.expect("you> ")
            child.sendline("/reasoning high")
            child.expect("reasoning effort: high")
            child.expect("you> ")
            child.sendline("what is 2+2?")
            child.expect(r"2 \+ 2 = 4\.")
            child.expect("you> ")
            child.sendline(f"/save {tmp_path / 'chat.jsonl'}")
            child.expect("trace saved to")
            child.expect("you> ")
            child.sendline("/quit")
            child.expect(pexpect.EOF)
        finally:
            child.close(force=True)
        bodies = [r["body"] for r in server.requests if r["path"].endswith("/completions")]
    assert len(bodies) == 2
    saved = (tmp_path / "chat.jsonl").read_text()
    assert saved.count('"type": "model_call"') == 2 and '"reasoning": "high"' in saved
    assert child.exitstatus == 0


def test_chat_with_an_unknown_tool_option_says_so() -> None:
    child = pexpect.spawn(
        sys.executable,
        ["-m", "harmonygraph.cli", "chat", "--tools", "teleport"],
        cwd=str(ROOT),
        encoding="utf-8",
        timeout=30,
    )
    child.expect(pexpect.EOF)
    child.close()
    assert "unknown built-in tool 'teleport'" in (child.before or "")
    assert child.exitstatus == 2


if not hasattr(pexpect, "spawn"):  # pragma: no cover - pexpect's spawn is POSIX-only
    pytest.skip("pexpect.spawn needs a POSIX system", allow_module_level=True)


def test_chat_shows_tool_calls_as_they_happen_and_hides_reasoning(tmp_path: Path) -> None:
    search = (
        "<|channel|>analysis<|message|>SECRET-THOUGHT: look it up.<|end|>"
        "<|start|>assistant<|channel|>analysis to=browser.search code"
        '<|message|>{"query": "promoters detractors", "topn": 2}<|call|>'
    )
    script = [search, final("NPS is promoters minus detractors.", thought="SECRET-THOUGHT 2.")]
    with FakeOpenAIServer(script) as server:
        env = dict(
            os.environ,
            PYTHONUNBUFFERED="1",
            COLUMNS="120",
            TERM="dumb",
            HARMONYGRAPH_SEARCH_BACKEND="local",
            HARMONYGRAPH_LOCAL_SEARCH_DIR=str(ROOT / "graphs" / "survey_demo" / "frameworks"),
        )
        child = pexpect.spawn(
            sys.executable,
            ["-m", "harmonygraph.cli", "chat", "--base-url", server.base_url, "--tools", "browser"],
            cwd=str(ROOT),
            env=env,
            encoding="utf-8",
            timeout=30,
        )
        screen = io.StringIO()
        child.logfile_read = screen  # everything the person sees
        try:
            child.expect("you> ")
            child.sendline("how is NPS computed?")
            child.expect(r"→ browser\.search")  # the call, before its answer
            child.expect(r"← browser\.search ok")
            child.expect("NPS is promoters minus detractors.")
            child.expect(r"out tokens · ≈ \$\d+\.\d{4}\)")  # usage and its estimated cost
            child.expect("you> ")
            child.sendline("/quit")
            child.expect(pexpect.EOF)
        finally:
            child.close(force=True)
    assert "SECRET-THOUGHT" not in screen.getvalue()  # reasoning is hidden unless asked for
    assert child.exitstatus == 0
