"""The four server paths (chat, completions, ollama-raw, responses), each streaming and not,
with tools, reasoning round trips and structured output, through the real `openai` SDK /
httpx against real HTTP servers on 127.0.0.1."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from harmonygraph.harmony import (
    ContentDelta,
    DeveloperConfig,
    HeaderDone,
    Message,
    MessageDone,
    ResponseFormat,
)
from harmonygraph.harmony.prompt import builtin_namespaces
from harmonygraph.harmony.repairs import RepairKind
from harmonygraph.models import (
    ChatCompletionsModel,
    HarmonyCompletionsModel,
    ModelNotFoundError,
    ModelRequest,
    ModelResponse,
    OllamaRawModel,
    ResponseDone,
    ResponsesModel,
    make_model,
)
from harmonygraph.tracing import FakeOpenAIServer
from openai_harmony import ToolDescription, ToolNamespaceConfig

from .helpers import CALL, DEVELOPER, FINAL, SYSTEM, TOOL_RESULT, make_request
from .wire_servers import OllamaServer, ResponsesServer

WEATHER_FORMAT = ResponseFormat(
    "weather",
    {
        "type": "object",
        "properties": {"sky": {"type": "string"}, "celsius": {"type": "integer"}},
        "required": ["sky", "celsius"],
    },
)
JSON_FINAL = (
    "<|channel|>analysis<|message|>Report it as JSON.<|end|>"
    '<|start|>assistant<|channel|>final<|message|>{"sky":"sunny","celsius":21}<|return|>'
)
PREAMBLE_CALL = (
    "<|channel|>analysis<|message|>Tell the user, then call.<|end|>"
    "<|start|>assistant<|channel|>commentary<|message|>Checking the weather.<|end|>"
    "<|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json"
    '<|message|>{"city":"Paris"}<|call|>'
)


def no_tools_request(*messages: Message) -> ModelRequest:
    developer = DeveloperConfig(instructions="Report the weather.", response_format=WEATHER_FORMAT)
    return dataclasses.replace(make_request(*messages), developer=developer)


async def run(model: Any, request: ModelRequest, stream: bool) -> tuple[ModelResponse, list[Any]]:
    if not stream:
        return await model.complete(request), []
    events = [e async for e in model.stream(request)]
    done = events[-1]
    assert isinstance(done, ResponseDone)
    return done.response, events


def check_events(events: list[Any], response: ModelResponse) -> None:
    """The stream's events say what the response holds: headers, deltas, messages."""
    finished = sorted(
        ((e.index, e.message) for e in events if isinstance(e, MessageDone)), key=lambda x: x[0]
    )
    assert [m for _, m in finished] == list(response.messages)
    assert any(isinstance(e, HeaderDone) for e in events)
    for index, message in finished:
        deltas = [e.delta for e in events if isinstance(e, ContentDelta) and e.index == index]
        assert "".join(deltas) == message.content


# -- chat -------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
async def test_chat_preamble_before_a_call_is_never_final(stream: bool) -> None:
    with FakeOpenAIServer([PREAMBLE_CALL]) as server:
        model = ChatCompletionsModel(base_url=server.base_url)
        response, events = await run(model, make_request(), stream)
        await model.aclose()
    reasoning, preamble, call = response.messages
    assert reasoning.is_reasoning and call.is_tool_call
    assert preamble.is_preamble and preamble.content == "Checking the weather."
    assert not any(m.is_final for m in response.messages)
    if stream:
        check_events(events, response)


@pytest.mark.parametrize("stream", [False, True])
async def test_chat_structured_output_on_a_step_without_tools(stream: bool) -> None:
    with FakeOpenAIServer([JSON_FINAL]) as server:
        model = ChatCompletionsModel(base_url=server.base_url)
        response, _ = await run(model, no_tools_request(), stream)
        await model.aclose()
        (body,) = server.bodies("/v1/chat/completions")
        assert server.ignored_fields == []
    assert body["response_format"]["json_schema"]["schema"] == WEATHER_FORMAT.schema
    assert json.loads(response.messages[-1].content) == {"sky": "sunny", "celsius": 21}
    assert response.messages[0].is_reasoning


@pytest.mark.parametrize("stream", [False, True])
async def test_chat_reasoning_round_trip_and_tool_results(stream: bool) -> None:
    with FakeOpenAIServer([CALL, FINAL]) as server:
        model = ChatCompletionsModel(base_url=server.base_url)
        first = make_request()
        step1, _ = await run(model, first, stream)
        history = first.messages + step1.messages + (TOOL_RESULT,)
        step2, events = await run(model, dataclasses.replace(first, messages=history), stream)
        await model.aclose()
        sent = server.bodies("/v1/chat/completions")[1]["messages"]
        assert server.chat_conversations[1] == list(history)
    assert sent[2]["reasoning"] == step1.messages[0].content
    assert sent[3]["tool_call_id"] == sent[2]["tool_calls"][0]["id"]
    assert step2.messages[-1].is_final and step2.finish_reason == "stop"
    if stream:
        check_events(events, step2)


