"""`ChatCompletionsModel`: gpt-oss over `/v1/chat/completions`, mapped to harmony messages.

For servers that only expose chat (Ollama, hosted OpenAI-compatible endpoints such as
Bedrock, OpenRouter and Groq) or a vLLM run without our own rendering. The server renders
harmony and parses the completion; we map our messages to chat messages and its answer
back, so the rest of the framework sees the same `Message`s as with
`HarmonyCompletionsModel`.

Server differences handled (each has a test in tests/models/):

- **which server** (`server="auto"`, the default): read once from `/v1/models`
  (`owned_by: "vllm"` or Ollama's `"library"`), vLLM's `/version` or Ollama's
  `/api/version`, and from answers (`system_fingerprint: "fp_ollama"`). A server that
  says nothing (hosted APIs) gets both `max_tokens` and `max_completion_tokens`, so the
  token limit holds whichever name it reads; vLLM and OpenAI get `max_completion_tokens`,
  Ollama `max_tokens` (its only name for the limit).
- **reasoning field** (response): vLLM returns the chain of thought as `reasoning` since
  vLLM PR #27752 (Oct 2025, following OpenAI's gpt-oss guidance and OpenRouter), and as
  `reasoning_content` before it (removed in PR #33402); Ollama and OpenRouter use
  `reasoning`. We read whichever is present, in messages and in stream deltas. Bedrock's
  OpenAI-compatible endpoint wraps it in `<reasoning>…</reasoning>` at the start of the
  content instead; that is split off into the analysis message too.
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
  instead; vLLM gets it too.
- **tool names**: chat has one flat list of functions, harmony has namespaces. A tool of
  the `functions` namespace keeps its name; a tool of another namespace (an MCP server's
  `git.git_status`) keeps its bare name when no other namespace has one like it, else
  becomes `git__git_status`; answers map back to the full recipient. Names a server's
  own harmony parser returned with header tokens leaked into them
  (`create_event<|channel|>analysis`, ollama#11704) are cleaned against the registered
  names (`harmony.repairs.clean_tool_name`); one that names no tool is kept as the
  server sent it, so the loop tells the model its call was not understood.
- **response_format**: a server applies it as a grammar. vLLM gates the grammar on the
  gpt-oss reasoning parser's end-of-reasoning, which older versions put at the first
  `<|end|>` after the analysis, so a tool call would be forced into the JSON too, and
  Ollama applied it to the whole completion. So `response_format` is sent only on steps
  with no function tools, where the answer is the only possible output; on tool steps
  the format is described in the instructions instead (`# Response Formats`) and the
  engine validates the answer. `constrain_with_tools=True` sends it on every step, for a
  server known to constrain only the final channel.
- **Ollama's reasoning levels**: Ollama's gpt-oss takes its level as a string ("low",
  "medium", "high") and ignores `think: true`; Ollama gets `reasoning_effort` and
  `reasoning: {"effort": ...}` as strings.
- **usage**: a server that reports `prompt_tokens` 0 (or no usage) gets the prompt
  counted from our own harmony rendering of the request, and the completion from its
  text; `Usage.estimated` says so.
- **Groq's `tool_use_failed`**: Groq validates tool calls itself and answers HTTP 400
  (or an error event mid-stream) carrying the model's output in `failed_generation`.
  A failed call (`{"name": ..., "arguments": ...}`) is recovered as the tool call it
  was, so the tool registry answers the model with its validation error; harmony text is
  parsed; anything else is `ToolUseFailedError`, one line.

A stream's content deltas are announced as `final`; when tool calls follow, the same
text ends as a `commentary` preamble (harmony's word for text shown while tools run).
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import openai
from harmonygraph.harmony import (
    ContentDelta,
    ConversationRenderer,
    HarmonyParseError,
    HeaderDone,
    Message,
    MessageDone,
    Role,
    get_encoding,
    parse_completion_text,
    visible_history,
)
from harmonygraph.harmony.messages import StopReason
from harmonygraph.harmony.parser import ParseEvent
from harmonygraph.harmony.prompt import DeveloperConfig, ResponseFormat
from harmonygraph.harmony.repairs import ToolNameError, clean_tool_name
from harmonygraph.models._openai import OpenAICompatibleModel, usage_from
from harmonygraph.models._server import ServerInfo, probe_server
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
    "ChatToolMap",
    "ServerKind",
    "ToolUseFailedError",
    "chat_tools",
    "from_chat_message",
    "split_reasoning_tags",
    "to_chat_messages",
]

ServerKind = Literal["auto", "vllm", "ollama", "openai"]
_Resolved = Literal["vllm", "ollama", "openai", "unknown"]
JSON_TYPE = "<|constrain|>json"  # how our parser records a `<|constrain|>json` header
REASONING_FIELDS = ("reasoning", "reasoning_content")
REASONING_OPEN, REASONING_CLOSE = "<reasoning>", "</reasoning>"


class ToolUseFailedError(ModelError):
    """The server rejected the model's tool call and what it sent back is no tool call."""


