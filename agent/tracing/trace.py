"""Traces: every model call and tool call of a run, as JSON Lines.

A trace starts with a `run` header (schema version, model, reasoning effort, date, the
tools offered), then one record per model call and per tool call, then `run_end`.
Secrets are redacted (`harmonygraph.tracing.redaction`) before anything is written;
every record read back is checked for shape and depth before anything uses it.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harmonygraph.harmony.messages import Message
from harmonygraph.harmony.prompt import DeveloperConfig, SystemConfig
from harmonygraph.models.base import (
    ModelRequest,
    ModelResponse,
    ModelSettings,
    Usage,
)
from harmonygraph.tools.registry import ToolCallResult
from harmonygraph.tracing.redaction import Redactor

__all__ = [
    "SCHEMA_VERSION",
    "Trace",
    "TraceError",
    "TraceRecorder",
    "developer_dict",
    "message_key",
    "request_fingerprint",
    "sampling_params",
    "settings_from_params",
    "system_dict",
]

SCHEMA_VERSION = 1
# Versions this code reads. A trace from a newer writer is refused with its version named.
READABLE_VERSIONS = {1}


class TraceError(ValueError):
    """A trace file that cannot be read (wrong version, damaged line)."""


# -- request fingerprints -----------------------------------------------------------


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@functools.lru_cache(maxsize=65536)
def message_key(m: Message) -> str:
    """A short hash of a message (its stop marker aside). Cached: a run asks it every step."""
    data = m.to_dict()
    data.pop("stop", None)
    return _sha(json.dumps(data, sort_keys=True, ensure_ascii=False))


def request_fingerprint(system: SystemConfig, developer: DeveloperConfig) -> dict[str, Any]:
    """What identifies a request's fixed part. The date is left out: replays run on other days."""
    tools = {}
    for ns in (*system.builtin_tools, *developer.tools):
        for t in ns.tools:
            tools[f"{ns.name}.{t.name}"] = _sha(json.dumps(t.parameters, sort_keys=True))
    return {
        "identity": system.identity,
        "reasoning": system.reasoning,
        "builtin": sorted(ns.name for ns in system.builtin_tools),
        "instructions": developer.instructions or "",
        "tools": tools,
        "response_format": (
            {
                "name": developer.response_format.name,
                "schema": _sha(json.dumps(developer.response_format.schema, sort_keys=True)),
            }
            if developer.response_format
            else None
        ),
    }


def system_dict(s: SystemConfig) -> dict[str, Any]:
    """The system message's configuration as a run header records it (in full)."""
    return {
        "identity": s.identity,
        "knowledge_cutoff": s.knowledge_cutoff,
        "current_date": s.current_date,
        "reasoning": s.reasoning,
        "builtin_tools": [ns.model_dump() for ns in s.builtin_tools],
    }


def developer_dict(d: DeveloperConfig) -> dict[str, Any]:
    """The developer message's configuration as a run header records it (in full)."""
    fmt = d.response_format
    return {
        "instructions": d.instructions,
        "tools": [ns.model_dump() for ns in d.tools],
        "response_format": {"name": fmt.name, "schema": fmt.schema, "description": fmt.description}
        if fmt
        else None,
    }


# -- writing ------------------------------------------------------------------------------


def sampling_params(settings: ModelSettings) -> dict[str, Any]:
    """What a trace records of a request's sampling, and a strict replay compares."""
    return {
        "max_tokens": settings.max_tokens,
        "temperature": settings.temperature,
        "top_p": settings.top_p,
        "seed": settings.seed,
        # Recorded only when on, so traces written before it was recorded still replay.
        **({"enforce_output": True} if settings.enforce_output else {}),
        **settings.extra_body,
    }


def settings_from_params(params: dict[str, Any]) -> ModelSettings:
    """The sampling settings `sampling_params` recorded, to replay them as they were."""
    extra = dict(params)
    return ModelSettings(
        max_tokens=extra.pop("max_tokens", 4096),
        temperature=extra.pop("temperature", 1.0),
        top_p=extra.pop("top_p", 1.0),
        seed=extra.pop("seed", None),
        enforce_output=bool(extra.pop("enforce_output", False)),
        extra_body=extra,
    )


