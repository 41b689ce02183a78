"""FakeOpenAIServer is strict where vLLM is strict and says what it ignored where vLLM
ignores: each behaviour through the real `openai` SDK and our clients, over real HTTP."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from harmonygraph.harmony import ResponseFormat
from harmonygraph.harmony.encoding import get_encoding
from harmonygraph.models import ChatCompletionsModel, ModelError, ResponseDone
from harmonygraph.models.constrained import FINAL_OPEN, FINAL_OPENINGS, complete_with_final_schema
from harmonygraph.tracing import FakeOpenAIServer
from harmonygraph.tracing.doubles import vllm_accepted_fields

from .helpers import CALL, DEVELOPER, FINAL, make_request

PROMPT = get_encoding().encode(
    "<|start|>user<|message|>What is 2 + 3?<|end|><|start|>assistant", allowed_special="all"
)
REASONING = "<|channel|>analysis<|message|>2 + 3 is 5; answer as JSON.<|end|><|start|>assistant"
SCHEMA = {"type": "object", "properties": {"answer": {"type": "integer"}}, "required": ["answer"]}
PREAMBLE_CALL = (
    "<|channel|>analysis<|message|>Need the weather.<|end|>"
    "<|start|>assistant<|channel|>commentary<|message|>Checking Paris.<|end|>"
    "<|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json"
    '<|message|>{"city":"Paris"}<|call|>'
)


def client(server: FakeOpenAIServer) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=server.base_url, api_key="EMPTY", max_retries=0)


async def test_stream_options_without_stream_is_a_400_as_in_vllm() -> None:
    with FakeOpenAIServer([FINAL]) as server:
        c = client(server)
        with pytest.raises(openai.BadRequestError) as info:
            await c.chat.completions.create(
                model="openai/gpt-oss-20b",
                messages=[{"role": "user", "content": "hi"}],
                stream_options={"include_usage": True},
            )
        await c.close()
    assert info.value.status_code == 400
    assert "Stream options can only be defined when `stream=True`" in info.value.message
    assert info.value.body["param"] == "stream_options"  # type: ignore[index]


async def test_unknown_fields_are_ignored_and_listed() -> None:
    with FakeOpenAIServer([FINAL, FINAL]) as server:
        c = client(server)
        await c.chat.completions.create(
            model="openai/gpt-oss-20b",
            messages=[{"role": "user", "content": "hi"}],
            extra_body={"store": True, "reasoning": {"effort": "low"}, "top_k": 20},
        )
        await c.completions.create(
            model="openai/gpt-oss-20b", prompt="hi", extra_body={"think": True}
        )
        await c.close()
    # top_k is vLLM's own sampling field: known, not ignored.
    assert server.ignored_fields == ["store", "reasoning", "think"]


@pytest.mark.parametrize(
    ("version", "applied", "ignored"),
    [
        ("0.12.0", "structured_outputs", "guided_json"),
        ("0.10.1", "guided_json", "structured_outputs"),
    ],
)
async def test_structured_output_applies_only_under_the_versions_name(
    version: str, applied: str, ignored: str
) -> None:
    def script(body: dict[str, Any]) -> str:
        constrained = "structured_outputs" in body or "guided_json" in body
        return '{"answer": 5}<|return|>' if constrained else REASONING + FINAL_OPEN

    for style in ("structured_outputs", "guided_json"):
        with FakeOpenAIServer(script, vllm_version=version) as server:
            c = client(server)
            result = await complete_with_final_schema(
                c,
                "openai/gpt-oss-20b",
                PROMPT,
                SCHEMA,
                style=style,  # type: ignore[arg-type]
                return_token_ids=False,
            )
            await c.close()
            async with httpx.AsyncClient() as http:
                reported = (await http.get(server.base_url.removesuffix("/v1") + "/version")).json()
        assert reported == {"version": version}
        assert json.loads(result.text.split(FINAL_OPEN, 1)[1].removesuffix("<|return|>")) == {
            "answer": 5
        }
        if style == applied:
            assert [(c.field, c.kind, c.spec) for c in server.constraints] == [
                (applied, "json", SCHEMA)
            ]
            assert server.ignored_fields == []
        else:
            # What a real vLLM does: logs the field as ignored and samples unconstrained.
            assert server.constraints == []
            assert server.ignored_fields == [ignored]
    assert "return_token_ids" not in vllm_accepted_fields("/v1/completions", "0.10.1")
    assert "return_token_ids" in vllm_accepted_fields("/v1/completions", "0.10.2")


async def test_a_scripted_answer_that_breaks_an_applied_schema_is_refused() -> None:
    with FakeOpenAIServer(['{"answer": "five"}<|return|>']) as server:
        c = client(server)
        with pytest.raises(openai.BadRequestError, match="breaks the schema"):
            await c.completions.create(
                model="openai/gpt-oss-20b",
                prompt="",
                extra_body={"prompt": PROMPT, "structured_outputs": {"json": SCHEMA}},
            )
        await c.close()


async def test_response_format_constrains_the_final_answer_on_chat() -> None:
    fmt = ResponseFormat("answer", SCHEMA)
    developer = dataclasses.replace(DEVELOPER, tools=(), response_format=fmt)
    final = "<|channel|>analysis<|message|>Sum.<|end|><|start|>assistant<|channel|>final<|message|>"
    with FakeOpenAIServer([final + '{"answer": 5}<|return|>', final + "five<|return|>"]) as server:
        model = ChatCompletionsModel(base_url=server.base_url)
        request = dataclasses.replace(make_request(), developer=developer)
        response = await model.complete(request)
        with pytest.raises(ModelError, match="could not come from a server applying"):
            await model.complete(request)
        await model.aclose()
    assert json.loads(response.messages[-1].content) == {"answer": 5}
    assert [c.field for c in server.constraints] == ["response_format", "response_format"]


@pytest.mark.parametrize("include", [True, False])
async def test_stop_strings_are_honoured(include: bool) -> None:
    with FakeOpenAIServer([REASONING + FINAL_OPEN + "five<|return|>"]) as server:
        c = client(server)
        completion = await c.completions.create(
            model="openai/gpt-oss-20b",
            prompt="",
            max_tokens=100,
            stop=list(FINAL_OPENINGS),
            extra_body={
                "prompt": PROMPT,
                "skip_special_tokens": False,
                "include_stop_str_in_output": include,
                "return_token_ids": True,
            },
        )
        await c.close()
    choice = completion.choices[0]
    assert choice.finish_reason == "stop"
    assert (choice.model_extra or {})["stop_reason"] == FINAL_OPEN
    assert choice.text == REASONING + (FINAL_OPEN if include else "")
    # The ids are what was sampled: up to the token that completed the stop string.
    assert (choice.model_extra or {})["token_ids"] == get_encoding().encode(
        REASONING + FINAL_OPEN, allowed_special="all"
    )


async def test_a_stop_string_of_special_tokens_needs_them_in_the_text() -> None:
    """vLLM matches stop strings in the detokenized text: with special tokens skipped (the
    default), `<|channel|>final<|message|>` is never seen and generation runs on."""
    with FakeOpenAIServer([REASONING + FINAL_OPEN + "five<|return|>"]) as server:
        c = client(server)
        completion = await c.completions.create(
            model="openai/gpt-oss-20b",
            prompt="",
            max_tokens=100,
            stop=[FINAL_OPEN],
            extra_body={"prompt": PROMPT},
        )
        await c.close()
    assert completion.choices[0].text.endswith("five")
    assert (completion.choices[0].model_extra or {})["stop_reason"] is None


async def test_chat_stop_string_ends_the_answer() -> None:
    with FakeOpenAIServer([FINAL]) as server:
        c = client(server)
        completion = await c.chat.completions.create(
            model="openai/gpt-oss-20b",
            messages=[{"role": "user", "content": "Weather?"}],
            stop=["(21"],
        )
        await c.close()
    assert completion.choices[0].message.content == "It is sunny in Paris "
    assert completion.choices[0].finish_reason == "stop"


async def test_an_error_mid_stream_comes_as_vllm_sends_it() -> None:
    with FakeOpenAIServer([FINAL, FINAL]) as server:
        server.fail_stream_after(2, "engine dead")
        async with httpx.AsyncClient() as http:
            raw = await http.post(
                server.base_url + "/chat/completions",
                json={
                    "model": "openai/gpt-oss-20b",
                    "messages": [{"role": "user", "content": "hi"}],
                    "stream": True,
                },
            )
        server.fail_stream_after(1, "engine dead again")
        model = ChatCompletionsModel(base_url=server.base_url)
        with pytest.raises(ModelError, match="engine dead again"):
            async for _ in model.stream(make_request()):
                pass
        await model.aclose()
    events = [line for line in raw.text.split("\n\n") if line]
    assert raw.status_code == 200 and len(events) == 4
    assert json.loads(events[2].removeprefix("data: ")) == {
        "error": {"message": "engine dead", "type": "BadRequestError", "param": None, "code": 400}
    }
    assert events[3] == "data: [DONE]"


async def test_deltas_can_combine_reasoning_content_and_tool_calls() -> None:
    with FakeOpenAIServer([PREAMBLE_CALL, PREAMBLE_CALL], delta_tokens=16) as server:
        async with httpx.AsyncClient() as http:
            raw = await http.post(
                server.base_url + "/chat/completions",
                json={
                    "model": "openai/gpt-oss-20b",
                    "messages": [{"role": "user", "content": "Weather in Paris?"}],
                    "stream": True,
                },
            )
        model = ChatCompletionsModel(base_url=server.base_url)
        events = [e async for e in model.stream(make_request())]
        await model.aclose()
    deltas = [
        json.loads(line.removeprefix("data: "))["choices"][0]["delta"]
        for line in raw.text.split("\n\n")
        if line.startswith("data: {")
    ]
    kinds = [{k for k in d if k in ("reasoning", "content", "tool_calls") and d[k]} for d in deltas]
    assert any(len(k) >= 2 for k in kinds), kinds
    assert "".join(d.get("reasoning") or "" for d in deltas) == "Need the weather."
    assert "".join(d.get("content") or "" for d in deltas) == "Checking Paris."
    done = events[-1]
    assert isinstance(done, ResponseDone)
    messages = done.response.messages
    assert [(m.channel, m.content) for m in messages][:2] == [
        ("analysis", "Need the weather."),
        ("commentary", "Checking Paris."),
    ]
    assert messages[-1].is_tool_call and json.loads(messages[-1].content) == {"city": "Paris"}


def test_bad_constructor_arguments_say_what_to_pass() -> None:
    with pytest.raises(ValueError, match=r"expected e\.g\. '0\.10\.2'"):
        FakeOpenAIServer(vllm_version="latest")
    with pytest.raises(ValueError, match="reasoning_content"):
        FakeOpenAIServer(reasoning_field="thinking")


# -- the launcher ------------------------------------------------------------------------


def _launch(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "harmonygraph", "fake-server", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def test_fake_server_launcher(tmp_path: Path) -> None:
    script = tmp_path / "script.jsonl"
    script.write_text(json.dumps(CALL) + "\n" + json.dumps({"text": FINAL}) + "\n")
    proc = _launch("--script", str(script), "--port", "0", "--vllm-version", "0.10.1", "--repeat")
    try:
        assert proc.stdout is not None
        base_url = proc.stdout.readline().strip()
        assert base_url.startswith("http://127.0.0.1:") and base_url.endswith("/v1")
        version = httpx.get(base_url.removesuffix("/v1") + "/version", timeout=10).json()
        assert version == {"version": "0.10.1"}
        answers = []
        for _ in range(3):  # two scripted completions, repeated
            r = httpx.post(
                base_url + "/chat/completions",
                json={
                    "model": "openai/gpt-oss-20b",
                    "messages": [{"role": "user", "content": "Weather?"}],
                    "structured_outputs": {"json": {}},
                },
                timeout=10,
            )
            answers.append(r.json()["choices"][0]["finish_reason"])
        assert answers == ["tool_calls", "stop", "tool_calls"]
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0
    assert "would have ignored: structured_outputs" in err


def test_fake_server_launcher_refuses_a_bad_script(tmp_path: Path) -> None:
    script = tmp_path / "script.json"
    script.write_text('["fine", 3]')
    proc = _launch("--script", str(script), "--port", "0")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and out == ""
    assert err.strip().splitlines() == [
        f'error: {script}: item 2 is int, not a completion string or an object with a "text" string'
    ]
