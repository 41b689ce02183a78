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
    port = server.base.rsplit(":", 1)[1]
    assert result.stdout.strip() == (
        "refused: 127.0.0.1 is a loopback address; only public internet hosts can be opened"
    )
    assert result.stderr.strip() == (
        f"hint: to open it anyway, pass --allow-host 127.0.0.1:{port} (or add it to "
        "HARMONYGRAPH_BROWSER_ALLOW_HOSTS)"
    )


def test_allow_host_with_port(server: LocalServer) -> None:
    port = int(server.base.rsplit(":", 1)[1])
    ok = runner.invoke(app, ["open", server.url("/text"), "--allow-host", f"127.0.0.1:{port}"])
    assert ok.exit_code == 0, ok.output
    assert "Note 0: the plain text line number 0." in ok.stdout
    other = port + 1 if port < 65535 else port - 1
    refused = runner.invoke(
        app, ["open", server.url("/text"), "--allow-host", f"127.0.0.1:{other}"]
    )
    assert refused.exit_code == 1
    assert f"--allow-host 127.0.0.1:{port}" in refused.stderr


def test_bad_allow_host_is_one_line() -> None:
    result = runner.invoke(app, ["open", "http://127.0.0.1/", "--allow-host", "127.0.0.1:web"])
    assert result.exit_code == 2
    line = result.stderr.strip()
    assert len(line.splitlines()) == 1 and line.startswith("error: bad browser configuration: ")
    assert line.endswith("allowed host '127.0.0.1:web': the port must be a number from 1 to 65535")


def test_allow_host_help_says_what_a_bare_host_opens() -> None:
    result = runner.invoke(app, ["open", "--help"], env={"COLUMNS": "200", "TERM": "dumb"})
    text = " ".join(result.output.split())
    assert "HOST:PORT opens that one port" in text
    assert "a bare HOST opens every port of it" in text


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
    assert result.stdout == ""
    assert (
        result.stderr
        == "error: unknown search backend 'bing'; choose one of ddgs, searxng, local\n"
    )


def test_bad_setting_from_the_environment_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARMONYGRAPH_MAX_BYTES", "lots")
    result = runner.invoke(app, ["search", "x", "--backend", "local"])
    assert result.exit_code == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stderr.startswith("error: bad browser configuration: `max_bytes`: ")


def test_ddgs_failure_names_the_engine_used(monkeypatch: pytest.MonkeyPatch) -> None:
    """ddgs with its default engine, through a proxy where nothing listens: the error names
    DuckDuckGo and the engine it really tried, not another ddgs engine."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("HARMONYGRAPH_DDGS_PROXY", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("HARMONYGRAPH_RETRY_ATTEMPTS", "1")
    monkeypatch.setenv("HARMONYGRAPH_SEARCH_TIMEOUT_S", "3")
    result = runner.invoke(app, ["search", "harmony", "--backend", "ddgs"])
    assert result.exit_code == 1
    assert "search backend ddgs (DuckDuckGo) failed" in result.stdout
    assert "duckduckgo.com" in result.stdout
    assert "brave" not in result.stdout.lower()
