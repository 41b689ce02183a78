"""The model client's own secrets never reach a trace, a `run_end` record or an error
message, whatever their shape: the API key, the URL's credentials, custom header values.

Through the real client (`HarmonyCompletionsModel` over the OpenAI SDK) against the
project's fake server on 127.0.0.1, with keys shaped like nothing a pattern would catch.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

import openai
import pytest
from harmonygraph import Agent, AgentModelError
from harmonygraph.models import HarmonyCompletionsModel, ModelSettings
from harmonygraph.tools import tool
from harmonygraph.tracing import FakeOpenAIServer

# No `sk-`, no `Bearer`, quotes and backslashes that JSON escapes, spaces, URL specials.
KEY = 'hunter2 "odd" \\shape/+= 9f'
PASSWORD = "p@ss:w0rd%/#?"
USER = "svc-account"
HEADER = "org-tok;v=1,q=zz"
SECRETS = [KEY, PASSWORD, quote(PASSWORD, safe=""), HEADER]
BASIC = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()

CALL = (
    "<|channel|>analysis<|message|>Look.<|end|><|start|>assistant<|channel|>commentary "
    "to=functions.peek <|constrain|>json<|message|>{}<|call|>"
)


def model_for(base_url: str, key: str = KEY) -> HarmonyCompletionsModel:
    scheme, rest = base_url.split("://", 1)
    url = f"{scheme}://{USER}:{quote(PASSWORD, safe='')}@{rest}"
    sdk = openai.AsyncOpenAI(
        base_url=url,
        api_key=key,
        default_headers={"X-Org-Token": HEADER},
        max_retries=0,
        timeout=10,
    )
    return HarmonyCompletionsModel(client=sdk, settings=ModelSettings(max_retries=0, timeout=10))


def assert_no_secret(where: str, text: str) -> None:
    for secret in [*SECRETS, BASIC, f"{USER}:{quote(PASSWORD, safe='')}"]:
        assert secret not in text, f"{where} holds {secret!r}"
    # As a JSON string too (quotes and backslashes escaped).
    for secret in SECRETS:
        assert json.dumps(secret)[1:-1] not in text, f"{where} holds {secret!r} (JSON)"


@tool
def peek() -> str:
    """Read the environment (a tool that leaks, as a prompt-injected one would)."""
    return f"HARMONYGRAPH_API_KEY={KEY} password={PASSWORD} header={HEADER}"


def test_secrets_echoed_by_a_tool_and_the_model_are_redacted_from_the_trace(
    tmp_path: Path,
) -> None:
    leak = f"key {KEY}, password {PASSWORD}, header {HEADER}, basic {BASIC}"
    script = [CALL, f"<|channel|>final<|message|>{leak}<|return|>"]
    with FakeOpenAIServer(script) as server:
        model = model_for(server.base_url)
        result = Agent(model, tools=[peek], trace_dir=tmp_path).run("What is configured?")
        sent = server.requests[-1].headers
    assert sent["x-org-token"] == HEADER  # the client did use them
    assert result.status == "completed"
    assert result.trace_path is not None
    written = result.trace_path.read_text(encoding="utf-8")
    assert_no_secret("the trace file", written)
    assert_no_secret("the in-memory trace", json.dumps(result.trace.records))
    assert written.count("[REDACTED]") >= 7
    assert_no_secret("repr(model)", repr(model))
    end: Any = result.trace.end
    assert end["status"] == "completed"


def test_an_error_naming_the_url_and_echoing_the_key_keeps_no_secret(tmp_path: Path) -> None:
    with FakeOpenAIServer([CALL], api_key="the-right-key") as server:
        model = model_for(server.base_url)
        with pytest.raises(AgentModelError, match="refused the API key") as info:
            Agent(model, trace_dir=tmp_path).run("Hello?")
    err = info.value
    assert "127.0.0.1" in str(err)  # still says where
    assert_no_secret("the exception", str(err))
    assert_no_secret("the result's error", err.result.error or "")
    assert err.result.trace_path is not None
    assert_no_secret("the trace", err.result.trace_path.read_text(encoding="utf-8"))
    end: Any = err.result.trace.end
    assert end["status"] == "model_error"
    assert_no_secret("run_end", json.dumps(end))


def test_a_server_that_is_down_is_named_without_the_credentials_in_its_url() -> None:
    model = model_for("http://127.0.0.1:9/v1")  # discard port: nothing listens
    with pytest.raises(AgentModelError, match="could not connect") as info:
        Agent(model).run("Hello?")
    assert "127.0.0.1:9" in str(info.value)
    assert_no_secret("the exception", str(info.value))
    cause = info.value.__cause__
    chain = ""
    while cause is not None:
        chain += str(cause)
        cause = cause.__cause__
    assert_no_secret("the exception chain", chain)
