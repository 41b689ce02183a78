"""HarmonyCompletionsModel through the real openai SDK against the fake vLLM, over HTTP."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncGenerator
from typing import cast

import pytest
from harmonygraph.harmony import ContentDelta, HeaderDone, Message, MessageDone, Role
from harmonygraph.harmony.render import ConversationRenderer
from harmonygraph.models import (
    HarmonyCompletionsModel,
    ModelError,
    ModelSettings,
    ResponseDone,
    StreamEvent,
)
from harmonygraph.models.constrained import _without_prompt_ids
from harmonygraph.tracing import FakeOpenAIServer

from .helpers import CALL, DEVELOPER, FINAL, SYSTEM, TOOL_RESULT, answering_server, make_request


async def test_complete_parses_tool_call_and_reasoning(server: FakeOpenAIServer) -> None:
    server.add(CALL)
    model = HarmonyCompletionsModel(base_url=server.base_url)
    request = make_request()
    response = await model.complete(request)
    await model.aclose()

    reasoning, call = response.messages
    assert reasoning.is_reasoning and "call get_weather" in reasoning.content
    assert call.is_tool_call and call.recipient == "functions.get_weather"
    assert call.content == '{"city":"Paris"}' and call.stop == "call"
    assert response.finish_reason == "stop"
    # The ids came back from the server (return_token_ids) and end with <|call|>.
    assert response.token_ids is not None and response.token_ids[-1] == 200012
    assert response.raw.endswith("<|call|>")
    prompt = model.render(request)
    assert response.prompt_tokens == prompt.length and response.prompt_sha256 == prompt.sha256
    assert response.usage.input_tokens == prompt.length
    assert response.usage.output_tokens == len(response.token_ids)


async def test_request_carries_what_vllm_needs(server: FakeOpenAIServer) -> None:
    server.add(CALL)
    model = HarmonyCompletionsModel(base_url=server.base_url)
    request = make_request()
    await model.complete(request)
    await model.aclose()

    (body,) = server.bodies("/v1/completions")
    assert body["prompt"] == model.render(request).tokens  # token ids, not text
    assert body["stop_token_ids"] == [200002, 200012]
    assert body["max_tokens"] == ModelSettings().max_tokens  # never vLLM's default of 16
    assert body["temperature"] == 1.0 and body["top_p"] == 1.0
    assert body["skip_special_tokens"] is False
    assert body["include_stop_str_in_output"] is True
    assert body["return_token_ids"] is True
    assert body["model"] == "openai/gpt-oss-20b"


async def test_configured_sampling_replaces_the_defaults(server: FakeOpenAIServer) -> None:
    server.add(FINAL)
    settings = ModelSettings(max_tokens=777, temperature=0.3, top_p=0.9, seed=7)
    model = HarmonyCompletionsModel(base_url=server.base_url, settings=settings)
    await model.complete(make_request())
    await model.aclose()
    (body,) = server.bodies("/v1/completions")
    assert (body["max_tokens"], body["temperature"], body["top_p"], body["seed"]) == (
        777,
        0.3,
        0.9,
        7,
    )


async def test_stream_yields_parse_events_then_the_response(server: FakeOpenAIServer) -> None:
    server.add(CALL)
    model = HarmonyCompletionsModel(base_url=server.base_url)
    events = [e async for e in model.stream(make_request())]
    await model.aclose()

    assert isinstance(events[-1], ResponseDone)
    response = events[-1].response
    headers = [e for e in events if isinstance(e, HeaderDone)]
    done = [e.message for e in events if isinstance(e, MessageDone)]
    assert [h.channel for h in headers] == ["analysis", "commentary"]
    assert headers[1].recipient == "functions.get_weather"
    assert done == list(response.messages)
    for index, message in enumerate(done):
        deltas = [e.delta for e in events if isinstance(e, ContentDelta) and e.index == index]
        assert len(deltas) > 1 and "".join(deltas) == message.content  # really streamed
    assert response.messages[-1].stop == "call"
    assert response.usage.input_tokens > 0 and response.usage.output_tokens > 0
    (body,) = server.bodies("/v1/completions")
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}


async def test_stream_and_complete_agree(server: FakeOpenAIServer) -> None:
    server.add(FINAL, FINAL)
    model = HarmonyCompletionsModel(base_url=server.base_url)
    request = make_request()
    whole = await model.complete(request)
    events = [e async for e in model.stream(request)]
    await model.aclose()
    streamed = events[-1]
    assert isinstance(streamed, ResponseDone)
    assert streamed.response.messages == whole.messages
    assert streamed.response.token_ids == whole.token_ids
    assert whole.messages[-1].is_final and whole.messages[-1].stop == "return"


@pytest.mark.parametrize("stream", [False, True])
async def test_text_only_servers_get_their_stop_marker_back(
    server: FakeOpenAIServer, stream: bool
) -> None:
    """No token ids and no stop token in the text: stop_reason tells <|call|> from EOS."""
    server.add(CALL, FINAL)
    settings = ModelSettings(extra_body={"include_stop_str_in_output": False})
    model = HarmonyCompletionsModel(
        base_url=server.base_url, settings=settings, return_token_ids=False
    )
    results = []
    for _ in range(2):
        if stream:
            events = [e async for e in model.stream(make_request())]
            done = events[-1]
            assert isinstance(done, ResponseDone)
            results.append(done.response)
        else:
            results.append(await model.complete(make_request()))
    await model.aclose()
    call, final = results
    assert call.token_ids is None
    assert call.messages[-1].stop == "call"  # stop_reason 200012
    assert final.messages[-1].stop == "return"  # EOS: stop_reason null
    assert not server.bodies("/v1/completions")[0].get("return_token_ids")


async def test_max_tokens_cuts_the_turn(server: FakeOpenAIServer) -> None:
    server.add(FINAL)
    model = HarmonyCompletionsModel(base_url=server.base_url, settings=ModelSettings(max_tokens=6))
    response = await model.complete(make_request())
    await model.aclose()
    assert response.finish_reason == "length"
    assert response.token_ids is not None and len(response.token_ids) == 6
    assert response.messages[-1].stop is None  # cut, not ended


async def test_one_renderer_per_config_pair_across_steps(server: FakeOpenAIServer) -> None:
    server.add(CALL, FINAL)
    model = HarmonyCompletionsModel(base_url=server.base_url)
    first = make_request()
    step1 = await model.complete(first)
    # The next step: same configs (an equal copy, too), a longer conversation.
    second = dataclasses.replace(
        first,
        system=dataclasses.replace(SYSTEM),
        messages=first.messages + step1.messages + (TOOL_RESULT,),
    )
    await model.complete(second)
    await model.aclose()
    assert len(model.renderers) == 1
    bodies = server.bodies("/v1/completions")
    # The second prompt extends the first: only the new messages were rendered.
    prompt1 = bodies[0]["prompt"]
    assert bodies[1]["prompt"][: len(prompt1) - 3] == prompt1[:-3]  # minus <|start|>assistant
    other = dataclasses.replace(first, developer=dataclasses.replace(DEVELOPER, instructions="x"))
    model.render(other)
    assert len(model.renderers) == 2


def test_sync_wrappers(server: FakeOpenAIServer) -> None:
    server.add(CALL, FINAL)
    model = HarmonyCompletionsModel(base_url=server.base_url)
    response = model.complete_sync(make_request())
    assert response.messages[-1].is_tool_call
    events = list(model.stream_sync(make_request()))
    assert isinstance(events[-1], ResponseDone)
    assert events[-1].response.messages[-1].is_final


async def test_cancelled_call_and_stream_leave_the_client_usable() -> None:
    """Cancelling a step (an agent's timeout, a user's Ctrl-C) is not turned into an error."""
    long_answer = "<|channel|>final<|message|>" + "word " * 400 + "<|return|>"

    def script(body: dict[str, object]) -> str:
        return long_answer if body.get("stream") else FINAL

    with FakeOpenAIServer(script, chunk_tokens=1) as server:
        model = HarmonyCompletionsModel(base_url=server.base_url)
        server.delay = 2.0
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(model.complete(make_request()), 0.2)
        server.delay = 0.0
        stream = cast(AsyncGenerator[StreamEvent, None], model.stream(make_request()))
        first = await anext(stream)
        assert isinstance(first, HeaderDone) and first.role is Role.ASSISTANT
        await stream.aclose()  # mid-stream: closes the HTTP response
        response = await model.complete(make_request())
        await model.aclose()
    assert response.messages[-1].is_final


async def test_prompt_json_follows_the_ids_across_steps_and_roll_backs(
    server: FakeOpenAIServer,
) -> None:
    # The renderer keeps the ids JSON-encoded beside the ids; what goes on the wire must
    # be exactly the ids, also after a finished turn's analysis is dropped (a roll-back).
    server.add(CALL, FINAL, FINAL)
    model = HarmonyCompletionsModel(base_url=server.base_url)
    request = make_request()
    history = list(request.messages)
    asked = []
    for turn in range(3):
        request = dataclasses.replace(request, messages=tuple(history))
        asked.append(request.messages)
        response = await model.complete(request)
        history.extend(response.messages)
        if response.messages[-1].is_tool_call:
            history.append(TOOL_RESULT)
        else:
            history.append(Message.user(f"And turn {turn}?"))
    await model.aclose()
    sent = [body["prompt"] for body in server.bodies("/v1/completions")]
    # Each prompt sent is the conversation rendered afresh, by a renderer of its own.
    fresh = [
        ConversationRenderer(request.system, request.developer).render(m).tokens for m in asked
    ]
    assert sent == fresh and len(sent) == 3


def test_prompt_ids_are_dropped_from_a_body_only_where_they_are_a_list_of_ids() -> None:
    text = 'a \\"prompt_token_ids\\": [1, 2] in the text'
    body = json.dumps(
        {"choices": [{"text": text, "token_ids": [7, 8], "prompt_token_ids": [1, 2, 3]}]}
    ).encode()
    kept = json.loads(_without_prompt_ids(body))["choices"][0]
    assert kept == {"text": text, "token_ids": [7, 8], "prompt_token_ids": None}
    # Anything but a flat list is left alone; a body without the field is unchanged.
    for odd in (b'{"prompt_token_ids": [[1], 2]}', b'{"prompt_token_ids": ["x"]}', b"{}"):
        assert _without_prompt_ids(odd) == odd
    # The same on a stream's event data (text).
    assert json.loads(_without_prompt_ids(body.decode()))["choices"][0] == kept
    assert _without_prompt_ids('{"prompt_token_ids": ["x"]}') == '{"prompt_token_ids": ["x"]}'


async def test_a_body_that_is_not_a_json_object_is_a_clear_error() -> None:
    httpd, _ = answering_server(b"[1,2]")  # a JSON list instead of a completion
    try:
        model = HarmonyCompletionsModel(
            base_url=f"http://127.0.0.1:{httpd.server_port}/v1",
            structured_output_style="structured_outputs",
        )
        with pytest.raises(ModelError, match="not a JSON object"):
            await model.complete(make_request())
        await model.aclose()
    finally:
        httpd.shutdown()


async def test_a_completion_missing_fields_is_still_read() -> None:
    # No id, object, created, model or usage: the SDK's lenient build takes it, so do we.
    answer = {"choices": [{"index": 0, "text": FINAL, "finish_reason": "stop"}]}
    httpd, _ = answering_server(json.dumps(answer).encode())
    try:
        model = HarmonyCompletionsModel(
            base_url=f"http://127.0.0.1:{httpd.server_port}/v1",
            structured_output_style="structured_outputs",
        )
        response = await model.complete(make_request())
        await model.aclose()
    finally:
        httpd.shutdown()
    assert response.messages[-1].is_final and response.finish_reason == "stop"
