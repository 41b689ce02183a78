"""Replay: a model and tools that answer from a trace.

`ReplayModel` answers each request with the recorded turn (strict mode names the first
step whose request differs); `ReplayToolRegistry` answers tool calls from the trace, so a
replay needs no network, Docker or database. Running an agent over them is
`harmonygraph.engine.replay`.
"""

from __future__ import annotations

import difflib
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from harmonygraph.harmony.messages import Message, Role
from harmonygraph.harmony.parser import HeaderDone, MessageDone
from harmonygraph.models.base import (
    ModelRequest,
    ModelResponse,
    ResponseDone,
    StreamEvent,
    Usage,
)
from harmonygraph.tools.base import ToolContext, ToolOutput, Toolset
from harmonygraph.tools.registry import ToolCall, ToolCallResult, ToolRegistry
from harmonygraph.tracing.trace import (
    Trace,
    developer_dict,
    message_key,
    request_fingerprint,
    sampling_params,
    system_dict,
)
from openai_harmony import ToolNamespaceConfig

__all__ = [
    "RecordedToolset",
    "ReplayDivergence",
    "ReplayModel",
    "ReplayToolRegistry",
    "check_replay_end",
    "turn_inputs",
]


class ReplayDivergence(RuntimeError):
    """A strict replay's request differs from the recorded one.

    `str()` is one line (`step N: what changed`); `recorded` and `sent` hold the two
    versions of what changed, where there are two, and `report()` shows them with a
    compact diff (the pytest plugin prints that report as the test's failure).
    """

    def __init__(
        self, step: int, what: str, *, recorded: str | None = None, sent: str | None = None
    ) -> None:
        self.step = step
        self.what = what
        self.recorded = recorded
        self.sent = sent
        super().__init__(f"step {step}: {what}")

    def report(self, *, max_diff_lines: int = 12, width: int = 100) -> str:
        """The divergence in a few lines: the step, what was recorded, what the agent
        sent, and a compact diff of the two when they span lines."""
        lines = [f"strict replay diverged at step {self.step}: {self.what}"]
        a, b = self.recorded, self.sent
        if a is None and b is None:
            return "\n".join(lines)
        a, b = a or "", b or ""
        if "\n" not in a and "\n" not in b:
            ea, eb = _excerpts(a, b, width)
            lines += [f"  recorded:   {ea}", f"  agent sent: {eb}"]
            return "\n".join(lines)
        lines += [
            f"  recorded:   {_clip(_first_line(a), width)}",
            f"  agent sent: {_clip(_first_line(b), width)}",
            "  diff (- recorded, + agent sent):",
        ]
        body = [
            d for d in difflib.unified_diff(a.splitlines(), b.splitlines(), lineterm="", n=1)
            if not d.startswith(("---", "+++"))
        ]  # fmt: skip
        for d in body[:max_diff_lines]:
            lines.append("    " + _clip(d, width))
        if len(body) > max_diff_lines:
            lines.append(f"    … {len(body) - max_diff_lines} more diff lines")
        return "\n".join(lines)