@dataclass
class TraceRecorder:
    """Collects a run's records in memory and, given a path, appends them as JSON Lines."""

    path: Path | None = None
    redactor: Redactor = field(default_factory=Redactor)
    records: list[dict[str, Any]] = field(default_factory=list)
    _seen_messages: int = 0
    _model_steps: int = 0

    def _write(self, record: dict[str, Any]) -> None:
        record, line = self.redactor.record(record)
        self.records.append(record)
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as f:
                f.write(line + "\n")

    def start(
        self,
        *,
        run_id: str,
        model: str,
        system: SystemConfig,
        developer: DeveloperConfig,
        tools: Iterable[str],
        extra: dict[str, Any] | None = None,
        new_conversation: bool = False,
    ) -> None:
        """Begin a run's segment. A chat's turns continue one conversation (each turn's
        first call records only what it added); `new_conversation` starts counting anew."""
        from harmonygraph import __version__

        if new_conversation:
            self._seen_messages = 0
        self._write(
            {
                "type": "run",
                "schema_version": SCHEMA_VERSION,
                "harmonygraph": __version__,
                "run_id": run_id,
                "model": model,
                "reasoning": system.reasoning,
                "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "current_date": system.current_date,
                "tools": sorted(tools),
                "request": request_fingerprint(system, developer),
                **(extra or {}),
            }
        )

    def model_call(self, step: int, request: ModelRequest, response: ModelResponse) -> None:
        # Only the messages this recorder has not written yet are stored (with the index
        # they start at), so a trace grows with the conversation, not with its square.
        start = min(self._seen_messages, len(request.messages))
        new = request.messages[start:]
        self._seen_messages = len(request.messages)
        self._model_steps += 1
        self._write(
            {
                "type": "model_call",
                "step": step,
                "request": request_fingerprint(request.system, request.developer),
                "message_count": len(request.messages),
                "new_from": start,
                "new_messages": [m.to_dict() for m in new],
                "params": sampling_params(request.settings),
                "prompt_sha256": response.prompt_sha256,
                "prompt_tokens": response.prompt_tokens,
                "raw": response.raw,
                "messages": [m.to_dict() for m in response.messages],
                "usage": response.usage.to_dict(),
                "finish_reason": response.finish_reason,
                "model": response.model,
                "latency_s": round(response.latency_s, 6),
                "repairs": [r.to_dict() for r in response.repairs],
                "constrained": response.constrained,
            }
        )

    def tool_call(self, step: int, result: ToolCallResult) -> None:
        self._write(
            {
                "type": "tool_call",
                "step": step,
                "recipient": result.recipient,
                "requested": result.call.recipient,
                "arguments": result.call.arguments,
                "status": result.status,
                "result": result.output.text,
                "is_error": result.output.is_error,
                "truncated": result.truncated,
                "artifacts": [a.to_dict() for a in result.output.artifacts],
                "metadata": _jsonable(result.output.metadata),
                "duration_s": round(result.duration_s, 6),
            }
        )

    def end(
        self,
        *,
        status: str,
        output: Any,
        usage: Usage,
        error: str | None = None,
        cost_usd: float | None = None,
    ) -> None:
        self._write(
            {
                "type": "run_end",
                "status": status,
                "output": _jsonable(output),
                "usage": usage.to_dict(),
                "cost_usd": cost_usd,
                "error": error,
            }
        )


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        if hasattr(value, "model_dump"):
            return value.model_dump(mode="json")
        return json.loads(json.dumps(value, default=str))


# -- reading ------------------------------------------------------------------------------

# Records nest a few levels (a tool's metadata, a structured output); anything deeper is
# damage or an attack, and would overflow the stack of whatever walks it later.
MAX_RECORD_DEPTH = 100
_TYPE_NAMES = {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
               int: "a number", float: "a number", type(None): "null"}  # fmt: skip


