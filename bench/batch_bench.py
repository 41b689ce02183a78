"""Batches on Ray: wall time against the ideal, overhead per run, memory per worker.

200 runs of one task file over 200 inputs; each run makes 4 model calls (3 tool calls and a
final answer) to the fake OpenAI-compatible server, which takes 100 ms per call and
serves at most 16 at once (a 17th gets 429). The batch bounds the cluster's in-flight
requests to 16 (`--max-inflight`), so the ideal is 200 × 4 × 0.1 s / 16 = 5 s. Checkpoints
go to an embedded Postgres; Ray runs locally (its start is not counted).

    python bench/batch_bench.py                 # 1 and 2 workers; bench/results/batch.json
    python bench/batch_bench.py --runs 50 --workers 1

Measured per configuration: wall (first submit to batch.json written, workers' start
included), steady wall (first run's start to last run's end), overhead per run (a run's
wall minus its 4 × 100 ms of model time, mean), the limiter's peak and its total wait,
the server's peak and its 429s, memory per worker and of the driver.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TIKTOKEN_ENCODINGS_BASE", str(ROOT.parent / "shared" / "vocab"))

from tests.batch.kit import STEPS, CappedServer, script, write_task  # noqa: E402

CALL_S = 0.1
CAPACITY = 16


def one(task: Path, inputs: Path, out: Path, pg_url: str, *, workers: int, concurrency: int,
        server: CappedServer) -> dict[str, Any]:  # fmt: skip
    from harmonygraph.batch import run_batch

    server.peak = server.refused = 0
    cpu0 = os.times()
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    report = run_batch(
        [task, inputs], out=out, database_url=pg_url, workers=workers, concurrency=concurrency,
        max_inflight=CAPACITY, retries=0, shutdown=False,
    )  # fmt: skip
    wall = time.perf_counter() - t0
    cpu1 = os.times()
    here_cpu = (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)
    recs = [json.loads((out / "runs" / r["key"] / "result.json").read_text()) for r in report.runs]
    done = [r for r in recs if r["status"] == "completed"]
    n = len(recs)
    model_s = (STEPS + 1) * CALL_S
    steady = max(r["ended_at"] for r in recs) - min(r["started_at"] for r in recs)
    ideal = n * (STEPS + 1) * CALL_S / CAPACITY
    import psycopg

    with psycopg.connect(pg_url) as conn:  # what the runs stored: rows per run
        like = f"batch-{report.batch_id}-%"
        rows = {
            t: conn.execute(
                f"select count(*) from {t} where thread_id like %s", (like,)
            ).fetchone()[0]
            for t in ("checkpoints", "checkpoint_writes", "checkpoint_blobs")
        }
    return {
        "workers": workers,
        "pg_rows_per_run": {t: round(c / n, 1) for t, c in rows.items()},
        "concurrency": concurrency,
        "runs": n,
        "completed": len(done),
        "wall_s": round(wall, 2),
        "steady_wall_s": round(steady, 2),
        "ideal_s": round(ideal, 2),
        "wall_over_ideal": round(wall / ideal, 2),
        "steady_over_ideal": round(steady / ideal, 2),
        "run_wall_mean_s": round(statistics.mean(r["wall_s"] for r in recs), 3),
        "overhead_per_run_ms": round(
            1000 * statistics.mean(r["wall_s"] - model_s for r in recs), 1
        ),
        "limiter": report.limiter,
        "limiter_wait_per_call_ms": round(
            1000 * report.limiter.get("waited_s", 0) / max(1, report.limiter.get("granted", 1)), 1
        ),
        "server_peak": server.peak,
        "server_429": server.refused,
        "worker_rss_mb": [w["rss_mb"] for w in report.workers],
        # CPU a run costs in its worker (engine, HTTP client, checkpoints; the worker's
        # start included), and in this process (the driver and the fake server).
        "worker_cpu_ms_per_run": round(1000 * sum(w["cpu_s"] for w in report.workers) / n, 1),
        "driver_and_server_cpu_ms_per_run": round(1000 * here_cpu / n, 1),
        "load_avg_before": round(load0, 2),
        "load_avg_after": round(os.getloadavg()[0], 2),
        "driver_rss_mb": json.loads((out / "batch.json").read_text())["driver_rss_mb"],
    }


def limiter_rate(seconds: float = 3.0, clients: int = 2, loops: int = 32) -> dict[str, Any]:
    """Acquire+release pairs per second one `InflightLimiter` actor serves, from `clients`
    actors with `loops` concurrent callers each and no work between: its ceiling."""
    import ray
    from harmonygraph.batch.limiter import InflightLimiter

    @ray.remote(num_cpus=0)
    class Client:
        async def hammer(self, limiter: Any, until: float) -> int:
            import asyncio

            async def loop() -> int:
                n = 0
                while time.time() < until:
                    token = await limiter.acquire.remote("bench")
                    await limiter.release.remote(token)
                    n += 1
                return n

            return sum(await asyncio.gather(*[loop() for _ in range(loops)]))

    limiter = ray.remote(num_cpus=0, max_concurrency=10_000)(InflightLimiter).remote(64)
    ray.get(limiter.stats.remote())
    cs = [Client.remote() for _ in range(clients)]  # type: ignore[attr-defined]
    ray.get([c.__ray_ready__.remote() for c in cs])
    until = time.time() + seconds
    total = sum(ray.get([c.hammer.remote(limiter, until) for c in cs]))
    return {"pairs_per_s": round(total / seconds), "clients": clients, "loops": loops,
            "load_avg": round(os.getloadavg()[0], 2)}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--workers", type=int, nargs="*", default=[1, 2])
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--database-url", default=os.environ.get("HARMONYGRAPH_TEST_DATABASE_URL"))
    ap.add_argument("--json-out", default=str(ROOT / "bench" / "results" / "batch.json"))
    args = ap.parse_args()

    from harmonygraph.batch.driver import init_ray

    tmp = Path(tempfile.mkdtemp(prefix="hg-batch-bench-"))
    tmp.chmod(0o755)
    server_pg = None
    try:
        pg_url = args.database_url
        if not pg_url:
            import pgserver

            server_pg = pgserver.get_server(tmp / "pgdata", cleanup_mode="delete")
            pg_url = str(server_pg.get_uri())
        t0 = time.perf_counter()
        ray = init_ray(num_cpus=max(args.workers))
        ray_init_s = time.perf_counter() - t0
        rows = []
        limiter = limiter_rate()
        print(json.dumps({"limiter_rate": limiter}), flush=True)
        with CappedServer(script, capacity=CAPACITY) as server:
            server.work_s = CALL_S
            task = write_task(tmp / "task", server.base_url, input="Say {word}.")
            inputs = tmp / "inputs.jsonl"
            inputs.write_text(
                "".join(
                    json.dumps({"id": f"r{i}", "word": f"w{i}"}) + "\n" for i in range(args.runs)
                )
            )
            for w in args.workers:
                row = one(task, inputs, tmp / f"out-{w}", pg_url, workers=w,
                          concurrency=args.concurrency, server=server)  # fmt: skip
                rows.append(row)
                print(json.dumps(row), flush=True)
        ray.shutdown()
        result = {
            "machine": {
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "ray": ray.__version__,
            },
            "ray_init_s": round(ray_init_s, 2),
            "limiter_rate": limiter,
            "call_s": CALL_S,
            "capacity": CAPACITY,
            "rows": rows,
        }
        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_out).write_text(json.dumps(result, indent=2) + "\n")
        print("\n| workers | runs | wall s | steady s | ideal s | wall/ideal | overhead/run ms "
              "| limiter wait/call ms | server peak | 429s | worker RSS MiB | worker CPU ms/run "
              "| load avg |")  # fmt: skip
        print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['workers']} | {r['runs']} | {r['wall_s']} | {r['steady_wall_s']} | "
                  f"{r['ideal_s']} | {r['wall_over_ideal']} | {r['overhead_per_run_ms']} | "
                  f"{r['limiter_wait_per_call_ms']} | {r['server_peak']} | {r['server_429']} | "
                  f"{', '.join(str(x) for x in r['worker_rss_mb'])} | {r['worker_cpu_ms_per_run']} | "
                  f"{r['load_avg_before']}→{r['load_avg_after']} |")  # fmt: skip
    finally:
        if server_pg is not None:
            server_pg.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
