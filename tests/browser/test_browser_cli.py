"""`harmonygraph browse ...`: the CLI prints exactly what the model would see."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from browser_testkit import LocalServer
from harmonygraph.tools.browser.cli import app
from typer.testing import CliRunner

runner = CliRunner()


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("HARMONYGRAPH_SEARCH_BACKEND", "HARMONYGRAPH_BROWSER_ALLOW_HOSTS"):
        monkeypatch.delenv(key, raising=False)


def test_open_prints_the_model_view(server: LocalServer) -> None:
    url = server.url("/text")
    result = runner.invoke(app, ["open", url, "--allow-host", "127.0.0.1", "--num-lines", "3"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        f"[0] text ({url})",
        "**viewing lines [0 - 2] of 119**",
        "",
        "L0: Note 0: the plain text line number 0.",
        "L1: Note 1: the plain text line number 1.",
        "L2: Note 2: the plain text line number 2.",
    ]


def test_open_json(server: LocalServer) -> None:
    url = server.url("/pages/aclu/source.html")
    result = runner.invoke(app, ["open", url, "--json", "--allow-host", "127.0.0.1"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["is_error"] is False
    assert data["metadata"]["url"] == url
    assert data["text"].startswith("[0] Facebook Is Tracking Me")


def test_open_refused_without_allow_host(server: LocalServer) -> None:
    result = runner.invoke(app, ["open", server.url("/text")])
    assert result.exit_code == 1
    assert result.output.strip() == (
        "refused: 127.0.0.1 is a loopback address; only public internet hosts can be opened"
    )


def test_find(server: LocalServer) -> None:
    result = runner.invoke(
        app, ["find", server.url("/text"), "number 42.", "--allow-host", "127.0.0.1"]
    )
    assert result.exit_code == 0, result.output
    assert "# 【0†match at L42】" in result.output
    assert "L1: Note 42: the plain text line number 42." in result.output


def test_search_local_backend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "a.md").write_text("# Harmony\n\nThe harmony format has channels.\n")
    monkeypatch.setenv("HARMONYGRAPH_LOCAL_SEARCH_DIR", str(tmp_path))
    result = runner.invoke(app, ["search", "channels", "--backend", "local"])
    assert result.exit_code == 0, result.output
    assert "L0: 【0†Harmony†local】" in result.output


def test_search_with_bad_backend_name() -> None:
    result = runner.invoke(app, ["search", "x", "--backend", "bing"])
    assert result.exit_code == 2
    assert "bad browser configuration" in result.output
