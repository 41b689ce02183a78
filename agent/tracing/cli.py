"""`harmonygraph fake-server`: the test double `FakeOpenAIServer`, as a process.

    harmonygraph fake-server --script completions.json --port 8000
    harmonygraph fake-server --script completions.jsonl --repeat --vllm-version 0.10.1

The script is the harmony completions the server hands out in order: a JSON list of
strings, or JSON Lines (one string, or one object with a `text` field, per line).
`--repeat` starts over when the script ends; without it, a request past the end is
answered 400 with a message saying so. The first line on stdout is the base URL
(`http://127.0.0.1:PORT/v1`); `--port 0` picks a free port. Ctrl-C (or SIGTERM) stops
it, and the fields a real vLLM of that version would have ignored are listed on stderr.

Bad input (a missing script, an unreadable one, a bad version) exits with status 2 and
one line on stderr, `error: ...`.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

__all__ = ["app", "read_script"]

app = typer.Typer(
    rich_markup_mode=None,
    name="fake-server",
    help="Serve FakeOpenAIServer (a vLLM-like test double) on 127.0.0.1.",
    add_completion=False,
    pretty_exceptions_enable=False,
)


class ScriptFileError(ValueError):
    """A script file that cannot be read as harmony completions."""


def read_script(path: Path) -> list[str]:
    """The completions in `path`: a JSON list of strings, or JSON Lines of them."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScriptFileError(f"cannot read {path}: {exc.strerror or exc}") from None
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            items: Any = json.loads(text)
        except ValueError as exc:
            raise ScriptFileError(f"{path} is not a JSON list: {exc}") from None
        rows = list(enumerate(items, 1))
    else:
        rows = []
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                rows.append((number, json.loads(line)))
            except ValueError as exc:
                raise ScriptFileError(
                    f"{path}:{number} is not JSON ({exc}); write one JSON string "
                    'or {"text": ...} object per line, or a JSON list of strings'
                ) from None
    out: list[str] = []
    for number, item in rows:
        if isinstance(item, dict) and isinstance(item.get("text"), str):
            item = item["text"]
        if not isinstance(item, str):
            raise ScriptFileError(
                f"{path}: item {number} is {type(item).__name__}, not a completion string "
                'or an object with a "text" string'
            )
        out.append(item)
    if not out:
        raise ScriptFileError(f"{path} holds no completions")
    return out


def _fail(line: str) -> NoReturn:
    typer.echo(f"error: {line}", err=True)
    raise typer.Exit(2)


@app.command()
def serve(
    script: Annotated[
        Path | None,
        typer.Option("--script", help="completions to hand out: a JSON list or JSON Lines"),
    ] = None,
    port: Annotated[int, typer.Option("--port", help="port on 127.0.0.1; 0 for a free one")] = 8000,
    model: Annotated[
        list[str] | None, typer.Option("--model", help="a served model name (repeatable)")
    ] = None,
    vllm_version: Annotated[
        str | None, typer.Option("--vllm-version", help="the vLLM version it answers as")
    ] = None,
    reasoning_field: Annotated[
        str, typer.Option("--reasoning-field", help="reasoning or reasoning_content")
    ] = "reasoning",
    api_key: Annotated[str | None, typer.Option("--api-key", help="require this key")] = None,
    delta_tokens: Annotated[
        int | None, typer.Option("--delta-tokens", help="chat deltas of N tokens (combined)")
    ] = None,
    repeat: Annotated[bool, typer.Option("--repeat", help="start the script over at its end")] = (
        False
    ),
) -> None:
    """Serve the fake vLLM until interrupted; print its base URL first."""
    from harmonygraph.tracing.doubles import DEFAULT_VLLM_VERSION, FakeOpenAIServer

    completions: list[str] = []
    if script is not None:
        try:
            completions = read_script(script)
        except ScriptFileError as exc:
            _fail(str(exc))
    elif repeat:
        _fail("--repeat needs a --script to repeat")
    source: Any = completions
    if repeat:
        lock, counter = threading.Lock(), [0]

        def cycle(_body: dict[str, Any]) -> str:
            with lock:
                counter[0] += 1
                return completions[(counter[0] - 1) % len(completions)]

        source = cycle
    try:
        fake = FakeOpenAIServer(
            source,
            models=model or ("openai/gpt-oss-20b",),
            api_key=api_key,
            reasoning_field=reasoning_field,
            vllm_version=vllm_version or DEFAULT_VLLM_VERSION,
            delta_tokens=delta_tokens,
            port=port,
        )
    except ValueError as exc:
        _fail(str(exc))
    try:
        fake.start()
    except OSError as exc:
        _fail(f"cannot listen on 127.0.0.1:{port} ({exc.strerror or exc}); pick another --port")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    typer.echo(fake.base_url)
    typer.echo(
        f"FakeOpenAIServer as vLLM {fake.vllm_version}, {len(completions)} scripted "
        f"completion(s){' repeated' if repeat else ''}; Ctrl-C stops it",
        err=True,
    )
    sys.stdout.flush()
    try:
        while not stop.wait(0.2):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        fake.stop()
    if fake.ignored_fields:
        names = ", ".join(sorted(set(fake.ignored_fields)))
        typer.echo(f"fields vLLM {fake.vllm_version} would have ignored: {names}", err=True)
