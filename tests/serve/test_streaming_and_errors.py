"""Streaming (SSE events in their documented order), a client that leaves mid-stream, and
bad input answered with documented errors in OpenAI's shape."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from tests.serve.conftest import call, final

pytestmark = pytest.mark.postgres


def test_stream_events_in_order(serve):
    s = serve([final("Hello there, friend.", reasoning="Greet them.")])
    events = list(s.client().responses.create(model="thinker", input="Hi", stream=True))
    kinds = [e.type for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    # reasoning item: added, part added, deltas, done; then the message the same way
    r0 = kinds.index("response.output_item.added")
    assert events[r0].item.type == "reasoning"
    assert "response.reasoning_text.delta" in kinds
    m0 = kinds.index("response.output_item.added", r0 + 1)
    assert events[m0].item.type == "message"
    assert kinds.index("response.reasoning_text.done") < m0
    assert kinds[m0 + 1] == "response.content_part.added"
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert "".join(deltas) == "Hello there, friend."
    order = [k for k in kinds if k in ("response.output_text.done", "response.content_part.done",
                                       "response.output_item.done")]  # fmt: skip
    assert order[-3:] == ["response.output_text.done", "response.content_part.done",
                          "response.output_item.done"]  # fmt: skip
    done = events[-1].response
    assert done.status == "completed" and done.output_text == "Hello there, friend."
    # the final object's items are the streamed ones
    assert done.output[1].id == events[m0].item.id
    assert s.client().responses.retrieve(done.id).output_text == "Hello there, friend."


def test_stream_hides_reasoning_of_an_agent_that_does_not_show_it(serve):
    s = serve([final("Fine.", reasoning="SECRET-CHAIN")])
    with httpx.stream("POST", s.base_url + "/v1/responses",
                      headers={"Authorization": f"Bearer {s.key}"},
                      json={"model": "helper", "input": "How are you?", "stream": True}) as r:  # fmt: skip
        body = r.read().decode()
    assert r.status_code == 200 and "SECRET-CHAIN" not in body
    assert "response.reasoning_text.delta" not in body and "response.completed" in body


def test_stream_function_call(serve):
    s = serve([call("lookup", '{"q":"x"}')])
    tools = [{"type": "function", "name": "lookup", "parameters": {"type": "object",
              "properties": {"q": {"type": "string"}}}}]  # fmt: skip
    events = list(s.client().responses.create(model="helper", input="find x", tools=tools,
                                              stream=True))  # fmt: skip
    kinds = [e.type for e in events]
    i = kinds.index("response.function_call_arguments.delta")
    assert kinds[i - 1] == "response.output_item.added"
    assert kinds[i + 1 : i + 3] == ["response.function_call_arguments.done",
                                    "response.output_item.done"]  # fmt: skip
    assert events[i + 1].arguments == '{"q":"x"}'
    done = events[-1].response
    assert done.output[-1].type == "function_call" and done.output[-1].name == "lookup"


def test_client_leaving_mid_stream_cancels_the_run(serve):
    from harmonygraph.tracing import FakeOpenAIServer

    fake = FakeOpenAIServer([final("slow answer")] * 2, delay=3.0).start()
    from tests.serve.conftest import make_agents

    s = serve(fake=fake, agents=make_agents(fake.base_url), key_options={"max_concurrent": 1})
    headers = {"Authorization": f"Bearer {s.key}"}
    with httpx.stream("POST", s.base_url + "/v1/responses", headers=headers,
                      json={"model": "helper", "input": "go", "stream": True}) as r:  # fmt: skip
        lines = r.iter_lines()
        first = next(line for line in lines if line.startswith("data:"))
        response_id = json.loads(first[5:])["response"]["id"]
    # the client is gone while the model is still answering: the run is cancelled and
    # recorded so, and the key's one slot is free again
    deadline = time.monotonic() + 10
    status = None
    while time.monotonic() < deadline:
        got = httpx.get(f"{s.base_url}/v1/responses/{response_id}", headers=headers).json()
        status = got["status"]
        if status != "in_progress":
            break
        time.sleep(0.1)
    assert status == "cancelled"
    assert got["error"]["code"] == "cancelled"
    ok = httpx.post(s.base_url + "/v1/responses", headers=headers, timeout=30,
                    json={"model": "helper", "input": "again"})  # fmt: skip
    assert ok.status_code == 200, ok.text


def _post(s, body, key=None, **kw):
    return httpx.post(s.base_url + "/v1/responses", timeout=30,
                      headers={"Authorization": f"Bearer {key or s.key}", **kw.pop("headers", {})},
                      **({"content": body} if isinstance(body, bytes) else {"json": body}), **kw)  # fmt: skip


def _error(r, status, code):
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["code"] == code, err
    assert "Traceback" not in r.text
    return err


def test_bad_input_errors(serve):
    s = serve([final("first")])
    _error(_post(s, b'{"model": "helper", "input": '), 400, "invalid_json")
    _error(_post(s, b"[1, 2]"), 400, "invalid_json")
    err = _error(_post(s, {"model": "helper", "input": "hi", "temprature": 1}), 400,
                 "unknown_parameter")  # fmt: skip
    assert err["param"] == "temprature"
    _error(_post(s, {"input": "hi"}), 400, "missing_required_parameter")
    _error(_post(s, {"model": "gpt-9", "input": "hi"}), 404, "model_not_found")
    _error(_post(s, {"model": "helper", "input": "hi", "background": True}), 400,
           "unsupported_parameter")  # fmt: skip
    _error(_post(s, {"model": "helper", "input": [{"type": "function_call_output",
                                                   "call_id": "nope", "output": "x"}]}),
           400, "invalid_value")  # fmt: skip
    _error(_post(s, {"model": "helper", "input": "x" * 2_000_000}), 413, "request_too_large")
    # the same, chunked: no Content-Length to refuse it by
    big = (b'{"model": "helper", "input": "' + b"x" * 2_000_000 + b'"}',)
    r = httpx.post(s.base_url + "/v1/responses", content=iter(big), timeout=30,
                   headers={"Authorization": f"Bearer {s.key}"})  # fmt: skip
    _error(r, 413, "request_too_large")
    _error(httpx.post(s.base_url + "/v1/responses", json={"model": "helper", "input": "x"}),
           401, "invalid_api_key")  # fmt: skip
    _error(_post(s, {"model": "helper", "input": "x"}, key="hg-wrong"), 401, "invalid_api_key")
    # nothing above reached the model
    assert s.fake.bodies("/v1/completions") == []
    # a previous_response_id of another key is not found
    first = _post(s, {"model": "helper", "input": "hi"}).json()
    other = s.new_key("other")
    _error(_post(s, {"model": "helper", "input": "more", "previous_response_id": first["id"]},
                 key=other), 404, "previous_response_not_found")  # fmt: skip
    r = httpx.get(f"{s.base_url}/v1/responses/{first['id']}",
                  headers={"Authorization": f"Bearer {other}"})  # fmt: skip
    _error(r, 404, "not_found")
    _error(httpx.get(s.base_url + "/v1/nothing", headers={"Authorization": f"Bearer {s.key}"}),
           404, "not_found")  # fmt: skip


def test_rate_and_concurrency_limits(serve):
    s = serve([final("a"), final("b")], key_options={"per_minute": 1})
    assert _post(s, {"model": "helper", "input": "one"}).status_code == 200
    r = _post(s, {"model": "helper", "input": "two"})
    _error(r, 429, "rate_limit_exceeded")
    assert int(r.headers["retry-after"]) >= 1


def test_revoked_key_is_refused(serve, pg_url):
    import asyncio

    from harmonygraph.serve.store import ServeStore, hash_key

    s = serve([final("a")], key_cache_s=0.0)
    assert _post(s, {"model": "helper", "input": "one"}).status_code == 200

    async def revoke() -> list[str]:
        async with ServeStore(pg_url, max_size=1) as store:
            keys = [k for k in await store.list_keys() if k.hint == s.key[:6] + "…" + s.key[-4:]]
            assert await store.revoke_key(keys[0].id)
            rows = await store._all("SELECT hash FROM hg_api_keys WHERE id = %s", keys[0].id)
            return [r["hash"] for r in rows]

    hashes = asyncio.run(revoke())
    assert hashes == [hash_key(s.key)] and s.key not in hashes  # only the hash is kept
    _error(_post(s, {"model": "helper", "input": "two"}), 401, "invalid_api_key")
