"""`run_batch`: a batch's runs on Ray workers, checkpointed in Postgres, summarised in `batch.json`.

The driver (this process) reads the items, starts Ray (locally, or joins a cluster at
`address`), makes one `InflightLimiter` and `workers` worker actors, and keeps
`concurrency` runs in flight, spread over the workers. Each finished run's record goes to
`out/runs/<key>/result.json`; `out/batch.json` sums them up (rewritten as the batch goes,
so a killed batch leaves one). Running the same batch again (same `out`, same items)
skips the runs whose `result.json` says completed and hands the rest to the workers,
which go on from each thread's checkpoint.

A worker that dies (killed, out of memory, its machine lost) is restarted by Ray, and
the runs it had are given to it again (`max_task_retries`): they resume from Postgres.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harmonygraph.batch.items import BatchItem, batch_items
from harmonygraph.batch.limiter import InflightLimiter
from harmonygraph.batch.worker import BatchWorker, RunOptions, rss_mb, write_json

__all__ = ["BatchProgress", "BatchReport", "init_ray", "run_batch"]

# How often a dead worker is restarted, and its runs retried on it, before they fail.
WORKER_RESTARTS = 4
# What batch.json keeps of each run (its result.json has everything).
RUN_FIELDS = ("key", "status", "run_status", "attempts", "error", "tokens", "cost_usd", "wall_s",
              "source", "thread_id", "skipped", "resumed", "worker")  # fmt: skip


@dataclass
class BatchProgress:
    """Where a batch stands; `line()` is the progress display."""

    total: int
    done: int = 0
    failed: int = 0
    skipped: int = 0  # completed by an earlier invocation of the batch
    running: int = 0
    tokens: int = 0
    cost_usd: float = 0.0
    started: float = field(default_factory=time.monotonic)

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    @property
    def rate(self) -> float:
        """Runs finished per second in this invocation."""
        n = self.done + self.failed - self.skipped
        return n / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def eta_s(self) -> float | None:
        left = self.total - self.done - self.failed
        return left / self.rate if self.rate > 0 else None

    def to_dict(self) -> dict[str, Any]:
        eta = self.eta_s
        return {
            "total": self.total, "done": self.done, "failed": self.failed,
            "skipped": self.skipped, "running": self.running, "tokens": self.tokens,
            "cost_usd": round(self.cost_usd, 6), "elapsed_s": round(self.elapsed, 2),
            "rate_per_s": round(self.rate, 3), "eta_s": None if eta is None else round(eta, 1),
        }  # fmt: skip

    def line(self) -> str:
        eta = self.eta_s
        eta_text = "-" if eta is None else f"{eta:.0f}s"
        return (
            f"done {self.done}/{self.total} · failed {self.failed} · running {self.running} · "
            f"{self.rate:.2f} runs/s · {self.tokens:,} tokens · ${self.cost_usd:.4f} · "
            f"ETA {eta_text}"
        )


@dataclass
class BatchReport:
    """What `run_batch` returns: the summary written to `batch.json`, and each run's record."""

    batch_id: str
    out: Path
    progress: BatchProgress
    runs: list[dict[str, Any]]
    limiter: dict[str, Any]
    workers: list[dict[str, Any]]

    @property
    def ok(self) -> bool:
        return self.progress.failed == 0

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [r for r in self.runs if r.get("status") != "completed"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "batch_id": self.batch_id,
            "out": str(self.out),
            "summary": self.progress.to_dict(),
            "limiter": self.limiter,
            "workers": self.workers,
            "runs": [{k: r.get(k) for k in RUN_FIELDS} for r in self.runs],
        }


def default_batch_id(out: Path) -> str:
    """The batch's id: kept in `out/batch.json`, else derived from the output folder."""
    meta = out / "batch.json"
    if meta.is_file():
        try:
            found = json.loads(meta.read_text(encoding="utf-8")).get("batch_id")
            if isinstance(found, str) and found:
                return found
        except ValueError:
            pass
    return hashlib.sha256(str(out.resolve()).encode()).hexdigest()[:12]


