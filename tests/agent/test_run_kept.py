"""The run-kept contract: a bad input ends a run with a clear error (or is refused to the
model as a tool error) and the run so far is kept, in the result and in the trace.

Each hostile input goes through `Agent.run` with the real parts: the harmony codec, the
trace writer, and for the model the project's fake OpenAI-compatible server on 127.0.0.1
with `HarmonyCompletionsModel` (which renders and tokenizes the prompt itself).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from harmonygraph import Agent, AgentInputError
from harmonygraph.bounds import MAX_JSON_DEPTH
from harmonygraph.harmony import get_encoding
from harmonygraph.harmony.encoding import MAX_RUN_CHARS
from harmonygraph.models import HarmonyCompletionsModel, ModelSettings
from harmonygraph.tools import SchemaTool, tool
from harmonygraph.tracing import FakeOpenAIServer, ScriptedModel, Trace
from pydantic import BaseModel

CALL = "<|start|>assistant<|channel|>commentary to=functions.{name} <|constrain|>json<|message|>{args}<|call|>"


def call(name: str, args: str, thought: str = "Need a tool.") -> str:
    return f"<|channel|>analysis<|message|>{thought}<|end|>" + CALL.format(name=name, args=args)


def final(text: str) -> str:
    return f"<|channel|>analysis<|message|>Done.<|end|><|start|>assistant<|channel|>final<|message|>{text}<|return|>"


def client(server: FakeOpenAIServer) -> HarmonyCompletionsModel:
    return HarmonyCompletionsModel(
        base_url=server.base_url, settings=ModelSettings(max_retries=0, timeout=30)
    )


def trace_lines(path: Path | None) -> list[dict[str, Any]]:
    assert path is not None
    raw = path.read_bytes()
    raw.decode("utf-8")  # strict: every byte written is UTF-8
    return [json.loads(line) for line in raw.splitlines()]


@tool
def count(items: list[Any]) -> int:
    """Count the items."""
    return len(items)


# -- tool-call arguments nested 100,000 deep -------------------------------------------


def test_arguments_nested_100000_deep_are_refused_to_the_model_and_the_run_goes_on(
    tmp_path: Path,
) -> None:
    deep = "[ " * 100_000 + "] " * 100_000  # spaced: the tokenizer takes it, the parser not
    model = ScriptedModel([call("count", '{"items": ' + deep + "}"), final("Could not.")])
    result = Agent(model, tools=[count], trace_dir=tmp_path).run("Count.")
    assert result.status == "completed" and result.text == "Could not."
    refusal = [m.content for m in result.messages if m.role.value == "tool"]
    assert len(refusal) == 1 and f"deeper than {MAX_JSON_DEPTH} levels" in refusal[0]
    records = trace_lines(result.trace_path)
    assert [r["type"] for r in records] == [
        "run",
        "model_call",
        "tool_call",
        "model_call",
        "run_end",
    ]
    assert records[2]["status"] == "invalid_arguments"


def test_arguments_at_the_depth_bound_validate_against_a_recursive_schema() -> None:
    node = {
        "type": "object",
        "properties": {"child": {"$ref": "#/$defs/node"}, "leaf": {"type": "integer"}},
        "additionalProperties": False,
    }
    tree = {**node, "$defs": {"node": node}}
    depth = SchemaTool("depth", "Depth of a tree.", tree, lambda args: json.dumps(args).count("{"))

    def nested(levels: int) -> str:
        return '{"child": ' * (levels - 1) + '{"leaf": 1}' + "}" * (levels - 1)

    model = ScriptedModel(
        [
            call("depth", nested(MAX_JSON_DEPTH)),
            call("depth", nested(MAX_JSON_DEPTH + 1), thought="Deeper."),
            final("ok"),
        ]
    )
    result = Agent(model, tools=[depth]).run("Measure.")
    answers = [m.content for m in result.messages if m.role.value == "tool"]
    assert answers[0] == str(MAX_JSON_DEPTH)  # validated all the way down, no RecursionError
    assert f"deeper than {MAX_JSON_DEPTH} levels" in answers[1]


class Answer(BaseModel):
    value: int


def test_a_structured_answer_nested_too_deep_is_sent_back_for_correction() -> None:
    deep = "[ " * 50_000 + "] " * 50_000
    model = ScriptedModel([final('{"value": ' + deep + "}"), final('{"value": 4}')])
    result = Agent(model, output_type=Answer).run("2+2?")
    assert result.output == Answer(value=4)
    feedback = model.requests[1].messages[-1].content
    assert f"deeper than {MAX_JSON_DEPTH} levels" in feedback


# -- 1 MB of one character ---------------------------------------------------------------


@pytest.mark.parametrize("char", ["a", " ", "\n", ".", "中", "a\u0301"])
def test_a_megabyte_of_one_character_ends_the_run_with_a_clear_error_and_keeps_it(
    char: str, tmp_path: Path
) -> None:
    huge = char * (1_000_000 // len(char))
    with FakeOpenAIServer([final("First answer.")]) as server:
        agent = Agent(client(server), trace_dir=tmp_path)
        first = agent.run("A normal question.", thread_id="t")
        with pytest.raises(AgentInputError, match="with no break") as info:
            agent.run(huge, thread_id="t")
        assert len(server.bodies("/v1/completions")) == 1  # nothing unencodable was sent
    kept = info.value.result
    assert kept.status == "invalid_input" and f"limited to {MAX_RUN_CHARS}" in (kept.error or "")
    # The earlier turn and the bad input itself are kept.
    assert [m.content for m in kept.messages if m.role.value == "user"] == [
        "A normal question.",
        huge,
    ]
    assert first.text in [m.content for m in kept.messages]
    end = trace_lines(kept.trace_path)[-1]
    assert end["type"] == "run_end" and end["status"] == "invalid_input"


def test_a_model_that_degenerates_into_one_long_run_ends_the_run_at_the_next_step() -> None:
    looped = call("count", '{"items": [1, 2]}', thought="a" * (MAX_RUN_CHARS * 4))
    with FakeOpenAIServer([looped, final("never asked")]) as server:
        with pytest.raises(AgentInputError) as info:
            Agent(client(server), tools=[count]).run("Count.")
    kept = info.value.result
    # The call and its result are kept; the step that could not be encoded was not sent.
    assert [m.content for m in kept.messages if m.role.value == "tool"] == ["2"]
    assert [r["type"] for r in kept.trace.records] == ["run", "model_call", "tool_call", "run_end"]


# -- tool results no trace or database can hold as they are --------------------------------


def test_tool_text_with_lone_surrogates_nul_and_a_long_run_is_cleaned_where_it_enters(
    tmp_path: Path,
) -> None:
    @tool
    def dump() -> str:
        """Read a damaged file."""
        # As os.fsdecode makes bad bytes, a JSON "\udc80", and a binary NUL; then a rule.
        return "name\udcff.txt \ud800 nul\x00 " + "=" * 5000 + " end"

    with FakeOpenAIServer([call("dump", "{}"), final("Read it.")]) as server:
        result = Agent(client(server), tools=[dump], trace_dir=tmp_path).run("Read.")
        second_prompt = get_encoding().decode(server.bodies("/v1/completions")[1]["prompt"])
    assert result.status == "completed"
    text = next(m.content for m in result.messages if m.role.value == "tool")
    assert text.startswith("name\ufffd.txt \ufffd nul\ufffd " + "=" * MAX_RUN_CHARS + " [...")
    assert f"{5000 - MAX_RUN_CHARS} more characters of this run cut" in text and text.endswith(
        "end"
    )
    assert text in second_prompt  # the model read exactly what the run kept
    records = trace_lines(result.trace_path)
    assert [r["result"] for r in records if r["type"] == "tool_call"] == [text]
    assert Trace.load(result.trace_path).end == records[-1]