# -- tool names: harmony namespaces <-> chat's flat function list ------------------------


@dataclass(frozen=True)
class ChatToolMap:
    """Chat function names for a request's tools, and the harmony recipient of each."""

    to_recipient: dict[str, str] = field(default_factory=dict)
    to_chat: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, developer: DeveloperConfig) -> ChatToolMap:
        counts: dict[str, int] = {}
        for ns in developer.tools:
            for tool in ns.tools:
                counts[tool.name] = counts.get(tool.name, 0) + 1
        to_recipient: dict[str, str] = {}
        to_chat: dict[str, str] = {}
        for ns in developer.tools:
            for tool in ns.tools:
                own = ns.name == "functions" or counts[tool.name] == 1
                name = tool.name if own else f"{ns.name}__{tool.name}"
                recipient = f"{ns.name}.{tool.name}"
                to_recipient.setdefault(name, recipient)
                to_chat[recipient] = name
        return cls(to_recipient, to_chat)

    def chat_name(self, recipient: str) -> str:
        """The chat function name for a recipient (`functions.f` → `f`)."""
        return self.to_chat.get(recipient) or recipient.removeprefix("functions.")

    def recipient(self, name: str) -> str:
        """The recipient for a function name a server returned, cleaned of leaked tokens."""
        if name in self.to_recipient:
            return self.to_recipient[name]
        try:
            cleaned = clean_tool_name(name, self.to_recipient or None)
        except ToolNameError:
            if "." in name and name.partition(".")[2] in self.to_recipient:
                cleaned = name.partition(".")[2]  # `functions.f` sent back as the name
            elif name in self.to_chat:
                return name  # the full recipient (`git.git_status`)
            else:
                return f"functions.{name}"  # the loop answers the model: unknown tool
        return self.to_recipient.get(cleaned, f"functions.{cleaned}")


def _function_name(recipient: str) -> str:
    return recipient.removeprefix("functions.")


# -- our messages -> chat messages ----------------------------------------------------


def to_chat_messages(
    request: ModelRequest,
    *,
    reasoning_field: str = "reasoning",
    send_reasoning: bool = True,
    tool_names: bool = False,
    describe_format: bool = False,
) -> list[dict[str, Any]]:
    """The chat `messages` for `request`.

    A run of assistant messages (reasoning, a preamble, tool calls) becomes one chat
    assistant message; a final answer closes it. Reasoning rides on that message under
    `reasoning_field` for the current turn only (`visible_history`). `describe_format`
    appends the response format to the instructions, as harmony's developer message has it.
    """
    out: list[dict[str, Any]] = []
    names = ChatToolMap.of(request.developer)
    instructions = request.developer.instructions or ""
    fmt = request.developer.response_format
    if describe_format and fmt is not None:
        section = response_format_section(fmt)
        instructions = f"{instructions}\n\n{section}" if instructions else section
    if instructions:
        out.append({"role": "system", "content": instructions})
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
            name = names.chat_name(m.name or "")
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
                name = names.chat_name(m.recipient or "")
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


def response_format_section(fmt: ResponseFormat) -> str:
    """The `# Response Formats` section harmony's developer message gives a format."""
    section = f"# Response Formats\n\n## {fmt.name}\n\n"
    if fmt.description:
        section += "".join(f"// {line}\n" for line in fmt.description.splitlines())
    return section + json.dumps(fmt.schema, ensure_ascii=False, separators=(",", ":"))


def chat_tools(developer: DeveloperConfig) -> list[dict[str, Any]]:
    """The developer's function tools as chat `tools` (names per `ChatToolMap`)."""
    names = ChatToolMap.of(developer)
    tools = []
    for ns in developer.tools:
        for tool in ns.tools:
            function: dict[str, Any] = {"name": names.chat_name(f"{ns.name}.{tool.name}")}
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


