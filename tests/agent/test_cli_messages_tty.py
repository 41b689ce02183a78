"""What the commands print, seen through a pseudo-terminal (pexpect) as a person sees it:
counts in the right number, help without type tags, paragraphs wrapped between words,
streamed answers wrapped between words, bounded errors, and doctor's exit status."""

from __future__ import annotations

import io
import os
import re
import sys
from pathlib import Path

import pexpect
import pytest
from harmonygraph.tracing import FakeOpenAIServer

from .test_loop import call, final
from .test_task import TASK

if not hasattr(pexpect, "spawn"):  # pragma: no cover - pexpect's spawn is POSIX-only
    pytest.skip("pexpect.spawn needs a POSIX system", allow_module_level=True)

ROOT = Path(__file__).resolve().parents[2]
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def _env(columns: int, **extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": str(columns), "TERM": "dumb", **extra}


def _run(
    args: list[str], *, columns: int = 80, env: dict[str, str] | None = None
) -> tuple[str, int]:
    """The command's whole screen (ANSI codes removed) and its exit status, on a pty."""
    child = pexpect.spawn(
        sys.executable,
        ["-m", "harmonygraph.cli", *args],
        cwd=str(ROOT),
        env=env or _env(columns),
        encoding="utf-8",
        timeout=90,
        dimensions=(50, columns),
    )
    screen = io.StringIO()
    child.logfile_read = screen
    child.expect(pexpect.EOF)
    child.close()
    return ANSI.sub("", screen.getvalue()).replace("\r\n", "\n"), int(child.exitstatus or 0)


def test_run_counts_one_tool_call_in_the_singular(tmp_path: Path) -> None:
    task = tmp_path / "task.yaml"
    task.write_text(TASK.format(api="completions"))
    script = [call("add", '{"a": 2, "b": 40}'), final('{"value": 42}')]
    with FakeOpenAIServer(script) as server:
        out, status = _run(
            ["run", str(task), "--out", str(tmp_path / "out"), "--base-url", server.base_url],
            columns=200,
        )
    assert status == 0, out
    assert "completed · 2 steps · 1 tool call · " in out
    assert "1 tool calls" not in out


def test_replay_counts_in_the_right_number(tmp_path: Path) -> None:
    from harmonygraph import Agent
    from harmonygraph.tracing import ScriptedModel

    from .test_loop import add

    path = tmp_path / "t.jsonl"
    Agent(ScriptedModel([call("add", '{"a": 1, "b": 2}'), final("3")]), tools=[add]).run(
        "1+2?", trace_path=path
    )
    out, status = _run(["replay", str(path)], columns=200)
    assert status == 0, out
    assert "replayed 2 model calls and 1 tool call: status completed" in out


HELP_COMMANDS = [
    [], ["run"], ["chat"], ["replay"], ["demo"], ["doctor"],
    ["harmony", "parse"], ["harmony", "render"], ["index", "search"], ["browse", "open"],
]  # fmt: skip


@pytest.mark.parametrize("command", HELP_COMMANDS, ids=lambda c: " ".join(c) or "top")
def test_help_shows_no_type_tags(command: list[str]) -> None:
    out, status = _run([*command, "--help"])
    assert status == 0, out
    assert "Usage:" in out and "--help" in out
    tags = re.findall(r"<(?:bool|str|int|float|path|text|integer)>", out)
    assert tags == [], out


def test_demo_help_wraps_its_paragraph_between_words_at_the_width() -> None:
    width = 70
    out, _ = _run(["demo", "--help"], columns=width)
    lines = [line.strip() for line in out.splitlines()]
    start = next(i for i, line in enumerate(lines) if line.startswith("Without --base-url"))
    end = next(i for i in range(start, len(lines)) if not lines[i])
    paragraph = lines[start:end]
    assert " ".join(paragraph).endswith("runs for real.")
    # Wrapped by the width, not by a line break in the source: every line but the last
    # is nearly full.
    assert all(len(line) > width - 20 for line in paragraph[:-1]), paragraph


def test_chat_wraps_streamed_text_between_words(tmp_path: Path) -> None:
    words = (
        "Streaming text arrives in small pieces that split words apart, and a narrow "
        "terminal must still wrap the answer between words instead of inside them, "
        "whatever the pieces."
    )
    width = 40
    with FakeOpenAIServer([final(words)]) as server:
        child = pexpect.spawn(
            sys.executable,
            ["-m", "harmonygraph.cli", "chat", "--base-url", server.base_url],
            cwd=str(ROOT),
            env=_env(width, TERM="xterm-256color"),  # a terminal whose width rich reads
            encoding="utf-8",
            timeout=60,
            dimensions=(40, width),
        )
        screen = io.StringIO()
        child.logfile_read = screen
        try:
            child.expect("you> ")
            child.sendline("tell me")
            child.expect(r"out tokens")
            child.expect("you> ")
            child.sendline("/quit")
            child.expect(pexpect.EOF)
        finally:
            child.close(force=True)
    text = ANSI.sub("", screen.getvalue()).replace("\r\n", "\n")
    after = text.split("gpt-oss> ", 1)[1]
    answer_lines = after.split("\n(", 1)[0].splitlines()
    assert len(answer_lines) >= 4  # it did wrap
    assert all(len(line) <= width for line in answer_lines), answer_lines
    vocabulary = set(words.split())
    for line in answer_lines:
        for word in line.split():
            assert word in vocabulary, f"{word!r} is a broken word in {answer_lines}"
    assert " ".join(" ".join(answer_lines).split()) == words


def test_harmony_parse_of_garbage_is_one_bounded_line(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.txt"
    garbage.write_text("hello " * 700)
    out, status = _run(["harmony", "parse", str(garbage)], columns=120)
    assert status == 2
    error = [line for line in out.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and len(error[0]) < 400, out
    assert "(4200 characters)" in error[0] or "characters)" in error[0]


def test_the_vocabulary_error_points_at_the_environment_variable(tmp_path: Path) -> None:
    env = _env(200, TIKTOKEN_ENCODINGS_BASE=str(tmp_path))
    conversation = tmp_path / "c.json"
    conversation.write_text('[{"role": "user", "content": "hi"}]')
    out, status = _run(["harmony", "render", str(conversation)], env=env)
    assert status == 2
    assert f"TIKTOKEN_ENCODINGS_BASE={tmp_path}" in out
    assert "set TIKTOKEN_ENCODINGS_BASE to a folder holding o200k_base.tiktoken" in out
    assert "CI" not in out and "shared/vocab" not in out


def test_doctor_exits_non_zero_when_a_required_part_is_missing(tmp_path: Path) -> None:
    out, status = _run(["doctor"], env=_env(200, TIKTOKEN_ENCODINGS_BASE=str(tmp_path)))
    assert status == 1, out
    assert "✗ vocabulary" in out and "missing: vocabulary (required)" in out

    # A model endpoint named with --base-url that does not answer is missing too...
    out, status = _run(["doctor", "--base-url", "http://127.0.0.1:9/v1"], columns=200)
    assert status == 1 and "✗ model endpoint" in out, out
    # ...while the default one, not asked for, is optional: said so, and exit 0.
    with FakeOpenAIServer([], models=["openai/gpt-oss-20b"]) as server:
        out, status = _run(["doctor", "--base-url", server.base_url], columns=200)
    assert "✓ vocabulary" in out and "✓ model endpoint" in out
    assert "✗" not in out and status == 0, out


@pytest.mark.slow
@pytest.mark.docker
@pytest.mark.postgres
def test_the_demo_prints_each_warning_once_and_counts_in_the_right_number(
    tmp_path: Path,
) -> None:
    env = _env(200, HARMONYGRAPH_HOME=str(tmp_path / "home"))
    out, status = _run(["demo", "--out", str(tmp_path / "report")], env=env)
    assert status == 0, out
    warnings = [
        line.strip().removeprefix("warning:").strip()
        for line in out.splitlines()
        if line.strip().startswith("warning:")
    ]
    assert warnings, out  # the sample run has an unsupported section
    assert len(warnings) == len(set(warnings)), warnings
    assert "1 figure)" in out and "1 figures" not in out
    assert not re.search(r"\b1 (citations|sections|references|documents)\b", out), out
