"""`harmonygraph harmony render|parse`: in-process with CliRunner, and as a real process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from harmonygraph.harmony import (
    ConversationRenderer,
    DeveloperConfig,
    Message,
    ResponseFormat,
    SystemConfig,
    builtin_namespaces,
    parse_completion_text,
)
from harmonygraph.harmony.cli import app
from openai_harmony import ToolDescription, ToolNamespaceConfig
from typer.testing import CliRunner

from ._data import corpus_rows
from .test_parser_corpus import ERROR, EXPECTED

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()

WEATHER = {
    "name": "get_weather",
    "description": "Current weather.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}
MESSAGES = [
    Message.user("Weather in Paris?"),
    Message.assistant("Call the tool.", channel="analysis"),
    Message.assistant(
        '{"city": "Paris"}',
        channel="commentary",
        recipient="functions.get_weather",
        content_type="<|constrain|>json",
    ),
    Message.tool_result("functions.get_weather", '{"temp": 21}'),
]
INPUT = {
    "system": {"current_date": "2025-06-28", "reasoning": "high", "builtin_tools": ["browser"]},
    "developer": {
        "instructions": "Be brief.",
        "tools": [WEATHER],
        "response_format": {
            "name": "Answer",
            "schema": {"type": "object", "properties": {"ok": {"type": "boolean"}}},
        },
    },
    "messages": [m.to_dict() for m in MESSAGES],
}


def expected_prompt() -> Any:
    tool = ToolDescription.new(
        WEATHER["name"], WEATHER["description"], parameters=WEATHER["parameters"]
    )
    renderer = ConversationRenderer(
        SystemConfig(
            current_date="2025-06-28",
            reasoning="high",
            builtin_tools=builtin_namespaces(["browser"]),
        ),
        DeveloperConfig(
            instructions="Be brief.",
            tools=(ToolNamespaceConfig(name="functions", description=None, tools=[tool]),),
            response_format=ResponseFormat.from_type(
                {"type": "object", "properties": {"ok": {"type": "boolean"}}}, name="Answer"
            ),
        ),
    )
    return renderer.render(MESSAGES)


def write(tmp_path: Path, name: str, content: str) -> str:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    return str(path)


def one_error_line(result: Any) -> str:
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.output + result.stderr
    return str(lines[0])


# -- render -------------------------------------------------------------------------


def test_render_text(tmp_path: Path) -> None:
    result = runner.invoke(app, ["render", write(tmp_path, "c.json", json.dumps(INPUT))])
    assert result.exit_code == 0, result.output
    prompt = expected_prompt()
    assert result.stdout == prompt.text + "\n"
    assert "# Response Formats\n\n## answer\n\n" in result.stdout
    assert result.stdout.endswith(
        "<|start|>functions.get_weather to=assistant<|channel|>commentary"
        '<|message|>{"temp": 21}<|end|><|start|>assistant\n'
    )


def test_render_tokens_and_json(tmp_path: Path) -> None:
    path = write(tmp_path, "c.json", json.dumps(INPUT))
    prompt = expected_prompt()
    ids = runner.invoke(app, ["render", path, "--tokens"])
    assert ids.exit_code == 0
    assert [int(t) for t in ids.stdout.split()] == prompt.tokens
    as_json = json.loads(runner.invoke(app, ["render", path, "--tokens", "--json"]).stdout)
    assert as_json == {"length": prompt.length, "sha256": prompt.sha256, "tokens": prompt.tokens}
    text_json = json.loads(runner.invoke(app, ["render", path, "--json"]).stdout)
    assert text_json["text"] == prompt.text and text_json["length"] == len(prompt.tokens)


def test_render_a_bare_list_of_messages_from_stdin() -> None:
    messages = [Message.user("hi").to_dict()]
    result = runner.invoke(app, ["render", "-"], input=json.dumps(messages))
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("<|start|>system<|message|>You are ChatGPT")
    assert result.stdout.endswith("<|start|>user<|message|>hi<|end|><|start|>assistant\n")
    assert "<|start|>developer" not in result.stdout


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("{not json", "is not valid JSON"),
        ('{"messages": [{"role": "robot", "content": "x"}]}', "messages[0]"),
        ('{"messages": [{"role": "user"}]}', "needs `role` and `content`"),
        ('{"messages": [{"role": "user", "content": "x", "mood": 1}]}', "unknown message fields"),
        ('{"system": {"reasoning": "max"}}', "low, medium or high"),
        ('{"system": {"builtin_tools": ["shell"]}}', "unknown built-in tool"),
        ('{"system": {"colour": "red"}}', "unknown `system` fields ['colour']"),
        ('{"developer": {"tools": [{"description": "no name"}]}}', "needs a `name`"),
        (
            '{"developer": {"tools": [{"name": "f", "parameters": {"$ref": "#/$defs/X"}}]}}',
            "cannot resolve $ref",
        ),
        ('{"developer": {"response_format": {"name": "x"}}}', "needs a `schema` object"),
        ('"just a string"', "the input must be a JSON object"),
        ('{"messages": {"role": "user"}}', "`messages` must be a JSON array"),
    ],
)
def test_render_bad_input_is_one_line(tmp_path: Path, content: str, needle: str) -> None:
    line = one_error_line(runner.invoke(app, ["render", write(tmp_path, "bad.json", content)]))
    assert needle in line


@pytest.mark.parametrize("command", ["render", "parse"])
def test_bad_paths_are_one_line(tmp_path: Path, command: str) -> None:
    assert "no such file" in one_error_line(
        runner.invoke(app, [command, str(tmp_path / "missing")])
    )
    assert "is a directory" in one_error_line(runner.invoke(app, [command, str(tmp_path)]))
    binary = tmp_path / "blob.bin"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    assert "not UTF-8" in one_error_line(runner.invoke(app, [command, str(binary)]))


# -- parse --------------------------------------------------------------------------

CALL = (
    "<|channel|>analysis<|message|>Need weather.<|end|><|start|>assistant<|channel|>commentary "
    'to=functions.get_weather <|constrain|>json<|message|>{"city": "Paris"}<|call|>\n'
)


def test_parse_json_from_a_file(tmp_path: Path) -> None:
    result = runner.invoke(app, ["parse", write(tmp_path, "c.txt", CALL), "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out == {
        "messages": [m.to_dict() for m in parse_completion_text(CALL.rstrip("\n")).messages],
        "ignored": [],  # the file's final newline is not part of the completion
        "truncated": False,
        "repairs": [],
    }
    assert out["messages"][1]["recipient"] == "functions.get_weather"
    assert out["messages"][1]["stop"] == "call"


def test_parse_listing_from_stdin() -> None:
    result = runner.invoke(app, ["parse"], input=CALL)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "[0] assistant channel=analysis stop=end",
        "    Need weather.",
        "[1] assistant channel=commentary to=functions.get_weather type=<|constrain|>json stop=call",
        '    {"city": "Paris"}',
    ]


def test_parse_listing_marks_cut_messages_and_ignored_text() -> None:
    text = CALL.rstrip() + "<|start|>assistant<|channel|>final<|message|>x"
    result = runner.invoke(app, ["parse", "-"], input=text)
    assert "(ignored) '<|start|>assistant<|channel|>final<|message|>x'" in result.stdout
    cut = runner.invoke(app, ["parse"], input="<|channel|>final<|message|>I was saying")
    assert cut.stdout.splitlines()[0] == "[0] assistant channel=final (cut short)"


def test_parse_lists_repairs_and_resolves_glued_recipients_against_tools() -> None:
    text = 'analysisList.assistantcommentary to=functions.shelljson{"cmd": "ls"}'
    result = runner.invoke(app, ["parse", "--tool", "shell", "--json"], input=text)
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["messages"][1]["recipient"] == "functions.shell"
    assert [r["kind"] for r in out["repairs"]] == ["stripped_tokens", "recipient_ctype"]
    listing = runner.invoke(app, ["parse"], input=text).stdout.splitlines()
    assert listing[-1] == "(repaired) stripped_tokens at offset 0: 2"


def test_parse_token_ids(enc: Any) -> None:
    ids = enc.encode(CALL.rstrip("\n"), allowed_special="all")
    for given in (json.dumps(ids), " ".join(map(str, ids))):
        result = runner.invoke(app, ["parse", "--tokens", "--json"], input=given)
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["messages"][1]["content"] == '{"city": "Paris"}'
    assert "token ids" in one_error_line(runner.invoke(app, ["parse", "--tokens"], input="1 2 x"))
    assert "harmony vocabulary" in one_error_line(
        runner.invoke(app, ["parse", "--tokens"], input="[99999999]")
    )


def test_parse_keep_after_call() -> None:
    text = CALL.rstrip() + "<|start|>functions.get_weather to=assistant<|message|>{}<|end|>"
    out = json.loads(
        runner.invoke(app, ["parse", "--json", "--keep-after-call"], input=text).stdout
    )
    assert out["messages"][-1]["name"] == "functions.get_weather"


def test_parse_malformed_is_one_line() -> None:
    text = "<|channel|>final bogus words<|message|>hi"
    line = one_error_line(runner.invoke(app, ["parse"], input=text))
    assert line == (
        "error: unrecognised text 'bogus words' in message header "
        "at offset 17 (near '<|channel|>final bogus words<|message|>hi')"
    )


def test_excerpt_with_newlines_stays_on_one_line() -> None:
    line = one_error_line(
        runner.invoke(app, ["parse"], input="<|channel|>final<|message|>a\nb<|message|>c\nd")
    )
    assert "unexpected <|message|> inside message content" in line


def test_help_lists_both_commands() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "render" in result.stdout and "parse" in result.stdout


# -- as a real process, over the whole corpus ---------------------------------------------


def test_every_corpus_row_through_a_real_process(tmp_path: Path) -> None:
    rows = [p.values[0] for p in corpus_rows() if p.values[0] is not None]
    if not rows:
        pytest.skip("no corpus")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    code = "from agent.harmony.cli import app; app()"

    def run(row: dict[str, Any]) -> tuple[dict[str, Any], subprocess.CompletedProcess[str]]:
        path = tmp_path / f"row{row['index']}.txt"
        path.write_text(row["text"], encoding="utf-8")
        proc = subprocess.run(
            [sys.executable, "-c", code, "parse", str(path), "--json"],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        return row, proc

    with ThreadPoolExecutor(max_workers=max(2, min(8, os.cpu_count() or 2))) as pool:
        results = list(pool.map(run, rows))
    failures = 0
    for row, proc in results:
        if proc.returncode == 0:
            out = json.loads(proc.stdout)
            assert out["messages"] == [
                m.to_dict() for m in parse_completion_text(row["text"]).messages
            ]
            assert proc.stderr == ""
        else:
            assert proc.returncode == 2, (row["index"], proc.stderr)
            assert len(proc.stderr.splitlines()) == 1 and proc.stderr.startswith("error: "), (
                proc.stderr
            )
            assert proc.stdout == ""
            failures += 1
    # The rows that raise HarmonyParseError in the parser tests.
    assert failures == sum(1 for v in EXPECTED.values() if v == ERROR)