def _json_kind(value: Any) -> str:
    return _TYPE_NAMES.get(type(value), type(value).__name__)


def _not_an_object(value: Any) -> str:
    return f"the line is {_json_kind(value)}, not a trace record (a JSON object with a `type`)"


def _parse_line(raw: bytes, where: str) -> dict[str, Any] | None:
    """One JSON Lines record, or None for a blank line; a `TraceError` naming `where`."""
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise TraceError(
            f"{where}: not UTF-8 text (byte {raw[exc.start]:#04x} at column {exc.start + 1}); "
            "this is not a trace file, or a damaged one"
        ) from None
    if not line.strip():
        return None
    try:
        value = json.loads(line)
    except json.JSONDecodeError as exc:
        raise TraceError(f"{where}: not JSON ({exc.msg} at column {exc.colno})") from None
    except RecursionError:
        raise TraceError(f"{where}: JSON nested too deeply to read; not a trace record") from None
    except ValueError as exc:  # e.g. an integer over Python's 4300-digit limit
        raise TraceError(f"{where}: not usable JSON ({str(exc)[:120]})") from None
    if not isinstance(value, dict):
        raise TraceError(f"{where}: {_not_an_object(value)}")
    if _too_deep(value):
        raise TraceError(
            f"{where}: nested more than {MAX_RECORD_DEPTH} levels deep; not a trace record"
        )
    return value


def _too_deep(value: Any) -> bool:
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_RECORD_DEPTH:
            return True
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)
    return False


# What each record type must hold (version 1): field → (accepted kinds, required).
# Only fields a replay reads are listed; extra fields are allowed (a newer writer's
# additions within one schema version).
_STR, _INT, _NUM, _BOOL = (str,), (int,), (int, float), (bool,)
_NONE: tuple[type, ...] = (type(None),)
_DICT_OR_NONE: tuple[type, ...] = (dict, type(None))
_SHAPES: dict[str, dict[str, tuple[tuple[type, ...], bool]]] = {
    "run": {
        "schema_version": (_INT, True), "model": (_STR + _NONE, False),
        "reasoning": (_STR + _NONE, False), "tools": ((list,), False),
        "request": ((dict,), False), "system": (_DICT_OR_NONE, False),
        "developer": (_DICT_OR_NONE, False), "agent": (_STR, False),
        "current_date": (_STR + _NONE, False),
    },
    "model_call": {
        "step": (_INT, False), "request": ((dict,), True), "message_count": (_INT, False),
        "new_from": (_INT, False), "new_messages": ((list,), False),
        "messages": ((list,), True), "params": (_DICT_OR_NONE, False),
        "prompt_sha256": (_STR, False), "prompt_tokens": (_INT, False), "raw": (_STR, False),
        "usage": ((dict,), False), "finish_reason": (_STR + _NONE, False),
        "model": (_STR + _NONE, False), "latency_s": (_NUM, False),
        "repairs": ((list,), False), "constrained": (_BOOL, False),
    },
    "tool_call": {
        "step": (_INT, False), "recipient": (_STR, True), "requested": (_STR, True),
        "arguments": (_STR, True), "status": (_STR, True), "result": (_STR, True),
        "is_error": (_BOOL, False), "truncated": (_BOOL, False), "artifacts": ((list,), False),
        "metadata": (_DICT_OR_NONE, False), "duration_s": (_NUM, False),
    },
    "run_end": {
        "status": (_STR, True), "usage": ((dict,), False), "cost_usd": (_NUM + _NONE, False),
        "error": (_STR + _NONE, False),
    },
}  # fmt: skip
_REQUEST = {
    "reasoning": _STR, "identity": _STR + _NONE, "builtin": (list,), "instructions": _STR,
    "tools": (dict,), "response_format": _DICT_OR_NONE,
}  # fmt: skip


def _kind_ok(value: Any, kinds: tuple[type, ...]) -> bool:
    if isinstance(value, bool) and bool not in kinds:
        return False  # JSON true is not a number here
    return isinstance(value, kinds)


