"""`harmonygraph doctor --server URL`: which path and features a live server supports,
asked of the server itself: the fake vLLM as old and new versions, and an Ollama-like
server, over real HTTP."""

from __future__ import annotations

import json
from typing import Any

import pytest
from harmonygraph.cli import app
from harmonygraph.tracing import FakeOpenAIServer
from typer.testing import CliRunner

from .ollama_like import OllamaLikeServer

# A turn as gpt-oss writes it: the probe's chat request reads its reasoning deltas.
TURN = "<|channel|>analysis<|message|>Greet.<|end|><|start|>assistant<|channel|>final<|message|>Hi<|return|>"


def doctor(*args: str) -> tuple[int, Any]:
    res = CliRunner().invoke(app, ["doctor", *args])
    return res.exit_code, res.stdout


def probe_json(url: str) -> dict[str, dict[str, Any]]:
    code, out = doctor("--server", url, "--json")
    assert code == 0, out
    return {c["name"]: c for c in json.loads(out)}


@pytest.mark.parametrize(
    ("version", "field", "reasoning_field", "token_ids"),
    [
        ("0.12.0", "structured_outputs", "reasoning", True),
        ("0.10.1", "guided_json", "reasoning_content", False),
    ],
)
def test_probe_of_a_vllm(version: str, field: str, reasoning_field: str, token_ids: bool) -> None:
    with FakeOpenAIServer(
        lambda _body: TURN, vllm_version=version, reasoning_field=reasoning_field
    ) as server:
        checks = probe_json(server.base_url)
        paths = [r.path for r in server.requests]
        ignored = list(server.ignored_fields)
    assert checks["server"]["detail"] == f"vLLM {version} (/version)"
    assert checks["models"]["detail"] == "openai/gpt-oss-20b"
    assert checks["structured output"]["ok"]
    assert checks["structured output"]["detail"].startswith(field)
    other = "guided_json" if field == "structured_outputs" else "structured_outputs"
    assert f"{other} would be ignored" in checks["structured output"]["detail"]
    assert checks["reasoning field"]["detail"] == f"{reasoning_field} (chat deltas)"
    assert checks["token ids"]["ok"] is token_ids
    assert not checks["responses"]["ok"]  # the fake serves no /v1/responses: a 404
    assert checks["path"]["detail"].startswith("api=completions")
    assert ("token-exact" in checks["path"]["detail"]) is token_ids
    # Each feature was asked of the server, not assumed.
    assert {"/version", "/v1/chat/completions", "/v1/completions", "/v1/responses"} <= set(paths)
    # The old vLLM ignored return_token_ids: the probe saw no ids, and the fake says so.
    assert ignored == ([] if token_ids else ["return_token_ids"])


@pytest.mark.parametrize("responses", [False, True])
def test_probe_of_an_ollama(responses: bool) -> None:
    with OllamaLikeServer(version="0.12.6", responses=responses) as server:
        checks = probe_json(server.base_url)
        chat_bodies = [b for m, p, b in server.requests if p == "/v1/chat/completions"]
    assert checks["server"]["detail"] == "Ollama 0.12.6 (/api/version)"
    assert checks["models"]["detail"] == "gpt-oss:20b"
    assert checks["reasoning field"]["detail"] == "reasoning (chat deltas)"
    assert not checks["token ids"]["ok"]
    assert "ignores return_token_ids" in checks["token ids"]["detail"]
    assert checks["responses"]["ok"] is responses
    assert checks["path"]["detail"].startswith("api=ollama-raw")
    # Ollama's name for the limit, and only it (max_completion_tokens it ignores).
    assert chat_bodies[0]["max_tokens"] == 24 and "max_completion_tokens" not in chat_bodies[0]


def test_probe_lines_without_json() -> None:
    with FakeOpenAIServer(lambda _body: TURN) as server:
        code, out = doctor("--server", server.base_url.removesuffix("/v1"))
    assert code == 0
    lines = out.strip().splitlines()
    names = [
        "server",
        "models",
        "structured output",
        "reasoning field",
        "token ids",
        "responses",
        "path",
    ]
    assert [line.split(":", 1)[0].lstrip("✓✗ ") for line in lines] == names


def test_probe_of_nothing_says_what_to_do() -> None:
    res = CliRunner().invoke(app, ["doctor", "--server", "http://127.0.0.1:9/v1"])
    assert res.exit_code == 1
    assert "nothing answers at http://127.0.0.1:9/v1" in res.stderr
    assert "--server http://HOST:PORT/v1" in res.stderr


def test_probe_with_a_refused_key() -> None:
    with FakeOpenAIServer([], api_key="right") as server:
        res = CliRunner().invoke(app, ["doctor", "--server", server.base_url, "--api-key", "wrong"])
    assert res.exit_code == 1
    assert "refused the API key (HTTP 401)" in res.stderr
