"""The demo's wall time, split into model (replayed), tools, and framework.

Runs the survey pipeline as `harmonygraph demo` does (model turns replayed from the
recorded trace, every tool for real) a few times and reports the median split:
- model: the replayed model calls' own time (near zero: this is the framework's floor,
  a live gpt-oss adds its generation time here);
- tools: sandbox executions (including taking a session), retrieval, browsing;
- framework: everything else (preprocessing, ingest, rendering harmony, the graphs,
  citation checks, Markdown/HTML/PDF rendering, delivery).

    python bench/demo_bench.py [--runs 3]      # prints a table, writes bench/results/demo.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.runs):
            runs.append(asyncio.run(once(Path(tmp) / f"run{i}")))
    keys = ["wall_s", "model_s", "tools_s", "framework_s"]
    median = {k: round(statistics.median(r[k] for r in runs), 3) for k in keys}
    print(f"demo ({runs[0]['sandbox']}), median of {len(runs)} runs")
    print(f"{'part':12} {'seconds':>8} {'share':>7}")
    for k in keys[1:]:
        print(f"{k[:-2]:12} {median[k]:8.2f} {median[k] / median['wall_s']:7.1%}")
    print(f"{'total':12} {median['wall_s']:8.2f}")
    out = ROOT / "bench" / "results" / "demo.json"
    out.write_text(json.dumps({"runs": runs, "median": median}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
