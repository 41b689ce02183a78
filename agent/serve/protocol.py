"""The Responses API's request, read strictly, and its items turned to and from harmony.

A request is checked field by field (`CreateResponse`): an unknown field is refused with
its name, as OpenAI does, and a documented field the server cannot honour
(`background`, `conversation`, `prompt`) is refused rather than ignored.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

import pydantic
from harmonygraph.harmony.messages import Message, Role
from harmonygraph.serve.errors import (
    InvalidJSONError,
    InvalidRequestError,
    UnknownParameterError,
    UnsupportedParameterError,
)
from pydantic import BaseModel, ConfigDict

__all__ = [
    "ClientTool",
    "CreateResponse",
    "PendingCall",
    "new_id",
    "output_items",
    "parse_request",
    "response_object",
    "to_messages",
]

EFFORTS = {"none": "low", "minimal": "low", "low": "low", "medium": "medium", "high": "high",
           "xhigh": "high"}  # fmt: skip


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


class Reasoning(BaseModel):
    model_config = ConfigDict(extra="forbid")
    effort: str | None = None
    summary: str | None = None
    generate_summary: str | None = None


class TextConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    format: dict[str, Any] | None = None
    verbosity: str | None = None


class CreateResponse(BaseModel):
    """The body of `POST /v1/responses` (OpenAI's documented fields)."""

    model_config = ConfigDict(extra="forbid")

    model: str
    input: str | list[dict[str, Any]] | None = None
    instructions: str | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: Any = None
    parallel_tool_calls: bool | None = None
    reasoning: Reasoning | None = None
    text: TextConfig | None = None
    previous_response_id: str | None = None
    store: bool | None = True
    max_output_tokens: int | None = pydantic.Field(None, ge=16)
    max_tool_calls: int | None = pydantic.Field(None, ge=1)
    stream: bool | None = False
    stream_options: dict[str, Any] | None = None
    metadata: dict[str, str] | None = None
    temperature: float | None = pydantic.Field(None, ge=0, le=2)
    top_p: float | None = pydantic.Field(None, ge=0, le=1)
    top_logprobs: int | None = None
    truncation: Literal["auto", "disabled"] | None = None
    include: list[str] | None = None
    user: str | None = None
    safety_identifier: str | None = None
    prompt_cache_key: str | None = None
    prompt_cache_retention: str | None = None
    prompt_cache_options: Any = None
    service_tier: str | None = None
    context_management: Any = None
    # documented, not served here: refused when set
    background: bool | None = None
    conversation: Any = None
    prompt: Any = None


def parse_request(raw: bytes) -> CreateResponse:
    """The request body, or the documented 400 for what is wrong with it."""
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidJSONError(
            f"We could not parse the JSON body of your request ({exc}). The body must be a "
            "JSON object."
        ) from None
    if not isinstance(data, dict):
        raise InvalidJSONError("The body of your request must be a JSON object.")
    try:
        req = CreateResponse.model_validate(data)
    except pydantic.ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            raise UnknownParameterError(f"Unknown parameter: '{where}'.", param=where) from None
        if err["type"] == "missing":
            raise InvalidRequestError(
                f"Missing required parameter: '{where}'.",
                param=where,
                code="missing_required_parameter",
            ) from None
        raise InvalidRequestError(
            f"Invalid value for '{where}': {err['msg']}.", param=where
        ) from None
    if req.background:
        raise UnsupportedParameterError(
            "background responses are not served here; use stream=true", param="background"
        )
    for name in ("conversation", "prompt"):
        if getattr(req, name) is not None:
            raise UnsupportedParameterError(
                f"'{name}' is not supported by this server; use previous_response_id",
                param=name,
            )
    if req.reasoning and req.reasoning.effort and req.reasoning.effort not in EFFORTS:
        raise InvalidRequestError(
            f"Invalid value for 'reasoning.effort': {req.reasoning.effort!r}; one of "
            + ", ".join(EFFORTS),
            param="reasoning.effort",
        )
    return req


# -- client tools ------------------------------------------------------------------------


@dataclass(frozen=True)
class ClientTool:
    """A function tool the client runs: the response ends with its call."""

    name: str
    description: str
    parameters: dict[str, Any]


def client_tools(req: CreateResponse) -> list[ClientTool]:
    out: list[ClientTool] = []
    for i, t in enumerate(req.tools or []):
        kind = t.get("type")
        if kind != "function":
            raise UnsupportedParameterError(
                f"tools[{i}]: only client-executed tools of type 'function' are accepted "
                f"(got {kind!r}); the agent's own tools run on the server",
                param=f"tools[{i}].type",
            )
        name = t.get("name")
        if not isinstance(name, str) or not name.isidentifier():
            raise InvalidRequestError(
                f"tools[{i}].name must be an identifier (got {name!r})", param=f"tools[{i}].name"
            )
        params = t.get("parameters") or {"type": "object", "properties": {}}
        if not isinstance(params, dict):
            raise InvalidRequestError(
                f"tools[{i}].parameters must be a JSON Schema object",
                param=f"tools[{i}].parameters",
            )
        out.append(ClientTool(name, str(t.get("description") or ""), params))
    return out


def output_schema(req: CreateResponse) -> tuple[dict[str, Any], str] | None:
    """The JSON Schema (and its name) the final answer must match, from `text.format`."""
    fmt = req.text.format if req.text else None
    if not fmt or fmt.get("type") in (None, "text"):
        return None
    if fmt.get("type") == "json_object":
        return {"type": "object"}, "json_object"
    if fmt.get("type") != "json_schema":
        raise InvalidRequestError(
            f"text.format.type must be text, json_object or json_schema (got {fmt.get('type')!r})",
            param="text.format.type",
        )
    schema = fmt.get("schema")
    if not isinstance(schema, dict):
        raise InvalidRequestError(
            "text.format.schema must be a JSON Schema object", param="text.format.schema"
        )
    import jsonschema

    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise InvalidRequestError(
            f"text.format.schema is not a valid JSON Schema: {exc.message}",
            param="text.format.schema",
        ) from None
    return schema, str(fmt.get("name") or "response")


# -- input items → harmony messages -------------------------------------------------------


def _text_of(content: Any, where: str) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for j, part in enumerate(content):
            if not isinstance(part, dict):
                raise InvalidRequestError(f"{where}[{j}] must be an object", param=f"{where}[{j}]")
            if part.get("type") in ("input_text", "output_text", "text", "summary_text",
                                    "reasoning_text"):  # fmt: skip
                parts.append(str(part.get("text", "")))
            else:
                raise UnsupportedParameterError(
                    f"{where}[{j}]: content of type {part.get('type')!r} is not supported "
                    "(text only)",
                    param=f"{where}[{j}].type",
                )
        return "".join(parts)
    raise InvalidRequestError(f"{where} must be a string or a list of parts", param=where)


def to_messages(
    items: str | list[dict[str, Any]] | None, call_names: dict[str, str]
) -> tuple[list[Message], list[str]]:
    """The request's input as harmony messages, and its system/developer texts.

    `call_names` maps the call ids known from earlier responses to tool names; function
    calls in the input add theirs.
    """
    if items is None:
        return [], []
    if isinstance(items, str):
        return [Message.user(items)], []
    messages: list[Message] = []
    extra_instructions: list[str] = []
    for i, item in enumerate(items):
        where = f"input[{i}]"
        kind = item.get("type", "message")
        if kind == "message":
            role = item.get("role")
            text = _text_of(item.get("content", ""), f"{where}.content")
            if role == "user":
                messages.append(Message.user(text))
            elif role == "assistant":
                messages.append(Message.assistant(text))
            elif role in ("system", "developer"):
                extra_instructions.append(text)
            else:
                raise InvalidRequestError(
                    f"{where}.role must be user, assistant, system or developer",
                    param=f"{where}.role",
                )
        elif kind == "function_call":
            name, call_id = item.get("name"), item.get("call_id")
            if not isinstance(name, str) or not isinstance(call_id, str):
                raise InvalidRequestError(
                    f"{where}: a function_call needs name and call_id", param=where
                )
            call_names[call_id] = name
            messages.append(
                Message.assistant(
                    str(item.get("arguments", "{}")),
                    channel="commentary",
                    recipient=f"functions.{name}",
                    content_type="<|constrain|>json",
                )
            )
        elif kind == "function_call_output":
            call_id = item.get("call_id")
            if call_id not in call_names:
                raise InvalidRequestError(
                    f"{where}: no function call with call_id {call_id!r} in this conversation",
                    param=f"{where}.call_id",
                )
            output = item.get("output", "")
            if not isinstance(output, str):
                output = _text_of(output, f"{where}.output")
            messages.append(Message.tool_result(f"functions.{call_names[call_id]}", output))
        elif kind == "reasoning":
            continue  # the model's own reasoning is kept server-side, by the thread
        elif kind == "item_reference":
            raise UnsupportedParameterError(
                f"{where}: item references are not supported; use previous_response_id",
                param=f"{where}.type",
            )
        else:
            raise InvalidRequestError(
                f"{where}: unknown input item type {kind!r}", param=f"{where}.type"
            )
    return messages, extra_instructions


# -- results → output items ----------------------------------------------------------------


@dataclass
class PendingCall:
    call_id: str
    name: str
    arguments: str


@dataclass
class ItemIds:
    """Ids for the output items, so that a stream's items and its final response agree."""

    reasoning: list[str] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)

    def take(self, kind: Literal["reasoning", "messages"], prefix: str) -> str:
        pool = getattr(self, kind)
        return pool.pop(0) if pool else new_id(prefix)


