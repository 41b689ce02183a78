"""The two-phase constrained completion over HTTP, against the fake vLLM server.

Phase one samples freely and stops where the final channel opens; phase two continues
that exact token prefix with vLLM's JSON-Schema option. Needs no torch.
"""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest
from harmonygraph.harmony import parse_completion_text
from harmonygraph.harmony.encoding import get_encoding
from harmonygraph.models.base import ModelSettings
from harmonygraph.models.constrained import (
    FINAL_OPEN,
    FINAL_OPENINGS,
    StructuredOutputStyle,
    complete_with_final_schema,
    cut_at_final_open,
    structured_output_body,
)
from harmonygraph.tracing import FakeOpenAIServer

SCHEMA = {
    "type": "object",
    "properties": {"answer": {"type": "integer"}, "why": {"type": "string"}},
    "required": ["answer"],
}
REASONING = "<|channel|>analysis<|message|>2 + 3 is 5; answer as JSON.<|end|><|start|>assistant"
ANSWER = '{"answer":5,"why":"sum"}'
PROMPT = get_encoding().encode(
    "<|start|>user<|message|>What is 2 + 3?<|end|><|start|>assistant", allowed_special="all"
)


def _ids(text: str) -> list[int]:
    return get_encoding().encode(text, allowed_special="all")


def _is_phase_two(body: dict[str, Any]) -> bool:
    return "structured_outputs" in body or "guided_json" in body


def client_for(server: FakeOpenAIServer) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=server.base_url, api_key="EMPTY", max_retries=0)


@pytest.mark.parametrize("style", ["structured_outputs", "guided_json"])
@pytest.mark.parametrize("return_token_ids", [True, False])
@pytest.mark.parametrize("server_honours_stop", [True, False])
async def test_second_request_continues_the_prefix_under_the_schema(
    style: StructuredOutputStyle, return_token_ids: bool, server_honours_stop: bool
) -> None:
    # vLLM stops at the stop string; a server that ignores it writes on, unconstrained.
    phase_one = REASONING + FINAL_OPEN + ("" if server_honours_stop else "five, I think<|return|>")

    def script(body: dict[str, Any]) -> str:
        return ANSWER + "<|return|>" if _is_phase_two(body) else phase_one

    with FakeOpenAIServer(script) as server:
        client = client_for(server)
        result = await complete_with_final_schema(
            client,
            "openai/gpt-oss-20b",
            PROMPT,
            SCHEMA,
            settings=ModelSettings(max_tokens=200, seed=1),
            style=style,
            return_token_ids=return_token_ids,
        )
        await client.close()
        first, second = server.bodies("/v1/completions")

    head = _ids(REASONING + FINAL_OPEN)
    # Phase one: the plain prompt, free sampling, asked to stop at the final channel.
    assert first["prompt"] == PROMPT
    assert first["stop"] == list(FINAL_OPENINGS)
    assert not _is_phase_two(first)
    # Phase two: the same prefix continued, the schema attached the way `style` says.
    assert second["prompt"] == PROMPT + head
    assert second["max_tokens"] == 200 - len(head)
    assert second["seed"] == 1
    if style == "structured_outputs":
        assert second["structured_outputs"] == {"json": SCHEMA}
    else:
        assert second["guided_json"] == SCHEMA
    assert second["skip_special_tokens"] is False
    assert second["stop_token_ids"] == [200002, 200012]

    assert result.constrained
    assert result.prefix_ids == tuple(PROMPT + head)
    assert result.text == REASONING + FINAL_OPEN + ANSWER + "<|return|>"
    assert result.token_ids == tuple(head + _ids(ANSWER + "<|return|>"))
    assert result.finish_reason == "stop"
    messages = parse_completion_text(result.text).messages
    assert [m.channel for m in messages] == ["analysis", "final"]
    assert json.loads(messages[-1].content) == {"answer": 5, "why": "sum"}
    # Usage covers both requests.
    assert result.usage.input_tokens == len(PROMPT) + len(PROMPT) + len(head)


async def test_a_tool_call_ends_the_turn_in_one_request() -> None:
    call = (
        '<|channel|>commentary to=functions.add <|constrain|>json<|message|>{"a":2,"b":3}<|call|>'
    )
    with FakeOpenAIServer([call]) as server:
        client = client_for(server)
        result = await complete_with_final_schema(client, "openai/gpt-oss-20b", PROMPT, SCHEMA)
        await client.close()
        assert len(server.bodies("/v1/completions")) == 1
    assert not result.constrained
    assert result.text == call
    assert parse_completion_text(result.text).messages[0].is_tool_call


def test_cut_at_final_open_prefers_the_token_ids() -> None:
    text = REASONING + FINAL_OPEN + "free text"
    ids = _ids(text)
    assert cut_at_final_open(text, ids) == (REASONING + FINAL_OPEN, _ids(REASONING + FINAL_OPEN))
    assert cut_at_final_open(text, None) == (REASONING + FINAL_OPEN, _ids(REASONING + FINAL_OPEN))
    assert cut_at_final_open(REASONING, _ids(REASONING)) is None
    assert cut_at_final_open(REASONING, None) is None


def test_structured_output_body_styles() -> None:
    assert structured_output_body(SCHEMA) == {"structured_outputs": {"json": SCHEMA}}
    assert structured_output_body(SCHEMA, "guided_json") == {"guided_json": SCHEMA}
    with pytest.raises(ValueError, match="structured_outputs"):
        structured_output_body(SCHEMA, "xml")  # type: ignore[arg-type]


@pytest.mark.parametrize("opening", FINAL_OPENINGS[1:])
async def test_a_final_channel_opened_with_a_content_type_is_constrained_too(opening: str) -> None:
    """`<|channel|>final <|constrain|>json<|message|>`: the body still goes under the schema."""

    def script(body: dict[str, Any]) -> str:
        return ANSWER + "<|return|>" if _is_phase_two(body) else REASONING + opening

    with FakeOpenAIServer(script) as server:
        client = client_for(server)
        result = await complete_with_final_schema(client, "openai/gpt-oss-20b", PROMPT, SCHEMA)
        await client.close()
        _, second = server.bodies("/v1/completions")
    assert result.constrained
    assert second["prompt"] == PROMPT + _ids(REASONING + opening)
    final = parse_completion_text(result.text).messages[-1]
    assert final.channel == "final" and json.loads(final.content) == {"answer": 5, "why": "sum"}
    for ids in (_ids(REASONING + opening + "x"), None):
        assert cut_at_final_open(REASONING + opening + "x", ids) == (
            REASONING + opening,
            _ids(REASONING + opening),
        )
