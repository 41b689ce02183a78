"""Batches on local Ray against the fake model server, checkpointed in embedded Postgres."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.batch.kit import STEPS, CappedServer, counter_lines, script, write_task

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def _once_each(lines: list[str]) -> bool:
    done = Counter(line.split()[1] for line in lines if line.startswith("done"))
    return done == Counter(str(n) for n in range(1, STEPS + 1))


def test_a_batch_of_runs_with_bad_inputs_among_them(
    tmp_path: Path, pg_url: str, ray_local: Any
) -> None:
    from harmonygraph.batch import run_batch

    with CappedServer(script, capacity=4) as server:
        task = write_task(tmp_path / "task", server.base_url, input="Say {word}.")
        rows = [json.dumps({"id": f"r{i}", "word": f"w{i}"}) for i in range(24)]
        rows.insert(5, "{not json")  # a bad line
        rows.insert(9, json.dumps({"id": "nofield", "other": 1}))  # no {word} for the input
        rows.insert(13, json.dumps({"id": "never", "input": "NEVER ends"}))  # fails when run
        inputs = tmp_path / "inputs.jsonl"
        inputs.write_text("\n".join(rows) + "\n")
        seen: list[dict[str, Any]] = []
        out = tmp_path / "out"
        report = run_batch(
            [task, inputs], out=out, database_url=pg_url, concurrency=8, workers=2,
            retries=1, max_inflight=4, shutdown=False,
            on_progress=lambda p: seen.append(p.to_dict()),
        )  # fmt: skip
        peak = server.peak

    print(report.progress.line(), report.limiter, report.workers)
    runs = {r["key"]: r for r in report.runs}
    assert len(runs) == 27
    good = [k for k in runs if k.startswith("bumper-r")]
    assert len(good) == 24
    for k in good:
        r = runs[k]
        assert r["status"] == "completed", r
        assert r["text"] == f"done: Say w{k.removeprefix('bumper-r')}.", r
        assert r["tool_calls"] == STEPS and r["tokens"] > 0, r
        assert _once_each(counter_lines(out, k)), counter_lines(out, k)
        assert (out / "runs" / k / "trace-1.jsonl").is_file()
        assert json.loads((out / "runs" / k / "result.json").read_text())["status"] == "completed"
    # The bad rows: reported with their reason, never run; the run that fails: retried once.
    bad = {k: r for k, r in runs.items() if k not in good}
    assert (
        bad["bumper-6"]["error"].startswith("line 6 is not JSON")
        and bad["bumper-6"]["attempts"] == 0
    )
    assert "placeholder(s) word" in bad["bumper-nofield"]["error"]
    never = bad["bumper-never"]
    assert never["status"] == "failed" and never["attempts"] == 2, never
    assert "RunLimitExceeded" in never["error"] or "max_" in never["error"], never
    # The summary and the limits held: never more than 4 requests at the server at once.
    summary = json.loads((out / "batch.json").read_text())
    assert summary["summary"]["done"] == 24 and summary["summary"]["failed"] == 3
    assert summary["final"] is True and len(summary["runs"]) == 27
    assert summary["limiter"]["peak"] <= 4 and peak <= 4
    assert summary["limiter"]["granted"] >= 24 * (STEPS + 1)
    assert {w["name"] for w in summary["workers"]} == {"w0", "w1"}
    assert all(w["runs"] > 0 for w in summary["workers"])  # both workers took runs
    assert seen and seen[-1]["done"] == 24 and seen[-1]["running"] == 0
    assert summary["summary"]["tokens"] == sum(r.get("tokens") or 0 for r in report.runs)
