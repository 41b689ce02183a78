"""pytest plugin: replay tests for your own agents.

```python
@pytest.mark.agent_trace("tests/traces/weather.jsonl")
def test_weather(agent_replay):
    agent = Agent(tools=[get_weather], output_type=Weather)
    result = agent_replay.run(agent, "Weather in Paris?")
    assert result.output.city == "Paris"
```
By default the run is replayed strictly from the trace: the model's turns and the tools'
results come from the file, and the test fails where the agent now asks the model
something else (its reasoning effort, tools, instructions, response format, sampling,
identity, knowledge cutoff or date, or the conversation). That failure is a few lines
(the test's line, the step, what was recorded, what the agent sent, a compact diff), not
a traceback through LangGraph. `pytest --record` runs the agent for real (against your
model server) and writes the trace.
"""

from __future__ import annotations

import sys
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

__all__ = ["AgentReplay"]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("harmonygraph")
    group.addoption(
        "--record",
        action="store_true",
        default=False,
        help="run agents live and (re)record their traces instead of replaying them",
    )
    group.addoption(
        "--replay-lenient",
        action="store_true",
        default=False,
        help="replay traces in recorded order without checking requests",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "agent_trace(path): the trace file an agent_replay test replays or records"
    )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A strict replay's divergence, in any test, as a short report instead of a traceback."""
    report = yield
    divergence = _divergence(call.excinfo)
    if divergence is not None and report.failed:
        report.longrepr = _divergence_report(item, call.excinfo, divergence)
    return report


def _divergence(excinfo: pytest.ExceptionInfo[BaseException] | None) -> Any:
    replay = sys.modules.get("harmonygraph.tracing.replay")
    if excinfo is None or replay is None:  # not imported: no replay ran
        return None
    exc: BaseException | None = excinfo.value
    for _ in range(5):  # the divergence itself, or what a wrapper raised from it
        if exc is None or isinstance(exc, replay.ReplayDivergence):
            return exc
        exc = exc.__cause__
    return None


def _divergence_report(
    item: pytest.Item, excinfo: pytest.ExceptionInfo[BaseException] | None, divergence: Any
) -> str:
    where = item.nodeid
    if excinfo is not None:
        for entry in reversed(excinfo.traceback):
            if Path(entry.path) == Path(item.path):
                where = f"{Path(entry.path).name}:{entry.lineno + 1}"
                break
    return (
        f"{where}: {divergence.report()}\n"
        "The agent no longer sends what the trace recorded. If the change is intended, "
        "re-record the trace: pytest --record"
    )


class AgentReplay:
    """Runs an agent from a recorded trace, or records one with `--record`."""

    def __init__(self, path: Path, *, record: bool, strict: bool) -> None:
        self.path = path
        self.record = record
        self.strict = strict

    def run(self, agent: Any, input: Any) -> Any:
        if self.record:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.unlink(missing_ok=True)
            return agent.run(input, trace_path=self.path)
        if not self.path.exists():
            pytest.fail(
                f"no trace at {self.path}: run `pytest --record` with a model server to record it",
                pytrace=False,
            )
        return agent.replay(self.path, strict=self.strict, input=input)


@pytest.fixture
def agent_replay(request: pytest.FixtureRequest) -> AgentReplay:
    marker = request.node.get_closest_marker("agent_trace")
    if marker and marker.args:
        path = Path(marker.args[0])
        if not path.is_absolute():
            path = Path(request.node.path).parent / path
    else:
        path = Path(request.node.path).parent / "traces" / f"{request.node.name}.jsonl"
    return AgentReplay(
        path,
        record=request.config.getoption("--record"),
        strict=not request.config.getoption("--replay-lenient"),
    )
