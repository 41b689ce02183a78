"""End to end over real HTTP: a multi-step agent through both model clients, recorded, replayed."""

from __future__ import annotations

from pathlib import Path

import pytest
from harmonygraph import Agent
from harmonygraph.engine.replay import replay_trace
from harmonygraph.models import make_model
from harmonygraph.tools import tool
from harmonygraph.tracing import FakeOpenAIServer, Trace
from pydantic import BaseModel

from .test_loop import call, final


class Forecast(BaseModel):
    city: str
    temp_c: float
    advice: str


@tool
def geocode(city: str) -> dict:
    """Coordinates of a city."""
    return {"Paris": {"lat": 48.86, "lon": 2.35}}.get(city, {"lat": 0.0, "lon": 0.0})


@tool
async def weather(lat: float, lon: float) -> dict:
    """Current temperature at a point."""
    return {"temp_c": 21.5 if lat > 40 else 30.0}


@tool
def clothing(temp_c: float) -> str:
    """What to wear at a temperature."""
    return "a light jacket" if temp_c < 25 else "a t-shirt"


SCRIPT = [
    call("geocode", '{"city": "Paris"}', thought="Find Paris first."),
    call("weather", '{"lat": "north", "lon": 2.35}', thought="Now the weather."),
    call("weather", '{"lat": 48.86, "lon": 2.35}', thought="lat must be a number."),
    call("clothing", '{"temp_c": 21.5}', thought="And what to wear."),
    final(
        '{"city": "Paris", "temp_c": 21.5, "advice": "Wear a light jacket."}', thought="All set."
    ),
]


@pytest.mark.parametrize("api", ["completions", "chat"])
@pytest.mark.parametrize("streaming", [False, True])
def test_multi_step_agent_over_http_records_and_replays(
    tmp_path: Path, api: str, streaming: bool
) -> None:
    trace_path = tmp_path / "trace.jsonl"
    with FakeOpenAIServer(list(SCRIPT)) as server:
        model = make_model(base_url=server.base_url, model="openai/gpt-oss-20b", api=api)
        agent = Agent(
            model,
            tools=[geocode, weather, clothing],
            output_type=Forecast,
            instructions="Answer with a forecast.",
            reasoning="low",
        )
        if streaming:
            events = list(agent.stream("Weather in Paris?", trace_path=trace_path))
            result = events[-1].result  # type: ignore[union-attr]
        else:
            result = agent.run("Weather in Paris?", trace_path=trace_path)
        # The generation requests: the chat client also asks what the server is (a GET).
        requests = [r for r in server.requests if r.method == "POST"]
    assert result.output == Forecast(city="Paris", temp_c=21.5, advice="Wear a light jacket.")
    assert result.tool_calls == 4 and result.steps == 5
    tool_msgs = [m.content for m in result.messages if m.role.value == "tool"]
    assert "invalid arguments for `functions.weather`: `lat`" in tool_msgs[1]
    assert result.usage.input_tokens > 0 and result.usage.output_tokens > 0
    assert len(requests) == 5
    if api == "completions":
        body = requests[0]["body"]
        assert isinstance(body["prompt"], list) and body["max_tokens"] > 16
        assert body["stop_token_ids"] == [200002, 200012]
    else:
        body = requests[0]["body"]
        assert [t["function"]["name"] for t in body["tools"]] == ["geocode", "weather", "clothing"]

    trace = Trace.load(trace_path)
    assert len(trace.model_calls) == 5 and len(trace.tool_calls) == 4
    replayed = Agent(
        make_model(base_url="http://127.0.0.1:9/v1", api=api),
        tools=[geocode, weather, clothing],
        output_type=Forecast,
        instructions="Answer with a forecast.",
        reasoning="low",
    ).replay(trace_path, strict=True)
    assert replayed.output == result.output
    assert replay_trace(trace_path)["model_calls"] == 5


def test_enforced_output_is_a_second_request_under_the_schema() -> None:
    schema_type = Forecast
    script = [
        final('{"city": "Paris", "temp_c": 21.5, "advice": "Jacket."}', thought="Answer now."),
        '{"city": "Paris", "temp_c": 21.5, "advice": "Jacket."}<|return|>',
    ]
    with FakeOpenAIServer(script) as server:
        model = make_model(base_url=server.base_url, api="completions")
        agent = Agent(model, output_type=schema_type, enforce_output=True)
        result = agent.run("Weather in Paris?")
        first, second = (r["body"] for r in server.requests if r["path"].endswith("/completions"))
    assert result.output == Forecast(city="Paris", temp_c=21.5, advice="Jacket.")
    assert result.reasoning == ["Answer now."]
    # Phase two continues phase one's tokens (the prompt grows) with the schema attached.
    assert second["prompt"][: len(first["prompt"])] == first["prompt"]
    assert len(second["prompt"]) > len(first["prompt"])
    assert second["structured_outputs"]["json"]["properties"]["city"] == {"type": "string"}


def test_enforcement_unavailable_says_so_once_and_validates() -> None:
    with FakeOpenAIServer([final('{"city": "Oslo", "temp_c": 3, "advice": "Coat."}')]) as server:
        model = make_model(base_url=server.base_url, api="chat")
        with pytest.warns(RuntimeWarning, match="cannot constrain the final answer"):
            agent = Agent(model, output_type=Forecast, enforce_output=True)
        assert agent.run("Weather in Oslo?").output.city == "Oslo"
