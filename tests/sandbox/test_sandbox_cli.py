"""`harmonygraph sandbox exec|doctor|build` through typer's runner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from harmonygraph.sandbox import DockerSandbox
from harmonygraph.sandbox.cli import app
from typer.testing import CliRunner

runner = CliRunner()


def test_exec_local_json_from_stdin(tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        ["exec", "-", "--json", "--backend", "local", "--session-dir", str(tmp_path)],
        input="print('hi')\nopen('made.txt', 'w').write('1')\n6 * 7\n",
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["status"] == "ok" and data["stdout"] == "hi\n" and data["value"] == "42"
    assert [f["path"] for f in data["files"]] == ["made.txt"]
    assert (tmp_path / "made.txt").read_text() == "1"


def test_exec_code_file_error_exit_code(tmp_path: Path) -> None:
    code = tmp_path / "bad.py"
    code.write_text("raise ValueError('nope')\n")
    result = runner.invoke(app, ["exec", "--code-file", str(code), "--backend", "local"])
    assert result.exit_code == 1
    assert "ValueError: nope" in result.stdout


def test_build_help_lists_offline() -> None:
    result = runner.invoke(app, ["build", "--help"])
    assert result.exit_code == 0 and "--offline" in result.stdout


@pytest.mark.docker
def test_exec_docker_with_session_dir(docker_sandbox: DockerSandbox, tmp_path: Path) -> None:
    (tmp_path / "input.csv").write_text("a,b\n1,2\n3,4\n")
    code = (
        "import csv\n"
        "rows = list(csv.DictReader(open('/mnt/data/input.csv')))\n"
        "open('/mnt/data/sum.txt', 'w').write(str(sum(int(r['b']) for r in rows)))\n"
        "len(rows)\n"
    )
    result = runner.invoke(
        app,
        [
            "exec",
            "-",
            "--json",
            "--backend",
            "docker",
            "--session-dir",
            str(tmp_path),
            "--image",
            docker_sandbox.config.image,
        ],
        input=code,
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["value"] == "2"
    assert (tmp_path / "sum.txt").read_text() == "6"


@pytest.mark.docker
def test_doctor_json(docker_sandbox: DockerSandbox) -> None:
    result = runner.invoke(app, ["doctor", "--json", "--image", docker_sandbox.config.image])
    data = json.loads(result.stdout)
    assert data["backends"]["docker"]["ok"] is True, data
    assert data["backends"]["docker"]["isolation"] == "strong"
    assert data["backends"]["local"]["ok"] is True
    assert "weak" in data["backends"]["local"]["isolation"]


def test_doctor_reports_a_missing_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    monkeypatch.setenv("HARMONYGRAPH_SANDBOX", "local")
    result = runner.invoke(app, ["doctor", "--json"])
    data = json.loads(result.stdout)
    assert data["backends"]["docker"]["ok"] is False
    assert "HARMONYGRAPH_SANDBOX=local" in data["backends"]["docker"]["error"]
    assert result.exit_code == 0  # the configured backend (local) works
