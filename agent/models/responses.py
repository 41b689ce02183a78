"""`ResponsesModel`: gpt-oss over `/v1/responses` (vLLM, Ollama, Bedrock, OpenRouter).

The Responses API is the one OpenAI designed with gpt-oss's shape in mind: reasoning is
an output item of its own, a tool call is a `function_call` item with a `call_id`, and a
conversation can be continued from its last response on a server that stores state.

Mapping (our harmony messages ↔ input and output items):

- user → `{"role": "user", "content": ...}`;
- the current turn's reasoning → a `reasoning` item with `reasoning_text` content (vLLM
  turns it back into an analysis message; harmony drops earlier turns' reasoning, and so
  do we);
- a preamble or a final answer → an assistant `message` item with `output_text`;
- a tool call → `function_call` (`call_id`, `name`, `arguments`); its result →
  `function_call_output` with the same `call_id`. Names follow the chat client's
  `ChatToolMap` (MCP namespaces round-trip; leaked header tokens are cleaned);
- the response format → `text.format` (`json_schema`) on steps without function tools
  only, as on the chat path (a grammar over a tool step could force the call into the
  JSON); on tool steps it is described in the instructions.

Output: `reasoning` items (their `content` text, or their `summary` when a server sends
only that) → analysis; `message` → final, or a commentary preamble when function calls
follow it; `function_call` → a tool call. Usage from `usage` (`input_tokens`,
`output_tokens`, `input_tokens_details.cached_tokens`); a response with status
`incomplete` (`max_output_tokens`) finishes with "length".

`store=True` sends `store: true` and continues each request from the previous response
(`previous_response_id`) when the conversation still begins with it, sending only the
new items (the tool results, with the server's own `call_id`s). vLLM stores responses
when started with `VLLM_ENABLE_RESPONSES_API_STORE=1`; OpenRouter and Bedrock do not
keep them for gpt-oss, so the default sends the whole conversation each step.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import openai
from harmonygraph.harmony import (
    ContentDelta,
    ConversationRenderer,
    HeaderDone,
    Message,
    MessageDone,
    Role,
    visible_history,
)
from harmonygraph.harmony.parser import ParseEvent
from harmonygraph.models._openai import OpenAICompatibleModel
from harmonygraph.models.base import (
    ModelError,
    ModelRequest,
    ModelResponse,
    ModelSettings,
    ResponseDone,
    StreamEvent,
    Usage,
)
from harmonygraph.models.chat import (
    JSON_TYPE,
    ChatToolMap,
    response_format_section,
    split_reasoning_tags,
)
from harmonygraph.models.errors import RetryPolicy

__all__ = ["ResponsesModel", "from_output_items", "to_input_items"]


def to_input_items(
    messages: Sequence[Message],
    names: ChatToolMap,
    *,
    pending: Sequence[tuple[str, str]] = (),
    first_call: int = 0,
) -> list[dict[str, Any]]:
    """Input items for `messages`. `pending`: (call_id, name) of calls made before them
    (a stored response's), answered by the first tool results here."""
    out: list[dict[str, Any]] = []
    waiting = list(pending)
    calls = first_call
    for m in messages:
        if m.role is Role.USER:
            out.append({"role": "user", "content": m.content})
        elif m.role is Role.TOOL:
            name = names.chat_name(m.name or "")
            index = next((i for i, (_, n) in enumerate(waiting) if n == name), None)
            if index is None:
                raise ModelError(
                    f"the result of tool {m.name!r} follows no call to it; the Responses API "
                    "needs every function_call_output to answer a function_call"
                )
            call_id, _ = waiting.pop(index)
            out.append({"type": "function_call_output", "call_id": call_id, "output": m.content})
        elif m.role is Role.ASSISTANT:
            if m.is_tool_call:
                call_id = f"call_{calls}"
                calls += 1
                name = names.chat_name(m.recipient or "")
                out.append(
                    {
                        "type": "function_call",
                        "call_id": call_id,
                        "name": name,
                        "arguments": m.content,
                    }
                )
                waiting.append((call_id, name))
            elif m.is_reasoning:
                out.append(
                    {
                        "type": "reasoning",
                        "id": f"rs_{len(out)}",
                        "summary": [],
                        "content": [{"type": "reasoning_text", "text": m.content}],
                    }
                )
            else:
                out.append(
                    {
                        "type": "message",
                        "role": "assistant",
                        "content": [{"type": "output_text", "text": m.content, "annotations": []}],
                    }
                )
        # system/developer messages in the history are the request's own config
    return out


def _item_text(item: dict[str, Any], kinds: tuple[str, ...]) -> str:
    parts = item.get("content") or []
    return "".join(
        str(p.get("text") or "") for p in parts if isinstance(p, dict) and p.get("type") in kinds
    )


def _reasoning_text(item: dict[str, Any]) -> str:
    text = _item_text(item, ("reasoning_text", "text"))
    if not text:
        summary = item.get("summary") or []
        text = "\n".join(str(s.get("text") or "") for s in summary if isinstance(s, dict))
    return text


def from_output_items(
    items: Sequence[dict[str, Any]], names: ChatToolMap, *, cut: bool = False
) -> tuple[list[Message], list[tuple[str, str]]]:
    """Our messages for a response's output, and its calls as (call_id, chat name)."""
    out: list[Message] = []
    calls: list[tuple[str, str]] = []
    has_calls = any(i.get("type") == "function_call" for i in items)
    for item in items:
        kind = item.get("type")
        if kind == "reasoning":
            text = _reasoning_text(item)
            if text:
                out.append(Message(Role.ASSISTANT, text, channel="analysis", stop="end"))
        elif kind == "message":
            text = _item_text(item, ("output_text", "text"))
            reasoning, text = split_reasoning_tags(text)
            if reasoning:
                out.append(Message(Role.ASSISTANT, reasoning, channel="analysis", stop="end"))
            if text:
                later_call = has_calls and any(
                    i.get("type") == "function_call" for i in items[items.index(item) :]
                )
                if later_call:
                    out.append(Message(Role.ASSISTANT, text, channel="commentary", stop="end"))
                else:
                    out.append(Message(Role.ASSISTANT, text, channel="final", stop="return"))
        elif kind == "function_call":
            name = str(item.get("name") or "")
            out.append(
                Message(
                    Role.ASSISTANT,
                    str(item.get("arguments") or ""),
                    channel="commentary",
                    recipient=names.recipient(name),
                    content_type=JSON_TYPE,
                    stop="call",
                )
            )
            calls.append((str(item.get("call_id") or item.get("id") or ""), name))
    if out and cut:
        last = out[-1]
        out[-1] = Message(last.role, last.content, last.channel, last.recipient, last.content_type)
    return out, calls


def _usage(data: dict[str, Any] | None) -> Usage:
    if not isinstance(data, dict):
        return Usage()
    details = data.get("input_tokens_details") or {}
    return Usage(
        int(data.get("input_tokens") or 0),
        int(data.get("output_tokens") or 0),
        int(details.get("cached_tokens") or 0) if isinstance(details, dict) else 0,
    )


@dataclass
class _Stored:
    """The last stored response, to continue from with `previous_response_id`."""

    response_id: str
    conversation: tuple[Message, ...]  # the request's messages and the response's
    calls: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class _Item:
    index: int
    channel: str
    recipient: str | None = None
    parts: list[str] = field(default_factory=list)


class ResponsesModel(OpenAICompatibleModel):
    """gpt-oss over `/v1/responses`, through the `openai` SDK's `client.responses.create`.

    `store=True` keeps state on the server and continues from `previous_response_id`;
    `constrain_with_tools=True` sends the response format on tool steps too.
    """

    endpoint = "responses"
    supports_constrained_output = False

    def __init__(
        self,
        model: str | None = None,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        settings: ModelSettings | None = None,
        client: openai.AsyncOpenAI | None = None,
        retry_policy: RetryPolicy | None = None,
        store: bool = False,
        constrain_with_tools: bool = False,
    ) -> None:
        super().__init__(
            model,
            base_url=base_url,
            api_key=api_key,
            settings=settings,
            client=client,
            retry_policy=retry_policy,
        )
        self.store = store
        self.constrain_with_tools = constrain_with_tools
        self._stored: _Stored | None = None

    # -- request ----------------------------------------------------------------------
    def _continuation(self, request: ModelRequest) -> _Stored | None:
        stored = self._stored
        if not self.store or stored is None:
            return None
        prefix = stored.conversation
        if len(request.messages) > len(prefix) and request.messages[: len(prefix)] == prefix:
            return stored
        return None

    def request_body(self, request: ModelRequest, *, stream: bool) -> dict[str, Any]:
        """The keyword arguments for `client.responses.create`."""
        if request.system.builtin_tools:
            builtins = ", ".join(ns.name for ns in request.system.builtin_tools)
            raise ModelError(
                f"built-in tools ({builtins}) need the harmony prompt, which /v1/responses does not "
                "take from a client; use api='completions' (vLLM) or api='ollama-raw' (Ollama)"
            )
        settings = self.settings_for(request)
        names = ChatToolMap.of(request.developer)
        fmt = request.developer.response_format
        with_format = fmt is not None and (
            self.constrain_with_tools or not request.developer.has_function_tools
        )
        instructions = request.developer.instructions or ""
        if fmt is not None and not with_format:
            section = response_format_section(fmt)
            instructions = f"{instructions}\n\n{section}" if instructions else section
        stored = self._continuation(request)
        body: dict[str, Any] = {"model": self.name}
        if stored is not None:
            new = request.messages[len(stored.conversation) :]
            body["previous_response_id"] = stored.response_id
            body["input"] = to_input_items(
                new, names, pending=stored.calls, first_call=len(request.messages)
            )
        else:
            body["input"] = to_input_items(visible_history(request.messages), names)
        if instructions:
            body["instructions"] = instructions
        tools = []
        for ns in request.developer.tools:
            for tool in ns.tools:
                tools.append(
                    {
                        "type": "function",
                        "name": names.chat_name(f"{ns.name}.{tool.name}"),
                        "description": tool.description or "",
                        "parameters": tool.parameters or {"type": "object", "properties": {}},
                    }
                )
        if tools:
            body["tools"] = tools
            body["tool_choice"] = "auto"
        if fmt is not None and with_format:
            text_format: dict[str, Any] = {
                "type": "json_schema",
                "name": fmt.name,
                "schema": fmt.schema,
            }
            if fmt.description:
                text_format["description"] = fmt.description
            body["text"] = {"format": text_format}
        body.update(
            reasoning={"effort": request.system.reasoning},
            max_output_tokens=settings.max_tokens,
            temperature=settings.temperature,
            top_p=settings.top_p,
            store=self.store,
            stream=stream,
            timeout=settings.timeout,
        )
        extra = dict(settings.extra_body)
        if settings.seed is not None:
            extra.setdefault("seed", settings.seed)  # vLLM's extension; not in the SDK
        if extra:
            body["extra_body"] = extra
        return body

    # -- answers ----------------------------------------------------------------------
    def _finish(
        self,
        request: ModelRequest,
        data: dict[str, Any],
        messages: list[Message],
        calls: list[tuple[str, str]],
        latency: float,
    ) -> ModelResponse:
        status = data.get("status")
        if status == "failed":
            error = data.get("error") or {}
            message = error.get("message") if isinstance(error, dict) else error
            raise ModelError(
                f"{self.base_url}/responses failed: {message or 'no reason given'}; "
                "check the server's log"
            )
        incomplete = status == "incomplete"
        finish = "length" if incomplete else ("tool_calls" if calls else "stop")
        usage = _usage(data.get("usage"))
        if usage.input_tokens == 0:
            renderer = ConversationRenderer(request.system, request.developer)
            prompt = renderer.render(request.messages).length
            usage = Usage(prompt, usage.output_tokens, usage.cached_tokens, estimated=True)
        response_id = data.get("id")
        if self.store and isinstance(response_id, str) and response_id:
            self._stored = _Stored(
                response_id, tuple(request.messages) + tuple(messages), list(calls)
            )
        return ModelResponse(
            messages=tuple(messages),
            usage=usage,
            raw=json.dumps(data.get("output") or [], ensure_ascii=False),
            finish_reason=finish,
            model=self.name,
            latency_s=latency,
        )

    async def complete(self, request: ModelRequest) -> ModelResponse:
        settings = self.settings_for(request)
        body = self.request_body(request, stream=False)
        started = time.perf_counter()
        response = await self.call(settings, lambda: self.client.responses.create(**body))
        latency = time.perf_counter() - started
        data = response.model_dump(exclude_none=True)
        names = ChatToolMap.of(request.developer)
        cut = data.get("status") == "incomplete"
        messages, calls = from_output_items(data.get("output") or [], names, cut=cut)
        return self._finish(request, data, messages, calls, latency)

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamEvent]:
        settings = self.settings_for(request)
        body = self.request_body(request, stream=True)
        names = ChatToolMap.of(request.developer)
        started = time.perf_counter()
        events_in = await self.call(settings, lambda: self.client.responses.create(**body))
        items: dict[int, _Item] = {}
        final: dict[str, Any] | None = None
        next_index = 0
        try:
            async for event in events_in:
                data = event.model_dump(exclude_none=True)
                kind = data.get("type", "")
                out: list[ParseEvent] = []
                if kind == "response.output_item.added":
                    item = data.get("item") or {}
                    position = int(data.get("output_index", len(items)))
                    item_kind = str(item.get("type") or "")
                    if item_kind == "reasoning":
                        building = _Item(next_index, "analysis")
                    elif item_kind == "function_call":
                        recipient = names.recipient(str(item.get("name") or ""))
                        building = _Item(next_index, "commentary", recipient)
                    elif item_kind == "message":
                        building = _Item(next_index, "final")
                    else:
                        continue  # a server's own tool item (web search...): not ours
                    next_index += 1
                    items[position] = building
                    content_type = JSON_TYPE if building.recipient else None
                    out.append(
                        HeaderDone(
                            building.index,
                            Role.ASSISTANT,
                            building.channel,
                            building.recipient,
                            content_type,
                        )
                    )
                elif kind in (
                    "response.reasoning_text.delta",
                    "response.reasoning_summary_text.delta",
                    "response.output_text.delta",
                    "response.function_call_arguments.delta",
                ):
                    building_or_none = items.get(int(data.get("output_index", -1)))
                    delta = str(data.get("delta") or "")
                    if building_or_none is not None and delta:
                        building_or_none.parts.append(delta)
                        out.append(
                            ContentDelta(
                                building_or_none.index,
                                building_or_none.channel,
                                building_or_none.recipient,
                                delta,
                            )
                        )
                elif kind in ("response.completed", "response.incomplete", "response.failed"):
                    final = data.get("response") or {}
                elif kind == "error":
                    raise ModelError(
                        f"{self.base_url}/responses failed mid-stream: "
                        f"{data.get('message') or data.get('code') or 'no reason given'}"
                    )
                for parse_event in out:
                    yield parse_event
        except openai.OpenAIError as exc:
            raise await self.translate(exc, settings) from exc
        finally:
            await events_in.close()
        if final is None:
            raise ModelError(
                f"{self.base_url}/responses ended its stream without response.completed; "
                "the server or a proxy cut the answer: retry, or check the server's log"
            )
        output = final.get("output") or []
        if not output:  # a server that leaves the completed event's output empty
            output = [_as_output_item(b) for _, b in sorted(items.items())]
        cut = final.get("status") == "incomplete"
        messages, calls = from_output_items(output, names, cut=cut)
        indexes = [b.index for _, b in sorted(items.items())]
        for k, message in enumerate(messages):
            index = indexes[k] if k < len(indexes) and len(indexes) == len(messages) else k
            yield MessageDone(index, message)
        yield ResponseDone(
            self._finish(request, final, messages, calls, time.perf_counter() - started)
        )


def _as_output_item(building: _Item) -> dict[str, Any]:
    text = "".join(building.parts)
    if building.channel == "analysis":
        return {"type": "reasoning", "content": [{"type": "reasoning_text", "text": text}]}
    if building.recipient:
        name = building.recipient.partition(".")[2] or building.recipient
        return {"type": "function_call", "name": name, "arguments": text}
    return {"type": "message", "content": [{"type": "output_text", "text": text}]}
