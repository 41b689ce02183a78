"""Agent runs checkpointed in Postgres (the embedded one in CI): a thread resumes in a new saver."""

from __future__ import annotations

import uuid

import pytest
from harmonygraph import Agent
from harmonygraph.checkpoint import postgres_saver
from harmonygraph.testing import ScriptedModel

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
