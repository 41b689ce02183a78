"""The pytest plugin: users' replay tests, recorded with --record and replayed by default."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

USER_TEST = '''
import pytest
from harmonygraph import Agent
from harmonygraph.tracing import ScriptedModel
from harmonygraph.tools import tool

CALL = ('<|channel|>analysis<|message|>Look it up.<|end|><|start|>assistant<|channel|>commentary '
        'to=functions.capital <|constrain|>json<|message|>{"country": "France"}<|call|>')
FINAL = '<|channel|>analysis<|message|>Got it.<|end|><|start|>assistant<|channel|>final<|message|>Paris<|return|>'


@tool
def capital(country: str) -> str:
    """The capital of a country."""
    return {"France": "Paris"}[country]


def make_agent(model):
    return Agent(model, tools=[capital], instructions=INSTRUCTIONS)


INSTRUCTIONS = "Answer with the city only."


@pytest.mark.agent_trace("traces/capital.jsonl")
def test_capital(agent_replay):
    # A live model would go here; in --record mode the scripted one stands in for it.
    model = ScriptedModel([CALL, FINAL]) if agent_replay.record else ScriptedModel([])
    result = agent_replay.run(make_agent(model), "Capital of France?")
    assert result.text == "Paris"
'''


def test_record_then_replay_then_detect_a_change(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user=USER_TEST)
    missing = pytester.runpytest_subprocess()
    missing.assert_outcomes(failed=1)
    assert "run `pytest --record`" in missing.stdout.str()

    recorded = pytester.runpytest_subprocess("--record")
    recorded.assert_outcomes(passed=1)
    assert (pytester.path / "traces" / "capital.jsonl").exists()

    replayed = pytester.runpytest_subprocess()
    replayed.assert_outcomes(passed=1)

    pytester.makepyfile(test_user=USER_TEST.replace("Answer with the city only.", "Be verbose."))
    changed = pytester.runpytest_subprocess()
    changed.assert_outcomes(failed=1)
    assert "step 1: developer message: instructions changed" in changed.stdout.str()