GIT = ToolNamespaceConfig(
    name="git",
    description="A git repository (MCP).",
    tools=[ToolDescription.new("git_status", "Working tree status.", {"type": "object"})],
)


@pytest.mark.parametrize("stream", [False, True])
async def test_chat_mcp_namespace_round_trips(stream: bool) -> None:
    developer = dataclasses.replace(DEVELOPER, tools=(*DEVELOPER.tools, GIT))
    call = (
        "<|channel|>analysis<|message|>Status first.<|end|><|start|>assistant<|channel|>"
        "commentary to=functions.git_status <|constrain|>json<|message|>{}<|call|>"
    )
    with FakeOpenAIServer([call, FINAL]) as server:
        model = ChatCompletionsModel(base_url=server.base_url)
        first = dataclasses.replace(make_request(), developer=developer)
        step1, _ = await run(model, first, stream)
        assert step1.messages[-1].recipient == "git.git_status"
        result = Message.tool_result("git.git_status", "clean")
        history = first.messages + step1.messages + (result,)
        await run(model, dataclasses.replace(first, messages=history), stream)
        await model.aclose()
        bodies = server.bodies("/v1/chat/completions")
    assert [t["function"]["name"] for t in bodies[0]["tools"]] == ["get_weather", "git_status"]
    sent = bodies[1]["messages"]
    assert sent[2]["tool_calls"][0]["function"]["name"] == "git_status"
    assert sent[3]["tool_call_id"] == sent[2]["tool_calls"][0]["id"]


async def test_chat_detects_ollama_and_sends_its_token_limit() -> None:
    """An Ollama (its /v1/models says `library`) with no `server=`: the limit is max_tokens."""
    with OllamaServer() as ollama, FakeOpenAIServer([FINAL]) as vllm:
        model = ChatCompletionsModel(base_url=ollama.base_url)
        assert await model.detect_server() == "ollama"
        model.client = model.client.with_options(base_url=vllm.base_url)  # same model, answers
        await model.complete(make_request())
        await model.aclose()
        (body,) = vllm.bodies("/v1/chat/completions")
    assert body["max_tokens"] == 4096 and "max_completion_tokens" not in body
    assert body["reasoning"] == {"effort": "high"}


# -- completions ---------------------------------------------------------------------------

GLUED = (
    "<|channel|>analysis<|message|>Call it.<|end|><|start|>assistant<|channel|>commentary "
    'to=functions.get_weatherjson<|message|>{"city":"Paris"}<|call|>'
)


@pytest.mark.parametrize("stream", [False, True])
async def test_completions_resolve_glued_recipients_and_carry_repairs(stream: bool) -> None:
    with FakeOpenAIServer([GLUED]) as server:
        model = HarmonyCompletionsModel(base_url=server.base_url)
        response, events = await run(model, make_request(), stream)
        await model.aclose()
    call = response.messages[-1]
    assert call.is_tool_call and call.recipient == "functions.get_weather"
    assert [r.kind for r in response.repairs] == [RepairKind.RECIPIENT_CTYPE]
    if stream:
        check_events(events, response)


@pytest.mark.parametrize("stream", [False, True])
async def test_completions_reasoning_round_trip(stream: bool) -> None:
    with FakeOpenAIServer([CALL, FINAL]) as server:
        model = HarmonyCompletionsModel(base_url=server.base_url)
        first = make_request()
        step1, _ = await run(model, first, stream)
        history = first.messages + step1.messages + (TOOL_RESULT,)
        step2, _ = await run(model, dataclasses.replace(first, messages=history), stream)
        await model.aclose()
        prompt = server.bodies("/v1/completions")[1]["prompt"]
    from harmonygraph.harmony import get_encoding

    assert "The user wants the weather; call get_weather." in get_encoding().decode(prompt)
    assert step2.messages[-1].is_final and step2.repairs == ()


PHASE_ONE = (
    "<|channel|>analysis<|message|>Report it as JSON.<|end|>"
    "<|start|>assistant<|channel|>final<|message|>ignored"
)
PHASE_TWO = '{"sky":"sunny","celsius":21}<|return|>'


