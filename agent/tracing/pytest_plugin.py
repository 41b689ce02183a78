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
something else. `pytest --record` runs the agent for real (against your model server)
and writes the trace.
"""

from __future__ import annotations

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
