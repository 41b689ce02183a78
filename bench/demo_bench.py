"""The demo's wall time, split into model (replayed), tools, and framework.

Runs the survey pipeline as `harmonygraph demo` does (model turns replayed from the
recorded trace, every tool for real) a few times and reports the median split:
- model: the replayed model calls' own time (near zero: this is the framework's floor,
  a live gpt-oss adds its generation time here);
- tools: sandbox executions (including taking a session), retrieval, browsing;
- framework: everything else (preprocessing, ingest, rendering harmony, the graphs,
  citation checks, Markdown/HTML/PDF rendering, delivery).

It also times the command itself, `harmonygraph demo`, as a user runs it: a fresh
process each time, so Python's start, the imports, the sandbox's first kernel, the demo's
Postgres, the PDF and the teardown all count. `--baseline PATH` runs another checkout's
`harmonygraph` (PATH goes first on PYTHONPATH: a folder holding a `harmonygraph` package)
interleaved with this one, so that both see the same load on a shared machine.

    python bench/demo_bench.py [--runs 3] [--command-runs 5] [--baseline PATH]
    # prints a table, writes bench/results/demo.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TIKTOKEN_ENCODINGS_BASE", str(ROOT.parent / "shared" / "vocab"))


async def once(out: Path) -> dict[str, float]:
    from harmonygraph.graphs.survey import DEMO_DATA, run_survey_pipeline
    from harmonygraph.tracing import ReplayModel, Trace

    trace = Trace.load(DEMO_DATA / "demo_trace.jsonl")
    started = time.perf_counter()
    result = await run_survey_pipeline(
        DEMO_DATA / "responses.csv",
        out,
        model=ReplayModel(trace, strict=False),
        current_date=trace.header.get("current_date"),
        store="demo",
    )
    wall = time.perf_counter() - started
    t = result.timings
    return {
        "wall_s": wall,
        "model_s": t.model_s,
        "tools_s": t.tools_s,
        "framework_s": max(wall - t.model_s - t.tools_s, 0.0),
        "sandbox": result.sandbox,
    }  # type: ignore[dict-item]


def command_once(out: Path, pythonpath: str | None) -> dict[str, float]:
    """One `harmonygraph demo` in a new process: its wall time and the load around it."""
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    else:
        env.pop("PYTHONPATH", None)
    load = os.getloadavg()[0]
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "harmonygraph", "demo", "--out", str(out)],
        env=env, cwd=out.parent, check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    return {"wall_s": time.perf_counter() - started, "load_1min": load}


def summary(walls: list[float]) -> dict[str, float]:
    return {
        "median_s": round(statistics.median(walls), 3),
        "min_s": round(min(walls), 3),
        "max_s": round(max(walls), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--command-runs", type=int, default=5)
    parser.add_argument("--baseline", help="PYTHONPATH of another checkout to compare with")
    args = parser.parse_args()
    runs = []
    commands: dict[str, list[dict[str, float]]] = {"this": []}
    if args.baseline:
        commands["baseline"] = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.command_runs):
            for name in commands:
                path = args.baseline if name == "baseline" else None
                commands[name].append(command_once(Path(tmp) / f"{name}{i}", path))
        for i in range(args.runs):
            runs.append(asyncio.run(once(Path(tmp) / f"run{i}")))
    keys = ["wall_s", "model_s", "tools_s", "framework_s"]
    median = {k: round(statistics.median(r[k] for r in runs), 3) for k in keys}
    print(f"demo ({runs[0]['sandbox']}), median of {len(runs)} runs")
    print(f"{'part':12} {'seconds':>8} {'share':>7}")
    for k in keys[1:]:
        print(f"{k[:-2]:12} {median[k]:8.2f} {median[k] / median['wall_s']:7.1%}")
    print(f"{'total':12} {median['wall_s']:8.2f}")
    command = {}
    for name, timed in commands.items():
        command[name] = {**summary([r["wall_s"] for r in timed]), "runs": timed}
        c = command[name]
        loads = [r["load_1min"] for r in timed]
        print(
            f"`harmonygraph demo` ({name}), {len(timed)} runs: median {c['median_s']:.2f} s, "
            f"range {c['min_s']:.2f}-{c['max_s']:.2f} s, load {min(loads):.1f}-{max(loads):.1f}"
        )
    out = ROOT / "bench" / "results" / "demo.json"
    payload = {"runs": runs, "median": median, "command": command, "cpus": os.cpu_count()}
    out.write_text(json.dumps(payload, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
