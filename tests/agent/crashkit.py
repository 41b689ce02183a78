"""Crash-resume through real processes: SIGKILL a run at random points, resume it in a new
process on the same thread, and count the tool's side effects.

The model is the project's fake OpenAI-compatible server (in this process), answering
`HarmonyCompletionsModel` in the child with a delay, so a kill can land inside a model
call; the tool sleeps between its `start` and `done` lines, so a kill can land inside a
tool. The script is a function of the prompt (how many tool results it holds), so a
model call that a kill cut short is simply asked again. Each kill point is drawn from a
seeded generator; the seed is in every failure message (HG_CRASH_SEED replays it).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harmonygraph.harmony import get_encoding
from harmonygraph.tracing import FakeOpenAIServer

ROOT = Path(__file__).resolve().parents[2]
STEPS = 3  # tool calls in a run
MODEL_DELAY = 0.5  # s the fake server waits before answering
TOOL_DELAY = 0.6  # s the tool sleeps between its start and done lines
RESULT_HEADER = "<|start|>functions.bump to=assistant"


def script(body: dict[str, Any]) -> str:
    prompt = get_encoding().decode(body["prompt"])
    done = prompt.count(RESULT_HEADER)
    if done < STEPS:
        return (
            f"<|channel|>analysis<|message|>Step {done + 1}.<|end|><|start|>assistant"
            f'<|channel|>commentary to=functions.bump <|constrain|>json<|message|>{{"n": {done + 1}}}<|call|>'
        )
    return "<|channel|>final<|message|>all bumped<|return|>"


@dataclass
class Outcome:
    seed: int
    kills: list[str] = field(default_factory=list)
    final: dict[str, Any] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return f"seed={self.seed} kills={self.kills} lines={self.lines} final={self.final}"

    @property
    def done(self) -> Counter[str]:
        return Counter(line.split()[1] for line in self.lines if line.startswith("done"))

    @property
    def starts(self) -> Counter[str]:
        return Counter(line.split()[1] for line in self.lines if line.startswith("start"))


def _starts(counter: Path) -> int:
    return sum(1 for line in counter.read_text().splitlines() if line.startswith("start"))


def _wait(cond: Any, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> bool:
    """Until `cond()` (True) or the process ends (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.005)
    raise TimeoutError("the child neither reached the kill point nor ended in time")


def crash_and_resume(backend: str, dsn: str, tmp: Path, *, kills: int = 2) -> Outcome:
    """Run, SIGKILL at `kills` random points, then resume until the run ends."""
    seed = int(os.environ.get("HG_CRASH_SEED") or random.randrange(1 << 30))
    rng = random.Random(seed)
    out = Outcome(seed)
    counter = tmp / f"counter-{seed}.txt"
    counter.write_text("")
    thread = f"crash-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with FakeOpenAIServer(script, delay=MODEL_DELAY) as server:

        def child() -> subprocess.Popen[bytes]:
            args = [backend, dsn, server.base_url, thread, str(counter), str(TOOL_DELAY)]
            return subprocess.Popen(
                [sys.executable, "-m", "tests.agent.crash_child", *args],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )

        def model_calls() -> int:
            return len(server.bodies("/v1/completions"))

        # Both kinds of kill point in every test, in random order, then random ones.
        kinds = rng.sample(["tool", "model"], 2) + [
            rng.choice(["tool", "model"]) for _ in range(kills - 2)
        ]
        for kind in kinds:
            proc = child()
            ahead = rng.randint(1, 2)
            if kind == "tool":
                target = _starts(counter) + ahead
                reached = _wait(lambda t=target: _starts(counter) >= t, proc)  # type: ignore[misc]
                pause = rng.uniform(0.02, TOOL_DELAY / 2)
            else:
                target = model_calls() + ahead
                reached = _wait(lambda t=target: model_calls() >= t, proc)  # type: ignore[misc]
                pause = rng.uniform(0.02, MODEL_DELAY / 2)
            if not reached:  # the run ended before that point
                proc.communicate()
                break
            time.sleep(pause)
            proc.kill()  # SIGKILL: no finally, no atexit, no flush
            proc.communicate()
            out.kills.append(f"{kind} #{target} +{pause:.2f}s")
        proc = child()
        stdout, stderr = proc.communicate(timeout=120)
        if proc.returncode != 0:
            raise AssertionError(f"{out}: the resumed run failed:\n{stderr.decode()[-3000:]}")
        out.final = json.loads(stdout.decode().strip().splitlines()[-1])
    out.lines = counter.read_text().splitlines()
    return out


def check_exactly_once(out: Outcome) -> None:
    """Every call ran to completion exactly once; the run ended with all results kept."""
    steps = [str(n) for n in range(1, STEPS + 1)]
    assert out.kills, f"{out}: no kill happened"
    assert out.final["status"] == "completed" and out.final["text"] == "all bumped", out
    assert out.done == Counter(steps), f"{out}: a completed tool call ran again (or never)"
    # What the tool said, kept through the crashes, NUL and surrogate made storable.
    assert out.final["tools"] == [f"bumped {n}\ufffd\ufffd" for n in steps], out
    # A kill inside a tool shows as a start without its done; that call ran again.
    if any(k.startswith("tool") for k in out.kills):
        assert sum(out.starts.values()) > len(steps), out
