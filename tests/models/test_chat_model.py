"""ChatCompletionsModel through the real openai SDK against the fake vLLM, and its mapping."""

from __future__ import annotations

import dataclasses

import pytest
from harmonygraph.harmony import (
    ContentDelta,
    HeaderDone,
    Message,
    MessageDone,
    ReasoningLevel,
    ResponseFormat,
    Role,
    visible_history,
)
from harmonygraph.harmony.prompt import builtin_namespaces
from harmonygraph.models import ChatCompletionsModel, ModelError, ResponseDone, to_chat_messages
from harmonygraph.models.chat import from_chat_message
from harmonygraph.tracing import FakeOpenAIServer

from .helpers import CALL, DEVELOPER, FINAL, SYSTEM, TOOL_RESULT, make_request

TWO_CALLS = (
    "<|channel|>analysis<|message|>Two cities, two calls.<|end|>"
    "<|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json"
    '<|message|>{"city":"Paris"}<|call|>'
)


async def _stream(model: ChatCompletionsModel, request: object) -> list[object]:
    return [e async for e in model.stream(request)]  # type: ignore[arg-type]


async def test_complete_maps_reasoning_and_tool_calls(server: FakeOpenAIServer) -> None:
    server.add(CALL)
    model = ChatCompletionsModel(base_url=server.base_url)
    response = await model.complete(make_request())
    await model.aclose()
    reasoning, call = response.messages
    assert reasoning.is_reasoning and "call get_weather" in reasoning.content
    assert call.is_tool_call and call.recipient == "functions.get_weather"
    assert call.content == '{"city":"Paris"}' and call.stop == "call"
    assert response.finish_reason == "tool_calls"
    assert response.usage.input_tokens > 0 and response.usage.output_tokens > 0
    assert '"tool_calls"' in response.raw


async def test_stream_maps_deltas_to_harmony_events(server: FakeOpenAIServer) -> None:
    server.add(CALL, CALL)
    model = ChatCompletionsModel(base_url=server.base_url)
    whole = await model.complete(make_request())
    events = await _stream(model, make_request())
    await model.aclose()
    done = events[-1]
    assert isinstance(done, ResponseDone)
    assert done.response.messages == whole.messages
    headers = [e for e in events if isinstance(e, HeaderDone)]
    assert [(h.channel, h.recipient) for h in headers] == [
        ("analysis", None),
        ("commentary", "functions.get_weather"),
    ]
    finished = [e.message for e in events if isinstance(e, MessageDone)]
    assert finished == list(done.response.messages)
    args = [e.delta for e in events if isinstance(e, ContentDelta) and e.index == 1]
    assert len(args) > 1 and "".join(args) == '{"city":"Paris"}'
    assert done.response.usage.output_tokens > 0  # stream_options.include_usage
    assert server.bodies("/v1/chat/completions")[1]["stream_options"] == {"include_usage": True}


async def test_final_answer_streams_as_final(server: FakeOpenAIServer) -> None:
    server.add(FINAL)
    model = ChatCompletionsModel(base_url=server.base_url)
    events = await _stream(model, make_request())
    await model.aclose()
    done = events[-1]
    assert isinstance(done, ResponseDone)
    final = done.response.messages[-1]
    assert (
        final.is_final
        and final.content == "It is sunny in Paris (21 °C)."
        and final.stop == "return"
    )
    assert done.response.finish_reason == "stop"


