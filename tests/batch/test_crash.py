"""A batch survives its workers and itself: a worker SIGKILLed inside a tool, the whole batch
(driver, Ray and workers) SIGKILLed and started again. Each run's tool writes `start n` and
`done n` around a sleep; every step must be done exactly once, whatever was killed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.batch.kit import STEPS, CappedServer, counter_lines, script, write_task

pytestmark = [pytest.mark.postgres, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]


def _done_once(lines: list[str]) -> bool:
    done = Counter(line.split()[1] for line in lines if line.startswith("done"))
    return done == Counter(str(n) for n in range(1, STEPS + 1))


def _inputs(path: Path, n: int) -> Path:
    path.write_text(
        "".join(json.dumps({"id": f"s{i}", "input": f"SLOW {i}"}) + "\n" for i in range(n))
    )
    return path


def _in_a_tool(out: Path, *, min_step: int = 1) -> tuple[str, int] | None:
    """(run key, pid) of a run whose tool has started a step it has not finished."""
    for counter in sorted((out / "runs").glob("*/artifacts/counter.txt")):
        lines = counter.read_text().splitlines()
        if lines and lines[-1].startswith("start") and int(lines[-1].split()[1]) >= min_step:
            return counter.parents[1].name, int(lines[-1].split()[2])
    return None


def _wait_for(cond: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = cond()
        if found:
            return found
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_worker_killed_inside_a_tool_resumes_its_runs_from_postgres(
    tmp_path: Path, pg_url: str, ray_local: Any
) -> None:
    from harmonygraph.batch import run_batch

    out = tmp_path / "out"
    box: dict[str, Any] = {}
    with CappedServer(script) as server:
        task = write_task(tmp_path / "task", server.base_url)
        inputs = _inputs(tmp_path / "inputs.jsonl", 6)

        def go() -> None:
            try:
                box["report"] = run_batch(
                    [task, inputs], out=out, database_url=pg_url, concurrency=6, workers=2,
                    retries=0, max_inflight=8, shutdown=False,
                )  # fmt: skip
            except BaseException as exc:  # reported below
                box["error"] = exc

        thread = threading.Thread(target=go)
        thread.start()
        # Inside step 2's tool (step 1 done and saved), kill that worker process outright.
        key, pid = _wait_for(lambda: _in_a_tool(out, min_step=2), 120, "a run inside step 2")
        os.kill(pid, signal.SIGKILL)
        thread.join(timeout=240)
    assert not thread.is_alive(), "the batch did not finish"
    assert "error" not in box, box.get("error")
    report = box["report"]
    runs = {r["key"]: r for r in report.runs}
    assert len(runs) == 6 and all(r["status"] == "completed" for r in runs.values()), runs
    killed = counter_lines(out, key)
    # The killed step started twice (once in the dead worker, once after the restart) ...
    assert Counter(line.split()[0] for line in killed)["start"] > STEPS, killed
    assert any(line.startswith("start") and line.split()[2] == str(pid) for line in killed)
    # ... and finished in another process, resumed from its checkpoint, not from the start.
    assert all(line.split()[2] != str(pid) for line in killed if line.startswith("done 2"))
    result = json.loads((out / "runs" / key / "result.json").read_text())
    assert result["resumed"] is True and result["pid"] != pid, result
    for k in runs:  # every run, the killed worker's others included: each step done once
        assert _done_once(counter_lines(out, k)), (k, counter_lines(out, k))
        assert runs[k]["text"] == f"done: SLOW {k.removeprefix('bumper-s')}"


def _batch_cmd(task: Path, inputs: Path, out: Path, pg_url: str) -> list[str]:
    return [sys.executable, "-m", "harmonygraph", "batch", str(task), str(inputs), "--out",
            str(out), "--database-url", pg_url, "--concurrency", "3", "--workers", "1",
            "--retries", "0", "--json"]  # fmt: skip


def test_a_batch_killed_whole_and_started_again_repeats_nothing_and_loses_nothing(
    tmp_path: Path, pg_url: str
) -> None:
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env["PYTHONPATH"] = str(ROOT)
    with CappedServer(script) as server:
        task = write_task(tmp_path / "task", server.base_url)
        inputs = _inputs(tmp_path / "inputs.jsonl", 8)
        first = subprocess.Popen(
            _batch_cmd(task, inputs, out, pg_url), cwd=tmp_path, env=env,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
        )  # fmt: skip
        try:
            # Some runs finished, and one is inside a tool: kill everything at once.
            _wait_for(
                lambda: len(list((out / "runs").glob("*/result.json"))) >= 2
                and _in_a_tool(out) is not None,
                180, "two finished runs and one inside a tool",
            )  # fmt: skip
        finally:
            os.killpg(first.pid, signal.SIGKILL)
            first.wait(timeout=30)
        finished_before = {p.parent.name for p in (out / "runs").glob("*/result.json")}
        interrupted = {c.parents[1].name for c in (out / "runs").glob("*/artifacts/counter.txt")}
        interrupted -= finished_before
        assert interrupted, "no run was caught in progress"
        second = subprocess.run(
            _batch_cmd(task, inputs, out, pg_url), cwd=tmp_path, env=env,
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
    assert second.returncode == 0, second.stderr[-3000:]
    summary = json.loads(second.stdout)
    runs = {r["key"]: r for r in summary["runs"]}
    assert len(runs) == 8 and all(r["status"] == "completed" for r in runs.values()), runs
    # Nothing repeated: the finished runs were skipped, and every step of every run ran to
    # its end exactly once; nothing lost: each run has its answer.
    assert {k for k, r in runs.items() if r["skipped"]} == finished_before
    assert all(runs[k]["resumed"] for k in interrupted), {k: runs[k] for k in interrupted}
    for k in runs:
        assert _done_once(counter_lines(out, k)), (k, counter_lines(out, k))
        rec = json.loads((out / "runs" / k / "result.json").read_text())
        assert rec["text"] == f"done: SLOW {k.removeprefix('bumper-s')}", rec
    assert summary["summary"]["done"] == 8 and summary["summary"]["skipped"] == len(finished_before)
