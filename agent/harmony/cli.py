"""`harmonygraph harmony`: render prompts and parse completions in the harmony format.

    harmonygraph harmony render convo.json [--tokens] [--json]
    harmonygraph harmony parse completion.txt [--json] [--tokens]
    cat completion.txt | harmonygraph harmony parse --json

Bad input (a missing file, invalid JSON, a completion that cannot be understood) exits
with status 2 and one line on stderr, `error: ...`.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

__all__ = ["app"]

app = typer.Typer(
    rich_markup_mode=None,
    name="harmony",
    help="Render prompts and parse completions in OpenAI's harmony format (gpt-oss).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

_SYSTEM_FIELDS = {
    "identity",
    "knowledge_cutoff",
    "current_date",
    "reasoning",
    "builtin_tools",
    "channels",
}
_DEVELOPER_FIELDS = {"instructions", "tools", "response_format"}


class _InputError(Exception):
    """Bad input, reported as one line."""


# An error quotes the input it could not read; a long input is cut to this many characters.
EXCERPT_CHARS = 60
MAX_ERROR_CHARS = 800
_N = EXCERPT_CHARS + 1
_QUOTED = re.compile(
    r"'(?:[^'\\]|\\.){N,}'|".replace("N", str(_N)) + r'"(?:[^"\\]|\\.){N,}"'.replace("N", str(_N))
)


def _bounded(line: str) -> str:
    """`line` with each long quoted excerpt of the input cut (its length said), and the
    whole line kept under `MAX_ERROR_CHARS`."""

    def cut(m: re.Match[str]) -> str:
        quote, body = m.group(0)[0], m.group(0)[1:-1]
        return f"{quote}{body[:EXCERPT_CHARS]}…{quote} ({len(body)} characters)"

    line = _QUOTED.sub(cut, line)
    if len(line) > MAX_ERROR_CHARS:
        half = MAX_ERROR_CHARS // 2 - 2
        line = f"{line[:half]} … {line[-half:]}"
    return line


def _fail(message: str) -> NoReturn:
    line = _bounded(" ".join(str(message).split()))
    typer.echo(f"error: {line}", err=True)
    raise typer.Exit(2)


def _read(file: str | None) -> str:
    if file is None or file == "-":
        return sys.stdin.read()
    path = Path(file)
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise _InputError(f"no such file: {file}") from None
    except IsADirectoryError:
        raise _InputError(f"{file} is a directory, not a file") from None
    except UnicodeDecodeError as exc:
        raise _InputError(f"{file} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise _InputError(f"cannot read {file}: {exc.strerror or exc}") from None


_JSON_NAMES: dict[type, str] = {dict: "object", list: "array", str: "string"}


def _expect(value: Any, kind: type, what: str) -> Any:
    if not isinstance(value, kind):
        raise _InputError(f"{what} must be a JSON {_JSON_NAMES.get(kind, kind.__name__)}")
    return value


def _unknown(data: dict[str, Any], known: set[str], what: str) -> None:
    extra = sorted(set(data) - known)
    if extra:
        raise _InputError(f"unknown {what} fields {extra} (expected some of {sorted(known)})")


def _build(data: Any) -> tuple[Any, Any, list[Any]]:
    """(SystemConfig, DeveloperConfig, messages) from the render input."""
    from harmonygraph.harmony import (
        DeveloperConfig,
        Message,
        ResponseFormat,
        SystemConfig,
        builtin_namespaces,
    )
    from harmonygraph.harmony.prompt import parse_reasoning
    from openai_harmony import ToolDescription, ToolNamespaceConfig

    if isinstance(data, list):
        data = {"messages": data}
    _expect(data, dict, "the input")
    _unknown(data, {"system", "developer", "messages"}, "top-level")

    system_data = _expect(data.get("system") or {}, dict, "`system`")
    _unknown(system_data, _SYSTEM_FIELDS, "`system`")
    kwargs: dict[str, Any] = {
        k: v for k, v in system_data.items() if k not in ("builtin_tools", "channels", "reasoning")
    }
    for key in ("identity", "knowledge_cutoff"):
        if key in kwargs:
            _expect(kwargs[key], str, f"`system.{key}`")
    if kwargs.get("current_date") is not None:
        _expect(kwargs["current_date"], str, "`system.current_date`")
    if "reasoning" in system_data:
        kwargs["reasoning"] = parse_reasoning(str(system_data["reasoning"]))
    if "builtin_tools" in system_data:
        names = _expect(system_data["builtin_tools"], list, "`system.builtin_tools`")
        kwargs["builtin_tools"] = builtin_namespaces([str(n) for n in names])
    if "channels" in system_data:
        channels = _expect(system_data["channels"], list, "`system.channels`")
        kwargs["channels"] = tuple(str(c) for c in channels)
    system = SystemConfig(**kwargs)

    dev_data = _expect(data.get("developer") or {}, dict, "`developer`")
    _unknown(dev_data, _DEVELOPER_FIELDS, "`developer`")
    tools = []
    for i, tool in enumerate(_expect(dev_data.get("tools") or [], list, "`developer.tools`")):
        _expect(tool, dict, f"`developer.tools[{i}]`")
        _unknown(tool, {"name", "description", "parameters"}, f"`developer.tools[{i}]`")
        if not isinstance(tool.get("name"), str) or not tool["name"]:
            raise _InputError(f"`developer.tools[{i}]` needs a `name`")
        params = tool.get("parameters")
        if params is not None:
            _expect(params, dict, f"`developer.tools[{i}].parameters`")
        tools.append(
            ToolDescription.new(tool["name"], str(tool.get("description", "")), parameters=params)
        )
    fmt = None
    if dev_data.get("response_format") is not None:
        rf = _expect(dev_data["response_format"], dict, "`developer.response_format`")
        _unknown(rf, {"name", "schema", "description"}, "`developer.response_format`")
        if not isinstance(rf.get("schema"), dict):
            raise _InputError("`developer.response_format` needs a `schema` object")
        fmt = ResponseFormat.from_type(rf["schema"], name=rf.get("name"))
        if rf.get("description"):
            fmt = ResponseFormat(fmt.name, fmt.schema, str(rf["description"]))
    instructions = dev_data.get("instructions")
    if instructions is not None:
        _expect(instructions, str, "`developer.instructions`")
    developer = DeveloperConfig(
        instructions=instructions,
        tools=(ToolNamespaceConfig(name="functions", description=None, tools=tools),)
        if tools
        else (),
        response_format=fmt,
    )

    messages = []
    for i, item in enumerate(_expect(data.get("messages") or [], list, "`messages`")):
        _expect(item, dict, f"`messages[{i}]`")
        try:
            messages.append(Message.from_dict(item))
        except ValueError as exc:
            raise _InputError(f"`messages[{i}]`: {exc}") from None
    return system, developer, messages


@app.command()
def render(
    file: Annotated[
        str,
        typer.Argument(
            help="Conversation JSON: {system, developer, messages} or a list of messages; '-' for stdin."
        ),
    ],
    tokens: Annotated[
        bool, typer.Option("--tokens", help="Print token ids instead of text.")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print a JSON object (text or tokens, length, sha256).")
    ] = False,
) -> None:
    """Render a conversation as the prompt for the assistant's next message."""
    from harmonygraph.harmony import ConversationRenderer, SchemaError, VocabularyError

    try:
        raw = _read(file)
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise _InputError(
                f"{file} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
            ) from None
        system, developer, messages = _build(data)
        prompt = ConversationRenderer(system, developer).render(messages)
    except (_InputError, SchemaError, VocabularyError, ValueError, TypeError) as exc:
        _fail(str(exc))
    if as_json:
        out: dict[str, Any] = {"length": prompt.length, "sha256": prompt.sha256}
        if tokens:
            out["tokens"] = prompt.tokens
        else:
            out["text"] = prompt.text
        typer.echo(json.dumps(out, ensure_ascii=False))
    elif tokens:
        typer.echo(" ".join(map(str, prompt.tokens)))
    else:
        typer.echo(prompt.text)