@pytest.mark.parametrize(
    ("version", "style", "field", "certain"),
    [
        ("0.12.0", "auto", "structured_outputs", True),
        ("0.10.2", "auto", "structured_outputs", True),
        ("0.9.2", "auto", "guided_json", True),
        ("0.12.0", "guided_json", "guided_json", False),  # removed in 0.12: only logged
        ("0.9.2", "structured_outputs", "structured_outputs", False),  # not known yet
    ],
)
@pytest.mark.parametrize("stream", [False, True])
async def test_completions_constrained_only_when_the_server_enforces_it(
    version: str, style: Any, field: str, certain: bool, stream: bool
) -> None:
    with FakeOpenAIServer([PHASE_ONE, PHASE_TWO], vllm_version=version) as server:
        model = HarmonyCompletionsModel(
            base_url=server.base_url,
            enforce_output_schema=True,
            structured_output_style=style,
            return_token_ids=version >= "0.10.2",
        )
        response, _ = await run(model, no_tools_request(), stream)
        await model.aclose()
        second = server.bodies("/v1/completions")[1]
        ignored = list(server.ignored_fields)
    assert field in second
    assert response.constrained is certain
    assert (field in ignored) is not certain  # the server dropped what it did not know
    final = response.messages[-1]
    assert final.is_final and json.loads(final.content) == {"sky": "sunny", "celsius": 21}


# -- ollama-raw ------------------------------------------------------------------------------


def ollama(server: OllamaServer, **kw: Any) -> OllamaRawModel:
    return OllamaRawModel("gpt-oss:20b", base_url=server.base_url, **kw)


@pytest.mark.parametrize("stream", [False, True])
async def test_ollama_raw_tool_call_then_answer(stream: bool) -> None:
    with OllamaServer([CALL, FINAL]) as server:
        model = ollama(server)
        first = make_request()
        step1, events1 = await run(model, first, stream)
        history = first.messages + step1.messages + (TOOL_RESULT,)
        step2, events2 = await run(model, dataclasses.replace(first, messages=history), stream)
        await model.aclose()
        bodies = server.bodies("/api/generate")
    call = step1.messages[-1]
    assert call.is_tool_call and call.stop == "call"  # <|call|> put back from the header
    assert call.recipient == "functions.get_weather" and call.content == '{"city":"Paris"}'
    assert step2.messages[-1].is_final and step2.messages[-1].stop == "return"
    assert all(b["raw"] is True and b["options"]["num_predict"] == 4096 for b in bodies)
    # The ongoing turn's reasoning is in the second prompt, harmony-rendered here.
    assert "The user wants the weather; call get_weather." in bodies[1]["prompt"]
    assert bodies[1]["prompt"].endswith("<|start|>assistant")
    assert step2.usage.input_tokens == step2.prompt_tokens > 0
    assert step2.usage.output_tokens > 0 and not step2.usage.estimated
    if stream:
        check_events(events1, step1)
        check_events(events2, step2)


@pytest.mark.parametrize("stream", [False, True])
async def test_ollama_raw_builtin_python_tool(stream: bool) -> None:
    code = (
        "<|channel|>analysis<|message|>Compute it.<|end|><|start|>assistant<|channel|>analysis"
        " to=python code<|message|>print(6*7)<|call|>"
    )
    request = dataclasses.replace(
        make_request(),
        system=dataclasses.replace(SYSTEM, builtin_tools=builtin_namespaces(["python"])),
    )
    with OllamaServer([code]) as server:
        model = ollama(server)
        response, _ = await run(model, request, stream)
        await model.aclose()
        (body,) = server.bodies("/api/generate")
    assert "## python" in body["prompt"]
    call = response.messages[-1]
    assert call.recipient == "python" and call.content == "print(6*7)" and call.stop == "call"


@pytest.mark.parametrize("trust", [False, True])
@pytest.mark.parametrize("stream", [False, True])
async def test_ollama_raw_structured_output_in_two_requests(trust: bool, stream: bool) -> None:
    phase_one = PHASE_ONE.replace("ignored", '{"sky":')  # cut by the stop string
    with OllamaServer([phase_one, PHASE_TWO]) as server:
        model = ollama(server, enforce_output_schema=True, trust_format=trust)
        response, events = await run(model, no_tools_request(), stream)
        await model.aclose()
        first, second = server.bodies("/api/generate")
    assert "<|channel|>final<|message|>" in first["options"]["stop"] and "format" not in first
    assert second["format"] == WEATHER_FORMAT.schema
    assert second["prompt"].endswith("<|start|>assistant<|channel|>final<|message|>")
    assert second["options"]["num_predict"] < 4096
    final = response.messages[-1]
    assert final.is_final and json.loads(final.content) == {"sky": "sunny", "celsius": 21}
    assert response.constrained is trust
    if stream:
        check_events(events, response)