def _field_problem(
    obj: dict[str, Any], name: str, kinds: tuple[type, ...], label: str, prefix: str = ""
) -> str:
    want = " or ".join(dict.fromkeys(_TYPE_NAMES.get(k, k.__name__) for k in kinds))
    return f"{label}`{prefix}{name}` is {_json_kind(obj[name])}; it must be {want}"


def _namespace_problem(ns: Any, where: str) -> str | None:
    if not isinstance(ns, dict):
        return f"{where} is {_json_kind(ns)}; it must be an object"
    if not isinstance(ns.get("name"), str):
        return f"{where} needs a string `name`"
    tools = ns.get("tools", [])
    if not isinstance(tools, list):
        return f"{where}.tools is {_json_kind(tools)}; it must be an array"
    for j, t in enumerate(tools):
        if not isinstance(t, dict) or not isinstance(t.get("name"), str):
            return f"{where}.tools[{j}] must be an object with a string `name`"
        if not isinstance(t.get("description", ""), str):
            return f"{where}.tools[{j}].description must be a string"
        if not isinstance(t.get("parameters") or {}, dict):
            return f"{where}.tools[{j}].parameters must be an object"
    return None


def _shape_problem(record: dict[str, Any]) -> str | None:
    """What is wrong with a version-1 record's shape, or None."""
    kind = record.get("type")
    shape = _SHAPES.get(kind) if isinstance(kind, str) else None
    if shape is None:
        return f"unknown record type {kind!r}; expected one of {', '.join(_SHAPES)}"
    label = str(kind).replace("_", " ") + " record: "
    for name, (kinds, required) in shape.items():
        if name not in record:
            if required:
                return f"{label}missing `{name}`"
            continue
        if not _kind_ok(record[name], kinds):
            return _field_problem(record, name, kinds, label)
    for key in ("new_messages", "messages", "tools", "artifacts"):
        for j, item in enumerate(record.get(key) or []):
            want = str if key == "tools" else dict
            if not isinstance(item, want):
                return f"{label}`{key}[{j}]` is {_json_kind(item)}; it must be {_TYPE_NAMES[want]}"
    usage = record.get("usage") or {}
    for name, v in usage.items():
        if not _kind_ok(v, _INT):
            return f"{label}`usage.{name}` is {_json_kind(v)}; it must be a number"
    request = record.get("request")
    if kind == "model_call" and isinstance(request, dict):
        for name, kinds in _REQUEST.items():
            if name not in request:
                return f"{label}`request` lacks `{name}`"
            if not _kind_ok(request[name], kinds):
                return _field_problem(request, name, kinds, label, "request.")
        if not all(isinstance(v, str) for v in request["tools"].values()):
            return f"{label}`request.tools` must map tool names to strings"
    if kind == "run":
        system, developer = record.get("system") or {}, record.get("developer") or {}
        for name in ("identity", "knowledge_cutoff", "current_date"):
            if not isinstance(system.get(name, ""), str | None):
                return f"{label}`system.{name}` must be a string"
        for where, holder, key in (
            ("system", system, "builtin_tools"),
            ("developer", developer, "tools"),
        ):
            spaces = holder.get(key, [])
            if not isinstance(spaces, list):
                return f"{label}`{where}.{key}` is {_json_kind(spaces)}; it must be an array"
            for j, ns in enumerate(spaces):
                if problem := _namespace_problem(ns, f"`{where}.{key}[{j}]`"):
                    return label + problem
        if not isinstance(developer.get("instructions"), str | None):
            return f"{label}`developer.instructions` must be a string"
        fmt = developer.get("response_format")
        if fmt is not None and not (
            isinstance(fmt, dict) and isinstance(fmt.get("name"), str)
            and isinstance(fmt.get("schema"), dict)
            and isinstance(fmt.get("description", ""), str)
        ):  # fmt: skip
            return (
                f"{label}`developer.response_format` needs a string `name` and an object `schema`"
            )
    return None


