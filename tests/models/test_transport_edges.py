"""The model client's HTTP transport at its edges: a server that hangs up, a base URL
with credentials in it, a body that is no completion, through the real SDK client."""

from __future__ import annotations

import importlib.util
import json
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from harmonygraph.models import (
    HarmonyCompletionsModel,
    ModelConnectionError,
    ModelError,
    ModelSettings,
    ResponseDone,
)
from harmonygraph.tracing import FakeOpenAIServer

from .helpers import FINAL, answering_server, make_request


@pytest.fixture
def hanging_up() -> Iterator[int]:
    """A port where the server reads a request and closes the connection unanswered."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)

    threading.Thread(target=serve, daemon=True).start()
    yield listener.getsockname()[1]
    stop.set()
    listener.close()


async def test_a_server_that_hangs_up_is_no_timeout(hanging_up: int) -> None:
    # The SDK's aiohttp transport calls every connection error a connect timeout; a
    # server that closed the connection at once must not read "did not answer within 30 s".
    model = HarmonyCompletionsModel(
        base_url=f"http://127.0.0.1:{hanging_up}/v1",
        settings=ModelSettings(timeout=30, max_retries=0),
    )
    started = time.perf_counter()
    with pytest.raises(ModelConnectionError) as caught:
        await model.complete(make_request())
    await model.aclose()
    assert time.perf_counter() - started < 10
    assert "did not answer within" not in str(caught.value)
    assert "disconnected" in str(caught.value).lower()


@pytest.mark.skipif(importlib.util.find_spec("aiohttp") is None, reason="aiohttp not installed")
async def test_credentials_in_the_base_url_work_with_aiohttp_installed() -> None:
    # aiohttp refuses a URL's user-info beside the SDK's Authorization header (a bare
    # ValueError); such a URL keeps the SDK's httpx client, which sends them as Basic auth.
    choice = {"index": 0, "text": FINAL, "finish_reason": "stop", "logprobs": None}
    completion = json.dumps({"id": "c", "object": "text_completion", "created": 1,
                             "model": "m", "choices": [choice]}).encode()  # fmt: skip
    httpd, auth = answering_server(completion)
    try:
        model = HarmonyCompletionsModel(
            base_url=f"http://user:sekret@127.0.0.1:{httpd.server_port}/v1",
            structured_output_style="structured_outputs",
        )
        response = await model.complete(make_request())
        await model.aclose()
    finally:
        httpd.shutdown()
    assert response.messages[-1].is_final
    assert auth == ["Basic dXNlcjpzZWtyZXQ="]  # user:sekret


async def test_a_body_that_is_no_completion_names_the_url_without_its_credentials() -> None:
    httpd, _ = answering_server(b"<html>sign in to the proxy</html>", "text/html")
    try:
        model = HarmonyCompletionsModel(
            base_url=f"http://user:sekret@127.0.0.1:{httpd.server_port}/v1",
            structured_output_style="structured_outputs",
        )
        with pytest.raises(ModelError, match="not a JSON object") as caught:
            await model.complete(make_request())
        await model.aclose()
    finally:
        httpd.shutdown()
    assert "sekret" not in str(caught.value)
    assert f"127.0.0.1:{httpd.server_port}/v1" in str(caught.value)


async def test_extra_body_overrides_every_field_as_the_sdk_merges_it(
    server: FakeOpenAIServer,
) -> None:
    # The SDK merged `extra_body` over the named fields; posting the body ourselves must
    # too, or a stream's vLLM `continuous_usage_stats` (say) is dropped without a word.
    server.add(FINAL, FINAL)
    model = HarmonyCompletionsModel(
        base_url=server.base_url, settings=ModelSettings(seed=1, extra_body={"seed": 7})
    )
    await model.complete(make_request())
    await model.aclose()
    stream_options = {"include_usage": True, "continuous_usage_stats": True}
    settings = ModelSettings(extra_body={"stream_options": stream_options})
    model = HarmonyCompletionsModel(base_url=server.base_url, settings=settings)
    events = [event async for event in model.stream(make_request())]
    await model.aclose()
    assert isinstance(events[-1], ResponseDone)
    whole, streamed = server.bodies("/v1/completions")
    assert whole["seed"] == 7
    assert streamed["stream_options"] == stream_options
