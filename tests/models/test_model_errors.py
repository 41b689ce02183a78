"""Retries, timeouts and clear errors, for both clients, over real HTTP."""

from __future__ import annotations

import socket
import time

import httpx2  # the HTTP library the openai SDK is built on
import openai
import pytest
from harmonygraph.models import (
    ChatCompletionsModel,
    HarmonyCompletionsModel,
    ModelAuthError,
    ModelConnectionError,
    ModelError,
    ModelNotFoundError,
    ModelSettings,
    ModelTimeoutError,
    ResponseDone,
    RetryPolicy,
    make_model,
)
from harmonygraph.models.errors import is_retryable
from harmonygraph.tracing import FakeOpenAIServer

from .helpers import FAST_RETRY, FINAL, make_request

CLIENTS = [HarmonyCompletionsModel, ChatCompletionsModel]
Client = type[HarmonyCompletionsModel] | type[ChatCompletionsModel]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _generations(server: FakeOpenAIServer) -> list[object]:
    """The generation requests (POSTs); a client may first ask the server what it is."""
    return [r for r in server.requests if r.method == "POST"]


@pytest.mark.parametrize("cls", CLIENTS)
@pytest.mark.parametrize("status", [429, 500, 503])
async def test_retries_then_succeeds(server: FakeOpenAIServer, cls: Client, status: int) -> None:
    server.add(FINAL)
    server.fail_next(2, status)
    model = cls(base_url=server.base_url, retry_policy=FAST_RETRY)
    response = await model.complete(make_request())
    await model.aclose()
    assert response.messages[-1].is_final
    assert model.retries == 2
    assert len(_generations(server)) == 3


@pytest.mark.parametrize("cls", CLIENTS)
async def test_stream_retries_before_the_first_byte(server: FakeOpenAIServer, cls: Client) -> None:
    server.add(FINAL)
    server.fail_next(1, 429)
    model = cls(base_url=server.base_url, retry_policy=FAST_RETRY)
    events = [e async for e in model.stream(make_request())]
    await model.aclose()
    assert isinstance(events[-1], ResponseDone) and model.retries == 1


@pytest.mark.parametrize("cls", CLIENTS)
async def test_gives_up_after_max_retries(server: FakeOpenAIServer, cls: Client) -> None:
    server.fail_next(5, 500)
    settings = ModelSettings(max_retries=2)
    model = cls(base_url=server.base_url, settings=settings, retry_policy=FAST_RETRY)
    with pytest.raises(ModelError, match=r"HTTP 500 \(after 3 attempts\)") as info:
        await model.complete(make_request())
    await model.aclose()
    assert "injected failure" in str(info.value)
    assert len(_generations(server)) == 3


async def test_a_rate_limit_that_persists_says_so(server: FakeOpenAIServer) -> None:
    server.fail_next(2, 429)
    model = HarmonyCompletionsModel(
        base_url=server.base_url, settings=ModelSettings(max_retries=1), retry_policy=FAST_RETRY
    )
    with pytest.raises(ModelError, match="429"):
        await model.complete(make_request())
    await model.aclose()


@pytest.mark.parametrize("cls", CLIENTS)
async def test_wrong_api_key(cls: Client) -> None:
    with FakeOpenAIServer([FINAL], api_key="s3cret") as server:
        bad = cls(base_url=server.base_url, api_key="wrong", retry_policy=FAST_RETRY)
        with pytest.raises(ModelAuthError, match="HARMONYGRAPH_API_KEY") as info:
            await bad.complete(make_request())
        await bad.aclose()
        assert "401" in str(info.value) and len(_generations(server)) == 1  # no retry
        good = cls(base_url=server.base_url, api_key="s3cret")
        assert (await good.complete(make_request())).messages[-1].is_final
        await good.aclose()


@pytest.mark.parametrize("cls", CLIENTS)
async def test_wrong_model_lists_the_served_ones(cls: Client) -> None:
    with FakeOpenAIServer([FINAL], models=["openai/gpt-oss-120b", "gpt-oss:20b"]) as server:
        model = cls("openai/gpt-oss-20b", base_url=server.base_url)
        with pytest.raises(ModelNotFoundError) as info:
            await model.complete(make_request())
        await model.aclose()
    message = str(info.value)
    assert "'openai/gpt-oss-20b'" in message
    assert "openai/gpt-oss-120b, gpt-oss:20b" in message  # from GET /v1/models
    assert "HARMONYGRAPH_MODEL" in message


