"""Batches of agent runs on Ray, durable on Postgres (`harmonygraph batch`, `run_batch`).

    items.py    task files, or task files over JSONL/CSV rows, as items with stable thread ids
    driver.py   `run_batch`: Ray (local or a cluster), dispatch, progress, `batch.json`
    worker.py   `BatchWorker`: a Ray actor running items on their Postgres threads
    limiter.py  `InflightLimiter`: in-flight model requests bounded across the cluster;
                `GatedModel`: a client that takes its leases and backs off on 429
    cli.py      the `harmonygraph batch` command

Ray is the extra `batch` (`pip install 'harmonygraph[batch]'`); it is imported only when a
batch runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from harmonygraph.lazy import lazy_exports

if TYPE_CHECKING:
    from harmonygraph.batch.driver import BatchProgress, BatchReport, run_batch
    from harmonygraph.batch.items import BatchInputError, BatchItem, batch_items
    from harmonygraph.batch.limiter import GatedModel, InflightLimiter

__all__ = [
    "BatchInputError",
    "BatchItem",
    "BatchProgress",
    "BatchReport",
    "GatedModel",
    "InflightLimiter",
    "batch_items",
    "run_batch",
]

_LAZY = {
    "BatchInputError": "harmonygraph.batch.items",
    "BatchItem": "harmonygraph.batch.items",
    "BatchProgress": "harmonygraph.batch.driver",
    "BatchReport": "harmonygraph.batch.driver",
    "GatedModel": "harmonygraph.batch.limiter",
    "InflightLimiter": "harmonygraph.batch.limiter",
    "batch_items": "harmonygraph.batch.items",
    "run_batch": "harmonygraph.batch.driver",
}

__getattr__ = lazy_exports(__name__, _LAZY)