def reasoning_item(item_id: str, text: str) -> dict[str, Any]:
    return {
        "type": "reasoning",
        "id": item_id,
        "summary": [],
        "content": [{"type": "reasoning_text", "text": text}],
        "status": "completed",
    }


def message_item(item_id: str, text: str, status: str = "completed") -> dict[str, Any]:
    return {
        "type": "message",
        "id": item_id,
        "role": "assistant",
        "status": status,
        "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}],
    }


def function_call_item(call: PendingCall, item_id: str | None = None) -> dict[str, Any]:
    return {
        "type": "function_call",
        "id": item_id or new_id("fc"),
        "call_id": call.call_id,
        "name": call.name,
        "arguments": call.arguments,
        "status": "completed",
    }


def output_items(
    new_messages: list[Message],
    *,
    show_reasoning: bool,
    final_text: str | None,
    pending: PendingCall | None,
    ids: ItemIds | None = None,
) -> list[dict[str, Any]]:
    """The run's new assistant messages as Responses output items.

    Reasoning (the analysis channel) only where the agent shows it; the server's own tool
    calls and results stay in the run's timeline; a final answer that failed validation
    and was retried is left out (only the answer given is); a pending client call ends
    the output.
    """
    ids = ids or ItemIds()
    items: list[dict[str, Any]] = []
    finals = [m for m in new_messages if m.is_final]
    for m in new_messages:
        if m.role is not Role.ASSISTANT:
            continue
        if m.is_reasoning and show_reasoning:
            items.append(reasoning_item(ids.take("reasoning", "rs"), m.content))
        elif m.is_final and m is finals[-1]:
            text = final_text if final_text is not None else m.content
            items.append(message_item(ids.take("messages", "msg"), text))
    if pending is not None:
        items.append(function_call_item(pending))
    return items


