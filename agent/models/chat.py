"""`ChatCompletionsModel`: gpt-oss over `/v1/chat/completions`, mapped to harmony messages.

For servers that only expose chat (Ollama, hosted OpenAI-compatible endpoints such as
Bedrock, OpenRouter and Groq) or a vLLM run without our own rendering. The server renders
harmony and parses the completion; we map our messages to chat messages and its answer
back, so the rest of the framework sees the same `Message`s as with
`HarmonyCompletionsModel`.

Server differences handled (each has a test in tests/models/test_chat.py):

- **reasoning field** (response): vLLM returns the chain of thought as `reasoning` since
  vLLM PR #27752 (Oct 2025, following OpenAI's gpt-oss guidance and OpenRouter), and as
  `reasoning_content` before it (removed in PR #33402); Ollama and OpenRouter use
  `reasoning`. We read whichever is present, in messages and in stream deltas.
- **reasoning sent back**: while a turn's tool calls are ongoing, gpt-oss must see its
  own reasoning again (harmony keeps it until the turn's final answer). vLLM's gpt-oss
  chat path turns a `reasoning` (or `reasoning_content`) field on an assistant message
  into an analysis message before its tool calls (vLLM PR #28729); we send it there,
  only for the current turn, as harmony drops it after a final answer.
- **tool results by `tool_call_id`**: vLLM (PR #28729) finds the tool's name from the
  assistant message whose `tool_calls` hold the result's `tool_call_id`, and hosted
  endpoints reject a result whose id matches no call. Our messages carry no ids, so
  each request numbers its calls (`call_0`, ...) and pairs every result with the
  oldest unanswered call of the same tool. Older vLLM read the tool's `name` field
  instead; `server="vllm"` sends it too.
- **Ollama's reasoning levels**: Ollama's gpt-oss takes its level as a string ("low",
  "medium", "high") and ignores `think: true`; `server="ollama"` sends
  `reasoning_effort` and `reasoning: {"effort": ...}` as strings and `max_tokens`
  (Ollama's name for the limit).

A stream's content deltas are announced as `final`; when tool calls follow, the same
text ends as a `commentary` preamble (harmony's word for text shown while tools run).
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal

import openai
from harmonygraph.harmony import (
    ContentDelta,
    HeaderDone,
    Message,
    MessageDone,
    Role,
    visible_history,
)
from harmonygraph.harmony.messages import StopReason
from harmonygraph.harmony.parser import ParseEvent
from harmonygraph.harmony.prompt import DeveloperConfig
from harmonygraph.models._openai import OpenAICompatibleModel, usage_from
from harmonygraph.models.base import (
    ModelError,
    ModelRequest,
    ModelResponse,
    ModelSettings,
    ResponseDone,
    StreamEvent,
    Usage,
)
from harmonygraph.models.errors import RetryPolicy

__all__ = [
    "ChatCompletionsModel",
    "ServerKind",
    "chat_tools",
    "from_chat_message",
    "to_chat_messages",
]

ServerKind = Literal["vllm", "ollama", "openai"]
JSON_TYPE = "<|constrain|>json"  # how our parser records a `<|constrain|>json` header
REASONING_FIELDS = ("reasoning", "reasoning_content")


def _function_name(recipient: str) -> str:
    return recipient.removeprefix("functions.")


# -- our messages -> chat messages ----------------------------------------------------


def to_chat_messages(
    request: ModelRequest,
    *,
    reasoning_field: str = "reasoning",
    send_reasoning: bool = True,
    tool_names: bool = False,
) -> list[dict[str, Any]]:
    """The chat `messages` for `request`.

    A run of assistant messages (reasoning, a preamble, tool calls) becomes one chat
    assistant message; a final answer closes it. Reasoning rides on that message under
    `reasoning_field` for the current turn only (`visible_history`).
    """
    out: list[dict[str, Any]] = []
    if request.developer.instructions:
        out.append({"role": "system", "content": request.developer.instructions})
    pending: list[tuple[str, str]] = []  # (call id, function name) awaiting a result
    group: dict[str, Any] | None = None
    calls = 0

    def flush() -> None:
        nonlocal group
        if group is not None:
            msg: dict[str, Any] = {"role": "assistant", "content": group["content"] or None}
            if group["reasoning"] and send_reasoning:
                msg[reasoning_field] = "\n".join(group["reasoning"])
            if group["tool_calls"]:
                msg["tool_calls"] = group["tool_calls"]
            elif msg["content"] is None:
                msg["content"] = ""
            out.append(msg)
            group = None

    for m in visible_history(request.messages):
        if m.role is Role.USER:
            flush()
            out.append({"role": "user", "content": m.content})
        elif m.role is Role.TOOL:
            flush()
            name = _function_name(m.name or "")
            index = next((i for i, (_, n) in enumerate(pending) if n == name), None)
            if index is None:
                raise ModelError(
                    f"the result of tool {m.name!r} follows no call to it; the chat API needs "
                    "every tool result to answer an assistant tool call"
                )
            call_id, _ = pending.pop(index)
            msg = {"role": "tool", "tool_call_id": call_id, "content": m.content}
            if tool_names:
                msg["name"] = name
            out.append(msg)
        else:
            if group is None:
                group = {"content": "", "reasoning": [], "tool_calls": []}
            if m.is_tool_call:
                call_id = f"call_{calls}"
                calls += 1
                name = _function_name(m.recipient or "")
                group["tool_calls"].append(
                    {
                        "id": call_id,
                        "type": "function",
                        "function": {"name": name, "arguments": m.content},
                    }
                )
                pending.append((call_id, name))
            elif m.is_reasoning:
                group["reasoning"].append(m.content)
            else:
                group["content"] += m.content
                if m.is_final or m.channel is None:
                    flush()
    flush()
    return out


def chat_tools(developer: DeveloperConfig) -> list[dict[str, Any]]:
    """The developer's function tools as chat `tools`."""
    tools = []
    for ns in developer.tools:
        for tool in ns.tools:
            function: dict[str, Any] = {"name": tool.name}
            if tool.description:
                function["description"] = tool.description
            function["parameters"] = tool.parameters or {"type": "object", "properties": {}}
            tools.append({"type": "function", "function": function})
    return tools


