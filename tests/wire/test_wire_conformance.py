"""Recorded conformance: every exchange in ../shared/corpora/wire, replayed over real HTTP.

For each recording, a `ReplayServer` on 127.0.0.1 answers the recorded request with the
recorded answer (JSON with its status, or the SSE lines), and the harmonygraph client for
that endpoint reads it through the real `openai` SDK: `ChatCompletionsModel` for
`/chat/completions`, `ResponsesModel` for `/responses`. What it read must be what the
recording says (`recorded.expected`, derived from the JSON alone): reasoning, text, tool
calls, usage, finish reason, or the error. Where the request was recorded, our own
request for the same conversation is compared with it field by field; every difference
must be one listed in `DOCUMENTED` (and the README's "Wire conformance"), with its reason.

Bedrock Converse recordings (`/model/.../converse`) are Amazon's own API, not
OpenAI-compatible, and harmonygraph has no client for it: their test checks the shape
that makes it so, and that reasoning there arrives as `reasoningContent` blocks (the
README's server table sends Bedrock users to its OpenAI-compatible endpoints instead).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from harmonygraph.models import ModelError, ModelResponse, ResponseDone
from harmonygraph.models.chat import ChatCompletionsModel, ToolUseFailedError
from harmonygraph.models.responses import ResponsesModel

from .recorded import Expected, conversation, expected
from .replay import WIRE, ReplayServer, kind, load, recordings

pytestmark = pytest.mark.skipif(not WIRE.is_dir(), reason=f"no wire corpus at {WIRE}")

# Request fields where harmonygraph's request differs from the recorded one on purpose.
DOCUMENTED: dict[str, str] = {
    "n": "we never ask for several choices; every server defaults n to 1",
    "temperature": "we always send gpt-oss's recommended sampling (temperature 1.0)",
    "top_p": "we always send gpt-oss's recommended sampling (top_p 1.0)",
    "max_tokens": "we always bound the completion (ModelSettings.max_tokens); a server that "
    "does not say which name it reads gets both names",
    "max_completion_tokens": "as max_tokens",
    "max_output_tokens": "as max_tokens, on /v1/responses",
    "reasoning_effort": "we always send the run's reasoning level (medium when the recording "
    "sent none: the level gpt-oss assumes)",
    "reasoning": "on /v1/responses the level goes as reasoning.effort, always",
    "reasoning_format": "a Groq-only switch; Groq's default for gpt-oss already returns the "
    "parsed `reasoning` field, which we read",
    "search_settings": "Groq compound-beta's web search settings: a Groq system, not gpt-oss",
    "service_tier": "a hosted billing option, never sent",
    "stream_options": "we ask for usage at the end of a stream (include_usage)",
    "store": "/v1/responses: we say whether the server should keep the response (False "
    "unless ResponsesModel(store=True))",
    "tool_choice": "we always let the model choose (auto); `required` is how the recording's "
    "client forced its output tool",
    "response_format": "a `json_object` format has no schema, and our response format is "
    "always a JSON Schema (sent as json_schema on steps without function tools)",
    "instructions": "/v1/responses: our instructions travel as `instructions`, not as a "
    "system input item",
}
# Message-level differences, documented the same way.
DOCUMENTED_MESSAGES = {
    "tool_call_id": "our messages carry no call ids: each request numbers its calls call_0, "
    "call_1, ... and pairs results with them (the recorded ids are the server's)",
    "closed-turn reasoning": "harmony drops the reasoning of a turn that ended in a final "
    "answer, so we do not send it back (the recording's client did)",
    "description": "a tool with an empty description is sent without one",
    "name": "a tool result also carries the tool's name for vLLM (older vLLM read it)",
}


def _read(response: ModelResponse) -> Expected:
    msgs = response.messages
    return Expected(
        reasoning="".join(m.content for m in msgs if m.is_reasoning),
        text="".join(m.content for m in msgs if m.is_final or m.is_preamble),
        calls=[
            ((m.recipient or "").removeprefix("functions."), m.content)
            for m in msgs
            if m.is_tool_call
        ],
        input_tokens=response.usage.input_tokens,
        output_tokens=response.usage.output_tokens,
        finish_reason=response.finish_reason,
    )


async def _run(name: str, rec: dict[str, Any], stream: bool) -> tuple[ModelResponse, ReplayServer]:
    request = conversation(name, rec)
    model_name = (rec.get("request") or {}).get("model") or "openai/gpt-oss-120b"
    with ReplayServer(rec) as server:
        model: ChatCompletionsModel | ResponsesModel
        if kind(rec) == "responses":
            model = ResponsesModel(model_name, base_url=server.base_url, api_key="k")
        else:
            model = ChatCompletionsModel(model_name, base_url=server.base_url, api_key="k")
        try:
            if stream:
                events = [e async for e in model.stream(request)]
                assert isinstance(events[-1], ResponseDone)
                return events[-1].response, server
            return await model.complete(request), server
        finally:
            await model.aclose()


def _recovered_call(error: dict[str, Any]) -> tuple[str, str] | None:
    """The tool call a `tool_use_failed` error's failed_generation holds, if it holds one."""
    try:
        data = json.loads(error.get("failed_generation") or "")
    except ValueError:
        return None
    if isinstance(data, dict) and isinstance(data.get("name"), str):
        args = data.get("arguments", data.get("parameters", {}))
        return data["name"], args if isinstance(args, str) else json.dumps(args)
    return None