async def test_ollama_raw_unknown_model_says_how_to_pull() -> None:
    with OllamaServer([FINAL]) as server:
        model = OllamaRawModel("gpt-oss:120b", base_url=server.root)
        with pytest.raises(ModelNotFoundError, match="ollama pull gpt-oss:120b"):
            await model.complete(make_request())
        await model.aclose()


def test_ollama_raw_sync_and_make_model(monkeypatch: pytest.MonkeyPatch) -> None:
    with OllamaServer([FINAL, FINAL]) as server:
        monkeypatch.setenv("HARMONYGRAPH_API", "ollama-raw")
        model = make_model(base_url=server.base_url, model="gpt-oss:20b", max_tokens=99)
        assert isinstance(model, OllamaRawModel)
        assert model.complete_sync(make_request()).messages[-1].is_final
        events = list(model.stream_sync(make_request()))
        assert isinstance(events[-1], ResponseDone)
        assert all(b["options"]["num_predict"] == 99 for b in server.bodies("/api/generate"))


# -- responses -------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
async def test_responses_tool_call_reasoning_round_trip(stream: bool) -> None:
    with ResponsesServer([CALL, FINAL]) as server:
        model = ResponsesModel(base_url=server.base_url)
        first = make_request()
        step1, events1 = await run(model, first, stream)
        history = first.messages + step1.messages + (TOOL_RESULT,)
        step2, events2 = await run(model, dataclasses.replace(first, messages=history), stream)
        await model.aclose()
        body1, body2 = server.bodies("/v1/responses")
    reasoning, call = step1.messages
    assert reasoning.is_reasoning and call.recipient == "functions.get_weather"
    assert step1.finish_reason == "tool_calls" and step1.usage.output_tokens > 0
    assert body1["tools"][0] == {
        "type": "function",
        "name": "get_weather",
        "description": "Current weather for a city.",
        "parameters": WEATHER_PARAMS,
    }
    assert body1["reasoning"] == {"effort": "high"} and body1["max_output_tokens"] == 4096
    kinds = [i.get("type", "message") for i in body2["input"]]
    assert kinds == ["message", "reasoning", "function_call", "function_call_output"]
    assert body2["input"][1]["content"][0]["text"] == reasoning.content
    assert body2["input"][3]["call_id"] == body2["input"][2]["call_id"]
    assert step2.messages[-1].is_final and step2.messages[-1].content.startswith("It is sunny")
    if stream:
        check_events(events1, step1)
        check_events(events2, step2)


WEATHER_PARAMS = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
}


@pytest.mark.parametrize("stream", [False, True])
async def test_responses_store_continues_from_the_previous_response(stream: bool) -> None:
    with ResponsesServer([CALL, FINAL]) as server:
        model = ResponsesModel(base_url=server.base_url, store=True)
        first = make_request()
        step1, _ = await run(model, first, stream)
        history = first.messages + step1.messages + (TOOL_RESULT,)
        step2, _ = await run(model, dataclasses.replace(first, messages=history), stream)
        await model.aclose()
        body1, body2 = server.bodies("/v1/responses")
    assert body1["store"] is True and "previous_response_id" not in body1
    assert body2["previous_response_id"].startswith("resp_")
    (output,) = body2["input"]  # only the tool result, answering the server's own call id
    assert output["type"] == "function_call_output" and output["call_id"].startswith("call_")
    assert step2.messages[-1].is_final


@pytest.mark.parametrize("stream", [False, True])
async def test_responses_structured_output(stream: bool) -> None:
    with ResponsesServer([JSON_FINAL]) as server:
        model = ResponsesModel(base_url=server.base_url)
        response, _ = await run(model, no_tools_request(), stream)
        await model.aclose()
        (body,) = server.bodies("/v1/responses")
    assert body["text"]["format"]["type"] == "json_schema"
    assert body["text"]["format"]["schema"] == WEATHER_FORMAT.schema
    assert json.loads(response.messages[-1].content) == {"sky": "sunny", "celsius": 21}


async def test_responses_tool_step_describes_the_format_instead() -> None:
    developer = dataclasses.replace(DEVELOPER, response_format=WEATHER_FORMAT)
    with ResponsesServer([CALL]) as server:
        model = ResponsesModel(base_url=server.base_url)
        await model.complete(dataclasses.replace(make_request(), developer=developer))
        await model.aclose()
        (body,) = server.bodies("/v1/responses")
    assert "text" not in body and "# Response Formats" in body["instructions"]


def test_make_model_builds_each_path() -> None:
    assert isinstance(make_model(api="responses"), ResponsesModel)
    assert isinstance(make_model(api="chat"), ChatCompletionsModel)
    with pytest.raises(ValueError, match="ollama-raw"):
        make_model(api="grpc")