# -- chat answers -> our messages ------------------------------------------------------


def _reasoning_of(data: dict[str, Any]) -> str | None:
    for name in REASONING_FIELDS:
        value = data.get(name)
        if isinstance(value, str) and value:
            return value
    return None


def from_chat_message(message: dict[str, Any], finish_reason: str | None) -> list[Message]:
    """Harmony messages for one chat answer: reasoning, then text, then tool calls."""
    out: list[Message] = []
    reasoning = _reasoning_of(message)
    calls = message.get("tool_calls") or []
    content = message.get("content") or ""
    if reasoning:
        out.append(Message(Role.ASSISTANT, reasoning, channel="analysis", stop="end"))
    if content:
        if calls:
            out.append(Message(Role.ASSISTANT, content, channel="commentary", stop="end"))
        else:
            out.append(Message(Role.ASSISTANT, content, channel="final", stop="return"))
    for call in calls:
        function = call.get("function") or {}
        out.append(
            Message(
                Role.ASSISTANT,
                function.get("arguments") or "",
                channel="commentary",
                recipient=f"functions.{function.get('name', '')}",
                content_type=JSON_TYPE,
                stop="call",
            )
        )
    if out and finish_reason == "length":
        last = out[-1]
        out[-1] = Message(
            last.role, last.content, last.channel, last.recipient, last.content_type, stop=None
        )
    return out


@dataclass
class _Building:
    index: int
    channel: str
    recipient: str | None = None
    content_type: str | None = None
    parts: list[str] = field(default_factory=list)
    call_id: str | None = None


