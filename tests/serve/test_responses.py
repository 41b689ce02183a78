"""POST /v1/responses with the real `openai` client, against agents on a fake gpt-oss server."""

from __future__ import annotations

import json

import pytest

from tests.serve.conftest import call, final

pytestmark = pytest.mark.postgres


def test_create_with_string_input_and_retrieve(serve):
    s = serve([final("Paris is the capital.", reasoning="Geography question.")])
    client = s.client()
    resp = client.responses.create(model="helper", input="Capital of France?")
    assert resp.status == "completed"
    assert resp.output_text == "Paris is the capital."
    assert resp.model == "helper"
    assert resp.usage is not None and resp.usage.input_tokens > 0 and resp.usage.output_tokens > 0
    # helper does not show reasoning: no reasoning item, and its text is nowhere in the body
    assert [item.type for item in resp.output] == ["message"]
    assert "Geography question" not in resp.model_dump_json()
    got = client.responses.retrieve(resp.id)
    assert got.id == resp.id and got.output_text == "Paris is the capital."
    # the prompt the model got had the user's message
    prompt = s.fake.bodies("/v1/completions")[0]["prompt"]
    assert isinstance(prompt, list) and len(prompt) > 10


def test_reasoning_shown_only_where_the_agent_allows(serve):
    s = serve([final("42", reasoning="Six times seven.")])
    resp = s.client().responses.create(model="thinker", input="6*7?", reasoning={"effort": "high"})
    kinds = [item.type for item in resp.output]
    assert kinds == ["reasoning", "message"]
    assert resp.output[0].content[0].text == "Six times seven."
    # the effort reached the system message
    from harmonygraph.harmony.encoding import get_encoding

    prompt = get_encoding().decode(s.fake.bodies("/v1/completions")[0]["prompt"])
    assert "Reasoning: high" in prompt


def test_item_input_and_instructions(serve):
    s = serve([final("Bonjour!")])
    resp = s.client().responses.create(
        model="helper",
        instructions="Answer in French.",
        input=[{"role": "user", "content": [{"type": "input_text", "text": "Say hello"}]}],
    )
    assert resp.output_text == "Bonjour!"
    from harmonygraph.harmony.encoding import get_encoding

    prompt = get_encoding().decode(s.fake.bodies("/v1/completions")[0]["prompt"])
    assert "Answer in French." in prompt and "Say hello" in prompt


def test_function_call_round_trip(serve):
    s = serve([
        call("get_weather", '{"city":"Paris"}'),
        final("It is 18 °C in Paris."),
    ])  # fmt: skip
    client = s.client()
    tools = [{
        "type": "function", "name": "get_weather", "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                       "required": ["city"]},
    }]  # fmt: skip
    first = client.responses.create(model="helper", input="Weather in Paris?", tools=tools)
    assert first.status == "completed"
    calls = [item for item in first.output if item.type == "function_call"]
    assert len(calls) == 1 and calls[0].name == "get_weather"
    assert json.loads(calls[0].arguments) == {"city": "Paris"}
    # the tool was described to the model in the developer message
    from harmonygraph.harmony.encoding import get_encoding

    enc = get_encoding()
    assert "get_weather" in enc.decode(s.fake.bodies("/v1/completions")[0]["prompt"])
    second = client.responses.create(
        model="helper",
        previous_response_id=first.id,
        input=[
            {
                "type": "function_call_output",
                "call_id": calls[0].call_id,
                "output": '{"temp_c": 18}',
            }
        ],
        tools=tools,
    )
    assert second.output_text == "It is 18 °C in Paris."
    prompt2 = enc.decode(s.fake.bodies("/v1/completions")[1]["prompt"])
    # the model saw its call and the client's result, from the functions.get_weather tool
    assert '{"temp_c": 18}' in prompt2 and "Weather in Paris?" in prompt2
    assert "functions.get_weather to=assistant" in prompt2