def init_ray(address: str | None = None, *, num_cpus: int | None = None) -> Any:
    """Ray, started here (`address` None: a local instance) or joined (`auto`, `ray://...`)."""
    try:
        import ray
    except ImportError:
        raise ImportError("batches run on Ray: pip install 'harmonygraph[batch]'") from None
    if ray.is_initialized():
        return ray
    if address:
        ray.init(address=address, include_dashboard=False, log_to_driver=False,
                 configure_logging=False)  # fmt: skip
    else:
        ray.init(
            num_cpus=num_cpus or os.cpu_count() or 1,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
            object_store_memory=80 * 1024 * 1024,  # records only: small
        )
    return ray


def _setup_database(url: str) -> None:
    """Make the checkpoint tables once, here, before workers race to."""
    from harmonygraph.concurrency import run_sync
    from harmonygraph.engine.checkpoint import postgres_saver

    async def setup() -> None:
        async with postgres_saver(url):
            pass

    run_sync(setup())


def _previous(out: Path, item: BatchItem) -> dict[str, Any] | None:
    """The run's record from an earlier invocation, when it completed on the same thread."""
    path = out / "runs" / item.key / "result.json"
    try:
        rec = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if rec.get("status") == "completed" and rec.get("thread_id") == item.thread_id:
        return dict(rec)
    return None


