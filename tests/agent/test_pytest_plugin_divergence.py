"""A replay test that diverges fails with a short report, not a traceback through LangGraph."""

from __future__ import annotations

import pytest

from .test_pytest_plugin import USER_TEST

pytest_plugins = ["pytester"]

LOW = USER_TEST.replace(
    "Agent(model, tools=[capital], instructions=INSTRUCTIONS)",
    'Agent(model, tools=[capital], instructions=INSTRUCTIONS, reasoning="low")',
)
assert LOW != USER_TEST


def _record(pytester: pytest.Pytester, source: str) -> None:
    pytester.makepyfile(test_user=source)
    pytester.runpytest_subprocess("--record").assert_outcomes(passed=1)


def _failure_section(output: str) -> list[str]:
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if "FAILURES" in line)
    end = next(i for i, line in enumerate(lines) if "short test summary" in line)
    return lines[start + 1 : end]


DIRECT = """

def test_direct():
    # `Agent.replay` called straight from a test (no `agent_replay` fixture).
    fresh = Agent(ScriptedModel([]), tools=[capital], instructions="Other.", reasoning="low")
    fresh.replay(Path(__file__).parent / "traces" / "capital.jsonl")
"""


def test_a_changed_reasoning_effort_fails_the_replay_test_in_a_few_lines(
    pytester: pytest.Pytester,
) -> None:
    _record(pytester, LOW)
    pytester.makepyfile(
        test_user=LOW.replace('reasoning="low"', 'reasoning="high"'),
        test_direct="from pathlib import Path\n" + LOW + DIRECT,
    )
    changed = pytester.runpytest_subprocess("test_user.py", "test_direct.py::test_direct")
    changed.assert_outcomes(failed=2)
    out = changed.stdout.str()
    section = _failure_section(out)
    assert len(section) <= 16, "\n".join(section)  # two failures, a few lines each
    text = "\n".join(section)
    assert "test_user.py:" in text and "test_direct.py:" in text  # each test's own line
    assert "strict replay diverged at step 1: system message: reasoning effort low → high" in text
    assert "recorded:   'low'" in text and "agent sent: 'high'" in text
    assert "developer message: instructions changed" in text  # the direct call's divergence
    assert "pytest --record" in text
    assert "During task with name" not in out and "langgraph" not in out


def test_changed_instructions_show_a_compact_diff(pytester: pytest.Pytester) -> None:
    multi = LOW.replace('"Answer with the city only."', '"Answer with the city only.\\nNo prose."')
    _record(pytester, multi)
    pytester.makepyfile(test_user=multi.replace("No prose.", "Some prose."))
    changed = pytester.runpytest_subprocess()
    changed.assert_outcomes(failed=1)
    text = "\n".join(_failure_section(changed.stdout.str()))
    assert "developer message: instructions changed" in text
    assert "-No prose." in text and "+Some prose." in text
    assert len(text.splitlines()) <= 12, text