async def test_request_body(server: FakeOpenAIServer) -> None:
    server.add(FINAL)
    developer = dataclasses.replace(
        DEVELOPER, response_format=ResponseFormat("weather", {"type": "object"}, "The weather.")
    )
    model = ChatCompletionsModel(base_url=server.base_url)
    await model.complete(dataclasses.replace(make_request(), developer=developer))
    await model.aclose()
    (body,) = server.bodies("/v1/chat/completions")
    assert body["reasoning_effort"] == SYSTEM.reasoning == "high"
    assert body["tools"][0]["function"]["name"] == "get_weather"
    assert body["tools"][0]["function"]["parameters"]["required"] == ["city"]
    assert body["tool_choice"] == "auto"
    assert body["max_completion_tokens"] == 4096
    assert (body["temperature"], body["top_p"]) == (1.0, 1.0)
    # A tool step: the format is described, not sent as a grammar (it could force a
    # tool call into the JSON); see test_chat_paths.py for the step without tools.
    assert body["messages"][0]["content"].startswith("Answer briefly.\n\n# Response Formats")
    assert "response_format" not in body


# -- server differences -----------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
async def test_older_vllm_reasoning_content_is_read(stream: bool) -> None:
    """vLLM before PR #27752 returned the chain of thought as `reasoning_content`."""
    with FakeOpenAIServer([CALL], reasoning_field="reasoning_content") as server:
        model = ChatCompletionsModel(base_url=server.base_url)
        if stream:
            last = (await _stream(model, make_request()))[-1]
            assert isinstance(last, ResponseDone)
            response = last.response
        else:
            response = await model.complete(make_request())
        await model.aclose()
    assert response.messages[0].is_reasoning
    assert response.messages[0].content == "The user wants the weather; call get_weather."


@pytest.mark.parametrize("field", ["reasoning", "reasoning_content"])
async def test_reasoning_of_a_tool_call_turn_is_sent_back(field: str) -> None:
    with FakeOpenAIServer([CALL, FINAL]) as server:
        model = ChatCompletionsModel(base_url=server.base_url, reasoning_field=field)
        first = make_request()
        step1 = await model.complete(first)
        history = first.messages + step1.messages + (TOOL_RESULT,)
        await model.complete(dataclasses.replace(first, messages=history))
        await model.aclose()
        body = server.bodies("/v1/chat/completions")[1]
        conversation = server.chat_conversations[1]
    assistant = body["messages"][2]
    assert assistant["role"] == "assistant" and assistant["content"] is None
    assert assistant[field] == "The user wants the weather; call get_weather."
    assert assistant["tool_calls"][0]["function"]["name"] == "get_weather"
    # vLLM's gpt-oss path rebuilt our exact harmony history from the chat messages.
    assert conversation == list(history)


async def test_earlier_turns_reasoning_is_not_sent() -> None:
    with FakeOpenAIServer([FINAL]) as server:
        model = ChatCompletionsModel(base_url=server.base_url)
        turn1 = (
            Message.user("Weather in Paris?"),
            Message(Role.ASSISTANT, "Old thoughts.", channel="analysis"),
            Message.assistant("Sunny."),
            Message.user("And tomorrow?"),
        )
        await model.complete(make_request(*turn1))
        await model.aclose()
        (body,) = server.bodies("/v1/chat/completions")
    assert all("reasoning" not in m for m in body["messages"])
    assert [m["role"] for m in body["messages"]] == ["system", "user", "assistant", "user"]
    assert body["messages"][2]["content"] == "Sunny."


async def test_tool_results_go_back_by_tool_call_id() -> None:
    """Two calls to the same tool: each result answers its own call, in order."""
    second_call = Message(
        Role.ASSISTANT,
        '{"city":"Rome"}',
        channel="commentary",
        recipient="functions.get_weather",
        content_type="<|constrain|>json",
    )
    with FakeOpenAIServer([TWO_CALLS, FINAL]) as server:
        model = ChatCompletionsModel(base_url=server.base_url)
        first = make_request()
        step1 = await model.complete(first)
        history = (
            first.messages
            + step1.messages
            + (second_call, TOOL_RESULT, Message.tool_result("functions.get_weather", "rain"))
        )
        await model.complete(dataclasses.replace(first, messages=history))
        await model.aclose()
        body = server.bodies("/v1/chat/completions")[1]
        conversation = server.chat_conversations[1]
    calls = body["messages"][2]["tool_calls"]
    results = [m for m in body["messages"] if m["role"] == "tool"]
    assert [c["id"] for c in calls] == [r["tool_call_id"] for r in results]
    assert len({c["id"] for c in calls}) == 2
    assert [r["content"] for r in results] == [TOOL_RESULT.content, "rain"]
    assert all(r["name"] == "get_weather" for r in results)  # older vLLM read `name`
    assert conversation == list(history)