def _first_line(text: str) -> str:
    first, _, rest = text.partition("\n")
    return first + (" ⏎ …" if rest else "")


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _excerpts(a: str, b: str, width: int) -> tuple[str, str]:
    """Two one-line texts, each cut to `width` around where they first differ."""
    if len(a) <= width and len(b) <= width:
        return repr(a), repr(b)
    i = next((k for k in range(min(len(a), len(b))) if a[k] != b[k]), min(len(a), len(b)))
    lo = max(0, i - width // 3)

    def cut(t: str) -> str:
        part = t[lo : lo + width]
        return ("…" if lo else "") + repr(part) + ("…" if lo + width < len(t) else "")

    return cut(a), cut(b)


Difference = tuple[str, str | None, str | None]  # what changed, recorded, sent


def _dump(value: Any) -> str:
    return json.dumps(value, indent=1, sort_keys=True, ensure_ascii=False)


def _describe_difference(recorded: dict[str, Any], current: dict[str, Any]) -> Difference | None:
    """What differs between two request fingerprints (`request_fingerprint`)."""
    if recorded["reasoning"] != current["reasoning"]:
        return (
            f"system message: reasoning effort {recorded['reasoning']} → {current['reasoning']}",
            recorded["reasoning"],
            current["reasoning"],
        )
    if recorded["identity"] != current["identity"]:
        return "system message: model identity changed", recorded["identity"], current["identity"]
    if recorded["builtin"] != current["builtin"]:
        return (
            f"system message: built-in tools {recorded['builtin']} → {current['builtin']}",
            ", ".join(recorded["builtin"]),
            ", ".join(current["builtin"]),
        )
    if recorded["instructions"] != current["instructions"]:
        return (
            "developer message: instructions changed",
            recorded["instructions"],
            current["instructions"],
        )
    rt, ct = recorded["tools"], current["tools"]
    for name in ct:
        if name not in rt:
            return f"developer message: tool `{name}` added", None, None
    for name in rt:
        if name not in ct:
            return f"developer message: tool `{name}` removed", None, None
    for name in rt:
        if rt[name] != ct[name]:
            return f"developer message: parameters of tool `{name}` changed", None, None
    if recorded["response_format"] != current["response_format"]:
        return "developer message: response format changed", None, None
    return None


def _tools_of(namespaces: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {f"{ns['name']}.{t['name']}": t for ns in namespaces for t in ns.get("tools") or []}


def _header_difference(header: dict[str, Any], request: ModelRequest) -> Difference | None:
    """What differs between a run header's full configuration and a request's: what
    the fingerprint leaves out (the knowledge cutoff, the date, descriptions) and the
    two versions of what it only hashes (tool parameters, the response format)."""
    rs, rd = header.get("system"), header.get("developer")
    if not isinstance(rs, dict) or not isinstance(rd, dict):
        return None  # a trace without the full configuration (a pipeline's recording)
    cs, cd = system_dict(request.system), developer_dict(request.developer)
    for key, label in (("knowledge_cutoff", "knowledge cutoff"), ("current_date", "current date")):
        if key in rs and rs[key] != cs[key]:
            return f"system message: {label} {rs[key]} → {cs[key]}", rs[key], cs[key]
    recorded_ns = [*(rs.get("builtin_tools") or []), *(rd.get("tools") or [])]
    current_ns = [*cs["builtin_tools"], *cd["tools"]]
    where = "developer message"
    current_descriptions = {ns["name"]: ns.get("description") for ns in current_ns}
    for ns in recorded_ns:
        now = current_descriptions.get(ns["name"], ns.get("description"))
        if ns.get("description") != now:
            return (
                f"{where}: description of the `{ns['name']}` tools changed",
                ns.get("description"),
                now,
            )
    recorded_tools, current_tools = _tools_of(recorded_ns), _tools_of(current_ns)
    for name, was in recorded_tools.items():
        now = current_tools.get(name)
        if now is None:
            continue  # added and removed tools are named by the fingerprint
        if (was.get("parameters") or {}) != (now.get("parameters") or {}):
            return (
                f"{where}: parameters of tool `{name}` changed",
                _dump(was.get("parameters")),
                _dump(now.get("parameters")),
            )
        if was.get("description") != now.get("description"):
            return (
                f"{where}: description of tool `{name}` changed",
                was.get("description"),
                now.get("description"),
            )
    rf, cf = rd.get("response_format"), cd["response_format"]
    if rf != cf:
        if rf is None or cf is None:
            what = "removed" if cf is None else "added"
            return f"{where}: response format {what}", _dump(rf), _dump(cf)
        for key in ("name", "description", "schema"):
            if rf.get(key) != cf.get(key):
                was, now = rf.get(key), cf.get(key)
                if key == "schema":
                    return f"{where}: response format's schema changed", _dump(was), _dump(now)
                return f"{where}: response format's {key} changed", was, now
    return None


class ReplayModel:
    """Answers model calls from a trace, in order.

    `strict=True` checks each request against the recorded one and raises
    `ReplayDivergence` naming the step and what changed; `strict=False` only follows
    the recorded order.
    """

    def __init__(self, trace: Trace | str | Path, *, strict: bool = True) -> None:
        self.trace = trace if isinstance(trace, Trace) else Trace.load(trace)
        self.strict = strict
        self.name = str(self.trace.header.get("model", "replay"))
        self._calls = self.trace.model_calls
        self._next = 0
        self._known = self.trace.recorded_messages() if strict else {}
        self._expected: list[str] = []  # the recorded conversation's message keys so far
        # The run header each model call was recorded under (a chat's trace holds one
        # run per turn), for what the request fingerprint leaves out.
        self._headers: list[dict[str, Any] | None] = []
        header: dict[str, Any] | None = None
        for record in self.trace.records:
            if record.get("type") == "run":
                header = record
            elif record.get("type") == "model_call":
                self._headers.append(header)

    @property
    def remaining(self) -> int:
        return len(self._calls) - self._next

    def _take(self, request: ModelRequest) -> ModelResponse:
        step = self._next + 1
        if self._next >= len(self._calls):
            raise ReplayDivergence(
                step,
                f"the run asked for model call {step}, but the trace has only {len(self._calls)}",
            )
        rec = self._calls[self._next]
        if self.strict:
            self._check(step, rec, request)
        self._next += 1
        usage = rec.get("usage", {})
        return ModelResponse(
            messages=tuple(Message.from_dict(d) for d in rec["messages"]),
            usage=Usage(
                usage.get("input_tokens", 0),
                usage.get("output_tokens", 0),
                usage.get("cached_tokens", 0),
            ),
            raw=rec.get("raw", ""),
            finish_reason=rec.get("finish_reason"),
            model=rec.get("model", self.name),
            latency_s=0.0,
            prompt_sha256=rec.get("prompt_sha256", ""),
            prompt_tokens=rec.get("prompt_tokens", 0),
        )

    def _check(self, step: int, rec: dict[str, Any], request: ModelRequest) -> None:
        current = request_fingerprint(request.system, request.developer)
        diff = _describe_difference(rec["request"], current)
        header = self._headers[self._next]
        if diff is not None and diff[1] is None and header is not None:
            # The header keeps both versions of what the fingerprint only hashes.
            full = _header_difference(header, request)
            if full is not None and full[0].startswith(diff[0].removesuffix(" changed")):
                diff = full
        elif diff is None and header is not None:
            diff = _header_difference(header, request)
        if diff:
            what, recorded, sent = diff
            raise ReplayDivergence(step, what, recorded=recorded, sent=sent)
        recorded_params = rec.get("params")
        if recorded_params is not None:
            params = sampling_params(request.settings)
            for key in sorted(recorded_params.keys() | params.keys()):
                if recorded_params.get(key) != params.get(key):
                    raise ReplayDivergence(
                        step,
                        f"sampling parameter `{key}` is {params.get(key)!r}; the recording had "
                        f"{recorded_params.get(key)!r}",
                        recorded=repr(recorded_params.get(key)),
                        sent=repr(params.get(key)),
                    )
        start = rec.get("new_from", 0)
        self._expected[start:] = [
            message_key(Message.from_dict(d)) for d in rec.get("new_messages", [])
        ]
        recorded_keys = self._expected
        keys = [message_key(m) for m in request.messages]
        for i, (a, b) in enumerate(zip(recorded_keys, keys, strict=False)):
            if a != b:
                now = request.messages[i]
                was = self._known.get(a)
                what = f"message {i + 1} ({_label(now)}) differs"
                if was is not None:
                    what += ": " + _first_difference(was, now)
                    raise ReplayDivergence(step, what, recorded=was.content, sent=now.content)
                raise ReplayDivergence(step, what, sent=now.content)
        if len(keys) != len(recorded_keys):
            raise ReplayDivergence(
                step,
                f"the conversation has {len(keys)} messages; the recording had {len(recorded_keys)}",
            )

    async def complete(self, request: ModelRequest) -> ModelResponse:
        return self._take(request)

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamEvent]:
        response = self._take(request)
        for i, m in enumerate(response.messages):
            yield HeaderDone(i, m.role, m.channel, m.recipient, m.content_type)
            yield MessageDone(i, m)
        yield ResponseDone(response)

    async def aclose(self) -> None:
        return None


def check_replay_end(trace: Trace, model: ReplayModel, status: str, steps: int) -> None:
    """A strict replay must also end as the recording did, with every model call used."""
    recorded = (trace.end or {}).get("status")
    if recorded and recorded != status:
        raise ReplayDivergence(steps, f"the run ended {status}; the recording ended {recorded}")
    if model.remaining:
        raise ReplayDivergence(
            steps + 1, f"the run ended with {model.remaining} recorded model call(s) unused"
        )


def _label(m: Message) -> str:
    if m.role.value == "tool":
        return f"tool {m.name}"
    if m.is_tool_call:
        return f"call to {m.recipient}"
    return f"{m.role.value}{'/' + m.channel if m.channel else ''}"


def _first_difference(was: Message, now: Message) -> str:
    """Where two versions of a message part ways, with a little of each side."""
    if was.content == now.content:
        for field_name in ("channel", "recipient", "content_type", "name"):
            a, b = getattr(was, field_name), getattr(now, field_name)
            if a != b:
                return f"{field_name} recorded {a!r}, now {b!r}"
        return "headers differ"
    a, b = was.content, now.content
    i = next((k for k in range(min(len(a), len(b))) if a[k] != b[k]), min(len(a), len(b)))
    lo = max(0, i - 20)
    return f"at character {i}: recorded …{a[lo : i + 30]!r}, now …{b[lo : i + 30]!r}"


def _short(text: str, n: int = 60) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


class ReplayToolRegistry(ToolRegistry):
    """Tool results from a trace, matched in order, so a replay runs no real tool."""

    def __init__(
        self, trace: Trace, registry: ToolRegistry | None = None, *, strict: bool = True
    ) -> None:
        super().__init__(registry.toolsets if registry else [])
        self._calls = trace.tool_calls
        self._next = 0
        self.strict = strict
        self._offered = trace.header.get("tools", [])
        # A run that ended waiting for approval stopped at its last model call's tool call.
        self._awaiting = _awaited_call(trace)

    def recipients(self) -> list[str]:
        return list(self._offered) if not self.toolsets else super().recipients()

    def needs_approval(self, recipient: str) -> bool:
        """As the tool says; and, where the recording ended waiting for approval of a call
        (to a tool the trace alone does not describe as needing it, such as a served
        client's function), that tool while no recorded result for it is left, so the
        replay stops where the run did."""
        if super().needs_approval(recipient):
            return True
        return recipient == self._awaiting and not any(
            rec["requested"] == recipient for rec in self._calls[self._next :]
        )

    async def start(self, ctx: ToolContext) -> None:
        return None  # nothing real runs in a replay

    async def close(self, ctx: ToolContext) -> None:
        return None

    async def call(self, call: ToolCall, ctx: ToolContext) -> ToolCallResult:
        started = time.perf_counter()
        index = self._next + 1
        if self._next >= len(self._calls):
            raise ReplayDivergence(
                index, f"tool call {index} ({call.recipient}) is not in the trace"
            )
        rec = self._calls[self._next]
        if self.strict and (
            rec["requested"] != call.recipient or rec["arguments"] != call.arguments
        ):
            raise ReplayDivergence(
                index,
                f"tool call {index}: recorded {rec['requested']}({_short(rec['arguments'])}), "
                f"now {call.recipient}({_short(call.arguments)})",
                recorded=f"{rec['requested']}({rec['arguments']})",
                sent=f"{call.recipient}({call.arguments})",
            )
        self._next += 1
        output = ToolOutput(
            text=rec["result"],
            is_error=rec.get("is_error", False),
            metadata=rec.get("metadata") or {},
        )
        return ToolCallResult(
            call,
            rec["recipient"],
            output,
            rec["status"],
            time.perf_counter() - started,
            rec.get("truncated", False),
        )


def _awaited_call(trace: Trace) -> str | None:
    """The tool whose call a recorded run ended waiting to have approved, if it did."""
    if (trace.end or {}).get("status") != "awaiting_approval" or not trace.model_calls:
        return None
    for message in reversed(trace.model_calls[-1]["messages"]):
        if isinstance(message, dict) and message.get("recipient"):
            return str(message["recipient"])
    return None


class RecordedToolset(Toolset):
    """A namespace as a trace recorded it: described to the model, answered from the trace."""

    def __init__(self, config: ToolNamespaceConfig, *, builtin: bool) -> None:
        super().__init__(namespace=config.name, description=config.description)
        self._config = config
        self.builtin = builtin

    def namespace_config(self) -> ToolNamespaceConfig:
        return self._config

    def recipients(self) -> list[str]:
        if self.builtin and self.namespace == "python":
            return ["python"]
        return [f"{self.namespace}.{t.name}" for t in self._config.tools]


def turn_inputs(trace: Trace) -> list[tuple[str | None, list[Message]]]:
    """Each recorded run's reasoning effort and the messages it was given.

    A chat's trace holds one run per turn on one thread: the first turn's input is all
    its first request held; a later turn's is the user messages its first request added.
    """
    turns: list[tuple[str | None, list[Message]]] = []
    reasoning: str | None = None
    awaiting_first_call = False
    for record in trace.records:
        if record.get("type") == "run":
            reasoning, awaiting_first_call = record.get("reasoning"), True
        elif record.get("type") == "model_call" and awaiting_first_call:
            awaiting_first_call = False
            new = [Message.from_dict(d) for d in record.get("new_messages", [])]
            if turns:
                k = len(new)
                while k and new[k - 1].role is Role.USER:
                    k -= 1
                new = new[k:]
            turns.append((reasoning, new))
    return turns