def split_reasoning_tags(content: str) -> tuple[str | None, str]:
    """`(reasoning, answer)` for content that opens with `<reasoning>…</reasoning>`
    (Bedrock's OpenAI-compatible endpoint); `(None, content)` for any other content."""
    stripped = content.lstrip()
    if not stripped.startswith(REASONING_OPEN):
        return None, content
    body = stripped[len(REASONING_OPEN) :]
    inner, closed, rest = body.partition(REASONING_CLOSE)
    if not closed:
        return inner.strip(), ""  # cut inside the reasoning (max tokens)
    return inner.strip(), rest.lstrip()


# A server with its harmony parser off (transformers serve, some proxies) streams the raw
# completion as content: its markup means the text is harmony, not a final answer.
_HARMONY_MARKUP = ("<|channel|>", "<|message|>", "<|start|>")


def _raw_harmony(content: str) -> list[Message] | None:
    """The messages of `content` read as a raw harmony completion, or None if it is not one."""
    if not any(mark in content for mark in _HARMONY_MARKUP):
        return None
    try:
        return list(parse_completion_text(content).messages)
    except HarmonyParseError:
        return None


def _cut(messages: list[Message], finish_reason: str | None) -> list[Message]:
    """Leave the last message open (stop None) when the answer did not end: cut at
    `max_tokens` ("length"), or a stream that stopped with no finish reason at all."""
    if messages and finish_reason in ("length", None):
        last = messages[-1]
        messages[-1] = Message(
            last.role, last.content, last.channel, last.recipient, last.content_type, stop=None
        )
    return messages


def from_chat_message(
    message: dict[str, Any], finish_reason: str | None, tools: ChatToolMap | None = None
) -> list[Message]:
    """Harmony messages for one chat answer: reasoning, then text, then tool calls."""
    names = tools or ChatToolMap()
    out: list[Message] = []
    reasoning = _reasoning_of(message)
    calls = message.get("tool_calls") or []
    content = message.get("content") or ""
    if not isinstance(content, str):
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    if reasoning is None:
        reasoning, content = split_reasoning_tags(content)
    raw = _raw_harmony(content) if not reasoning else None
    if raw is not None:
        out.extend(raw)
        content = ""
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
                recipient=names.recipient(str(function.get("name") or "")),
                content_type=JSON_TYPE,
                stop="call",
            )
        )
    return _cut(out, "length" if finish_reason == "length" else "stop")


def failed_generation(exc: openai.APIError) -> str | None:
    """The model's output a server rejected as a tool call (Groq's `tool_use_failed`)."""
    body = exc.body
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        body = body["error"]
    if not isinstance(body, dict) or body.get("code") != "tool_use_failed":
        return None
    text = body.get("failed_generation")
    return text if isinstance(text, str) else ""


