"""What a recording says, read straight from its JSON (independently of our clients), and
the harmonygraph request for the conversation it recorded.

`expected(recording)` is what a correct reader must get out of the recorded answer:
reasoning, text, tool calls, usage, finish reason, or the error. `conversation(recording)`
is the same conversation as a `ModelRequest` (messages, tools, response format,
reasoning level), so that our client's own request can be compared with the recorded one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from harmonygraph.harmony import DeveloperConfig, Message, SystemConfig
from harmonygraph.harmony.prompt import ResponseFormat
from harmonygraph.models import ModelRequest
from harmonygraph.models.chat import JSON_TYPE
from openai_harmony import ToolDescription, ToolNamespaceConfig

from .replay import kind

# For recordings that kept no request (pasted from bug reports): the conversation the
# notes describe, with the tool the answer calls where it names one.
NO_REQUEST_TOOLS = {
    "issue__ollama-11704__chat-completion-tool-name-leak": ("exec",),
    "pr__vllm-25514__sse-tool-args-in-reasoning-partial": ("search",),
}


@dataclass
class Expected:
    reasoning: str = ""
    text: str = ""
    calls: list[tuple[str, str]] = field(default_factory=list)  # (name, arguments)
    input_tokens: int | None = None
    output_tokens: int | None = None
    finish_reason: str | None = None
    error: dict[str, Any] | None = None
    complete: bool = True  # the stream ended as servers end it ([DONE], completed)


# -- chat ------------------------------------------------------------------------------


def _chat_usage(out: Expected, usage: dict[str, Any] | None) -> None:
    if usage and usage.get("prompt_tokens"):
        out.input_tokens = int(usage["prompt_tokens"])
        out.output_tokens = int(usage.get("completion_tokens") or 0)


def _chat_json(response: dict[str, Any]) -> Expected:
    if "error" in response and "choices" not in response:
        return Expected(error=response["error"])
    choice = response["choices"][0]
    message = choice["message"]
    out = Expected(
        reasoning=message.get("reasoning") or message.get("reasoning_content") or "",
        text=message.get("content") or "",
        calls=[
            (c["function"]["name"], c["function"].get("arguments") or "")
            for c in message.get("tool_calls") or []
        ],
        finish_reason=choice.get("finish_reason"),
    )
    _chat_usage(out, response.get("usage"))
    return out


def _chat_sse(lines: list[str]) -> Expected:
    out = Expected(complete=lines[-1] == "data: [DONE]")
    calls: dict[int, list[str]] = {}
    for line in lines:
        payload = line.removeprefix("data: ")
        if payload == "[DONE]":
            continue
        data = json.loads(payload)
        if "error" in data:
            out.error = data["error"]
            break
        _chat_usage(out, data.get("usage") or (data.get("x_groq") or {}).get("usage"))
        for choice in data.get("choices") or []:
            delta = choice.get("delta") or {}
            out.reasoning += delta.get("reasoning") or delta.get("reasoning_content") or ""
            out.text += delta.get("content") or ""
            for call in delta.get("tool_calls") or []:
                index = call.get("index", len(calls))
                fn = call.get("function") or {}
                entry = calls.setdefault(index, ["", ""])
                entry[0] += fn.get("name") or ""
                entry[1] += fn.get("arguments") or ""
            if choice.get("finish_reason"):
                out.finish_reason = choice["finish_reason"]
    out.calls = [(name, args) for name, args in calls.values()]
    return out


# -- responses -------------------------------------------------------------------------


def _responses_output(response: dict[str, Any]) -> Expected:
    out = Expected(finish_reason="stop" if response.get("status") == "completed" else None)
    for item in response.get("output") or []:
        if item.get("type") == "reasoning":
            parts = item.get("content") or item.get("summary") or []
            out.reasoning += "".join(p.get("text", "") for p in parts)
        elif item.get("type") == "message":
            out.text += "".join(
                p.get("text", "")
                for p in item.get("content") or []
                if p.get("type") == "output_text"
            )
        elif item.get("type") == "function_call":
            out.calls.append((item["name"], item.get("arguments") or ""))
    usage = response.get("usage") or {}
    if usage.get("input_tokens"):
        out.input_tokens = int(usage["input_tokens"])
        out.output_tokens = int(usage.get("output_tokens") or 0)
    return out


def _responses_sse(lines: list[str]) -> Expected:
    for line in reversed(lines):
        payload = line.removeprefix("data: ")
        if payload == "[DONE]":
            continue
        data = json.loads(payload)
        if data.get("type") in ("response.completed", "response.incomplete"):
            out = _responses_output(data["response"])
            out.complete = True
            return out
    raise AssertionError("the recorded Responses stream has no response.completed event")


def _harmony_in_content(out: Expected) -> Expected:
    """A server that did not parse harmony (its parser off) sends the raw markup as content:
    read as harmony, its analysis is reasoning, never a final answer."""
    if "<|channel|>" not in out.text:
        return out
    from harmonygraph.harmony import parse_completion_text

    messages = parse_completion_text(out.text).messages
    out.reasoning += "".join(m.content for m in messages if m.is_reasoning)
    out.text = "".join(m.content for m in messages if m.is_final or m.is_preamble)
    return out


def expected(recording: dict[str, Any]) -> Expected:
    if kind(recording) == "responses":
        if recording.get("sse"):
            return _responses_sse(recording["sse"])
        return _responses_output(recording["response"])
    if recording.get("sse"):
        return _harmony_in_content(_chat_sse(recording["sse"]))
    return _harmony_in_content(_chat_json(recording["response"]))


# -- the conversation as our request -----------------------------------------------------


def _tools(specs: list[dict[str, Any]]) -> tuple[ToolNamespaceConfig, ...]:
    tools = []
    for spec in specs:
        fn = spec.get("function", spec)  # chat nests it under "function"; Responses does not
        tools.append(
            ToolDescription.new(fn["name"], fn.get("description") or "", fn.get("parameters"))
        )
    return (ToolNamespaceConfig(name="functions", description=None, tools=tools),) if tools else ()


def _text(content: Any) -> str:
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return content or ""


def _chat_messages(messages: list[dict[str, Any]]) -> tuple[list[str], list[Message]]:
    instructions: list[str] = []
    out: list[Message] = []
    names: dict[str, str] = {}
    for m in messages:
        role = m["role"]
        if role in ("system", "developer"):
            instructions.append(_text(m.get("content")))
        elif role == "user":
            out.append(Message.user(_text(m.get("content"))))
        elif role == "assistant":
            if m.get("reasoning") or m.get("reasoning_content"):
                text = m.get("reasoning") or m.get("reasoning_content")
                out.append(Message.assistant(text, channel="analysis"))
            calls = m.get("tool_calls") or []
            if _text(m.get("content")):
                channel = "commentary" if calls else "final"
                out.append(Message.assistant(_text(m.get("content")), channel=channel))
            for call in calls:
                fn = call["function"]
                names[call["id"]] = fn["name"]
                out.append(
                    Message.assistant(
                        fn.get("arguments") or "",
                        channel="commentary",
                        recipient=f"functions.{fn['name']}",
                        content_type=JSON_TYPE,
                    )
                )
        elif role == "tool":
            name = names[m["tool_call_id"]]
            out.append(Message.tool_result(f"functions.{name}", _text(m.get("content"))))
        else:
            raise AssertionError(f"a recorded message with role {role!r}")
    return instructions, out


def _response_format(request: dict[str, Any]) -> ResponseFormat | None:
    fmt = request.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        spec = fmt["json_schema"]
        return ResponseFormat(spec["name"], spec["schema"], spec.get("description") or "")
    return None


def conversation(name: str, recording: dict[str, Any]) -> ModelRequest:
    request = recording.get("request")
    if not isinstance(request, dict):
        tools = [
            {"name": n, "parameters": {"type": "object"}} for n in NO_REQUEST_TOOLS.get(name, ())
        ]
        return ModelRequest(
            SystemConfig(current_date=None),
            DeveloperConfig(tools=_tools(tools)),
            (Message.user("(the request was not recorded)"),),
        )
    effort = request.get("reasoning_effort") or (request.get("reasoning") or {}).get("effort")
    system = SystemConfig(current_date=None, reasoning=effort or "medium")
    if kind(recording) == "responses":
        items = request["input"]
        messages = [{"role": i["role"], "content": i["content"]} for i in items if i.get("role")]
        instructions, msgs = _chat_messages(messages)
        if request.get("instructions"):
            instructions.insert(0, request["instructions"])
    else:
        instructions, msgs = _chat_messages(request["messages"])
    developer = DeveloperConfig(
        instructions="\n".join(instructions) or None,
        tools=_tools(request.get("tools") or []),
        response_format=_response_format(request),
    )
    return ModelRequest(system, developer, tuple(msgs))