class _ChatStreamAssembler:
    """Chat stream deltas in, harmony parse events out (the same events StreamParser gives)."""

    def __init__(self) -> None:
        self.next_index = 0
        self.current: _Building | None = None  # the open reasoning or text message
        self.calls: dict[int, _Building] = {}  # tool calls by their delta index
        self.done: list[tuple[int, Message]] = []
        self.reasoning: list[str] = []
        self.content: list[str] = []

    def _open(self, channel: str, events: list[ParseEvent], **kw: Any) -> _Building:
        b = _Building(self.next_index, channel, **kw)
        self.next_index += 1
        events.append(HeaderDone(b.index, Role.ASSISTANT, channel, b.recipient, b.content_type))
        return b

    def _close_current(self, events: list[ParseEvent]) -> None:
        b = self.current
        if b is not None:
            msg = Message(Role.ASSISTANT, "".join(b.parts), channel=b.channel, stop="end")
            self.done.append((b.index, msg))
            events.append(MessageDone(b.index, msg))
            self.current = None

    def _text(self, channel: str, text: str, events: list[ParseEvent]) -> None:
        if self.current is None or self.current.channel != channel:
            self._close_current(events)
            self.current = self._open(channel, events)
        self.current.parts.append(text)
        events.append(ContentDelta(self.current.index, channel, None, text))

    def feed(self, delta: dict[str, Any]) -> list[ParseEvent]:
        events: list[ParseEvent] = []
        reasoning = _reasoning_of(delta)
        if reasoning:
            self.reasoning.append(reasoning)
            self._text("analysis", reasoning, events)
        if delta.get("content"):
            self.content.append(delta["content"])
            self._text("final", delta["content"], events)
        for call in delta.get("tool_calls") or []:
            key = int(call.get("index", 0))
            function = call.get("function") or {}
            b = self.calls.get(key)
            if b is None:
                self._close_current(events)
                b = self._open(
                    "commentary",
                    events,
                    recipient=f"functions.{function.get('name', '')}",
                    content_type=JSON_TYPE,
                    call_id=call.get("id"),
                )
                self.calls[key] = b
            args = function.get("arguments")
            if args:
                b.parts.append(args)
                events.append(ContentDelta(b.index, "commentary", b.recipient, args))
        return events

    def finish(self, finish_reason: str | None) -> tuple[list[ParseEvent], list[Message]]:
        events: list[ParseEvent] = []
        current = self.current
        if current is not None and current.channel == "final":
            # Text before tool calls is a preamble; alone, it is the final answer.
            stop: StopReason | None = "end" if self.calls else "return"
            channel = "commentary" if self.calls else "final"
            msg = Message(Role.ASSISTANT, "".join(current.parts), channel=channel, stop=stop)
            self.done.append((current.index, msg))
            events.append(MessageDone(current.index, msg))
            self.current = None
        self._close_current(events)
        for b in self.calls.values():
            msg = Message(
                Role.ASSISTANT,
                "".join(b.parts),
                channel="commentary",
                recipient=b.recipient,
                content_type=b.content_type,
                stop="call",
            )
            self.done.append((b.index, msg))
            events.append(MessageDone(b.index, msg))
        messages = [m for _, m in sorted(self.done, key=lambda item: item[0])]
        if messages and finish_reason == "length":
            last = messages[-1]
            messages[-1] = Message(
                last.role, last.content, last.channel, last.recipient, last.content_type
            )
        return events, messages

    def raw(self) -> dict[str, Any]:
        """The assembled answer as a chat message, for `ModelResponse.raw`."""
        msg: dict[str, Any] = {"role": "assistant", "content": "".join(self.content) or None}
        if self.reasoning:
            msg["reasoning"] = "".join(self.reasoning)
        if self.calls:
            msg["tool_calls"] = [
                {
                    "id": b.call_id,
                    "type": "function",
                    "function": {
                        "name": _function_name(b.recipient or ""),
                        "arguments": "".join(b.parts),
                    },
                }
                for b in self.calls.values()
            ]
        return msg


# -- the model -------------------------------------------------------------------------


