"""Agent runs checkpointed in Postgres (the embedded one in CI): a thread resumes in a new saver."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from harmonygraph import Agent
from harmonygraph.engine.checkpoint import postgres_saver
from harmonygraph.tracing import ScriptedModel, Trace

pytestmark = pytest.mark.postgres

FINAL = "<|channel|>final<|message|>{text}<|return|>"


async def test_a_thread_resumes_from_a_postgres_checkpoint(pg_url: str) -> None:
    thread = f"t-{uuid.uuid4().hex[:8]}"
    async with postgres_saver(pg_url) as saver:
        first = Agent(ScriptedModel([FINAL.format(text="Noted: 42.")]), checkpointer=saver)
        await first.arun("Remember 42.", thread_id=thread)
    async with postgres_saver(pg_url) as saver:  # as another process would
        model = ScriptedModel([FINAL.format(text="It was 42.")])
        result = await Agent(model, checkpointer=saver).arun("What number?", thread_id=thread)
    said = [m.content for m in result.messages if m.role.value == "user" or m.is_final]
    assert said == ["Remember 42.", "Noted: 42.", "What number?", "It was 42."]
    # The second run's model saw the whole thread, restored from Postgres.
    assert [m.content for m in model.requests[0].messages][:2] == ["Remember 42.", "Noted: 42."]


# -- durability: JSON-clean state, loud write failures, crash-resume ------------------------

CALL = (
    "<|channel|>analysis<|message|>{thought}<|end|><|start|>assistant<|channel|>commentary "
    "to=functions.{name} <|constrain|>json<|message|>{args}<|call|>"
)
HOSTILE = "nul\x00 lone\ud800 pair\ud83d\ude00 ctl\x01 end"
CLEAN = "nul\ufffd lone\ufffd pair\ufffd\ufffd ctl\x01 end"


async def test_text_no_jsonb_takes_is_stored_cleaned_and_the_thread_resumes(
    pg_url: str, tmp_path: Path
) -> None:
    """A tool call (whose repeat key once held a NUL), a tool result, the model's own text
    and the final answer with NUL and lone surrogates: every step is saved in Postgres."""
    from harmonygraph.tools import tool

    runs: list[str] = []

    @tool
    def echo(text: str) -> str:
        """Say it back."""
        runs.append(text)
        return HOSTILE

    thread = f"t-{uuid.uuid4().hex[:8]}"
    model = ScriptedModel(
        [
            CALL.format(thought=HOSTILE, name="echo", args='{"text": "a\\u0000b\\ud800"}'),
            FINAL.format(text=HOSTILE),
        ]
    )
    async with postgres_saver(pg_url) as saver:
        agent = Agent(model, tools=[echo], checkpointer=saver, trace_dir=tmp_path)
        result = await agent.arun("go", thread_id=thread)
    assert result.status == "completed" and result.text == CLEAN
    assert runs == ["a\x00b\ud800"]  # the tool got its arguments as the model wrote them
    async with postgres_saver(pg_url) as saver:  # as another process would
        again = Agent(ScriptedModel([FINAL.format(text="ok")]), checkpointer=saver)
        snapshot = await again._graph.aget_state({"configurable": {"thread_id": thread}})
    saved = snapshot.values
    assert saved["status"] == "completed" and saved["output"] == CLEAN
    assert [m.content for m in saved["messages"] if m.role.value == "tool"] == [CLEAN]
    assert saved["messages"][1].content == CLEAN  # the model's reasoning, as saved
    trace = Trace.load(result.trace_path)
    assert trace.end is not None and trace.end["output"] == CLEAN


async def test_a_checkpoint_postgres_refuses_stops_the_run_loudly_and_keeps_it(
    pg_url: str,
) -> None:
    """A write the database refuses (a trigger, as a full disk or a lost grant would) ends
    the run at that step with AgentCheckpointError; the run so far is in the result, the
    thread resumes once the database takes writes again, and no finished call runs twice."""
    import psycopg
    from harmonygraph import AgentCheckpointError
    from harmonygraph.engine.checkpoint import CheckpointWriteError
    from harmonygraph.tools import tool

    thread = f"t-{uuid.uuid4().hex[:8]}"
    trigger = f"hg_refuse_{thread.replace('-', '_')}"
    calls: list[str] = []

    def refuse_writes(on: bool) -> None:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            if on:
                conn.execute(
                    "CREATE OR REPLACE FUNCTION hg_refuse() RETURNS trigger LANGUAGE plpgsql "
                    "AS $$ BEGIN RAISE EXCEPTION 'could not extend file: No space left on device'; END $$"
                )
                conn.execute(
                    f"CREATE TRIGGER {trigger} BEFORE INSERT OR UPDATE ON checkpoints "
                    f"FOR EACH ROW WHEN (NEW.thread_id = '{thread}') EXECUTE FUNCTION hg_refuse()"
                )
            else:
                conn.execute(f"DROP TRIGGER IF EXISTS {trigger} ON checkpoints")

    @tool
    def first() -> str:
        """The first step."""
        calls.append("first")
        return "first done"

    @tool
    def second() -> str:
        """The second step (the database stops taking writes while it runs)."""
        calls.append("second")
        if calls.count("second") == 1:
            refuse_writes(True)
        return "second done"

    script = [
        CALL.format(thought="One.", name="first", args="{}"),
        CALL.format(thought="Two.", name="second", args="{}"),
        FINAL.format(text="both done"),
    ]
    try:
        async with postgres_saver(pg_url) as saver:
            agent = Agent(ScriptedModel(list(script)), tools=[first, second], checkpointer=saver)
            with pytest.raises(AgentCheckpointError, match="could not save the run") as info:
                await agent.arun("Do both.", thread_id=thread)
        err = info.value
        assert isinstance(err.__cause__, CheckpointWriteError)
        assert "No space left on device" in str(err) and "same thread_id" in str(err)
        kept = err.result
        assert kept.status == "checkpoint_error" and not kept.ok
        assert [m.content for m in kept.messages if m.role.value == "tool"][:1] == ["first done"]
        assert kept.trace.end is not None and kept.trace.end["status"] == "checkpoint_error"
        assert calls == ["first", "second"]
        refuse_writes(False)
        async with postgres_saver(pg_url) as saver:  # a new process, the database fixed
            model = ScriptedModel(script[1:])
            agent = Agent(model, tools=[first, second], checkpointer=saver)
            done = await agent.arun(thread_id=thread)
        assert done.text == "both done"
        tools = [m.content for m in done.messages if m.role.value == "tool"]
        assert tools == ["first done", "second done"]
        assert calls.count("first") == 1, calls  # saved before the failure: never again
    finally:
        refuse_writes(False)


def test_a_run_killed_at_random_points_resumes_each_tool_call_once_on_postgres(
    pg_url: str, tmp_path: Path
) -> None:
    from tests.agent.crashkit import check_exactly_once, crash_and_resume

    check_exactly_once(crash_and_resume("postgres", pg_url, tmp_path))
