"""Task files: loading, clear errors for typos, and `harmonygraph run` end to end over HTTP."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from harmonygraph.cli import app
from harmonygraph.task import TaskError, load_task
from harmonygraph.testing import FakeOpenAIServer
from typer.testing import CliRunner

from .test_loop import call, final

TASK = """\
name: sums
instructions: Use the tools for arithmetic.
input: What is 2 + 40?
reasoning: low
tools:
  - import: tests.agent.test_loop:add
output_schema:
  type: object
  properties: {{value: {{type: integer}}}}
  required: [value]
limits: {{max_steps: 6}}
model: {{name: openai/gpt-oss-20b, api: {api}}}
"""


def test_a_typo_names_the_key_and_the_fix(tmp_path: Path) -> None:
    p = tmp_path / "t.yaml"
    p.write_text("instrutions: hi\ninput: x\nlimits: {max_step: 3}\n")
    with pytest.raises(TaskError) as info:
        load_task(p)
    msg = str(info.value)
    assert "unknown key `instrutions` (did you mean `instructions`?)" in msg
    assert "unknown key `limits.max_step` (did you mean `max_steps`?)" in msg
    p.write_text("input: [unclosed\n")
    with pytest.raises(TaskError, match="not valid YAML at line"):
        load_task(p)
    p.write_text("instructions: no input\n")
    with pytest.raises(TaskError, match="missing required key `input`"):
        load_task(p)


@pytest.mark.parametrize("api", ["completions", "chat"])
def test_run_command_writes_result_and_trace(tmp_path: Path, api: str) -> None:
    task = tmp_path / "task.yaml"
    task.write_text(TASK.format(api=api))
    script = [call("add", '{"a": 2, "b": 40}'), final('{"value": 42}')]
    with FakeOpenAIServer(script) as server:
        out = tmp_path / "out"
        res = CliRunner().invoke(
            app, ["run", str(task), "--out", str(out), "--base-url", server.base_url, "--json"]
        )
    assert res.exit_code == 0, res.output
    payload = json.loads((out / "result.json").read_text())
    assert payload["status"] == "completed" and payload["output"] == {"value": 42}
    assert payload["tool_calls"] == 1 and payload["usage"]["input_tokens"] > 0
    assert (out / "trace.jsonl").exists()


def test_run_command_reports_a_bad_task_in_one_line(tmp_path: Path) -> None:
    task = tmp_path / "task.yaml"
    task.write_text("input: x\ntools: [{import: nowhere.at_all:thing}]\n")
    res = CliRunner().invoke(app, ["run", str(task), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2
    assert "cannot import module `nowhere.at_all`" in res.output
    assert "Traceback" not in res.output