class ChatCompletionsModel(OpenAICompatibleModel):
    """gpt-oss over `/v1/chat/completions` (vLLM, Ollama, hosted OpenAI-compatible APIs).

    `server` picks the known differences (see the module docstring); `reasoning_field`
    names the field reasoning is sent back in (`reasoning_content` for vLLM before
    PR #27752); `send_reasoning=False` for endpoints that reject it on input.
    """

    endpoint = "chat/completions"

    def __init__(
        self,
        model: str | None = None,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        settings: ModelSettings | None = None,
        client: openai.AsyncOpenAI | None = None,
        retry_policy: RetryPolicy | None = None,
        server: ServerKind = "vllm",
        reasoning_field: str = "reasoning",
        send_reasoning: bool = True,
    ) -> None:
        super().__init__(
            model,
            base_url=base_url,
            api_key=api_key,
            settings=settings,
            client=client,
            retry_policy=retry_policy,
        )
        if server not in ("vllm", "ollama", "openai"):
            raise ValueError(f"server must be vllm, ollama or openai, not {server!r}")
        self.server: ServerKind = server
        self.reasoning_field = reasoning_field
        self.send_reasoning = send_reasoning

    def request_body(self, request: ModelRequest, *, stream: bool) -> dict[str, Any]:
        """The keyword arguments for `client.chat.completions.create`."""
        if request.system.builtin_tools:
            names = ", ".join(ns.name for ns in request.system.builtin_tools)
            raise ModelError(
                f"built-in tools ({names}) need the harmony prompt, which the chat API does not "
                "expose; use HarmonyCompletionsModel (api='completions')"
            )
        settings = self.settings_for(request)
        level = request.system.reasoning
        body: dict[str, Any] = {
            "model": self.name,
            "messages": to_chat_messages(
                request,
                reasoning_field=self.reasoning_field,
                send_reasoning=self.send_reasoning,
                tool_names=self.server == "vllm",
            ),
            "temperature": settings.temperature,
            "top_p": settings.top_p,
            "reasoning_effort": level,
            "stream": stream,
            "timeout": settings.timeout,
        }
        extra: dict[str, Any] = {}
        if self.server == "ollama":
            body["max_tokens"] = settings.max_tokens
            extra["reasoning"] = {"effort": level}
        else:
            body["max_completion_tokens"] = settings.max_tokens
        tools = chat_tools(request.developer)
        if tools:
            body["tools"] = tools
            body["tool_choice"] = "auto"
        fmt = request.developer.response_format
        if fmt is not None:
            schema: dict[str, Any] = {"name": fmt.name, "schema": fmt.schema}
            if fmt.description:
                schema["description"] = fmt.description
            body["response_format"] = {"type": "json_schema", "json_schema": schema}
        if settings.seed is not None:
            body["seed"] = settings.seed
        if stream:
            body["stream_options"] = {"include_usage": True}
        extra.update(settings.extra_body)
        if extra:
            body["extra_body"] = extra
        return body

    # The chat API has no way to leave the reasoning free and constrain only the answer.
    supports_constrained_output = False

    async def complete(self, request: ModelRequest) -> ModelResponse:
        settings = self.settings_for(request)
        body = self.request_body(request, stream=False)
        started = time.perf_counter()
        completion = await self.call(settings, lambda: self.client.chat.completions.create(**body))
        latency = time.perf_counter() - started
        if not completion.choices:
            raise ModelError(
                f"{self.base_url} answered with no choices; is it an OpenAI-compatible server?"
            )
        choice = completion.choices[0]
        message = choice.message.model_dump(exclude_none=True)
        messages = from_chat_message(message, choice.finish_reason)
        return ModelResponse(
            messages=tuple(messages),
            usage=usage_from(completion.usage),
            raw=json.dumps(message, ensure_ascii=False),
            finish_reason=choice.finish_reason,
            model=self.name,
            latency_s=latency,
        )

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamEvent]:
        settings = self.settings_for(request)
        body = self.request_body(request, stream=True)
        started = time.perf_counter()
        chunks = await self.call(settings, lambda: self.client.chat.completions.create(**body))
        assembler = _ChatStreamAssembler()
        usage = Usage()
        finish_reason: str | None = None
        try:
            async for chunk in chunks:
                if chunk.usage is not None:
                    usage = usage_from(chunk.usage)
                for choice in chunk.choices:
                    delta = choice.delta.model_dump(exclude_none=True)
                    for event in assembler.feed(delta):
                        yield event
                    if choice.finish_reason is not None:
                        finish_reason = choice.finish_reason
        except openai.OpenAIError as exc:
            raise await self.translate(exc, settings) from exc
        finally:
            await chunks.close()  # on cancellation too: the server stops generating
        events, messages = assembler.finish(finish_reason)
        for event in events:
            yield event
        yield ResponseDone(
            ModelResponse(
                messages=tuple(messages),
                usage=usage,
                raw=json.dumps(assembler.raw(), ensure_ascii=False),
                finish_reason=finish_reason,
                model=self.name,
                latency_s=time.perf_counter() - started,
            )
        )
