"""SIGKILL a run at random points (inside a tool, inside a model call) and resume it in a
new process on the same thread: each completed tool call ran exactly once (SQLite here;
the same harness runs on Postgres in tests/retrieval/test_checkpoint_postgres.py)."""

from __future__ import annotations

from pathlib import Path

from tests.agent.crashkit import check_exactly_once, crash_and_resume


def test_a_run_killed_at_random_points_resumes_each_tool_call_once_on_sqlite(
    tmp_path: Path,
) -> None:
    out = crash_and_resume("sqlite", str(tmp_path / "checkpoints.sqlite"), tmp_path)
    check_exactly_once(out)
