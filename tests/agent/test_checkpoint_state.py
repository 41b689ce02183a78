"""Checkpointed state: the loop's types encoded as LangGraph's serializer does (readable by
older code), each message saved once rather than once a step, and checkpoints written by
the earlier whole-list state still read."""

from __future__ import annotations

import operator
from typing import Annotated, Any, TypedDict

import pytest
from harmonygraph import Agent, RunLimits
from harmonygraph.engine.checkpoint import STATE_TYPES, memory_saver, serializer
from harmonygraph.harmony.messages import Message
from harmonygraph.models.base import Usage
from harmonygraph.tools import tool
from harmonygraph.tracing import ScriptedModel
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.graph import END, START, StateGraph

CALL = "<|start|>assistant<|channel|>commentary to=functions.add <|constrain|>json<|message|>{args}<|call|>"
FINAL = "<|channel|>final<|message|>{text}<|return|>"


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def test_state_types_encode_to_langgraphs_own_bytes() -> None:
    stock = JsonPlusSerializer(allowed_msgpack_modules=STATE_TYPES)
    ours = serializer()
    values: list[Any] = [
        Message.user("hi \u00e9"),
        Message.assistant(
            '{"a": 1}',
            channel="commentary",
            recipient="functions.add",
            content_type="<|constrain|>json",
        ),
        Message.tool_result("functions.add", "3"),
        Usage(1, 2, 3),
        {"messages": [Message.user("x")], "usage": Usage(4, 5), "steps": 2, "status": "running"},
        [{"step": 1, "input_tokens": 3}],
        None,
        b"raw",
    ]
    for value in values:
        encoded = ours.dumps_typed(value)
        assert encoded == stock.dumps_typed(value)
        assert stock.loads_typed(encoded) == value
        assert ours.loads_typed(encoded) == value


class CountingSerializer(JsonPlusSerializer):
    """Counts how many messages are encoded, over every blob and write a saver stores."""

    def __init__(self) -> None:
        super().__init__(allowed_msgpack_modules=STATE_TYPES)
        self.inner = serializer()
        self.messages = 0

    def dumps_typed(self, obj: Any) -> tuple[str, bytes]:
        self.messages += _count(obj)
        return self.inner.dumps_typed(obj)


def _count(obj: Any) -> int:
    if isinstance(obj, Message):
        return 1
    if isinstance(obj, list | tuple):
        return sum(_count(v) for v in obj)
    if isinstance(obj, dict):
        return sum(_count(v) for v in obj.values())
    return 0


def test_each_message_is_saved_a_bounded_number_of_times() -> None:
    """The whole list was re-encoded at every step (quadratic in the run's length); now a
    step's checkpoint holds only its writes."""
    from langgraph.checkpoint.memory import InMemorySaver

    steps = 60
    serde = CountingSerializer()
    script = [CALL.format(args=f'{{"a": {i}, "b": 1}}') for i in range(steps - 1)]
    agent = Agent(
        ScriptedModel([*script, FINAL.format(text="done")]),
        tools=[add],
        checkpointer=InMemorySaver(serde=serde),
        limits=RunLimits(max_steps=steps + 1, max_tool_calls=steps + 1),
    )
    result = agent.run("Add.", thread_id="long")
    assert result.steps == steps and result.output == "done"
    kept = len(result.messages)  # 1 + 2 per call + the answer
    assert kept == 2 * steps
    # Each message once as its step's write, plus snapshots every 100 updates: far from
    # the kept * steps / 2 (about 3,600 here) of re-encoding the list at every step.
    assert serde.messages <= 3 * kept, serde.messages
    # The thread reads back whole, and goes on.
    snapshot = agent._graph.get_state({"configurable": {"thread_id": "long"}})
    assert snapshot.values["messages"] == result.messages


class OldLoopState(TypedDict, total=False):
    """The loop's state before delta channels: the whole list in every checkpoint."""

    messages: Annotated[list[Message], operator.add]
    steps: int
    usage: Usage
    step_usage: Annotated[list[dict[str, Any]], operator.add]
    status: str
    output: Any


def test_checkpoints_of_the_whole_list_state_still_read() -> None:
    saver = memory_saver()
    old = StateGraph(OldLoopState)
    earlier = [Message.user("What is 1 + 1?"), Message.assistant("2")]

    def answered(state: OldLoopState) -> dict[str, Any]:
        return {"messages": earlier[1:], "steps": 1, "status": "completed", "output": "2"}

    old.add_node("model", answered)
    old.add_edge(START, "model")
    old.add_edge("model", END)
    old.compile(checkpointer=saver).invoke(
        {"messages": earlier[:1], "step_usage": [{"step": 1}]},
        {"configurable": {"thread_id": "kept"}},
    )
    stored = saver.get_tuple({"configurable": {"thread_id": "kept"}})
    assert stored is not None and stored.checkpoint["channel_values"]["messages"] == earlier

    model = ScriptedModel([FINAL.format(text="4")])
    agent = Agent(model, checkpointer=saver)
    result = agent.run("And 2 + 2?", thread_id="kept")
    assert result.output == "4"
    assert result.messages[:2] == earlier
    assert list(model.requests[0].messages) == [*earlier, Message.user("And 2 + 2?")]
    assert result.new_messages == result.messages[2:]


def test_durability_exit_saves_once_a_run_and_the_thread_goes_on() -> None:
    from langgraph.checkpoint.memory import InMemorySaver

    def checkpoints(durability: str) -> tuple[int, Agent[Any]]:
        saver = InMemorySaver()
        script = [CALL.format(args=f'{{"a": {i}, "b": 1}}') for i in range(3)]
        agent = Agent(
            ScriptedModel([*script, FINAL.format(text="six"), FINAL.format(text="again")]),
            tools=[add],
            checkpointer=saver,
        )
        result = agent.run("Add.", thread_id="t", durability=durability)  # type: ignore[arg-type]
        assert result.output == "six" and result.tool_calls == 3
        config = {"configurable": {"thread_id": "t"}}
        count = len(list(saver.list(config)))  # type: ignore[arg-type]
        # Either way the thread reads back whole and a second run goes on from it.
        again = agent.run("Once more.", thread_id="t", durability=durability)  # type: ignore[arg-type]
        assert again.output == "again"
        assert again.messages[: len(result.messages)] == result.messages
        return count, agent

    each_step, _ = checkpoints("sync")
    at_exit, _ = checkpoints("exit")
    assert at_exit < each_step and at_exit <= 2, (at_exit, each_step)


def test_an_unknown_durability_is_refused() -> None:
    agent = Agent(ScriptedModel([FINAL.format(text="x")]))
    with pytest.raises(ValueError, match="durability must be 'sync'"):
        agent.run("Hi.", durability="never")  # type: ignore[arg-type]