@dataclass
class Trace:
    records: list[dict[str, Any]]
    path: Path | None = None
    _lines: list[int] = field(default_factory=list, repr=False)  # file line of each record

    @classmethod
    def load(cls, path: str | Path) -> Trace:
        """Read and check a trace; any damage is a `TraceError` naming `file:line` and
        what is wrong with that record, whatever the file holds."""
        p = Path(path)
        records: list[dict[str, Any]] = []
        lines: list[int] = []
        try:
            if p.exists() and not p.is_file():
                raise TraceError(f"{p}: not a regular file; give the path of a trace (JSON Lines)")
            with p.open("rb") as f:
                for n, raw in enumerate(f, 1):
                    record = _parse_line(raw, f"{p}:{n}")
                    if record is not None:
                        records.append(record)
                        lines.append(n)
        except OSError as exc:
            raise TraceError(f"cannot read trace {p}: {exc.strerror}") from None
        trace = cls(records, p)
        trace._lines = lines
        trace.check()
        return trace

    @classmethod
    def from_records(cls, records: list[dict[str, Any]]) -> Trace:
        trace = cls(list(records))
        trace.check()
        return trace

    def _where(self, i: int) -> str:
        """`file:line` of record `i` (0-based), or `record N` for records given in memory."""
        if self.path is not None and i < len(self._lines):
            return f"{self.path}:{self._lines[i]}"
        return f"{self.path or 'trace'}: record {i + 1}"

    def check(self) -> None:
        for i, record in enumerate(self.records):
            if not isinstance(record, dict):
                raise TraceError(f"{self._where(i)}: {_not_an_object(record)}")
        if not self.records or self.records[0].get("type") != "run":
            raise TraceError(
                f"{self.path or 'trace'}: does not start with a `run` header; not a harmonygraph trace"
            )
        version = self.records[0].get("schema_version")
        if version not in READABLE_VERSIONS:
            raise TraceError(
                f"{self.path or 'trace'}: trace schema version {version} (written by harmonygraph "
                f"{self.records[0].get('harmonygraph', '?')}); this harmonygraph reads version(s) "
                f"{sorted(READABLE_VERSIONS)}: re-record it or use a matching harmonygraph"
            )
        # Every record's shape, before anything reads it: a replay indexes these fields.
        for i, record in enumerate(self.records):
            problem = _shape_problem(record)
            if problem:
                raise TraceError(
                    f"{self._where(i)}: {problem}; the trace is damaged or was edited by hand: "
                    "re-record it"
                )
        # Messages are read back lazily during a replay; a record this version cannot read
        # is named here, at load, with the version that wrote it.
        for n, record in enumerate(self.records, 1):
            if record.get("type") != "model_call":
                continue
            for key in ("new_messages", "messages"):
                for data in record.get(key) or []:
                    try:
                        Message.from_dict(data)
                    except (ValueError, TypeError) as exc:
                        raise TraceError(
                            f"{self._where(n - 1)}: record {n} (model call, step "
                            f"{record.get('step', '?')}): {exc}. The trace is schema version "
                            f"{version}, written by harmonygraph "
                            f"{self.records[0].get('harmonygraph', '?')}: use that version, or "
                            "re-record it"
                        ) from None

    @property
    def header(self) -> dict[str, Any]:
        return self.records[0]

    @property
    def model_calls(self) -> list[dict[str, Any]]:
        return [r for r in self.records if r.get("type") == "model_call"]

    @property
    def tool_calls(self) -> list[dict[str, Any]]:
        return [r for r in self.records if r.get("type") == "tool_call"]

    @property
    def end(self) -> dict[str, Any] | None:
        ends = [r for r in self.records if r.get("type") == "run_end"]
        return ends[-1] if ends else None

    def recorded_messages(self) -> dict[str, Message]:
        """Every message the trace shows, by key, to explain what changed in a replay."""
        out: dict[str, Message] = {}
        for r in self.model_calls:
            for d in (*r.get("new_messages", ()), *r.get("messages", ())):
                m = Message.from_dict(d)
                out[message_key(m)] = m
        return out
