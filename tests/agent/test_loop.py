"""The agent loop: tool calls, corrections, structured outputs, limits, streaming, checkpoints."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from harmonygraph import Agent, AgentModelError, OutputValidationError, RunLimitExceeded, RunLimits
from harmonygraph.engine.checkpoint import sqlite_saver
from harmonygraph.engine.events import (
    FinalDelta,
    ReasoningDelta,
    RunDone,
    StepDone,
    ToolCallEvent,
    ToolResultEvent,
)
from harmonygraph.harmony import Message
from harmonygraph.models.base import ModelConnectionError, ModelRequest
from harmonygraph.tools import tool
from harmonygraph.tracing import ScriptedModel
from pydantic import BaseModel

CALL = "<|start|>assistant<|channel|>commentary to=functions.{name} <|constrain|>json<|message|>{args}<|call|>"


def call(name: str, args: str, thought: str = "Need a tool.") -> str:
    return f"<|channel|>analysis<|message|>{thought}<|end|>" + CALL.format(name=name, args=args)


def final(text: str, thought: str = "Done.") -> str:
    return f"<|channel|>analysis<|message|>{thought}<|end|><|start|>assistant<|channel|>final<|message|>{text}<|return|>"


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@tool
def mul(a: int, b: int) -> int:
    """Multiply two integers."""
    return a * b


@tool(needs_approval=True)
def delete_file(path: str) -> str:
    """Delete a file (asks the user first)."""
    return f"deleted {path}"


class Answer(BaseModel):
    value: int
    explanation: str


def test_multi_step_run_with_correction_and_structured_output() -> None:
    model = ScriptedModel(
        [
            call("add", '{"a": 2, "b": "three"}'),
            call("add", '{"a": 2, "b": 3}', thought="b must be an integer."),
            call("mul", '{"a": 5, "b": 4}'),
            final('{"value": "twenty"}'),
            final('{"value": 20, "explanation": "(2+3)*4"}'),
        ],
        name="openai/gpt-oss-20b",
    )
    agent = Agent(model, tools=[add, mul], output_type=Answer, instructions="Use the tools.")
    result = agent.run("What is (2+3)*4?")
    assert result.status == "completed"
    assert result.output == Answer(value=20, explanation="(2+3)*4")
    assert result.steps == 5 and result.tool_calls == 3
    tool_msgs = [m for m in result.messages if m.role.value == "tool"]
    assert tool_msgs[0].content.startswith("error: invalid arguments for `functions.add`: `b`")
    assert [m.content for m in tool_msgs[1:]] == ["5", "20"]
    assert tool_msgs[0].name == "functions.add" and tool_msgs[0].channel == "commentary"
    feedback = [m for m in result.messages if m.role.value == "user"][1]
    assert "does not match the response format `answer`" in feedback.content
    assert result.usage.input_tokens > 0 and result.cost_usd is not None and result.cost_usd > 0
    assert len(result.step_usage) == 5
    assert result.reasoning[:2] == ["Need a tool.", "b must be an integer."]
    # The model saw the tools and the response format in the developer message.
    first: ModelRequest = model.requests[0]
    assert first.developer.response_format is not None
    assert [t.name for ns in first.developer.tools for t in ns.tools] == ["add", "mul"]


def test_output_that_never_validates_raises_with_the_run_kept() -> None:
    model = ScriptedModel([final('{"value": "x"}'), final("not json"), final('{"value": 1}')])
    agent = Agent(model, output_type=Answer, limits=RunLimits(output_retries=2))
    with pytest.raises(OutputValidationError) as info:
        agent.run("?")
    err = info.value
    assert err.result.status == "invalid_output"
    assert err.last_output == '{"value": 1}'
    assert any("explanation" in e for e in err.errors)
    assert len(err.result.messages) == 9  # user, 3 × (analysis + final), 2 feedbacks: all kept


def test_json_schema_output_type() -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    agent = Agent(ScriptedModel([final('```json\n{"n": 3}\n```')]), output_type=schema)
    assert agent.run("n?").output == {"n": 3}


def test_unknown_tool_and_disabled_builtin_are_answered_to_the_model() -> None:
    model = ScriptedModel(
        [
            call("nope", "{}"),
            "<|channel|>analysis to=python code<|message|>print(1)<|call|>",
            final("fine"),
        ]
    )
    result = Agent(model, tools=[add]).run("go")
    tool_msgs = [m.content for m in result.messages if m.role.value == "tool"]
    assert "unknown tool `functions.nope`" in tool_msgs[0] and "functions.add" in tool_msgs[0]
    assert "the python tool is not available" in tool_msgs[1]
    assert result.output == "fine"


def test_calls_on_analysis_channel_and_every_content_type_dispatch_alike() -> None:
    model = ScriptedModel(
        [
            '<|start|>assistant to=functions.add<|channel|>analysis<|constrain|>json<|message|>{"a":1,"b":1}<|call|>',
            '<|channel|>commentary to=functions.add json<|message|>{"a":2,"b":2}<|call|>',
            '<|channel|>commentary to=functions.add<|message|>{"a":3,"b":3}<|end|>',
            "<|channel|>commentary<|message|>Working on it.<|end|>",
            final("done"),
        ]
    )
    result = Agent(model, tools=[add]).run("go")
    assert [m.content for m in result.messages if m.role.value == "tool"] == ["2", "4", "6"]
    assert result.steps == 5  # the preamble continued the turn


def test_limits_end_the_run_with_their_own_status() -> None:
    thinking = ScriptedModel(lambda request: "<|channel|>analysis<|message|>Hmm.<|end|>")
    with pytest.raises(RunLimitExceeded, match="limit of 3 model steps") as info:
        Agent(thinking, limits=RunLimits(max_steps=3)).run("?")
    assert info.value.result.status == "max_steps" and info.value.result.steps == 3

    looping = ScriptedModel(lambda request: call("add", '{"a": 1, "b": 1}'))
    with pytest.raises(RunLimitExceeded, match="same arguments 3 times") as info:
        Agent(looping, tools=[add]).run("?")
    assert info.value.result.status == "repeated_tool_call"

    counter = iter(range(1000))
    busy = ScriptedModel(lambda request: call("add", f'{{"a": {next(counter)}, "b": 1}}'))
    with pytest.raises(RunLimitExceeded) as info:
        Agent(busy, tools=[add], limits=RunLimits(max_tool_calls=4)).run("?")
    assert info.value.result.status == "max_tool_calls" and info.value.result.tool_calls == 4

    with pytest.raises(RunLimitExceeded) as info:
        Agent(
            ScriptedModel([call("add", '{"a":1,"b":2}'), final("x")]),
            tools=[add],
            limits=RunLimits(max_tokens=1),
        ).run("?")
    assert info.value.result.status == "max_tokens"


class SilentModel:
    """A server that never answers."""

    name = "silent"

    async def complete(self, request: ModelRequest):  # type: ignore[no-untyped-def]
        await asyncio.sleep(3600)

    async def stream(self, request: ModelRequest):  # type: ignore[no-untyped-def]
        await asyncio.sleep(3600)
        yield None

    async def aclose(self) -> None:
        return None


class DownModel(SilentModel):
    name = "down"

    async def complete(self, request: ModelRequest):  # type: ignore[no-untyped-def]
        raise ModelConnectionError("could not reach http://127.0.0.1:9/v1: is the server running?")


def test_a_model_that_never_answers_ends_in_a_timeout() -> None:
    with pytest.raises(RunLimitExceeded, match="did not answer") as info:
        Agent(SilentModel(), limits=RunLimits(max_wall_s=0.3)).run("hello?")
    assert info.value.result.status == "timeout"
    assert info.value.result.messages == [Message.user("hello?")]


def test_a_model_error_keeps_the_run() -> None:
    with pytest.raises(AgentModelError, match="could not reach") as info:
        Agent(DownModel()).run("hello?")
    assert info.value.result.messages == [Message.user("hello?")]


def test_streaming_events() -> None:
    model = ScriptedModel(
        [call("add", '{"a": 1, "b": 2}', thought="Add them."), final("3", thought="Got it.")]
    )
    events = list(Agent(model, tools=[add]).stream("1+2?"))
    kinds = [type(e).__name__ for e in events]
    assert kinds[-1] == "RunDone" and isinstance(events[-1], RunDone)
    assert "".join(e.text for e in events if isinstance(e, ReasoningDelta)) == "Add them.Got it."
    assert "".join(e.text for e in events if isinstance(e, FinalDelta)) == "3"
    (tc,) = [e for e in events if isinstance(e, ToolCallEvent)]
    (tr,) = [e for e in events if isinstance(e, ToolResultEvent)]
    assert (tc.recipient, tc.arguments, tr.text, tr.status) == (
        "functions.add",
        '{"a": 1, "b": 2}',
        "3",
        "ok",
    )
    assert kinds.index("ToolCallEvent") < kinds.index("ToolResultEvent") < kinds.index("FinalDelta")
    assert len([e for e in events if isinstance(e, StepDone)]) == 2


def test_reasoning_effort_per_agent_and_per_run() -> None:
    model = ScriptedModel([final("a"), final("b")])
    agent = Agent(model, reasoning="low")
    agent.run("x")
    agent.run("y", reasoning="high")
    assert [r.system.reasoning for r in model.requests] == ["low", "high"]
    with pytest.raises(ValueError, match="low, medium or high"):
        Agent(model, reasoning="extreme")


def test_chat_session_drops_earlier_reasoning_from_the_prompt() -> None:
    from harmonygraph.harmony import ConversationRenderer

    model = ScriptedModel(
        [final("Paris.", thought="Capital of France."), final("Berlin.", thought="Germany.")]
    )
    session = Agent(model).chat()
    assert session.send("Capital of France?").text == "Paris."
    assert session.send("And Germany?").text == "Berlin."
    second = model.requests[1]
    prompt = ConversationRenderer(second.system, second.developer).render_text(second.messages)
    assert "Capital of France." not in prompt  # the first turn's analysis is dropped
    assert "<|channel|>final<|message|>Paris.<|end|>" in prompt  # its <|return|> became <|end|>
    assert session.usage.input_tokens > 0 and session.turns == 2


def test_resume_a_thread_from_a_sqlite_checkpoint(tmp_path: Path) -> None:
    db = tmp_path / "checkpoints.sqlite"

    async def go() -> list[str]:
        async with sqlite_saver(db) as saver:
            a1 = Agent(ScriptedModel([final("Noted: 42.")]), checkpointer=saver)
            await a1.arun("Remember 42.", thread_id="t1")
        async with sqlite_saver(db) as saver:  # a new process would do the same
            model = ScriptedModel([final("It was 42.")])
            a2 = Agent(model, checkpointer=saver)
            r = await a2.arun("What number?", thread_id="t1")
            return [m.content for m in r.messages if m.role.value in ("user",) or m.is_final]

    assert asyncio.run(go()) == ["Remember 42.", "Noted: 42.", "What number?", "It was 42."]


def test_tools_needing_approval_interrupt_and_resume() -> None:
    model = ScriptedModel(
        [
            call("delete_file", '{"path": "/tmp/x"}'),
            final("Deleted."),
            call("delete_file", '{"path": "/etc/passwd"}'),
            final("Not allowed."),
        ]
    )
    agent = Agent(model, tools=[delete_file])
    pending = agent.run("Delete /tmp/x", thread_id="a")
    assert pending.status == "awaiting_approval"
    assert pending.interrupt == {
        "recipient": "functions.delete_file",
        "arguments": '{"path": "/tmp/x"}',
    }
    done = agent.run(thread_id="a", resume=True)
    assert done.status == "completed" and done.text == "Deleted."
    assert [m.content for m in done.messages if m.role.value == "tool"] == ["deleted /tmp/x"]

    agent.run("Delete /etc/passwd", thread_id="b")
    refused = agent.run(thread_id="b", resume={"approved": False, "reason": "system file"})
    tool_msgs = [m.content for m in refused.messages if m.role.value == "tool"]
    assert tool_msgs == [
        "error: the user did not approve this call to `functions.delete_file`: system file"
    ]


def test_a_completion_that_is_not_harmony_ends_the_run_with_a_clear_error() -> None:
    model = ScriptedModel(
        [call("add", '{"a": 1, "b": 2}'), "<|channel|>final garbage words<|message|>3<|end|>"],
        name="gpt-oss",
    )
    # Words in a header that are not header syntax: nothing a tolerant reader can repair.
    with pytest.raises(AgentModelError, match="not valid harmony: unrecognised text") as info:
        Agent(model, tools=[add]).run("1+2?")
    result = info.value.result
    assert result.status == "model_error"
    # Everything before the bad completion is kept: the question, the call, its result.
    assert [m.content for m in result.messages if m.role.value == "tool"] == ["3"]
    assert result.messages[0] == Message.user("1+2?")


class ChatTurnsModel:
    """A chat endpoint: each answer is a whole turn, which may hold several tool calls."""

    name = "chat-turns"

    def __init__(self, turns: list[str]) -> None:
        self.turns = turns
        self.requests: list[ModelRequest] = []

    async def complete(self, request: ModelRequest):  # type: ignore[no-untyped-def]
        from harmonygraph.harmony import parse_completion_text
        from harmonygraph.models.base import ModelResponse, Usage

        self.requests.append(request)
        text = self.turns[len(self.requests) - 1]
        messages = parse_completion_text(text, stop_at_call=False).messages
        return ModelResponse(tuple(messages), Usage(10, 10), "")

    async def stream(self, request: ModelRequest):  # type: ignore[no-untyped-def]
        from harmonygraph.models.base import ResponseDone

        yield ResponseDone(await self.complete(request))

    async def aclose(self) -> None:
        return None


def test_several_calls_in_one_answer_each_get_their_result_in_order() -> None:
    two_calls = call("add", '{"a": 1, "b": 2}') + CALL.format(name="mul", args='{"a": 3, "b": 4}')
    model = ChatTurnsModel([two_calls, final("3 and 12")])
    result = Agent(model, tools=[add, mul]).run("1+2 and 3*4?")
    assert result.status == "completed" and result.tool_calls == 2
    tail = model.requests[1].messages[-4:]
    assert [m.recipient for m in tail[:2]] == ["functions.add", "functions.mul"]
    assert [(m.name, m.content) for m in tail[2:]] == [
        ("functions.add", "3"),
        ("functions.mul", "12"),
    ]


def test_a_thread_that_crashed_in_a_tool_resumes_with_that_tool() -> None:
    from harmonygraph.engine.checkpoint import memory_saver

    runs: list[int] = []

    class ProcessDied(BaseException):
        """What a killed process looks like to the run: nothing after it happens."""

    @tool
    def flaky(n: int) -> int:
        """Double n (the first call dies with the process)."""
        runs.append(n)
        if len(runs) == 1:
            raise ProcessDied
        return 2 * n

    saver = memory_saver()
    first = Agent(ScriptedModel([call("flaky", '{"n": 21}')]), tools=[flaky], checkpointer=saver)
    with pytest.raises(ProcessDied):
        first.run("Double 21.", thread_id="t")
    model = ScriptedModel([final("42")])
    again = Agent(model, tools=[flaky], checkpointer=saver)
    result = again.run(thread_id="t")  # no new input: go on from the checkpoint
    assert result.text == "42" and runs == [21, 21]
    assert [m.content for m in result.messages if m.role.value == "tool"] == ["42"]
    assert len(model.requests) == 1  # the model was asked once, after the tool ran


def test_waiting_for_an_approval_does_not_count_as_run_time() -> None:
    import time

    model = ScriptedModel([call("delete_file", '{"path": "/tmp/x"}'), final("Deleted.")])
    agent = Agent(model, tools=[delete_file], limits=RunLimits(max_wall_s=0.5))
    assert agent.run("Delete /tmp/x", thread_id="w").status == "awaiting_approval"
    time.sleep(0.6)  # the person takes longer than the run may
    assert agent.run(thread_id="w", resume=True).text == "Deleted."


def test_a_final_answer_cut_off_by_max_tokens_is_not_accepted() -> None:
    cut = '<|channel|>analysis<|message|>Answer.<|end|><|start|>assistant<|channel|>final<|message|>{"value": 4'
    with pytest.raises(RunLimitExceeded, match="cut off before it ended") as info:
        Agent(ScriptedModel([cut])).run("2+2?")
    result = info.value.result
    assert result.status == "max_tokens"
    assert result.messages[-1].content == '{"value": 4' and result.messages[-1].stop is None


def test_many_calls_per_answer_end_by_our_limits_not_langgraphs() -> None:
    """Ten calls an answer for twelve answers: the run completes (no GraphRecursionError)."""
    ten = "".join(CALL.format(name="add", args=f'{{"a": {i}, "b": 1}}') for i in range(10))
    model = ChatTurnsModel([ten[len("<|start|>assistant") :]] * 12 + [final("done")])
    limits = RunLimits(max_steps=20, max_tool_calls=200, max_repeated_calls=1000)
    result = Agent(model, tools=[add], limits=limits).run("add a lot")
    assert result.status == "completed" and result.tool_calls == 120
