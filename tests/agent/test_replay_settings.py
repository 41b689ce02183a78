"""Strict replay checks what *this* agent would send: every setting that reaches the model.

A replay runs the agent's own configuration (reasoning effort, tools, instructions,
response format, sampling, identity, knowledge cutoff, date) against the recording; a
changed setting fails with the step, what changed, and both versions.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from harmonygraph import Agent
from harmonygraph.engine.replay import replay_trace
from harmonygraph.models.base import ModelSettings
from harmonygraph.tools import tool
from harmonygraph.tracing import ReplayDivergence, ScriptedModel
from pydantic import BaseModel, create_model

from .test_loop import call, final


@tool
def lookup(city: str) -> str:
    """Weather for a city."""
    return f'{{"city": "{city}", "temp_c": 21}}'


@tool(name="lookup")
def lookup_with_units(city: str, units: str = "C") -> str:
    """Weather for a city."""
    return f'{{"city": "{city}", "temp_c": 21}}'


@tool(name="lookup", description="Weather for a city, in Fahrenheit.")
def lookup_described(city: str) -> str:
    return f'{{"city": "{city}", "temp_c": 21}}'


@tool
def extra(x: int) -> int:
    """Another tool."""
    return x


class Weather(BaseModel):
    city: str
    temp_c: int


class WeatherWithWind(BaseModel):
    city: str
    temp_c: int
    wind_kmh: int = 0


# The same name with another field: only the schema differs.
WeatherWindy = create_model("Weather", city=(str, ...), temp_c=(int, ...), wind_kmh=(int, 0))


ANSWER = '{"city": "Paris", "temp_c": 21}'
BASE: dict[str, Any] = {
    "tools": [lookup],
    "instructions": "Weather bot.\nAnswer in JSON.",
    "reasoning": "low",
    "output_type": Weather,
    "knowledge_cutoff": "2024-06",
}


def record(tmp_path: Path) -> Path:
    path = tmp_path / "run.jsonl"
    model = ScriptedModel([call("lookup", '{"city": "Paris"}'), final(ANSWER)])
    Agent(model, **BASE).run("Weather in Paris?", trace_path=path)
    return path


# (changed settings, what the divergence must say, recorded, sent)
CHANGES: dict[str, tuple[dict[str, Any], str, str | None, str | None]] = {
    "reasoning": ({"reasoning": "high"}, "system message: reasoning effort low → high", "low", "high"),
    "tool added": ({"tools": [lookup, extra]}, "developer message: tool `functions.extra` added", None, None),
    "tool removed": ({"tools": []}, "developer message: tool `functions.lookup` removed", None, None),
    "tool parameters": (
        {"tools": [lookup_with_units]},
        "developer message: parameters of tool `functions.lookup` changed",
        None,
        '"units"',
    ),
    "tool description": (
        {"tools": [lookup_described]},
        "developer message: description of tool `functions.lookup` changed",
        "Weather for a city.",
        "Weather for a city, in Fahrenheit.",
    ),
    "instructions": (
        {"instructions": "Weather bot.\nAnswer in prose."},
        "developer message: instructions changed",
        "Answer in JSON.",
        "Answer in prose.",
    ),
    "response format schema": (
        {"output_type": WeatherWindy},
        "developer message: response format's schema changed",
        '"temp_c"',
        "wind_kmh",
    ),
    "response format name": (
        {"output_type": WeatherWithWind},
        "developer message: response format's name changed",
        "weather",
        "weather_with_wind",
    ),
    "response format removed": (
        {"output_type": None},
        "developer message: response format",
        None,
        None,
    ),
    "temperature": (
        {"settings": ModelSettings(temperature=0.2)},
        "sampling parameter `temperature` is 0.2; the recording had 1.0",
        "1.0",
        "0.2",
    ),
    "max tokens": (
        {"settings": ModelSettings(max_tokens=256)},
        "sampling parameter `max_tokens` is 256; the recording had 4096",
        "4096",
        "256",
    ),
    "seed": ({"settings": ModelSettings(seed=7)}, "sampling parameter `seed` is 7", "None", "7"),
    "top_p": ({"settings": ModelSettings(top_p=0.5)}, "sampling parameter `top_p` is 0.5", None, "0.5"),
    "extra body": (
        {"settings": ModelSettings(extra_body={"top_k": 20})},
        "sampling parameter `top_k` is 20",
        "None",
        "20",
    ),
    "constrained output": (
        {"settings": ModelSettings(enforce_output=True)},
        "sampling parameter `enforce_output` is True",
        "None",
        "True",
    ),
    "identity": (
        {"identity": "You are a weather station."},
        "system message: model identity changed",
        None,
        "You are a weather station.",
    ),
    "knowledge cutoff": (
        {"knowledge_cutoff": "2025-01"},
        "system message: knowledge cutoff 2024-06 → 2025-01",
        "2024-06",
        "2025-01",
    ),
    "current date": (
        {"current_date": "1999-12-31"},
        "system message: current date",
        None,
        "1999-12-31",
    ),
}  # fmt: skip


def test_an_unchanged_agent_replays_strictly(tmp_path: Path) -> None:
    path = record(tmp_path)
    result = Agent(ScriptedModel([]), **BASE).replay(path)
    assert result.output == Weather(city="Paris", temp_c=21)
    assert replay_trace(path)["status"] == "completed"


@pytest.mark.parametrize("case", list(CHANGES))
def test_a_changed_setting_fails_strict_replay_naming_it(tmp_path: Path, case: str) -> None:
    changed, what, recorded, sent = CHANGES[case]
    path = record(tmp_path)
    agent = Agent(ScriptedModel([]), **{**BASE, **changed})
    with pytest.raises(ReplayDivergence, match=re.escape(f"step 1: {what}")) as info:
        agent.replay(path)
    exc = info.value
    assert exc.step == 1
    if recorded is not None:
        assert exc.recorded is not None and recorded in exc.recorded
    if sent is not None:
        assert exc.sent is not None and sent in exc.sent
    report = exc.report()
    assert report.startswith(f"strict replay diverged at step 1: {what}")
    if exc.recorded is not None or exc.sent is not None:
        assert "  recorded:   " in report and "  agent sent: " in report
    # Lenient replay only follows the recorded order: the changed agent still runs.
    assert agent.replay(path, strict=False).steps == 2


def test_the_report_diffs_multiline_texts_compactly(tmp_path: Path) -> None:
    path = record(tmp_path)
    agent = Agent(ScriptedModel([]), **{**BASE, "instructions": "Weather bot.\nAnswer in prose."})
    with pytest.raises(ReplayDivergence) as info:
        agent.replay(path)
    report = info.value.report().splitlines()
    assert "    -Answer in JSON." in report and "    +Answer in prose." in report
    assert len(report) <= 10


def test_a_long_one_line_difference_is_cut_around_where_it_differs() -> None:
    a, b = "x" * 500 + "recorded tail", "x" * 500 + "agent tail"
    report = ReplayDivergence(
        3, "developer message: instructions changed", recorded=a, sent=b
    ).report()
    lines = report.splitlines()
    assert len(lines) == 3 and all(len(line) < 160 for line in lines)
    assert "recorded tail" in lines[1] and "agent tail" in lines[2]


def test_a_recorded_per_run_effort_is_not_this_agents(tmp_path: Path) -> None:
    """A run given `reasoning=` records that effort; an agent replaying it runs with its own."""
    path = tmp_path / "run.jsonl"
    model = ScriptedModel([call("lookup", '{"city": "Paris"}'), final(ANSWER)])
    Agent(model, **BASE).run("Weather in Paris?", trace_path=path, reasoning="high")
    with pytest.raises(ReplayDivergence, match="reasoning effort high → low"):
        Agent(ScriptedModel([]), **BASE).replay(path)
    assert Agent(ScriptedModel([]), **{**BASE, "reasoning": "high"}).replay(path).ok