def _check_reading(rec: dict[str, Any], got: Expected, want: Expected) -> None:
    assert got.reasoning.strip() == want.reasoning.strip()
    assert got.text == want.text
    assert [(n, json.loads(a or "{}")) for n, a in got.calls] == [
        (n, json.loads(a or "{}")) for n, a in want.calls
    ] or _leaked_names_cleaned(rec, got, want)
    if want.input_tokens is not None:
        assert (got.input_tokens, got.output_tokens) == (want.input_tokens, want.output_tokens)
    else:
        assert got.input_tokens > 0  # the server sent none: ours, estimated from the rendering
    if kind(rec) == "chat":
        assert got.finish_reason == want.finish_reason
    elif want.finish_reason == "stop":
        assert got.finish_reason in ("stop", "tool_calls")


def _leaked_names_cleaned(rec: dict[str, Any], got: Expected, want: Expected) -> bool:
    """ollama#11704: a tool name with header tokens leaked in is kept as sent (it names no
    registered tool, so the loop tells the model), its arguments read right."""
    if not any("<|" in n for n, _ in want.calls):
        return False
    assert [json.loads(a) for _, a in got.calls] == [json.loads(a) for _, a in want.calls]
    assert all(
        n == w or not n.startswith("assistant")
        for (n, _), (w, _) in zip(got.calls, want.calls, strict=True)
    )
    return True


OPENAI_COMPATIBLE = [n for n in recordings() if kind(load(n)) != "converse"]
CONVERSE = [n for n in recordings() if kind(load(n)) == "converse"]


@pytest.mark.parametrize("name", OPENAI_COMPATIBLE)
async def test_recording_is_read_right(name: str) -> None:
    rec = load(name)
    want = expected(rec)
    request = rec.get("request") if isinstance(rec.get("request"), dict) else {}
    stream = bool(rec.get("sse")) or bool(request.get("stream"))
    if want.error is not None:
        recovered = _recovered_call(want.error)
        if recovered is None:
            with pytest.raises(
                ToolUseFailedError if want.error.get("code") == "tool_use_failed" else ModelError
            ) as info:
                await _run(name, rec, stream)
            assert want.error["message"] in str(info.value)
            return
        response, _ = await _run(name, rec, stream)
        got = _read(response)
        assert [(n, json.loads(a)) for n, a in got.calls] == [
            (recovered[0], json.loads(recovered[1]))
        ]
        return
    response, server = await _run(name, rec, stream)
    got = _read(response)
    _check_reading(rec, got, want)
    assert server.bodies(), "the client never reached the recorded endpoint"


def _tool_shape(tool: dict[str, Any]) -> tuple[str, Any]:
    fn = tool.get("function", tool)
    return fn["name"], fn.get("parameters")


def _messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    if "messages" in body:
        return list(body["messages"])
    out = [{"role": "system", "content": body["instructions"]}] if body.get("instructions") else []
    for item in body.get("input") or []:
        if item.get("role"):
            content = item.get("content")
            if isinstance(content, list):
                content = "".join(p.get("text", "") for p in content)
            out.append({"role": item["role"], "content": content})
    return out