def _token_ids(raw: str) -> list[int]:
    text = raw.strip()
    try:
        ids = (
            json.loads(text)
            if text.startswith("[")
            else [int(t) for t in text.replace(",", " ").split()]
        )
    except (ValueError, json.JSONDecodeError):
        raise _InputError(
            "--tokens expects token ids: a JSON array or whitespace-separated integers"
        ) from None
    if not isinstance(ids, list) or not all(
        isinstance(t, int) and not isinstance(t, bool) for t in ids
    ):
        raise _InputError("--tokens expects token ids: a JSON array of integers")
    return ids


@app.command()
def parse(
    file: Annotated[
        str | None,
        typer.Argument(
            help="Completion text (special tokens written out); stdin if omitted or '-'."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the messages as JSON.")] = False,
    tokens: Annotated[
        bool, typer.Option("--tokens", help="The input is token ids, not text.")
    ] = False,
    keep_after_call: Annotated[
        bool, typer.Option("--keep-after-call", help="Go on reading after <|call|>.")
    ] = False,
    tool: Annotated[
        list[str] | None,
        typer.Option(
            "--tool", help="A registered tool name (repeatable): resolves `to=functions.fjson`."
        ),
    ] = None,
) -> None:
    """Parse a gpt-oss completion into messages (tolerant of what models really emit)."""
    from harmonygraph.harmony import HarmonyParseError, VocabularyError, parse_completion

    try:
        raw = _read(file)
        if raw.endswith("\n"):  # the newline an editor or `echo` puts at the end of a file
            raw = raw[:-2] if raw.endswith("\r\n") else raw[:-1]
        completion: str | list[int] = _token_ids(raw) if tokens else raw
        result = parse_completion(completion, stop_at_call=not keep_after_call, tools=tool)
    except (_InputError, HarmonyParseError, VocabularyError) as exc:
        _fail(str(exc))
    if as_json:
        out = {
            "messages": [m.to_dict() for m in result.messages],
            "ignored": result.ignored,
            "truncated": result.truncated,
            "repairs": [r.to_dict() for r in result.repairs],
        }
        typer.echo(json.dumps(out, ensure_ascii=False, indent=2))
        return
    for i, m in enumerate(result.messages):
        head = [f"[{i}] {m.name or m.role.value}"]
        for label, value in (
            ("channel", m.channel),
            ("to", m.recipient),
            ("type", m.content_type),
            ("stop", m.stop),
        ):
            if value:
                head.append(f"{label}={value}")
        if m.stop is None:
            head.append("(cut short)")
        typer.echo(" ".join(head))
        for line in m.content.splitlines() or [""]:
            typer.echo(f"    {line}")
    for text in result.ignored:
        typer.echo(f"(ignored) {text!r}")
    for r in result.repairs:
        typer.echo(
            f"(repaired) {r.kind.value} at offset {r.offset}"
            + (f": {r.detail}" if r.detail else "")
        )
