"""Continuing runs: unknown threads are errors, approvals stream their call, retries leave
no stale errors, sync code keeps threads in SQLite across processes, and the browser's
pages stay with the result."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from harmonygraph import (
    Agent,
    ThreadNotAwaitingApprovalError,
    UnknownThreadError,
)
from harmonygraph.engine.checkpoint import sqlite_saver
from harmonygraph.engine.events import RunDone, ToolCallEvent, ToolResultEvent
from harmonygraph.tracing import ScriptedModel
from pydantic import BaseModel

from .test_loop import call, delete_file, final

ROOT = Path(__file__).resolve().parents[2]


def test_resuming_a_thread_that_never_existed_is_an_error() -> None:
    model = ScriptedModel([final("should not be asked")])
    agent = Agent(model, tools=[delete_file])
    with pytest.raises(
        UnknownThreadError, match=r"unknown thread 'nope': .* nothing saved for it"
    ) as info:
        agent.run(thread_id="nope", resume=True)
    assert info.value.thread_id == "nope"
    assert "result.thread_id" in str(info.value) and "give input" in str(info.value)
    # No input on an unknown thread, and no input without a thread: also errors.
    with pytest.raises(UnknownThreadError, match="unknown thread 'nope'"):
        agent.run(thread_id="nope")
    with pytest.raises(UnknownThreadError, match="pass the thread_id of the run to continue"):
        agent.run()
    with pytest.raises(UnknownThreadError, match="pass the thread_id"):
        agent.run(resume=True)
    assert model.requests == []  # the model never ran on an empty conversation


def test_without_a_checkpointer_there_is_no_thread_to_resume() -> None:
    agent = Agent(ScriptedModel([]), checkpointer=None)
    with pytest.raises(UnknownThreadError, match=r"checkpointer=None"):
        agent.run(thread_id="t", resume=True)


def test_resume_on_a_thread_not_awaiting_approval_is_an_error() -> None:
    model = ScriptedModel([final("Hi.")])
    agent = Agent(model)
    assert agent.run("Hello", thread_id="done").ok
    with pytest.raises(ThreadNotAwaitingApprovalError, match="its last run ended completed"):
        agent.run(thread_id="done", resume=True)
    assert len(model.requests) == 1


class Answer(BaseModel):
    value: int


def test_a_successful_retry_leaves_no_output_errors(tmp_path: Path) -> None:
    model = ScriptedModel([final('{"value": "many"}'), final('{"value": 3}')])
    path = tmp_path / "t.jsonl"
    result = Agent(model, output_type=Answer).run("How many?", trace_path=path)
    assert result.ok and result.output == Answer(value=3)
    assert result.output_errors == []
    # The failed attempt's errors stay in the trace: the feedback the model was sent.
    feedback = [
        m["content"]
        for r in result.trace.model_calls
        for m in r["new_messages"]
        if m["role"] == "user" and "does not match the response format" in m["content"]
    ]
    assert len(feedback) == 1 and "value" in feedback[0]
    assert "does not match the response format" in path.read_text()


def test_a_stream_that_stops_for_approval_streams_the_pending_call() -> None:
    model = ScriptedModel([call("delete_file", '{"path": "/tmp/x"}'), final("Deleted.")])
    agent = Agent(model, tools=[delete_file])
    events = list(agent.stream("Delete /tmp/x", thread_id="s"))
    calls = [e for e in events if isinstance(e, ToolCallEvent)]
    assert calls == [ToolCallEvent(1, "functions.delete_file", '{"path": "/tmp/x"}')]
    assert not any(isinstance(e, ToolResultEvent) for e in events)  # it has not run
    done = events[-1]
    assert isinstance(done, RunDone) and done.result.status == "awaiting_approval"
    assert events.index(calls[0]) < len(events) - 1

    resumed = list(agent.stream(thread_id="s", resume=True))
    assert [type(e) for e in resumed if isinstance(e, ToolCallEvent | ToolResultEvent)] == [
        ToolCallEvent,
        ToolResultEvent,
    ]
    last = resumed[-1]
    assert isinstance(last, RunDone) and last.result.text == "Deleted."


def _child(db: Path, mode: str) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-m", "tests.agent.sqlite_sync_child", str(db), mode],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def test_sync_runs_keep_threads_in_sqlite_across_processes(tmp_path: Path) -> None:
    db = tmp_path / "runs.sqlite"
    first = _child(db, "start")
    assert first["status"] == "awaiting_approval" and first["model_calls"] == 1
    assert first["interrupt"]["recipient"] == "functions.delete_file"

    second = _child(db, "resume")  # another process, the same database
    assert second["status"] == "completed" and second["text"] == "Deleted."
    assert second["tools"] == ["deleted /tmp/x"] and second["model_calls"] == 1

    unknown = _child(db, "unknown")
    assert unknown["error"] == "UnknownThreadError" and "'nope'" in unknown["message"]
    again = _child(db, "again")
    assert again["error"] == "ThreadNotAwaitingApprovalError"


def test_the_same_saver_works_with_async_with(tmp_path: Path) -> None:
    db = tmp_path / "runs.sqlite"
    with sqlite_saver(db) as saver:  # written by sync code...
        Agent(ScriptedModel([final("Noted: 42.")]), checkpointer=saver).run(
            "Remember 42.", thread_id="t"
        )

    async def read_back() -> list[str]:
        async with sqlite_saver(db) as saver:  # ...read by async code
            result = await Agent(ScriptedModel([final("42.")]), checkpointer=saver).arun(
                "Which number?", thread_id="t"
            )
            return [m.content for m in result.messages if m.role.value == "user"]

    assert asyncio.run(read_back()) == ["Remember 42.", "Which number?"]
