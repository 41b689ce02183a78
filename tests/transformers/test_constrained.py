"""Grammar-constrained final answers: the tiny random gpt-oss, held to a JSON Schema.

Random weights pick among the tokens the grammar allows at random, so an answer that
validates here is the grammar's work, not the model's. Strings, lists and integers are
bounded in the schemas because a random walk would otherwise rarely choose to stop.
"""

from __future__ import annotations

import json
import sys
import warnings
from typing import Annotated, Any, Literal

import pytest
from harmonygraph import Agent
from harmonygraph.harmony.encoding import get_encoding
from harmonygraph.harmony.messages import Message
from harmonygraph.harmony.prompt import DeveloperConfig, ResponseFormat, SystemConfig
from harmonygraph.models.base import ModelRequest, ModelSettings
from harmonygraph.models.grammar import (
    FinalChannelWatcher,
    HarmonyJsonSchemaProcessor,
    SchemaGrammarError,
    close_objects,
    compile_json_schema,
)
from harmonygraph.models.transformers import TransformersModel
from pydantic import BaseModel, Field, ValidationError

from .conftest import ForceTokens

pytestmark = pytest.mark.usefixtures("llguidance")

REASONING = "Plan: {not json at all, <tags> & 'quotes'"
OPEN_FINAL = (
    f"<|channel|>analysis<|message|>{REASONING}<|end|><|start|>assistant<|channel|>final<|message|>"
)
Short = Annotated[str, Field(max_length=8)]


class Address(BaseModel):
    city: Short
    zip_code: Annotated[str, Field(max_length=5)] | None = None


class Person(BaseModel):
    """A nested answer: objects in objects, a list of objects, enums and bounds."""

    name: Annotated[str, Field(max_length=12)]
    age: Annotated[int, Field(ge=0, le=120)]
    role: Literal["admin", "user", "guest"]
    address: Address
    pets: Annotated[list[Address], Field(max_length=2)]
    verified: bool


class Settings(BaseModel):
    """Everything optional, an optional nested object among it."""

    theme: Literal["dark", "light"] | None = None
    retries: Annotated[int, Field(ge=0, le=9)] | None = None
    owner: Address | None = None
    labels: Annotated[list[Short], Field(max_length=3)] | None = None


def reason_then_answer(prompt: Any) -> list[ForceTokens]:
    """Force a reasoning message (not JSON) and the final channel's opening; then free."""
    return [ForceTokens(get_encoding().encode(OPEN_FINAL, allowed_special="all"), len(prompt))]


