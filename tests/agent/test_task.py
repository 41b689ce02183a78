"""Task files: loading, clear errors for typos, and `harmonygraph run` end to end over HTTP."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from harmonygraph.cli import app
from harmonygraph.task import TaskError, load_task
from harmonygraph.tracing import FakeOpenAIServer
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


BOMB = """\
input: x
output_schema:
  type: object
  a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
  b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
  c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
  d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
  e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
  f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
  g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
  h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]
  i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h]
"""

HOSTILE: dict[str, tuple[str | bytes, str]] = {
    "alias bomb": (BOMB, "refused at line 5, column 10: alias `*a`: aliases are not allowed"),
    "merge key alias": (
        "base: &b {name: t}\ninput: x\nmodel: {<<: *b}\n",
        "alias `*b`: aliases are not allowed",
    ),
    "deep nesting": ("input: x\noutput_schema: " + "[" * 5000 + "]" * 5000, "nested more"),
    "too many values": (
        "input: x\noutput_schema: {enum: [" + ", ".join(["1"] * 25_000) + "]}\n",
        "more than 20,000 values",
    ),
    "over the size cap": ("input: " + "x" * (1024 * 1024 + 10) + "\n", "over the 1024 KiB limit"),
    "not UTF-8": (b"input: \xff\xfe\x00binary\n", "not UTF-8 text (byte 0xff at offset 7)"),
    "python tag": ("input: !!python/object/apply:os.system [echo hi]\n", "not valid YAML"),
    "relative import": (
        'input: x\ntools: [{import: "../x:Y"}]\n',
        "import `../x:Y` is a file path; name a module instead",
    ),
    "path import": ("input: x\ntools: [/tmp/evil.py]\n", "import `/tmp/evil.py` is a file path"),
    "misspelt built-in": (
        "input: x\ntools: [pyhton]\n",
        "unknown built-in tool `pyhton` (did you mean `python`?); the built-ins are python "
        "and browser",
    ),
    "dotted ref": (
        "input: x\ntools: [mypackage.tools.add]\n",
        "(did you mean `mypackage.tools:add`?)",
    ),
    "both import and builtin": (
        "input: x\ntools: [{import: a:b, builtin: python}]\n",
        "`tools.0`: give `import` or `builtin`, not both",
    ),
    "invalid output_schema": (
        "input: x\noutput_schema: {type: object, properties: {a: {type: 5}}}\n",
        "`output_schema.properties.a.type` is not valid JSON Schema",
    ),
    "output_schema $ref": (
        "input: x\noutput_schema: {$ref: 'https://example.com/s.json'}\n",
        "cannot resolve $ref",
    ),
    "output_type path": ("input: x\noutput_type: ./models.py\n", "`output_type`: import"),
    "a list, not a mapping": ("- input: x\n", "a task file is a mapping of keys"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_every_hostile_task_file_is_one_error_line_and_exit_2(tmp_path: Path, case: str) -> None:
    content, expected = HOSTILE[case]
    task = tmp_path / "task.yaml"
    if isinstance(content, bytes):
        task.write_bytes(content)
    else:
        task.write_text(content, encoding="utf-8")
    res = CliRunner().invoke(app, ["run", str(task), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.output
    assert expected in lines[0] and str(task) in lines[0]
    assert res.exception is None or isinstance(res.exception, SystemExit)
    with pytest.raises(TaskError):
        load_task(task)


@pytest.mark.parametrize(
    ("module_source", "expected"),
    [
        ("def add(:\n", "failed: SyntaxError"),
        ("raise RuntimeError('boom at import')\n", "failed: RuntimeError: boom at import"),
        ("x = 1\n", "has no `add`"),
        (
            "class Add:\n    def __init__(self):\n        raise ValueError('no key')\n",
            "`tools.0` (hostile_{n}:Add) could not be set up: ValueError: no key",
        ),
    ],
)
def test_a_tool_module_that_fails_is_one_error_line(
    tmp_path: Path, module_source: str, expected: str
) -> None:
    n = abs(hash((str(tmp_path), module_source))) % 10**8
    (tmp_path / f"hostile_{n}.py").write_text(module_source)
    attr = "Add" if "class Add" in module_source else "add"
    task = tmp_path / "task.yaml"
    task.write_text(f"input: x\ntools: [hostile_{n}:{attr}]\n")
    saved = list(sys.path)
    try:
        res = CliRunner().invoke(app, ["run", str(task), "--out", str(tmp_path / "o")])
    finally:
        sys.path[:] = saved
        sys.modules.pop(f"hostile_{n}", None)
    assert res.exit_code == 2, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.output
    assert expected.format(n=n) in lines[0]


def test_readme_example_imports_a_package_beside_the_task_file(tmp_path: Path) -> None:
    """README: `import: mypackage.tools:add` with mypackage/ beside the YAML, run from
    another folder, in a fresh process (nothing of the test's import path leaks in)."""
    pkg = tmp_path / "project" / "mypackage"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "tools.py").write_text(
        "def add(a: int, b: int) -> int:\n    '''Add two integers.'''\n    return a + b\n"
    )
    task = tmp_path / "project" / "task.yaml"
    task.write_text(
        TASK.format(api="completions").replace("tests.agent.test_loop:add", "mypackage.tools:add")
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    script = [call("add", '{"a": 2, "b": 40}'), final('{"value": 42}')]
    with FakeOpenAIServer(script) as server:
        proc = subprocess.run(
            [sys.executable, "-m", "harmonygraph", "run", str(task), "--out", "out",
             "--base-url", server.base_url, "--json"],
            cwd=elsewhere, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    payload = json.loads((elsewhere / "out" / "result.json").read_text())
    assert payload["status"] == "completed" and payload["output"] == {"value": 42}
    assert payload["tool_calls"] == 1
