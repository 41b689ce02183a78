"""`harmonygraph doctor`: one line per dependency, and what to do when one is missing."""

from __future__ import annotations

import json

import pytest
from harmonygraph.cli import app
from harmonygraph.tracing import FakeOpenAIServer
from typer.testing import CliRunner


def test_doctor_reports_each_part(monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeOpenAIServer([], models=["openai/gpt-oss-20b"]) as server:
        res = CliRunner().invoke(app, ["doctor", "--base-url", server.base_url, "--json"])
    checks = {c["name"]: c for c in json.loads(res.stdout)}
    assert set(checks) == {"vocabulary", "model endpoint", "docker", "postgres"}
    assert checks["vocabulary"]["ok"] and checks["model endpoint"]["ok"]
    assert "openai/gpt-oss-20b" in checks["model endpoint"]["detail"]


def test_doctor_says_what_to_do_when_the_server_is_missing() -> None:
    res = CliRunner().invoke(app, ["doctor", "--base-url", "http://127.0.0.1:9/v1", "--json"])
    endpoint = next(c for c in json.loads(res.stdout) if c["name"] == "model endpoint")
    assert not endpoint["ok"] and "--base-url" in endpoint["detail"]