def enforced_agent(hf_model: Any, output_type: type[BaseModel], seed: int) -> Agent[Any]:
    model = TransformersModel(
        hf_model, enforce_output_schema=True, logits_processors=reason_then_answer
    )
    return Agent(
        model,
        output_type=output_type,
        reasoning="low",
        current_date="2025-01-01",
        settings=ModelSettings(max_tokens=400, seed=seed),
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
async def test_random_model_answers_a_nested_schema(tiny_hf_model: Any, seed: int) -> None:
    agent = enforced_agent(tiny_hf_model, Person, seed)
    result = await agent.arun("Describe someone.")

    assert result.ok, (result.error, result.output_errors)
    assert isinstance(result.output, Person)
    assert result.steps == 1  # valid the first time: no validate-and-retry round
    final = next(m for m in result.messages if m.is_final)
    assert Person.model_validate_json(final.content) == result.output
    # The reasoning was generated as scripted, outside the grammar.
    reasoning = next(m for m in result.messages if m.is_reasoning)
    assert reasoning.content == REASONING
    model = agent.model
    assert isinstance(model, TransformersModel)
    grammar = model.last_processors[-1]
    assert isinstance(grammar, HarmonyJsonSchemaProcessor)
    assert grammar.active
    # Every token after the final channel opened was sampled under the grammar: the
    # body and its <|return|>.
    prefix = len(get_encoding().encode(OPEN_FINAL, allowed_special="all"))
    assert grammar.constrained_tokens == result.usage.output_tokens - prefix


@pytest.mark.parametrize("seed", [3, 4, 5])
async def test_random_model_answers_an_optional_schema(tiny_hf_model: Any, seed: int) -> None:
    result = await enforced_agent(tiny_hf_model, Settings, seed).arun("Pick settings.")
    assert result.ok, (result.error, result.output_errors)
    assert isinstance(result.output, Settings)
    final = next(m for m in result.messages if m.is_final)
    data = json.loads(final.content)
    assert set(data) <= set(Settings.model_fields)  # objects are closed: no invented keys


def _final_request(max_tokens: int, seed: int) -> ModelRequest:
    return ModelRequest(
        system=SystemConfig(current_date="2025-01-01", reasoning="low"),
        developer=DeveloperConfig(response_format=ResponseFormat.from_type(Person)),
        messages=(Message.user("Describe someone."),),
        settings=ModelSettings(max_tokens=max_tokens, seed=seed),
    )


async def test_without_the_grammar_the_random_answer_does_not_parse(tiny_hf_model: Any) -> None:
    """The control: same model, prefix and seed, enforcement off."""
    model = TransformersModel(tiny_hf_model, logits_processors=reason_then_answer)
    response = await model.complete(_final_request(60, seed=0))
    final = next(m for m in response.messages if m.channel == "final")
    with pytest.raises(ValidationError):
        Person.model_validate_json(final.content)


async def test_tool_calls_and_reasoning_are_never_constrained(tiny_hf_model: Any) -> None:
    call = (
        '<|channel|>commentary to=functions.lookup <|constrain|>json<|message|>{"q": "x"}<|call|>'
    )
    ids = get_encoding().encode(call, allowed_special="all")
    model = TransformersModel(
        tiny_hf_model,
        enforce_output_schema=True,
        logits_processors=lambda prompt: [ForceTokens(ids, len(prompt))],
    )
    response = await model.complete(_final_request(len(ids), seed=0))
    assert response.messages[0].is_tool_call
    grammar = model.last_processors[-1]
    assert isinstance(grammar, HarmonyJsonSchemaProcessor)
    assert not grammar.active
    assert grammar.constrained_tokens == 0


async def test_without_llguidance_the_model_says_so_once(
    tiny_hf_model: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As if llguidance were not installed: importing it raises ImportError.
    monkeypatch.setitem(sys.modules, "llguidance", None)
    model = TransformersModel(
        tiny_hf_model, enforce_output_schema=True, logits_processors=reason_then_answer
    )
    assert not model.supports_constrained_output
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        budget = len(_ids(OPEN_FINAL)) + 3
        for seed in (0, 1):
            response = await model.complete(_final_request(budget, seed=seed))
            assert response.messages[0].content == REASONING
    said = [w for w in caught if "cannot enforce the output schema" in str(w.message)]
    assert len(said) == 1
    assert "llguidance" in str(said[0].message)
    assert all(isinstance(p, ForceTokens) for p in model.last_processors)  # no grammar


# -- the pieces ------------------------------------------------------------------------


def _ids(text: str) -> list[int]:
    return get_encoding().encode(text, allowed_special="all")


@pytest.mark.parametrize(
    ("completion", "openings"),
    [
        ("<|channel|>final<|message|>", 1),
        ("<|channel|>final <|constrain|>json<|message|>", 1),
        ("<|channel|>analysis<|message|>hm<|end|><|start|>assistant<|channel|>final<|message|>", 1),
        ("<|channel|>commentary to=functions.f <|constrain|>json<|message|>{}", 0),
        ("<|channel|>final to=functions.f<|message|>{}", 0),
        ("<|channel|>analysis<|message|>I will say <|channel|>final<|message|>", 1),
        ("<|channel|>analysis<|message|>the word final<|message|>", 0),
    ],
)
def test_final_channel_watcher(completion: str, openings: int) -> None:
    watcher = FinalChannelWatcher()
    opened = [t for t in _ids(completion) if watcher.feed(t)]
    # An opening is reported on its <|message|> token, and only for a final body.
    assert opened == [200008] * openings


def test_close_objects_keeps_names_that_look_like_keywords() -> None:
    schema = {
        "type": "object",
        "properties": {"properties": {"type": "object", "properties": {"a": {"type": "integer"}}}},
        "$defs": {"X": {"type": "object", "properties": {}, "additionalProperties": True}},
        "enum": [{"properties": 1}],
    }
    closed = close_objects(schema)
    assert closed["additionalProperties"] is False
    assert closed["properties"]["properties"]["additionalProperties"] is False
    assert "additionalProperties" not in closed["properties"]  # a name map, not a schema
    assert closed["$defs"]["X"]["additionalProperties"] is True  # explicit: kept
    assert closed["enum"] == [{"properties": 1}]


def test_an_uncompilable_schema_is_a_clear_error() -> None:
    with pytest.raises(SchemaGrammarError, match="llguidance cannot compile"):
        compile_json_schema({"type": "object", "properties": {"a": {"type": "no-such-type"}}})
    with pytest.raises(SchemaGrammarError, match="not valid JSON"):
        compile_json_schema("{not json")


def test_compiled_grammars_are_cached() -> None:
    schema = ResponseFormat.from_type(Person).schema
    assert compile_json_schema(schema) is compile_json_schema(dict(schema))