def recover_failed_generation(text: str, names: ChatToolMap, server_message: str) -> list[Message]:
    """The messages in a rejected generation: the tool call it was, or harmony text."""
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("name"), str):
        args = data.get("arguments", data.get("parameters", {}))
        arguments = args if isinstance(args, str) else json.dumps(args, ensure_ascii=False)
        return [
            Message(
                Role.ASSISTANT,
                arguments,
                channel="commentary",
                recipient=names.recipient(data["name"]),
                content_type=JSON_TYPE,
                stop="call",
            )
        ]
    if "<|" in text:
        try:
            messages = parse_completion_text(text, tools=list(names.to_chat)).messages
        except HarmonyParseError:
            messages = []
        if messages:
            return messages
    excerpt = text if len(text) <= 80 else text[:77] + "..."
    raise ToolUseFailedError(
        f"the server rejected the model's output as a tool call ({server_message}) and it "
        f"holds no tool call to recover ({excerpt!r}); retry the step, or check the tool's "
        "schema"
    )


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

    def __init__(self, tools: ChatToolMap | None = None) -> None:
        self.tools = tools or ChatToolMap()
        self.next_index = 0
        self.current: _Building | None = None  # the open reasoning or text message
        self.calls: dict[int, _Building] = {}  # tool calls by their delta index
        self.done: list[tuple[int, Message]] = []
        self.reasoning: list[str] = []
        self.content: list[str] = []
        # Content that may open with `<reasoning>` (Bedrock): held until it is known.
        self._tags = "undecided"  # undecided | inside | after | none
        self._held = ""
        self._tool_phase = False  # a tool call began: open text is a preamble

    def _open(self, channel: str, events: list[ParseEvent], **kw: Any) -> _Building:
        b = _Building(self.next_index, channel, **kw)
        self.next_index += 1
        events.append(HeaderDone(b.index, Role.ASSISTANT, channel, b.recipient, b.content_type))
        return b

    def _close_current(self, events: list[ParseEvent]) -> None:
        b = self.current
        if b is not None:
            channel = b.channel
            stop: StopReason = "end"
            if channel == "final" and self._tool_phase:
                channel = "commentary"  # text before tool calls is a preamble
            msg = Message(Role.ASSISTANT, "".join(b.parts), channel=channel, stop=stop)
            self.done.append((b.index, msg))
            events.append(MessageDone(b.index, msg))
            self.current = None

    def _text(self, channel: str, text: str, events: list[ParseEvent]) -> None:
        if not text:
            return
        if self.current is None or self.current.channel != channel:
            self._close_current(events)
            self.current = self._open(channel, events)
        self.current.parts.append(text)
        events.append(ContentDelta(self.current.index, channel, None, text))

    def _content(self, text: str, events: list[ParseEvent], final: bool = False) -> None:
        """Content, with a leading `<reasoning>…</reasoning>` routed to the analysis."""
        if self._tags in ("none", "after"):
            self._text("final", text, events)
            return
        self._held += text
        if self._tags == "undecided":
            lead = self._held.lstrip()
            if lead.startswith(REASONING_OPEN):
                self._tags = "inside"
                self._held = lead[len(REASONING_OPEN) :]
            elif REASONING_OPEN.startswith(lead) and not final:
                return  # still could be the tag
            else:
                self._tags, held, self._held = "none", self._held, ""
                self._text("final", held, events)
                return
        # inside the tags: pass reasoning on, holding back what may be the closing tag
        closed = self._held.find(REASONING_CLOSE)
        if closed >= 0:
            inner, rest = self._held[:closed], self._held[closed + len(REASONING_CLOSE) :]
            self.reasoning.append(inner)
            self._text("analysis", inner, events)
            self._tags, self._held = "after", ""
            self._text("final", rest.lstrip(), events)
            return
        keep = 0 if final else _partial_suffix(self._held, REASONING_CLOSE)
        out, self._held = self._held[: len(self._held) - keep], self._held[len(self._held) - keep :]
        self.reasoning.append(out)
        self._text("analysis", out, events)

    def feed(self, delta: dict[str, Any]) -> list[ParseEvent]:
        events: list[ParseEvent] = []
        reasoning = _reasoning_of(delta)
        if reasoning:
            self._tags = "none" if self._tags == "undecided" else self._tags
            self.reasoning.append(reasoning)
            self._text("analysis", reasoning, events)
        content = delta.get("content")
        if isinstance(content, str) and content:
            self.content.append(content)
            self._content(content, events)
        for call in delta.get("tool_calls") or []:
            key = int(call.get("index", 0))
            function = call.get("function") or {}
            b = self.calls.get(key)
            if b is None:
                if self._held:
                    self._content("", events, final=True)
                self._tool_phase = True
                self._close_current(events)
                b = self._open(
                    "commentary",
                    events,
                    recipient=self.tools.recipient(str(function.get("name") or "")),
                    content_type=JSON_TYPE,
                    call_id=call.get("id"),
                )
                self.calls[key] = b
            args = function.get("arguments")
            if args:
                b.parts.append(args)
                events.append(ContentDelta(b.index, "commentary", b.recipient, args))
        return events

    def add_messages(self, messages: list[Message]) -> list[ParseEvent]:
        """Messages recovered outside the stream (a rejected generation), as events."""
        events: list[ParseEvent] = []
        if any(m.is_tool_call for m in messages):
            self._tool_phase = True
        self._close_current(events)
        for m in messages:
            index = self.next_index
            self.next_index += 1
            events.append(HeaderDone(index, m.role, m.channel, m.recipient, m.content_type))
            if m.content:
                events.append(ContentDelta(index, m.channel, m.recipient, m.content))
            self.done.append((index, m))
            events.append(MessageDone(index, m))
        return events

    def finish(self, finish_reason: str | None) -> tuple[list[ParseEvent], list[Message]]:
        events: list[ParseEvent] = []
        if self._held:
            self._content("", events, final=True)
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
        if not self.reasoning and not self.calls:
            raw = _raw_harmony("".join(self.content))
            if raw is not None:
                messages = raw
        return events, _cut(messages, finish_reason)

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
                        "name": self.tools.chat_name(b.recipient or ""),
                        "arguments": "".join(b.parts),
                    },
                }
                for b in self.calls.values()
            ]
        return msg