def compare_requests(recorded: dict[str, Any], ours: dict[str, Any]) -> list[str]:
    """Every difference between two request bodies that matters, as `field: detail`."""
    diffs: list[str] = []
    for key in sorted(set(recorded) | set(ours)):
        if key in ("messages", "input", "tools", "model", "stream", "instructions"):
            continue
        if recorded.get(key) != ours.get(key):
            diffs.append(f"{key}: recorded {recorded.get(key)!r}, ours {ours.get(key)!r}")
    for key in ("model", "stream"):
        if bool(recorded.get(key)) != bool(ours.get(key)) or (
            key == "model" and recorded[key] != ours[key]
        ):
            diffs.append(f"{key}: recorded {recorded.get(key)!r}, ours {ours.get(key)!r}")
    rec_tools = [_tool_shape(t) for t in recorded.get("tools") or []]
    our_tools = [_tool_shape(t) for t in ours.get("tools") or []]
    if rec_tools != our_tools:
        diffs.append(f"tools: recorded {rec_tools!r}, ours {our_tools!r}")
    for t in recorded.get("tools") or []:
        fn = t.get("function", t)
        if fn.get("description") == "" and "description" not in (
            next(o for o in ours.get("tools") or [] if _tool_shape(o)[0] == fn["name"]).get(
                "function", {}
            )
        ):
            diffs.append("message description: empty tool description left out")
    rec_msgs, our_msgs = _messages(recorded), _messages(ours)
    rec_core = [(m["role"], m.get("content") or "") for m in rec_msgs]
    our_core = [(m["role"], m.get("content") or "") for m in our_msgs]
    if rec_core != our_core:
        diffs.append(f"messages: recorded {rec_core!r}, ours {our_core!r}")
    for r, o in zip(rec_msgs, our_msgs, strict=False):
        r_calls = [
            (c["function"]["name"], json.loads(c["function"]["arguments"]))
            for c in r.get("tool_calls") or []
        ]
        o_calls = [
            (c["function"]["name"], json.loads(c["function"]["arguments"]))
            for c in o.get("tool_calls") or []
        ]
        if r_calls != o_calls:
            diffs.append(f"messages tool_calls: recorded {r_calls!r}, ours {o_calls!r}")
        if r.get("tool_call_id") and r.get("tool_call_id") != o.get("tool_call_id"):
            diffs.append("message tool_call_id: ours numbered per request")
        if o.get("name") and not r.get("name"):
            diffs.append("message name: the tool's name on its result")
        if (r.get("reasoning") or r.get("reasoning_content")) and not (
            o.get("reasoning") or o.get("reasoning_content")
        ):
            closed = r["role"] == "assistant" and not r.get("tool_calls")
            diffs.append(
                "message closed-turn reasoning" if closed else "messages reasoning: not sent back"
            )
    return diffs


def _documented(diff: str) -> bool:
    field = diff.split(":", 1)[0]
    if field.startswith("message "):
        return field.removeprefix("message ") in DOCUMENTED_MESSAGES
    return field in DOCUMENTED


REQUESTED = [n for n in OPENAI_COMPATIBLE if isinstance(load(n).get("request"), dict)]


@pytest.mark.parametrize("name", REQUESTED)
async def test_our_request_matches_the_recorded_one(name: str) -> None:
    rec = load(name)
    want = expected(rec)
    stream = bool(rec["request"].get("stream"))
    request = conversation(name, rec)
    with ReplayServer(rec) as server:
        model: ChatCompletionsModel | ResponsesModel
        if kind(rec) == "responses":
            model = ResponsesModel(rec["request"]["model"], base_url=server.base_url, api_key="k")
        else:
            model = ChatCompletionsModel(
                rec["request"]["model"], base_url=server.base_url, api_key="k"
            )
        try:
            if stream:
                async for _ in model.stream(request):
                    pass
            else:
                await model.complete(request)
        except ModelError:
            assert want.error is not None  # a recorded error; the request was sent all the same
        finally:
            await model.aclose()
        (ours,) = server.bodies()
    diffs = compare_requests(rec["request"], ours)
    undocumented = [d for d in diffs if not _documented(d)]
    assert not undocumented, "\n".join(undocumented)


@pytest.mark.parametrize("name", CONVERSE)
def test_bedrock_converse_is_not_openai_compatible(name: str) -> None:
    """Converse takes `messages` of content blocks and `inferenceConfig`, and answers with
    `output.message.content` blocks (reasoning as `reasoningContent`) and `stopReason`:
    no `choices`, no `model` field. Our clients speak OpenAI's APIs; Bedrock serves
    gpt-oss through its OpenAI-compatible chat and Responses endpoints too (recorded here
    as well), which is what the README sends Bedrock users to."""
    rec = load(name)
    request = rec["request"]
    assert "inferenceConfig" in request and "model" not in request
    assert all(isinstance(m["content"], list) for m in request["messages"])
    if rec.get("response") is not None:
        response = rec["response"]
        assert "choices" not in response and "stopReason" in response
        blocks = response["output"]["message"]["content"]
        kinds = {next(iter(b)) for b in blocks}
        assert kinds <= {"text", "reasoningContent", "toolUse"}
        assert "text" in kinds
    else:
        frames = rec["eventstream"]
        assert frames, "a converse-stream recording holds its event-stream frames"
    with pytest.raises(ValueError, match="Converse"):
        ReplayServer(rec)


CUT_STREAMS = [
    n
    for n in OPENAI_COMPATIBLE
    if load(n).get("sse") and not expected(load(n)).complete and expected(load(n)).error is None
]


@pytest.mark.parametrize("name", CUT_STREAMS)
async def test_a_cut_stream_is_not_read_as_complete(name: str) -> None:
    rec = load(name)
    response, _ = await _run(name, rec, True)
    assert response.finish_reason is None
    assert response.messages and response.messages[-1].stop is None
