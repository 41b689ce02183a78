"""Traces: what is recorded, what is redacted, and how replays fail when a run changes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from harmonygraph import Agent, RunLimits
from harmonygraph.engine.replay import replay_trace, turn_inputs
from harmonygraph.tools import tool
from harmonygraph.tracing import (
    SCHEMA_VERSION,
    Redactor,
    ReplayDivergence,
    ScriptedModel,
    Trace,
    TraceError,
)

from .test_loop import call, final


@tool
def lookup(city: str) -> str:
    """Weather for a city."""
    return f'{{"city": "{city}", "temp_c": 21}}'


@tool
def extra(x: int) -> int:
    """Another tool."""
    return x


SCRIPT = [call("lookup", '{"city": "Paris"}'), final("21 °C in Paris.")]


def record(tmp_path: Path, **kwargs) -> Path:  # type: ignore[no-untyped-def]
    path = tmp_path / "run.jsonl"
    Agent(ScriptedModel(list(SCRIPT)), tools=[lookup], instructions="Weather bot.", **kwargs).run(
        "Weather in Paris?", trace_path=path
    )
    return path


def test_trace_records_header_calls_and_end(tmp_path: Path) -> None:
    trace = Trace.load(record(tmp_path))
    h = trace.header
    assert h["schema_version"] == SCHEMA_VERSION and h["tools"] == ["functions.lookup"]
    assert h["reasoning"] == "medium" and h["model"] and h["date"]
    (m1, m2) = trace.model_calls
    assert m1["prompt_tokens"] > 0 and len(m1["prompt_sha256"]) == 64 and m1["raw"] == SCRIPT[0]
    assert m1["params"]["temperature"] == 1.0 and m1["params"]["max_tokens"] > 16
    assert [m["role"] for m in m1["new_messages"]] == ["user"]
    assert [m["role"] for m in m2["new_messages"]] == ["assistant", "assistant", "tool"]
    (t1,) = trace.tool_calls
    assert (t1["recipient"], t1["status"], t1["result"]) == (
        "functions.lookup",
        "ok",
        lookup.fn("Paris"),
    )
    assert (
        trace.end is not None
        and trace.end["status"] == "completed"
        and trace.end["output"] == "21 °C in Paris."
    )


def test_secrets_are_redacted(tmp_path: Path) -> None:
    secret = "s3cr3t-value-123"
    path = tmp_path / "t.jsonl"
    model = ScriptedModel(
        [final(f"key sk-abcdefghijklmnop and {secret}, Authorization: Bearer abcdefghijkl")]
    )
    Agent(model, redact=[secret], instructions=f"use {secret}").run("hi", trace_path=path)
    text = path.read_text()
    assert (
        secret not in text
        and "sk-abcdefghijklmnop" not in text
        and "Bearer abcdefghijkl" not in text
    )
    assert "[REDACTED]" in text
    # The quick check before the walk misses nothing the walk would catch: a secret added
    # after the first record, case-sensitive non-ASCII secrets, Unicode-folded key names.
    late = Redactor(["first-secret"])
    late.record({"x": "nothing here"})
    late.secrets.append("added-later-9f3a")  # type: ignore[attr-defined]
    assert late.record({"x": "leak added-later-9f3a"})[1] == '{"x": "leak [REDACTED]"}'
    assert Redactor(["abcΣ"]).record({"t": "zz abcΣd"})[1] == '{"t": "zz [REDACTED]d"}'
    assert Redactor().record({"ſecret": "v"})[1] == '{"ſecret": "[REDACTED]"}'
    assert Redactor()({"headers": {"Authorization": "Bearer x"}, "api_key": "EMPTY"}) == {
        "headers": {"Authorization": "[REDACTED]"},
        "api_key": "[REDACTED]",
    }


def test_strict_replay_passes_and_names_what_changed(tmp_path: Path) -> None:
    path = record(tmp_path)
    same = Agent(ScriptedModel([]), tools=[lookup], instructions="Weather bot.")
    assert same.replay(path).text == "21 °C in Paris."

    more_tools = Agent(ScriptedModel([]), tools=[lookup, extra], instructions="Weather bot.")
    with pytest.raises(
        ReplayDivergence, match=re.escape("step 1: developer message: tool `functions.extra` added")
    ):
        more_tools.replay(path)
    other_words = Agent(ScriptedModel([]), tools=[lookup], instructions="Be terse.")
    with pytest.raises(
        ReplayDivergence, match=re.escape("step 1: developer message: instructions changed")
    ):
        other_words.replay(path)
    with pytest.raises(ReplayDivergence, match=re.escape("step 1: message 1 (user) differs")):
        same.replay(path, input="Weather in Rome?")
    # Lenient mode only follows the recorded order.
    assert more_tools.replay(path, strict=False).text == "21 °C in Paris."


def test_strict_replay_names_changed_sampling_and_an_early_end(tmp_path: Path) -> None:
    from harmonygraph.models.base import ModelSettings

    path = record(tmp_path)
    hotter = Agent(
        ScriptedModel([]),
        tools=[lookup],
        instructions="Weather bot.",
        settings=ModelSettings(temperature=0.2),
    )
    with pytest.raises(
        ReplayDivergence,
        match=re.escape("step 1: sampling parameter `temperature` is 0.2; the recording had 1.0"),
    ):
        hotter.replay(path)

    # An agent that stops after one step (a lower limit) leaves a recorded call unused.
    short = Agent(
        ScriptedModel([]),
        tools=[lookup],
        instructions="Weather bot.",
        limits=RunLimits(max_steps=1),
    )
    with pytest.raises(
        ReplayDivergence, match="the run ended max_steps; the recording ended completed"
    ):
        short.replay(path)


def test_replay_from_the_trace_alone(tmp_path: Path) -> None:
    report = replay_trace(record(tmp_path))
    assert report == {
        "ok": True,
        "status": "completed",
        "turns": 1,
        "model_calls": 2,
        "tool_calls": 1,
        "output": "21 °C in Paris.",
    }


def test_a_saved_chat_replays_turn_by_turn(tmp_path: Path) -> None:
    """`/save` in a chat writes one run per turn on one thread; all of them replay."""
    from harmonygraph.cli import app
    from typer.testing import CliRunner

    model = ScriptedModel([*SCRIPT, call("lookup", '{"city": "Rome"}'), final("19 °C in Rome.")])
    session = Agent(model, tools=[lookup], instructions="Weather bot.").chat()
    session.send("Weather in Paris?")
    session.set_reasoning("high")
    session.send("And in Rome?")
    path = session.save(tmp_path / "chat.jsonl")
    report = replay_trace(path)
    assert (report["turns"], report["model_calls"], report["tool_calls"]) == (2, 4, 2)
    assert report["output"] == "19 °C in Rome."
    res = CliRunner().invoke(app, ["replay", str(path), "--strict"])
    assert res.exit_code == 0, res.output

    # Each turn replays with its own input and reasoning effort.
    turns = turn_inputs(Trace.load(path))
    assert [(r, [m.content for m in msgs]) for r, msgs in turns] == [
        ("medium", ["Weather in Paris?"]),
        ("high", ["And in Rome?"]),
    ]


def test_trace_from_another_version_fails_naming_it(tmp_path: Path) -> None:
    path = record(tmp_path)
    lines = path.read_text().splitlines()
    header = json.loads(lines[0]) | {"schema_version": 99, "harmonygraph": "9.0.0"}
    path.write_text("\n".join([json.dumps(header), *lines[1:]]))
    with pytest.raises(
        TraceError, match=re.escape("trace schema version 99 (written by harmonygraph 9.0.0)")
    ):
        Trace.load(path)
    # Same version, but a message field this harmonygraph does not know: named at load.
    lines[1:] = [
        line.replace('"role": "user"', '"role": "user", "audio": "x"', 1) for line in lines[1:]
    ]
    path.write_text("\n".join(lines))
    with pytest.raises(
        TraceError,
        match=r"record 2 \(model call, step 1\): unknown message fields: \['audio'\]\. The trace is schema version 1, written by harmonygraph",
    ):
        Trace.load(path)
    (tmp_path / "junk.jsonl").write_text("not json\n")
    with pytest.raises(TraceError, match=re.escape("junk.jsonl:1: not JSON")):
        Trace.load(tmp_path / "junk.jsonl")


def _mutate(line: int, change):  # type: ignore[no-untyped-def]
    """A hostile trace: the recorded one with record `line` (1-based) changed."""

    def make(lines: list[str]) -> list[str]:
        record = json.loads(lines[line - 1])
        out = change(record)
        lines[line - 1] = out if isinstance(out, str) else json.dumps(record)
        return lines

    return make


HOSTILE_TRACES = {
    "a JSON array": (
        _mutate(2, lambda r: "[1, 2, 3]"),
        2,
        "the line is an array, not a trace record",
    ),
    "a JSON string": (_mutate(3, lambda r: '"hello"'), 3, "the line is a string, not a trace"),
    "deep nesting": (_mutate(2, lambda r: "[" * 100_000 + "]" * 100_000), 2, "nested too deeply"),
    "deep but parseable": (
        _mutate(3, lambda r: r.update(metadata=json.loads("[" * 500 + "]" * 500))),
        3,
        "nested more than 100 levels deep",
    ),
    "messages is 5": (
        _mutate(2, lambda r: r.update(messages=5)),
        2,
        "model call record: `messages` is a number; it must be an array",
    ),
    "a message is a string": (
        _mutate(2, lambda r: r.update(new_messages=["hi"])),
        2,
        "`new_messages[0]` is a string; it must be an object",
    ),
    "no request": (
        _mutate(4, lambda r: r.pop("request")),
        4,
        "model call record: missing `request`",
    ),
    "request tools a list": (
        _mutate(2, lambda r: r["request"].update(tools=[])),
        2,
        "`request.tools` is an array; it must be an object",
    ),
    "tool result a number": (
        _mutate(3, lambda r: r.update(result=5)),
        3,
        "tool call record: `result` is a number; it must be a string",
    ),
    "usage a string": (
        _mutate(5, lambda r: r["usage"].update(input_tokens="9")),
        5,
        "`usage.input_tokens`",
    ),
    "unknown type": (_mutate(4, lambda r: r.update(type="exec")), 4, "unknown record type 'exec'"),
    "integer over 4300 digits": (
        _mutate(5, lambda r: '{"type": "run_end", "status": "x", "cost_usd": ' + "9" * 5000 + "}"),
        5,
        "not usable JSON",
    ),
    "bad header namespace": (
        _mutate(1, lambda r: r["developer"].update(tools=[{"name": "functions", "tools": [5]}])),
        1,
        "`developer.tools[0]`.tools[0] must be an object with a string `name`",
    ),
    "header system a list": (
        _mutate(1, lambda r: r.update(system=[])),
        1,
        "run record: `system` is an array; it must be an object or null",
    ),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_TRACES))
def test_replay_of_a_damaged_trace_is_one_line_naming_the_record(tmp_path: Path, case: str) -> None:
    from harmonygraph.cli import app
    from typer.testing import CliRunner

    make, line, expected = HOSTILE_TRACES[case]
    path = record(tmp_path)
    lines = path.read_text().splitlines()
    kinds = [json.loads(x)["type"] for x in lines]
    assert kinds == ["run", "model_call", "tool_call", "model_call", "run_end"]
    path.write_text("\n".join(make(lines)) + "\n")
    res = CliRunner().invoke(app, ["replay", str(path)])
    assert res.exit_code == 2, res.output
    out = res.output.strip().splitlines()
    assert len(out) == 1 and out[0].startswith("error: "), res.output
    assert f"{path}:{line}: " in out[0] and expected in out[0], out[0]
    with pytest.raises(TraceError):
        Trace.load(path)


def test_replay_of_a_binary_file_or_a_folder_is_one_line(tmp_path: Path) -> None:
    from harmonygraph.cli import app
    from typer.testing import CliRunner

    blob = tmp_path / "image.jsonl"
    blob.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe")
    for target, expected in [
        (blob, f"{blob}:1: not UTF-8 text (byte 0x89 at column 1)"),
        (tmp_path, "not a regular file"),
        (tmp_path / "missing.jsonl", "cannot read trace"),
    ]:
        res = CliRunner().invoke(app, ["replay", str(target)])
        out = res.output.strip().splitlines()
        assert res.exit_code == 2 and len(out) == 1, res.output
        assert out[0].startswith("error: ") and expected in out[0], out[0]
