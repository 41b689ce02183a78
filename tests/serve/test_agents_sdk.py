"""The OpenAI Agents SDK running an agent whose model is a harmonygraph agent behind the
server (its `OpenAIResponsesModel` pointed at it): if that SDK works, the endpoint is
compatible. The SDK's function tool runs in the test process, the model's call to it
coming back as a function_call item."""

from __future__ import annotations

import asyncio

import pytest

from tests.ci import require
from tests.serve.conftest import call, final

pytestmark = pytest.mark.postgres


def test_agents_sdk_with_a_function_tool(serve):
    agents = require("agents")
    from openai import AsyncOpenAI

    s = serve([call("get_population", '{"city": "Lyon"}'), final("Lyon has 522,000 people.")])
    seen: list[str] = []

    @agents.function_tool
    def get_population(city: str) -> str:
        """The population of a city."""
        seen.append(city)
        return "522000"

    client = AsyncOpenAI(base_url=s.base_url + "/v1", api_key=s.key, max_retries=0)
    model = agents.OpenAIResponsesModel(model="helper", openai_client=client)
    agent = agents.Agent(name="demographer", instructions="Answer with numbers.",
                         model=model, tools=[get_population])  # fmt: skip
    agents.set_tracing_disabled(True)
    result = asyncio.run(agents.Runner.run(agent, "How many people live in Lyon?"))
    assert result.final_output == "Lyon has 522,000 people."
    assert seen == ["Lyon"]
    from harmonygraph.harmony.encoding import get_encoding

    prompt = get_encoding().decode(s.fake.bodies("/v1/completions")[1]["prompt"])
    assert "522000" in prompt and "Answer with numbers." in prompt


def test_agents_sdk_streamed_with_structured_output(serve):
    agents = require("agents")
    from openai import AsyncOpenAI
    from pydantic import BaseModel

    class City(BaseModel):
        name: str
        country: str

    s = serve([final('{"name": "Lyon", "country": "France"}')])
    client = AsyncOpenAI(base_url=s.base_url + "/v1", api_key=s.key, max_retries=0)
    model = agents.OpenAIResponsesModel(model="helper", openai_client=client)
    agent = agents.Agent(name="geo", model=model, output_type=City)
    agents.set_tracing_disabled(True)

    async def go() -> tuple[object, list[str]]:
        run = agents.Runner.run_streamed(agent, "A French city?")
        return run, [event.type async for event in run.stream_events()]

    run, kinds = asyncio.run(go())
    assert "raw_response_event" in kinds
    assert run.final_output == City(name="Lyon", country="France")