def _partial_suffix(text: str, tag: str) -> int:
    """How many characters at the end of `text` could begin `tag`."""
    for n in range(min(len(tag) - 1, len(text)), 0, -1):
        if tag.startswith(text[-n:]):
            return n
    return 0


# -- the model -------------------------------------------------------------------------


@dataclass
class _Rejected:
    """A generation the server rejected as a tool call (Groq's `tool_use_failed`)."""

    text: str
    message: str


class ChatCompletionsModel(OpenAICompatibleModel):
    """gpt-oss over `/v1/chat/completions` (vLLM, Ollama, hosted OpenAI-compatible APIs).

    `server` picks the known differences (see the module docstring; "auto" asks the
    server); `reasoning_field` names the field reasoning is sent back in
    (`reasoning_content` for vLLM before PR #27752); `send_reasoning=False` for endpoints
    that reject it on input; `constrain_with_tools=True` sends `response_format` on tool
    steps too.
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
        server: ServerKind = "auto",
        reasoning_field: str = "reasoning",
        send_reasoning: bool = True,
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
        if server not in ("auto", "vllm", "ollama", "openai"):
            raise ValueError(f"server must be auto, vllm, ollama or openai, not {server!r}")
        self.server: ServerKind = server
        self.server_info: ServerInfo | None = None
        self.reasoning_field = reasoning_field
        self.send_reasoning = send_reasoning
        self.constrain_with_tools = constrain_with_tools

    @property
    def server_kind(self) -> _Resolved:
        """The server as far as known: configured, detected, or `unknown`."""
        if self.server != "auto":
            return self.server
        return self.server_info.kind if self.server_info is not None else "unknown"

    async def detect_server(self) -> _Resolved:
        """Ask the server what it is (once), when `server="auto"`."""
        if self.server == "auto" and self.server_info is None:
            self.server_info = await probe_server(self.client, version=False)
        return self.server_kind

    def _note_answer(self, fingerprint: str | None) -> None:
        if self.server == "auto" and fingerprint == "fp_ollama":
            self.server_info = ServerInfo("ollama", None)

    def _check(self, request: ModelRequest) -> None:
        if request.system.builtin_tools:
            names = ", ".join(ns.name for ns in request.system.builtin_tools)
            raise ModelError(
                f"built-in tools ({names}) need the harmony prompt, which the chat API does not "
                "expose; use HarmonyCompletionsModel (api='completions') or OllamaRawModel "
                "(api='ollama-raw')"
            )

    def sends_response_format(self, request: ModelRequest) -> bool:
        """Whether this step's request carries `response_format` (see the module docstring)."""
        if request.developer.response_format is None:
            return False
        return self.constrain_with_tools or not request.developer.has_function_tools

    def request_body(self, request: ModelRequest, *, stream: bool) -> dict[str, Any]:
        """The keyword arguments for `client.chat.completions.create`."""
        self._check(request)
        settings = self.settings_for(request)
        level = request.system.reasoning
        kind = self.server_kind
        with_format = self.sends_response_format(request)
        body: dict[str, Any] = {
            "model": self.name,
            "messages": to_chat_messages(
                request,
                reasoning_field=self.reasoning_field,
                send_reasoning=self.send_reasoning,
                tool_names=kind == "vllm",
                describe_format=request.developer.response_format is not None and not with_format,
            ),
            "temperature": settings.temperature,
            "top_p": settings.top_p,
            "reasoning_effort": level,
            "stream": stream,
            "timeout": settings.timeout,
        }
        extra: dict[str, Any] = {}
        if kind == "ollama":
            body["max_tokens"] = settings.max_tokens
            extra["reasoning"] = {"effort": level}
        elif kind == "unknown":
            # Whichever name the server reads, the limit holds.
            body["max_tokens"] = settings.max_tokens
            body["max_completion_tokens"] = settings.max_tokens
        else:
            body["max_completion_tokens"] = settings.max_tokens
        tools = chat_tools(request.developer)
        if tools:
            body["tools"] = tools
            body["tool_choice"] = "auto"
        fmt = request.developer.response_format
        if fmt is not None and with_format:
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

    async def _prepare(self, request: ModelRequest, *, stream: bool) -> dict[str, Any]:
        self._check(request)
        await self.detect_server()
        return self.request_body(request, stream=stream)

    def _creating(self, body: dict[str, Any]) -> Callable[[], Awaitable[Any]]:
        async def create() -> Any:
            try:
                return await self.client.chat.completions.create(**body)
            except openai.APIStatusError as exc:
                text = failed_generation(exc)
                if text is None:
                    raise
                return _Rejected(text, _error_message(exc))

        return create

    def _usage(self, request: ModelRequest, usage: Usage, messages: list[Message]) -> Usage:
        """The server's usage, with what it reported as 0 counted here (flagged)."""
        if usage.input_tokens > 0 and (usage.output_tokens > 0 or not messages):
            return usage
        prompt = usage.input_tokens
        if prompt == 0:
            renderer = ConversationRenderer(request.system, request.developer)
            prompt = renderer.render(request.messages).length
        output = usage.output_tokens
        if output == 0 and messages:
            enc = get_encoding()
            output = sum(len(enc.encode(m.content, allowed_special="all")) for m in messages)
        return Usage(prompt, output, usage.cached_tokens, estimated=True)

    async def complete(self, request: ModelRequest) -> ModelResponse:
        settings = self.settings_for(request)
        body = await self._prepare(request, stream=False)
        names = ChatToolMap.of(request.developer)
        started = time.perf_counter()
        completion = await self.call(settings, self._creating(body))
        latency = time.perf_counter() - started
        if isinstance(completion, _Rejected):
            messages = recover_failed_generation(completion.text, names, completion.message)
            return ModelResponse(
                messages=tuple(messages),
                usage=self._usage(request, Usage(), messages),
                raw=completion.text,
                finish_reason="tool_calls" if messages[-1].is_tool_call else "stop",
                model=self.name,
                latency_s=latency,
            )
        if not completion.choices:
            raise ModelError(
                f"{self.base_url} answered with no choices; is it an OpenAI-compatible server?"
            )
        self._note_answer(getattr(completion, "system_fingerprint", None))
        choice = completion.choices[0]
        message = choice.message.model_dump(exclude_none=True)
        messages = from_chat_message(message, choice.finish_reason, names)
        return ModelResponse(
            messages=tuple(messages),
            usage=self._usage(request, usage_from(completion.usage), messages),
            raw=json.dumps(message, ensure_ascii=False),
            finish_reason=choice.finish_reason,
            model=self.name,
            latency_s=latency,
        )

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamEvent]:
        settings = self.settings_for(request)
        body = await self._prepare(request, stream=True)
        names = ChatToolMap.of(request.developer)
        started = time.perf_counter()
        assembler = _ChatStreamAssembler(names)
        usage = Usage()
        finish_reason: str | None = None
        rejected: _Rejected | None = None
        chunks = await self.call(settings, self._creating(body))
        if isinstance(chunks, _Rejected):
            rejected = chunks
        else:
            try:
                async for chunk in chunks:
                    if chunk.usage is not None:
                        usage = usage_from(chunk.usage)
                    self._note_answer(getattr(chunk, "system_fingerprint", None))
                    for choice in chunk.choices:
                        delta = choice.delta.model_dump(exclude_none=True)
                        for event in assembler.feed(delta):
                            yield event
                        if choice.finish_reason is not None:
                            finish_reason = choice.finish_reason
            except openai.APIError as exc:
                text = failed_generation(exc)
                if text is None:
                    raise await self.translate(exc, settings) from exc
                rejected = _Rejected(text, _error_message(exc))
            except openai.OpenAIError as exc:
                raise await self.translate(exc, settings) from exc
            finally:
                await chunks.close()  # on cancellation too: the server stops generating
        if rejected is not None:
            recovered = recover_failed_generation(rejected.text, names, rejected.message)
            for event in assembler.add_messages(recovered):
                yield event
            finish_reason = "tool_calls" if recovered[-1].is_tool_call else "stop"
        events, messages = assembler.finish(finish_reason)
        for event in events:
            yield event
        yield ResponseDone(
            ModelResponse(
                messages=tuple(messages),
                usage=self._usage(request, usage, messages),
                raw=json.dumps(assembler.raw(), ensure_ascii=False),
                finish_reason=finish_reason,
                model=self.name,
                latency_s=time.perf_counter() - started,
            )
        )


def _error_message(exc: openai.APIError) -> str:
    body = exc.body
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        body = body["error"]
    if isinstance(body, dict) and body.get("message"):
        return str(body["message"])
    return str(exc.message)