def run_batch(
    tasks: Sequence[str | Path],
    *,
    out: str | Path = "batch-out",
    address: str | None = None,
    concurrency: int = 16,
    workers: int | None = None,
    retries: int = 2,
    max_inflight: int = 16,
    database_url: str | None = None,
    batch_id: str | None = None,
    base_url: str | None = None,
    model: str | None = None,
    api: str | None = None,
    on_progress: Callable[[BatchProgress], None] | None = None,
    progress_every_s: float = 0.5,
    shutdown: bool | None = None,
) -> BatchReport:
    """Run task files (or task files over JSONL/CSV inputs) as a batch on Ray.

    `concurrency`: runs in flight at once, over all workers; `workers`: worker actors (by
    default one per CPU of the cluster, at most `concurrency`); `max_inflight`: model
    requests in flight at once over the whole cluster; `retries`: further attempts of a
    run that failed. `database_url`: the checkpoints' Postgres (else `DATABASE_URL`, else
    the embedded server). `shutdown`: stop Ray at the end (default: when started here).
    """
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    bid = batch_id or default_batch_id(out)
    items = batch_items(tasks, bid)
    if database_url is None:
        from harmonygraph.tools.retrieval.db import database_url as find_database

        database_url = find_database()
    _setup_database(database_url)

    progress = BatchProgress(total=len(items))
    records: dict[str, dict[str, Any]] = {}
    todo: list[BatchItem] = []
    for item in items:
        prev = _previous(out, item)
        if prev is not None:
            prev["skipped"] = True
            records[item.key] = prev
            progress.done += 1
            progress.skipped += 1
            progress.tokens += prev.get("tokens") or 0
            progress.cost_usd += prev.get("cost_usd") or 0.0
        else:
            todo.append(item)

    meta_path = out / "batch.json"
    created = dt.date.today().isoformat()
    if meta_path.is_file():
        try:
            created = json.loads(meta_path.read_text(encoding="utf-8")).get("date") or created
        except ValueError:
            pass

    try:
        import ray as _ray
    except ImportError:
        raise ImportError("batches run on Ray: pip install 'harmonygraph[batch]'") from None
    started_ray = not _ray.is_initialized()
    ray = init_ray(address, num_cpus=workers)
    n_workers = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
    n_workers = max(1, min(n_workers, concurrency, max(1, len(todo))))
    per_worker = math.ceil(concurrency / n_workers)

    options = RunOptions(
        out=str(out), database_url=database_url, retries=retries, base_url=base_url,
        model=model, api=api, current_date=created, pool_size=min(per_worker + 1, 16),
    )  # fmt: skip
    limiter = ray.remote(num_cpus=0, max_concurrency=10_000)(InflightLimiter).remote(max_inflight)
    Worker = ray.remote(
        num_cpus=1 if not address else 0.5,
        max_restarts=WORKER_RESTARTS,
        max_task_retries=WORKER_RESTARTS,
        max_concurrency=per_worker + 2,  # + info/close calls
    )(BatchWorker)
    actors = [Worker.remote(f"w{i}", limiter, options) for i in range(n_workers)]

    def summary(final: bool = False) -> BatchReport:
        report = BatchReport(
            batch_id=bid, out=out, progress=progress,
            runs=[records[i.key] for i in items if i.key in records],
            limiter={}, workers=[],
        )  # fmt: skip
        data = report.to_dict()
        data.update(date=created, tasks=[str(t) for t in tasks], final=final,
                    driver_rss_mb=round(rss_mb(), 1))  # fmt: skip
        write_json(meta_path, data)
        return report

    queue = list(reversed(todo))
    inflight: dict[Any, tuple[BatchItem, int]] = {}
    load = [0] * n_workers
    last_progress = 0.0

    def finish(item: BatchItem, rec: dict[str, Any]) -> None:
        records[item.key] = rec
        write_json(out / "runs" / item.key / "result.json", rec)
        if rec.get("status") == "completed":
            progress.done += 1
        else:
            progress.failed += 1
        progress.tokens += rec.get("tokens") or 0
        progress.cost_usd += rec.get("cost_usd") or 0.0

    try:
        while queue or inflight:
            while queue and len(inflight) < concurrency:
                item = queue.pop()
                if item.error is not None:  # never run: reported as it is
                    rec = {"key": item.key, "thread_id": item.thread_id, "source": item.source,
                           "status": "failed", "attempts": 0, "error": item.error}  # fmt: skip
                    finish(item, rec)
                    continue
                w = min(range(n_workers), key=load.__getitem__)
                ref = actors[w].run.remote(item.to_dict())
                inflight[ref] = (item, w)
                load[w] += 1
            progress.running = len(inflight)
            if inflight:
                ready, _ = ray.wait(list(inflight), num_returns=1, timeout=progress_every_s)
                if ready:
                    more, _ = ray.wait(list(inflight), num_returns=len(inflight), timeout=0)
                    ready = list(dict.fromkeys([*ready, *more]))
                for ref in ready:
                    item, w = inflight.pop(ref)
                    load[w] -= 1
                    try:
                        rec = ray.get(ref)
                    except Exception as exc:  # the worker died more often than it may restart
                        rec = {"key": item.key, "thread_id": item.thread_id,
                               "source": item.source, "status": "failed", "attempts": 0,
                               "error": f"{type(exc).__name__}: {str(exc)[:2000]}"}  # fmt: skip
                    finish(item, rec)
            progress.running = len(inflight)
            now = time.monotonic()
            if now - last_progress >= progress_every_s:
                last_progress = now
                summary()
                if on_progress is not None:
                    on_progress(progress)
        report = summary(final=True)
        try:
            report.limiter = ray.get(limiter.stats.remote(), timeout=30)
            report.workers = ray.get([a.info.remote() for a in actors], timeout=30)
            ray.get([a.close.remote() for a in actors], timeout=60)
        except Exception as exc:  # a report without them rather than none
            report.limiter = {"error": str(exc)}
        data = report.to_dict()
        data.update(date=created, tasks=[str(t) for t in tasks], final=True,
                    driver_rss_mb=round(rss_mb(), 1))  # fmt: skip
        write_json(meta_path, data)
        if on_progress is not None:
            on_progress(progress)
        return report
    finally:
        for a in actors:
            ray.kill(a, no_restart=True)
        ray.kill(limiter, no_restart=True)
        if shutdown if shutdown is not None else started_ray:
            ray.shutdown()
