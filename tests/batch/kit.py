"""What the batch tests and the bench share: a scripted fake model, a tool with a side-effect
counter, task files written into a folder.

The fake server's answer is a function of the prompt: `STEPS` calls of `functions.bump`
(one per tool result already in the prompt), then a final answer that repeats the run's
input, so a result can be checked against its own input. An input with `SLOW` makes the
tool sleep inside each call (so a kill can land there); one with `NEVER` answers with a
call to a tool that does not exist, forever, so the run fails on its step limit.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import Any

from harmonygraph.harmony import get_encoding
from harmonygraph.tracing import FakeOpenAIServer

STEPS = 3  # tool calls in a run; 4 model calls with the final answer
RESULT_HEADER = "<|start|>functions.bump to=assistant"
_USER = re.compile(r"<\|start\|>user<\|message\|>(.*?)<\|end\|>", re.S)

TOOL_MODULE = '''
"""The batch tests' tool: each call appends `start n pid` and `done n pid` to the run's
counter file (in its artifacts folder) around an optional sleep."""
import os
import time

from harmonygraph.tools import ToolContext, tool


@tool
def bump(n: int, sleep: float, ctx: ToolContext) -> str:
    """Record step n."""
    ctx.artifacts_dir.mkdir(parents=True, exist_ok=True)
    counter = ctx.artifacts_dir / "counter.txt"
    with counter.open("a") as f:
        f.write(f"start {n} {os.getpid()}\\n")
    time.sleep(sleep)
    with counter.open("a") as f:
        f.write(f"done {n} {os.getpid()}\\n")
    return f"bumped {n}"
'''

TASK = """name: {name}
instructions: Bump each step, then say what you were asked.
input: "{input}"
reasoning: low
model: {{base_url: {base_url}, api: completions, timeout: 30}}
tools:
  - import: batchtools:bump
limits: {{max_steps: 8, max_tool_calls: 6}}
"""


def script(body: dict[str, Any]) -> str:
    prompt = get_encoding().decode(body["prompt"])
    users = _USER.findall(prompt)
    asked = users[-1] if users else ""
    if "NEVER" in asked:
        return "<|channel|>commentary to=functions.nothing <|constrain|>json<|message|>{}<|call|>"
    done = prompt.count(RESULT_HEADER)
    if done < STEPS:
        sleep = 0.5 if "SLOW" in asked else 0.0
        return (
            f"<|channel|>analysis<|message|>Step {done + 1}.<|end|><|start|>assistant"
            f"<|channel|>commentary to=functions.bump <|constrain|>json<|message|>"
            f'{{"n": {done + 1}, "sleep": {sleep}}}<|call|>'
        )
    return f"<|channel|>final<|message|>done: {asked}<|return|>"


class CappedServer(FakeOpenAIServer):
    """The fake server with at most `capacity` generation requests at once: more get 429,
    as a server that sheds load does. Counts the peak it saw."""

    def __init__(self, *args: Any, capacity: int = 1_000_000, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.capacity = capacity
        self.active = 0
        self.peak = 0
        self.refused = 0
        self._gate = threading.Lock()

    def completions(self, body: dict[str, Any]) -> Any:
        from harmonygraph.tracing.doubles import _error_body, _HTTPError

        with self._gate:
            if self.active >= self.capacity:
                self.refused += 1
                raise _HTTPError(429, _error_body("over capacity", "RateLimitError", 429))
            self.active += 1
            self.peak = max(self.peak, self.active)
        try:
            if self.work_s:
                import time

                time.sleep(self.work_s)
            return super().completions(body)
        finally:
            with self._gate:
                self.active -= 1

    work_s = 0.0  # time per request spent *inside* the capacity gate


def write_task(folder: Path, base_url: str, *, name: str = "bumper", input: str = "hello") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "batchtools.py").write_text(TOOL_MODULE)
    path = folder / f"{name}.yaml"
    path.write_text(TASK.format(name=name, input=input, base_url=base_url))
    return path


def counter_lines(out: Path, key: str) -> list[str]:
    path = out / "runs" / key / "artifacts" / "counter.txt"
    return path.read_text().splitlines() if path.exists() else []