def test_structured_output_validated(serve):
    s = serve([
        final('{"city": "Paris"}'),  # missing "population": refused, the model is told
        final('{"city": "Paris", "population": 2100000}'),
    ])  # fmt: skip
    schema = {"type": "object", "properties": {"city": {"type": "string"},
              "population": {"type": "integer"}}, "required": ["city", "population"],
              "additionalProperties": False}  # fmt: skip
    resp = s.client().responses.create(
        model="helper", input="Biggest French city?",
        text={"format": {"type": "json_schema", "name": "city", "schema": schema, "strict": True}},
    )  # fmt: skip
    assert resp.status == "completed"
    assert json.loads(resp.output_text) == {"city": "Paris", "population": 2100000}
    # one message only: the refused answer is not in the output
    assert [i.type for i in resp.output] == ["message"]
    from harmonygraph.harmony.encoding import get_encoding

    enc = get_encoding()
    assert "population" in enc.decode(s.fake.bodies("/v1/completions")[0]["prompt"])
    assert "does not match the response format" in enc.decode(
        s.fake.bodies("/v1/completions")[1]["prompt"]
    )


def test_structured_output_that_never_validates_fails_cleanly(serve):
    s = serve([final("not json")] * 4)
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    resp = s.client().responses.create(
        model="helper", input="n?",
        text={"format": {"type": "json_schema", "name": "n", "schema": schema}},
    )  # fmt: skip
    assert resp.status == "failed"
    assert resp.error is not None and resp.error.code == "invalid_output"


def test_previous_response_id_continues_the_conversation(serve):
    s = serve([final("Nice to meet you, Ada."), final("Your name is Ada.")])
    client = s.client()
    first = client.responses.create(model="helper", input="My name is Ada.")
    second = client.responses.create(
        model="helper", input="What is my name?", previous_response_id=first.id
    )
    assert second.output_text == "Your name is Ada."
    assert second.previous_response_id == first.id
    from harmonygraph.harmony.encoding import get_encoding

    prompt = get_encoding().decode(s.fake.bodies("/v1/completions")[1]["prompt"])
    assert "My name is Ada." in prompt and "Nice to meet you, Ada." in prompt


def test_store_false_is_not_retrievable(serve):
    import openai

    s = serve([final("ok")])
    client = s.client()
    resp = client.responses.create(model="helper", input="hi", store=False)
    assert resp.output_text == "ok" and resp.store is False
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(resp.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model="helper", input="again", previous_response_id=resp.id)


def test_max_output_tokens_gives_incomplete(serve):
    s = serve([final("A long answer " * 40)])
    resp = s.client().responses.create(model="helper", input="Write a lot", max_output_tokens=20)
    assert resp.status == "incomplete"
    assert resp.incomplete_details is not None
    assert resp.incomplete_details.reason == "max_output_tokens"
    assert s.fake.bodies("/v1/completions")[0]["max_tokens"] == 20


def test_delete_and_models(serve):
    import openai

    s = serve([final("ok")])
    client = s.client()
    resp = client.responses.create(model="helper", input="hi")
    client.responses.delete(resp.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(resp.id)
    assert sorted(m.id for m in client.models.list()) == ["helper", "thinker"]


def test_restart_continues_by_previous_response_id(serve):
    """A new server process state (new app, pools, agents) on the same database goes on
    from a response made by the first one: nothing of the conversation was in memory."""
    s1 = serve([final("Noted: the code word is heron.")])
    first = s1.client().responses.create(model="helper", input="The code word is heron.")
    s1.server.stop()
    s2 = serve([final("The code word is heron.")])
    from openai import OpenAI

    client = OpenAI(base_url=s2.base_url + "/v1", api_key=s1.key, max_retries=0)
    second = client.responses.create(
        model="helper", input="What is the code word?", previous_response_id=first.id
    )
    assert second.output_text == "The code word is heron."
    from harmonygraph.harmony.encoding import get_encoding

    prompt = get_encoding().decode(s2.fake.bodies("/v1/completions")[0]["prompt"])
    assert "The code word is heron." in prompt and "Noted: the code word is heron." in prompt
