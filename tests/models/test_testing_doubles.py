"""The public test doubles: ScriptedModel, and FakeOpenAIServer as the raw openai SDK sees it."""

from __future__ import annotations

import httpx
import openai
import pytest
from harmonygraph.harmony import ContentDelta, MessageDone
from harmonygraph.models import Model, ModelRequest, ResponseDone
from harmonygraph.tracing import FakeOpenAIServer, ScriptedModel, ScriptExhaustedError

from .helpers import CALL, FINAL, TOOL_RESULT, make_request

# -- ScriptedModel ------------------------------------------------------------------


async def test_scripted_model_returns_completions_in_order() -> None:
    model = ScriptedModel([CALL, FINAL])
    assert isinstance(model, Model)
    first = await model.complete(make_request())
    second = await model.complete(make_request(TOOL_RESULT))
    assert first.messages[-1].is_tool_call and first.messages[-1].stop == "call"
    assert second.messages[-1].is_final
    assert [r.messages[-1] for r in model.requests] == [make_request().messages[-1], TOOL_RESULT]
    assert first.usage.input_tokens == first.prompt_tokens > 0
    assert first.usage.output_tokens > 0 and first.raw == CALL
    with pytest.raises(ScriptExhaustedError, match="completion #3 but was given 2"):
        await model.complete(make_request())


async def test_scripted_model_streams_like_a_server() -> None:
    model = ScriptedModel([FINAL], chunk_chars=5)
    events = [e async for e in model.stream(make_request())]
    done = events[-1]
    assert isinstance(done, ResponseDone)
    deltas = [e.delta for e in events if isinstance(e, ContentDelta) and e.index == 1]
    assert len(deltas) > 2 and "".join(deltas) == "It is sunny in Paris (21 °C)."
    assert [e.message for e in events if isinstance(e, MessageDone)] == list(done.response.messages)


def test_scripted_model_with_a_callable_and_sync() -> None:
    def answer(request: ModelRequest) -> str:
        n = len(request.messages)
        return f"<|channel|>final<|message|>{n} messages<|return|>"

    model = ScriptedModel(answer, count_tokens=False)
    response = model.complete_sync(make_request())
    assert response.messages[-1].content == "1 messages"
    assert response.usage.total_tokens == 0  # count_tokens=False: no encoding work
    events = list(model.stream_sync(make_request(TOOL_RESULT, TOOL_RESULT)))
    assert isinstance(events[-1], ResponseDone)
    assert events[-1].response.messages[-1].content == "2 messages"


# -- FakeOpenAIServer, seen by the raw SDK ----------------------------------------------


async def test_fake_server_completions_like_vllm() -> None:
    with FakeOpenAIServer([CALL, FINAL, FINAL]) as server:
        client = openai.AsyncOpenAI(base_url=server.base_url, api_key="x", max_retries=0)
        models = await client.models.list()
        assert [m.id for m in models.data] == ["openai/gpt-oss-20b"]
        call = await client.completions.create(
            model="openai/gpt-oss-20b",
            prompt=[200006, 1428, 200008, 12194, 200007, 200006, 173781],
            max_tokens=200,
            extra_body={"skip_special_tokens": False, "return_token_ids": True},
        )
        choice = call.choices[0]
        extra = choice.model_extra or {}
        assert choice.finish_reason == "stop" and extra["stop_reason"] == 200012
        assert extra["token_ids"][-1] == 200012  # sampled, so in the ids...
        assert "<|channel|>" in choice.text and not choice.text.endswith(
            "<|call|>"
        )  # ...not the text
        assert extra["prompt_token_ids"][0] == 200006
        assert call.usage is not None and call.usage.prompt_tokens == 7
        # Text prompt, vLLM's defaults: special tokens skipped, <|return|> is EOS (no stop_reason).
        final = await client.completions.create(
            model="openai/gpt-oss-20b", prompt="hi", max_tokens=200
        )
        assert "<|" not in final.choices[0].text
        assert (final.choices[0].model_extra or {})["stop_reason"] is None
        # vLLM's default max_tokens is 16.
        short = await client.completions.create(model="openai/gpt-oss-20b", prompt="hi")
        assert short.choices[0].finish_reason == "length"
        assert short.usage is not None and short.usage.completion_tokens == 16
        await client.close()


async def test_fake_server_streams_completions_with_usage_last() -> None:
    with FakeOpenAIServer([FINAL]) as server:
        client = openai.AsyncOpenAI(base_url=server.base_url, api_key="x", max_retries=0)
        stream = await client.completions.create(
            model="openai/gpt-oss-20b",
            prompt=[1, 2, 3],
            max_tokens=500,
            stream=True,
            stream_options={"include_usage": True},
            extra_body={"skip_special_tokens": False, "include_stop_str_in_output": True},
        )
        chunks = [c async for c in stream]
        await client.close()
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text == FINAL
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.prompt_tokens == 3
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"


async def test_fake_server_errors_like_vllm() -> None:
    with FakeOpenAIServer([FINAL], api_key="k") as server:
        async with httpx.AsyncClient(base_url=server.base_url) as http:
            unauthorized = await http.get("/models")
            assert unauthorized.status_code == 401
            assert unauthorized.json() == {"error": "Unauthorized"}
            auth = {"authorization": "Bearer k"}
            missing = await http.post(
                "/chat/completions", json={"model": "x", "messages": []}, headers=auth
            )
            assert missing.status_code == 404
            assert missing.json()["error"]["message"] == "The model `x` does not exist."
            assert missing.json()["error"]["type"] == "NotFoundError"
            nowhere = await http.post("/responses", json={}, headers=auth)
            assert (nowhere.status_code, nowhere.json()) == (404, {"detail": "Not Found"})
    assert [r.path for r in server.requests] == [
        "/v1/models",
        "/v1/chat/completions",
        "/v1/responses",
    ]


async def test_fake_server_runs_out_of_script_clearly() -> None:
    with FakeOpenAIServer([]) as server:
        client = openai.AsyncOpenAI(base_url=server.base_url, api_key="x", max_retries=0)
        with pytest.raises(openai.BadRequestError, match="was given 0"):
            await client.completions.create(model="openai/gpt-oss-20b", prompt="hi")
        await client.close()
