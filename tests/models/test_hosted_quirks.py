"""Hosted servers' quirks from recorded exchanges (../shared/corpora/wire), replayed over
real HTTP to ChatCompletionsModel through the `openai` SDK."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from harmonygraph.harmony import ContentDelta, DeveloperConfig, Message
from harmonygraph.models import ChatCompletionsModel, ResponseDone, ToolUseFailedError
from harmonygraph.models.base import ModelRequest, ModelResponse
from openai_harmony import ToolDescription, ToolNamespaceConfig

from .helpers import DEVELOPER, make_request
from .wire_servers import RecordedChatServer

WIRE = Path(__file__).resolve().parents[3] / "shared" / "corpora" / "wire"
pytestmark = pytest.mark.skipif(not WIRE.is_dir(), reason=f"no wire corpus at {WIRE}")


def recording(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((WIRE / f"{name}.json").read_text())
    return data


def tools(*names: str) -> DeveloperConfig:
    ns = ToolNamespaceConfig(
        name="functions",
        description=None,
        tools=[
            ToolDescription.new(
                n, "", {"type": "object", "properties": {"name": {"type": "string"}}}
            )
            for n in names
        ],
    )
    return DeveloperConfig(instructions="Be concise.", tools=(ns,))


async def answer(
    recordings: list[dict[str, Any]], request: ModelRequest, stream: bool
) -> tuple[ModelResponse, list[Any], RecordedChatServer]:
    with RecordedChatServer(recordings) as server:
        model = ChatCompletionsModel("openai/gpt-oss-120b", base_url=server.base_url)
        try:
            if stream:
                events = [e async for e in model.stream(request)]
                assert isinstance(events[-1], ResponseDone)
                return events[-1].response, events, server
            return await model.complete(request), [], server
        finally:
            await model.aclose()


GROQ_FAILED = "pydantic-ai__test_groq_test_tool_use_failed_error__0"
GROQ_FAILED_STREAM = "pydantic-ai__test_groq_test_tool_use_failed_error_streaming__0"


@pytest.mark.parametrize(
    ("name", "stream", "args"),
    [(GROQ_FAILED, False, {"foo": "bar"}), (GROQ_FAILED_STREAM, True, {"invalid_param": "value"})],
)
async def test_groq_tool_use_failed_is_recovered_as_the_call(
    name: str, stream: bool, args: dict[str, str]
) -> None:
    request = dataclasses.replace(make_request(), developer=tools("get_something_by_name"))
    response, _, _ = await answer([recording(name)], request, stream)
    call = response.messages[-1]
    assert call.is_tool_call and call.recipient == "functions.get_something_by_name"
    assert json.loads(call.content) == args  # the registry answers the model its error
    assert response.finish_reason == "tool_calls"
    if stream:  # the reasoning streamed before the error is kept
        assert response.messages[0].is_reasoning and response.messages[0].content.startswith("We")


@pytest.mark.parametrize(
    ("name", "stream"),
    [
        ("pydantic-ai__test_groq_test_tool_use_failed_error_with_text__0", False),
        ("pydantic-ai__test_groq_test_tool_use_failed_error_streaming_with_text__0", True),
    ],
)
async def test_groq_tool_use_failed_without_a_call_is_one_line(name: str, stream: bool) -> None:
    request = dataclasses.replace(make_request(), developer=tools("get_something_by_name"))
    with pytest.raises(ToolUseFailedError, match="did not call a tool") as info:
        await answer([recording(name)], request, stream)
    assert "\n" not in str(info.value) and "retry" in str(info.value)


LEAK = "issue__ollama-11704__chat-completion-tool-name-leak"


def leaked(name: str) -> dict[str, Any]:
    rec = copy.deepcopy(recording(LEAK))
    rec["response"]["choices"][0]["message"]["tool_calls"][0]["function"]["name"] = name
    return rec


async def test_leaked_header_tokens_are_cleaned_against_registered_tools() -> None:
    request = dataclasses.replace(make_request(), developer=tools("create_event", "exec"))
    response, _, _ = await answer([leaked("create_event<|channel|>analysis")], request, False)
    reasoning, call = response.messages
    assert reasoning.content == "Now run." and call.recipient == "functions.create_event"
    assert json.loads(call.content) == {"command": "./test"}


async def test_a_leaked_name_that_names_no_tool_is_kept_for_the_loop_to_refuse() -> None:
    """ollama#11704 as recorded: `assistant<|channel|>analysis` names no tool at all."""
    request = dataclasses.replace(make_request(), developer=tools("exec"))
    response, _, _ = await answer([recording(LEAK)], request, False)
    call = response.messages[-1]
    assert call.is_tool_call and call.recipient == "functions.assistant<|channel|>analysis"


BEDROCK = "pydantic-ai__test_bedrock_mantle_test_safeguard_chat_routing__0"


def bedrock_tagged(stream: bool) -> dict[str, Any]:
    """Bedrock's recorded answer with its reasoning inside the content, as its
    OpenAI-compatible runtime endpoint sends it."""
    rec = copy.deepcopy(recording(BEDROCK))
    message = rec["response"]["choices"][0]["message"]
    content = f"<reasoning>{message.pop('reasoning')}</reasoning>{message['content']}"
    message["content"] = content
    if not stream:
        return rec
    base = {"id": rec["response"]["id"], "object": "chat.completion.chunk", "created": 1,
            "model": rec["response"]["model"]}  # fmt: skip
    chunks = [content[i : i + 5] for i in range(0, len(content), 5)]  # splits the tags
    sse = [json.dumps({**base, "choices": [{"index": 0, "delta": {"content": c}}]}) for c in chunks]
    sse.append(json.dumps({**base, "choices": [{"index": 0, "delta": {},
                                                 "finish_reason": "stop"}]}))  # fmt: skip
    sse.append(json.dumps({**base, "choices": [], "usage": rec["response"]["usage"]}))
    sse.append("[DONE]")
    return {"sse": [f"data: {line}" for line in sse]}


@pytest.mark.parametrize("stream", [False, True])
async def test_bedrock_reasoning_tags_become_the_analysis(stream: bool) -> None:
    request = make_request(Message.user("Reply with exactly SAFE."))
    response, events, _ = await answer([bedrock_tagged(stream)], request, stream)
    reasoning, final = response.messages
    assert reasoning.is_reasoning and reasoning.content.startswith("The user says")
    assert "<reasoning>" not in reasoning.content and "</reasoning>" not in reasoning.content
    assert final.is_final and final.content == "SAFE"
    assert response.usage.input_tokens == 72
    streamed = "".join(e.delta for e in events if isinstance(e, ContentDelta))
    assert "reasoning>" not in streamed  # the tags never reach a stream's reader
    if stream:
        assert streamed == reasoning.content + final.content


@pytest.mark.parametrize("stream", [False, True])
async def test_unknown_server_gets_both_token_limits_and_zero_usage_is_estimated(
    stream: bool,
) -> None:
    rec = copy.deepcopy(recording(BEDROCK))
    rec["response"]["usage"] = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    request = dataclasses.replace(make_request(), developer=DEVELOPER)
    if stream:
        rec = bedrock_tagged(True)
        rec["sse"][-2] = rec["sse"][-2].replace('"prompt_tokens": 72', '"prompt_tokens": 0')
    response, _, server = await answer([rec], request, stream)
    (body,) = server.bodies("/v1/chat/completions")
    assert body["max_tokens"] == body["max_completion_tokens"] == 4096
    assert response.usage.estimated and response.usage.input_tokens > 50
    assert response.usage.to_dict()["estimated"] is True
