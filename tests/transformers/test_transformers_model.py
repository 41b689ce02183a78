"""`TransformersModel` over a tiny random gpt-oss: forced harmony turns, streaming, seeds."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import pytest
from harmonygraph import Agent
from harmonygraph.harmony import ContentDelta, HeaderDone, MessageDone
from harmonygraph.harmony.encoding import get_encoding
from harmonygraph.harmony.messages import Message, Role
from harmonygraph.harmony.prompt import DeveloperConfig, SystemConfig
from harmonygraph.models.base import (
    Model,
    ModelError,
    ModelNotFoundError,
    ModelRequest,
    ModelSettings,
    ResponseDone,
)
from harmonygraph.models.grammar import grammar_available
from harmonygraph.models.transformers import TransformersModel

from tests.ci import require

from .conftest import ForceTokens, Script

TOOL_CALL = (
    "<|channel|>analysis<|message|>I should add 2 and 3 with the tool.<|end|>"
    "<|start|>assistant<|channel|>commentary to=functions.add <|constrain|>json"
    '<|message|>{"a":2,"b":3}<|call|>'
)
FINAL = "<|channel|>analysis<|message|>The tool said 5.<|end|><|start|>assistant<|channel|>final<|message|>2 + 3 = 5<|return|>"


def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def analysis_then_free(prompt: Any) -> list[ForceTokens]:
    """Open an analysis message, then let the random model write whatever it samples.

    Random weights emit random tokens; inside a message body they are text, which the
    parser accepts, where a header of random words would be a parse error.
    """
    opening = get_encoding().encode("<|channel|>analysis<|message|>", allowed_special="all")
    return [ForceTokens(opening, len(prompt))]


def request(text: str = "Hi", **settings: Any) -> ModelRequest:
    return ModelRequest(
        system=SystemConfig(current_date="2025-01-01", reasoning="low"),
        developer=DeveloperConfig(instructions="Be brief."),
        messages=(Message.user(text),),
        settings=ModelSettings(**settings) if settings else ModelSettings(),
    )


def test_is_a_model(tiny_model: TransformersModel) -> None:
    assert isinstance(tiny_model, Model)
    assert tiny_model.supports_constrained_output == grammar_available()


async def test_forced_tool_call_and_final_answer_through_the_agent(tiny_hf_model: Any) -> None:
    """generate -> parse -> tool call -> tool result -> final, through the real model code."""
    script = Script(TOOL_CALL, FINAL)
    model = TransformersModel(tiny_hf_model, name="tiny", logits_processors=script)
    agent: Agent[Any] = Agent(model, tools=[add], reasoning="low", current_date="2025-01-01")
    result = await agent.arun("What is 2 + 3?")

    assert result.ok, result.error
    assert result.output == "2 + 3 = 5"
    assert result.tool_calls == 1
    call = next(m for m in result.messages if m.is_tool_call)
    assert (call.recipient, call.content) == ("functions.add", '{"a":2,"b":3}')
    tool_result = next(m for m in result.messages if m.role is Role.TOOL)
    assert tool_result.content.strip() == "5"
    # The second step's prompt carries the call and the tool's answer, rendered by us.
    assert len(script.prompts) == 2
    second_prompt = get_encoding().decode(script.prompts[1])
    assert "<|start|>functions.add to=assistant<|channel|>commentary<|message|>5<|end|>" in (
        second_prompt
    )
    assert second_prompt.endswith("<|start|>assistant")
    # Usage: both prompts in, both completions out, counted in tokens.
    enc = get_encoding()
    expected_out = len(enc.encode(TOOL_CALL, allowed_special="all")) + len(
        enc.encode(FINAL, allowed_special="all")
    )
    assert result.usage.output_tokens == expected_out
    assert result.usage.input_tokens == sum(len(p) for p in script.prompts)


async def test_stream_emits_parser_events_then_the_response(tiny_hf_model: Any) -> None:
    script = Script(FINAL)
    model = TransformersModel(tiny_hf_model, logits_processors=script)
    events = [e async for e in model.stream(request())]

    assert isinstance(events[-1], ResponseDone)
    response = events[-1].response
    headers = [e for e in events if isinstance(e, HeaderDone)]
    assert [h.channel for h in headers] == ["analysis", "final"]
    deltas = "".join(e.delta for e in events if isinstance(e, ContentDelta) and e.index == 1)
    assert deltas == "2 + 3 = 5"
    done = [e.message for e in events if isinstance(e, MessageDone)]
    assert [m.channel for m in done] == ["analysis", "final"]
    assert response.messages == tuple(done)
    assert response.raw == FINAL
    ids = get_encoding().encode(FINAL, allowed_special="all")
    assert response.token_ids == tuple(ids)
    assert response.finish_reason == "stop"
    assert response.usage.input_tokens == len(script.prompts[0]) == response.prompt_tokens
    assert response.usage.output_tokens == len(ids)
    assert len(response.prompt_sha256) == 64


async def test_seeded_sampling_repeats_and_max_tokens_cuts(tiny_hf_model: Any) -> None:
    tiny_model = TransformersModel(tiny_hf_model, logits_processors=analysis_then_free)
    first = await tiny_model.complete(request(max_tokens=12, seed=7))
    again = await tiny_model.complete(request(max_tokens=12, seed=7))
    other = await tiny_model.complete(request(max_tokens=12, seed=8))

    assert first.token_ids == again.token_ids
    assert first.token_ids != other.token_ids
    assert first.finish_reason == "length"
    assert first.usage.output_tokens == 12
    assert first.messages[0].channel == "analysis"
    assert first.messages[0].stop is None  # cut by max_tokens, not ended


async def test_greedy_matches_transformers_generate(tiny_hf_model: Any) -> None:
    """Our step loop and its KV cache agree with `generate` (temperature 0 = greedy)."""
    import torch

    model = TransformersModel(tiny_hf_model, logits_processors=analysis_then_free)
    req = request("Tell me a story", max_tokens=16, temperature=0.0)
    ours = list((await model.complete(req)).token_ids or ())
    opening = get_encoding().encode("<|channel|>analysis<|message|>", allowed_special="all")
    assert ours[: len(opening)] == opening
    prompt = torch.tensor([model.render(req).tokens + opening])
    ref = tiny_hf_model.generate(
        prompt, max_new_tokens=16 - len(opening), do_sample=False, eos_token_id=[200002, 200012]
    )
    assert ours[len(opening) :] == ref[0, prompt.shape[1] :].tolist()


async def test_a_stream_closed_early_stops_generation(tiny_hf_model: Any) -> None:
    tiny_model = TransformersModel(tiny_hf_model, logits_processors=analysis_then_free)
    stream = tiny_model.stream(request(max_tokens=4000, seed=1))
    async for _event in stream:
        break
    await stream.aclose()  # returns once the worker thread has stopped
    # The model is free again at once (the worker released its lock).
    response = await tiny_model.complete(request(max_tokens=3, seed=1))
    assert response.usage.output_tokens == 3


def test_sync_wrapper(tiny_hf_model: Any) -> None:
    tiny_model = TransformersModel(tiny_hf_model, logits_processors=analysis_then_free)
    response = tiny_model.complete_sync(request(max_tokens=2, seed=3))
    assert response.usage.output_tokens == 2


def test_from_pretrained_loads_a_local_folder(tiny_hf_model: Any, tmp_path: Path) -> None:
    tiny_hf_model.save_pretrained(tmp_path / "tiny")
    model = TransformersModel.from_pretrained(
        tmp_path / "tiny", dtype="float32", logits_processors=analysis_then_free
    )
    assert model.name == str(tmp_path / "tiny")
    assert str(model.device) == "cpu"
    response = model.complete_sync(request(max_tokens=2, seed=3))
    assert response.usage.output_tokens == 2


def test_from_pretrained_never_downloads_implicitly() -> None:
    require("transformers")
    with pytest.raises(ModelNotFoundError, match="local_files_only"):
        TransformersModel.from_pretrained("openai/gpt-oss-does-not-exist-here")


def test_missing_torch_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    # As if torch were not installed: importing it raises ImportError.
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(ImportError, match=r"pip install 'harmonygraph\[transformers\]'"):
        TransformersModel.from_pretrained("openai/gpt-oss-20b")
    with pytest.raises(ImportError, match="torch is missing"):
        TransformersModel(object())


async def test_generation_leaves_the_event_loop_free(tiny_hf_model: Any) -> None:
    model = TransformersModel(tiny_hf_model, logits_processors=analysis_then_free)
    ticks = 0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    response = await model.complete(request(max_tokens=30, seed=5))
    done.set()
    await task
    assert response.usage.output_tokens == 30
    assert ticks > 30  # the loop ran other work while the worker thread generated


async def test_a_processor_that_allows_nothing_is_a_model_error(tiny_hf_model: Any) -> None:
    import torch

    def nothing(_ids: Any, scores: Any) -> Any:
        return torch.full_like(scores, float("-inf"))

    model = TransformersModel(tiny_hf_model, logits_processors=lambda prompt: [nothing])
    with pytest.raises(ModelError, match="every token was masked out"):
        await model.complete(request(max_tokens=5))
