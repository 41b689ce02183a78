"""A run's replay link: its trace downloaded (dashboard and API), authorized by key, with
reasoning masked for keys not allowed to see it, and replayed by the real replay code
(`harmonygraph replay`, `replay_trace`, `Agent.replay`)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.serve.conftest import call, final, make_agents, sign_in

pytestmark = pytest.mark.postgres


def capital(country: str) -> str:
    """The capital of a country."""
    return {"France": "Paris"}.get(country, "unknown")


def _agents_with_a_server_tool(fake_url: str) -> list:
    from harmonygraph.tools import tool

    return make_agents(fake_url, tools=[tool(capital)])


def _api_trace(base_url: str, key: str, response_id: str) -> httpx.Response:
    return httpx.get(f"{base_url}/v1/responses/{response_id}/trace",
                     headers={"Authorization": f"Bearer {key}"})  # fmt: skip


def _replay_cli(path: Path) -> dict:
    r = subprocess.run([sys.executable, "-m", "harmonygraph", "replay", str(path), "--json"],
                       capture_output=True, text=True, timeout=120)  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    return json.loads(r.stdout)


@pytest.fixture
def tooled(serve):
    """A server whose `helper` runs a real server-side tool (`functions.capital`)."""
    from harmonygraph.tracing import FakeOpenAIServer

    def start(script, **kw):
        fake = FakeOpenAIServer(script).start()
        return serve(fake=fake, agents=_agents_with_a_server_tool(fake.base_url), **kw)

    return start


SCRIPT = [
    call("capital", '{"country": "France"}', reasoning="SECRET-PLAN: use the tool."),
    final("Paris.", reasoning="SECRET-CHECK: the tool said Paris."),
]


def test_a_runs_trace_downloads_and_replays_with_reasoning_masked(tooled, tmp_path):
    from harmonygraph.engine.replay import replay_trace
    from harmonygraph.tracing import Trace
    from harmonygraph.tracing.redaction import REASONING_MASK

    s = tooled(SCRIPT)  # the key may not see reasoning
    resp = s.client().responses.create(model="helper", input="Capital of France?")
    assert resp.output_text == "Paris."
    got = _api_trace(s.base_url, s.key, resp.id)
    assert got.status_code == 200, got.text
    assert got.headers["content-disposition"] == f'attachment; filename="{resp.id}.jsonl"'
    assert got.headers["content-type"].startswith("application/jsonl")
    assert "SECRET-" not in got.text  # neither in a message nor in a raw completion
    path = tmp_path / f"{resp.id}.jsonl"
    path.write_bytes(got.content)
    trace = Trace.load(path)
    kinds = [r["type"] for r in trace.records]
    assert kinds == ["run", "model_call", "tool_call", "model_call", "run_end"]
    assert trace.tool_calls[0]["recipient"] == "functions.capital"
    assert trace.tool_calls[0]["result"] == "Paris"
    shown = [m for c in trace.model_calls for m in (*c["messages"], *c["new_messages"])
             if m.get("channel") == "analysis" and not m.get("recipient")]  # fmt: skip
    assert len(shown) == 3 and all(m["content"] == REASONING_MASK for m in shown)
    # The replay code takes it, strictly: the masked reasoning reads the same everywhere.
    report = _replay_cli(path)
    assert report["ok"] and report["status"] == "completed"
    assert (report["model_calls"], report["tool_calls"]) == (2, 1)
    assert report["output"] == "Paris."
    assert replay_trace(trace)["status"] == "completed"
    # The served agent itself replays it too (what the pytest plugin's agent_replay does).
    served = next(a for a in s.app.config.agents if a.name == "helper").agent
    result = served.replay(trace)
    assert result.output == "Paris." and result.tool_calls == 1


def test_a_key_allowed_reasoning_gets_it_and_the_dashboard_link_is_the_same(tooled, tmp_path):
    s = tooled(SCRIPT, key_options={"show_reasoning": True})
    resp = s.client().responses.create(model="helper", input="Capital of France?")
    api = _api_trace(s.base_url, s.key, resp.id)
    assert "SECRET-PLAN: use the tool." in api.text and "SECRET-CHECK" in api.text
    with httpx.Client(base_url=s.base_url) as web:
        assert web.post("/signin", data={"key": s.key}).status_code == 303
        page = web.get(f"/runs/{resp.id}")
        assert f'href="/runs/{resp.id}/trace"' in page.text
        assert f"harmonygraph replay {resp.id}.jsonl" in page.text
        link = web.get(f"/runs/{resp.id}/trace")
    assert link.status_code == 200 and link.content == api.content
    path = tmp_path / f"{resp.id}.jsonl"
    path.write_bytes(link.content)
    assert _replay_cli(path)["output"] == "Paris."


def test_another_keys_run_is_not_found_without_a_traceback(tooled):
    s = tooled(SCRIPT)
    resp = s.client().responses.create(model="helper", input="Capital of France?")
    other = s.new_key("other", show_reasoning=True)
    got = _api_trace(s.base_url, other, resp.id)
    assert got.status_code == 404
    assert got.json() == {"error": {
        "message": f"Response with id '{resp.id}' not found.",
        "type": "invalid_request_error", "param": "response_id", "code": "not_found"}}  # fmt: skip
    unknown = _api_trace(s.base_url, s.key, "resp_nope")
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "not_found"
    nokey = httpx.get(f"{s.base_url}/v1/responses/{resp.id}/trace")
    assert nokey.status_code == 401 and nokey.json()["error"]["code"] == "invalid_api_key"
    with httpx.Client(base_url=s.base_url) as web:
        web.post("/signin", data={"key": other})
        page = web.get(f"/runs/{resp.id}")  # the organisation's dashboard shows the run
        assert page.status_code == 200
        assert "Only the key that made this run" in page.text
        assert f"/runs/{resp.id}/trace" not in page.text
        link = web.get(f"/runs/{resp.id}/trace")
        assert link.status_code == 404
        assert "No trace of a run" in link.text and "Traceback" not in link.text
        assert "SECRET" not in link.text
    with httpx.Client(base_url=s.base_url) as anon:
        gone = anon.get(f"/runs/{resp.id}/trace")
        assert gone.status_code == 303 and gone.headers["location"].startswith("/signin")


def test_function_call_runs_replay_and_deleted_or_unstored_runs_keep_no_trace(serve, tmp_path):
    s = serve([call("lookup", '{"q": "capital"}'), final("Paris."), final("Not kept.")])
    tools = [{"type": "function", "name": "lookup", "parameters": {"type": "object"}}]
    client = s.client()
    first = client.responses.create(model="helper", input="Capital of France?", tools=tools)
    assert first.output[-1].type == "function_call"
    done = client.responses.create(
        model="helper", previous_response_id=first.id, tools=tools,
        input=[{"type": "function_call_output", "call_id": first.output[-1].call_id,
                "output": "Paris"}],
    )  # fmt: skip
    assert done.output_text == "Paris."
    # The run that stopped at the client's function replays to the same stop; the
    # follow-up replays from the whole conversation it was given.
    for rid, status, output in ((first.id, "awaiting_approval", None),
                                (done.id, "completed", "Paris.")):  # fmt: skip
        path = tmp_path / f"{rid}.jsonl"
        path.write_bytes(_api_trace(s.base_url, s.key, rid).content)
        report = _replay_cli(path)
        assert (report["status"], report["output"]) == (status, output)
    # Deleted: its trace goes with it.
    client.responses.delete(done.id)
    assert _api_trace(s.base_url, s.key, done.id).status_code == 404
    # store: false keeps no trace; the dashboard says so instead of offering a link.
    unkept = client.responses.create(model="helper", input="Hi", store=False)
    with httpx.Client(base_url=s.base_url) as web:
        web.post("/signin", data={"key": s.key})
        page = web.get(f"/runs/{unkept.id}")
        assert "No trace was recorded for this run" in page.text and "store: false" in page.text
        assert web.get(f"/runs/{unkept.id}/trace").status_code == 404


def test_download_the_trace_from_the_run_page_in_chromium(tooled, browser, shots, tmp_path):
    s = tooled(SCRIPT)
    resp = s.client().responses.create(model="helper", input="Capital of France?")
    page = browser.new_page(viewport={"width": 1280, "height": 800}, accept_downloads=True)
    sign_in(page, s.base_url, s.key)
    page.goto(f"{s.base_url}/runs/{resp.id}")
    assert page.inner_text("#replay-command") == f"harmonygraph replay {resp.id}.jsonl"
    assert "reasoning redacted" in page.inner_text("#replay")
    page.screenshot(path=str(shots / "run-replay.png"), full_page=True)
    with page.expect_download() as info:
        page.click("#download-trace")
    download = info.value
    assert download.suggested_filename == f"{resp.id}.jsonl"
    path = tmp_path / download.suggested_filename
    download.save_as(str(path))
    report = _replay_cli(path)
    assert report["output"] == "Paris." and report["tool_calls"] == 1