@pytest.mark.parametrize("level", ["low", "medium", "high"])
async def test_ollama_gets_reasoning_levels_as_strings(level: ReasoningLevel) -> None:
    with FakeOpenAIServer([FINAL]) as server:
        model = ChatCompletionsModel(base_url=server.base_url, server="ollama")
        system = dataclasses.replace(SYSTEM, reasoning=level)
        await model.complete(dataclasses.replace(make_request(), system=system))
        await model.aclose()
        (body,) = server.bodies("/v1/chat/completions")
    assert body["reasoning_effort"] == level
    assert body["reasoning"] == {"effort": level}
    assert "think" not in body  # `think: true` is ignored by gpt-oss on Ollama
    assert body["max_tokens"] == 4096 and "max_completion_tokens" not in body
    assert all("name" not in m for m in body["messages"] if m["role"] == "tool")


# -- mapping edge cases ------------------------------------------------------------------


def test_content_with_tool_calls_is_a_preamble() -> None:
    message = {
        "role": "assistant",
        "content": "Checking the weather…",
        "reasoning": "Need a call.",
        "tool_calls": [
            {"id": "x", "type": "function", "function": {"name": "f", "arguments": "{}"}}
        ],
    }
    reasoning, preamble, call = from_chat_message(message, "tool_calls")
    assert reasoning.is_reasoning and preamble.is_preamble and call.recipient == "functions.f"
    cut = from_chat_message({"role": "assistant", "content": "Sunny in"}, "length")
    assert cut[-1].is_final and cut[-1].stop is None


def test_a_tool_result_without_its_call_is_refused() -> None:
    with pytest.raises(ModelError, match="follows no call"):
        to_chat_messages(make_request(Message.user("hi"), TOOL_RESULT))


def test_round_trip_of_a_whole_turn_keeps_visible_history() -> None:
    history = (
        Message.user("Weather?"),
        Message(Role.ASSISTANT, "think", channel="analysis"),
        Message(Role.ASSISTANT, "One moment.", channel="commentary"),
        Message(
            Role.ASSISTANT,
            "{}",
            channel="commentary",
            recipient="functions.get_weather",
            content_type="<|constrain|>json",
        ),
        TOOL_RESULT,
        Message.assistant("Sunny."),
    )
    chat = to_chat_messages(make_request(*history))
    assert [m["role"] for m in chat] == ["system", "user", "assistant", "tool", "assistant"]
    assert chat[2]["content"] == "One moment." and "reasoning" not in chat[2]  # turn ended
    assert len(visible_history(history)) == len(history) - 1


async def test_builtin_tools_need_the_completions_api(server: FakeOpenAIServer) -> None:
    model = ChatCompletionsModel(base_url=server.base_url)
    system = dataclasses.replace(SYSTEM, builtin_tools=builtin_namespaces(["python"]))
    with pytest.raises(ModelError, match="HarmonyCompletionsModel"):
        await model.complete(dataclasses.replace(make_request(), system=system))
    await model.aclose()
    assert server.requests == []


def test_sync_wrappers(server: FakeOpenAIServer) -> None:
    server.add(CALL, FINAL)
    model = ChatCompletionsModel(base_url=server.base_url)
    assert model.complete_sync(make_request()).messages[-1].is_tool_call
    events = list(model.stream_sync(make_request()))
    assert isinstance(events[-1], ResponseDone) and events[-1].response.messages[-1].is_final