def response_object(
    *,
    response_id: str,
    model: str,
    created_at: float,
    status: str,
    output: list[dict[str, Any]],
    req: CreateResponse,
    usage: dict[str, Any] | None = None,
    error: dict[str, Any] | None = None,
    incomplete: str | None = None,
) -> dict[str, Any]:
    """A `Response` object as OpenAI documents it."""
    text_cfg: dict[str, Any] = {"format": {"type": "text"}}
    if req.text and req.text.format:
        text_cfg = {"format": req.text.format}
    return {
        "id": response_id,
        "object": "response",
        "created_at": int(created_at),
        "completed_at": int(time.time())
        if status in ("completed", "failed", "incomplete")
        else None,
        "status": status,
        "error": error,
        "incomplete_details": {"reason": incomplete} if incomplete else None,
        "instructions": req.instructions,
        "max_output_tokens": req.max_output_tokens,
        "max_tool_calls": req.max_tool_calls,
        "model": model,
        "output": output,
        "parallel_tool_calls": bool(req.parallel_tool_calls)
        if req.parallel_tool_calls is not None
        else False,
        "previous_response_id": req.previous_response_id,
        "reasoning": {"effort": req.reasoning.effort if req.reasoning else None, "summary": None},
        "store": req.store is not False,
        "temperature": req.temperature if req.temperature is not None else 1.0,
        "text": text_cfg,
        "tool_choice": req.tool_choice if req.tool_choice is not None else "auto",
        "tools": list(req.tools or []),
        "top_p": req.top_p if req.top_p is not None else 1.0,
        "truncation": req.truncation or "disabled",
        "usage": usage,
        "user": req.user,
        "metadata": req.metadata or {},
    }


def usage_object(
    input_tokens: int, output_tokens: int, reasoning_tokens: int = 0
) -> dict[str, Any]:
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": reasoning_tokens},
        "total_tokens": input_tokens + output_tokens,
    }


# The items of a stored response that name a call, for a later function_call_output.
def call_names_of(output: list[dict[str, Any]]) -> dict[str, str]:
    return {
        str(it["call_id"]): str(it["name"])
        for it in output
        if it.get("type") == "function_call" and "call_id" in it
    }