async def test_wrong_model_on_a_stream(server: FakeOpenAIServer) -> None:
    model = ChatCompletionsModel("nope", base_url=server.base_url)
    with pytest.raises(ModelNotFoundError, match="openai/gpt-oss-20b"):
        async for _ in model.stream(make_request()):
            pass
    await model.aclose()


@pytest.mark.parametrize("cls", CLIENTS)
async def test_closed_port_fails_fast_with_the_url(cls: Client) -> None:
    url = f"http://127.0.0.1:{_closed_port()}/v1"
    model = cls(base_url=url, settings=ModelSettings(max_retries=3))
    started = time.perf_counter()
    with pytest.raises(ModelConnectionError) as info:
        await model.complete(make_request())
    elapsed = time.perf_counter() - started
    await model.aclose()
    message = str(info.value)
    assert url in message and "connection refused" in message
    assert "--base-url" in message and "HARMONYGRAPH_BASE_URL" in message
    assert elapsed < 1.0  # refused connections are not retried with backoff


async def test_base_url_without_v1(server: FakeOpenAIServer) -> None:
    model = HarmonyCompletionsModel(base_url=server.base_url.removesuffix("/v1"))
    with pytest.raises(ModelConnectionError, match="/v1"):
        await model.complete(make_request())
    await model.aclose()


@pytest.mark.parametrize("cls", CLIENTS)
async def test_timeout(cls: Client) -> None:
    with FakeOpenAIServer([FINAL], delay=2.0) as server:
        settings = ModelSettings(timeout=0.2, max_retries=0)
        model = cls(base_url=server.base_url, settings=settings)
        started = time.perf_counter()
        with pytest.raises(ModelTimeoutError, match=r"within 0\.2 s"):
            await model.complete(make_request())
        assert time.perf_counter() - started < 1.5
        await model.aclose()


def test_make_model_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARMONYGRAPH_BASE_URL", "http://gpu-box:8000/v1")
    monkeypatch.setenv("HARMONYGRAPH_MODEL", "openai/gpt-oss-120b")
    monkeypatch.setenv("HARMONYGRAPH_API_KEY", "k")
    monkeypatch.setenv("HARMONYGRAPH_API", "chat")
    model = make_model(max_tokens=123, server="ollama")
    assert isinstance(model, ChatCompletionsModel)
    assert model.name == "openai/gpt-oss-120b" and model.server == "ollama"
    assert model.base_url == "http://gpu-box:8000/v1" and model.client.api_key == "k"
    assert model.settings.max_tokens == 123
    explicit = make_model("http://other:1/v1", "m", api="completions")
    assert isinstance(explicit, HarmonyCompletionsModel) and explicit.name == "m"
    with pytest.raises(ValueError, match="completions, chat, ollama-raw, responses"):
        make_model(api="grpc")
    with pytest.raises(TypeError, match="model settings are"):
        make_model(api="completions", bogus=1)


def test_make_model_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("BASE_URL", "MODEL", "API_KEY", "API"):
        monkeypatch.delenv(f"HARMONYGRAPH_{name}", raising=False)
    model = make_model()
    assert isinstance(model, HarmonyCompletionsModel)
    assert (model.base_url, model.name) == ("http://localhost:8000/v1", "openai/gpt-oss-20b")
    assert model.client.api_key == "EMPTY"


def _status_error(status: int, headers: dict[str, str]) -> openai.APIStatusError:
    request = httpx2.Request("POST", "http://127.0.0.1/v1/completions")
    response = httpx2.Response(status, headers=headers, request=request, json={"error": "x"})
    cls = openai.RateLimitError if status == 429 else openai.InternalServerError
    return cls("x", response=response, body=None)


def test_backoff_honours_retry_after_and_grows() -> None:
    policy = RetryPolicy(base_delay=0.5, cap=8.0)
    assert policy.delay(0, _status_error(429, {"retry-after-ms": "250"})) == 0.25
    assert policy.delay(3, _status_error(503, {"retry-after": "2"})) == 2.0
    plain = _status_error(500, {})
    assert 0.375 <= policy.delay(0, plain) <= 0.5
    assert 3.0 <= policy.delay(3, plain) <= 4.0
    assert policy.delay(10, plain) <= 8.0  # capped
    assert policy.delay(0, _status_error(429, {"retry-after": "3600"})) <= 0.5  # not an hour
    assert is_retryable(plain) and not is_retryable(_status_error(400, {}))
