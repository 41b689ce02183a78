"""A batch worker: runs items (a Ray async actor, several runs at once), durable on Postgres.

Each run is an agent run on its item's thread in Postgres. Before it starts, the worker
reads the thread's last checkpoint:

- none: a fresh run with the item's input;
- steps still to take (a worker died in a tool or a model call): the run goes on from the
  checkpoint (`Agent.arun(thread_id=..., no input)`): the tool call in progress runs
  again, the completed ones do not;
- ended `completed`: nothing runs; the result is read from the checkpoint;
- ended otherwise (a model error, a limit): a retry, which goes on from that state too,
  so a retry repeats no completed tool call either.

A run that fails is retried up to `retries` times, then reported with its error; it never
raises out of `run`, so one bad run cannot stop the batch. The tools and the model client
of a task file are built once per worker and shared by its runs; each model request holds
a lease of the batch's `InflightLimiter` (`GatedModel`).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from harmonygraph.batch.items import BatchItem
from harmonygraph.batch.limiter import GatedModel

__all__ = ["BatchWorker", "RunOptions", "rss_mb", "write_json"]


@dataclass(frozen=True)
class RunOptions:
    """What every run of a batch shares."""

    out: str
    database_url: str
    retries: int = 2
    base_url: str | None = None
    model: str | None = None
    api: str | None = None
    current_date: str | None = None  # fixed for the batch: a resumed run renders the same prompt
    pool_size: int = 8


def rss_mb() -> float:
    """This process's resident memory now, in MiB."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_json(path: Path, data: Any) -> None:
    """Write `data` as JSON atomically (a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False, default=str), encoding="utf-8")
    os.replace(tmp, path)


def _jsonable(value: Any) -> Any:
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        return str(value)


@dataclass
class _TaskKit:
    """A task file's parts, built once per worker: its spec, tools and model client."""

    spec: Any
    base: Any  # the Agent `agent_for_task` built: its options, registry and client
    model: GatedModel
    agent: Any = None  # the Agent runs are copied from: `base` on Postgres, gated


class BatchWorker:
    """Runs a batch's items; one per Ray worker process (`ray.remote(BatchWorker)`)."""

    def __init__(self, name: str, limiter: Any, options: RunOptions) -> None:
        self.name = name
        self.limiter = limiter
        self.options = options
        self.out = Path(options.out)
        self._saver: Any = None
        self._pool: Any = None
        self._graph: Any = None
        self._kits: dict[str, _TaskKit] = {}
        self.started = time.time()
        self.runs = 0

    async def _ready(self) -> None:
        if self._saver is not None:
            return
        # A worker restarted after a crash returns the leases its predecessor held.
        await self.limiter.release_holder.remote(self.name)
        from harmonygraph.engine import build_agent_graph
        from harmonygraph.engine.checkpoint import serializer
        from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
        from psycopg.rows import dict_row
        from psycopg_pool import AsyncConnectionPool

        # A pool, not one connection: the worker's runs save their steps concurrently.
        pool = AsyncConnectionPool(
            self.options.database_url,
            min_size=1,
            max_size=max(2, self.options.pool_size),
            kwargs={"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row},
            open=False,
        )
        await pool.open(wait=True, timeout=60)
        self._pool = pool
        self._saver = AsyncPostgresSaver(
            cast(Any, pool), serde=serializer()
        )  # tables: made by the driver
        self._graph = build_agent_graph().compile(checkpointer=self._saver)

    def _kit(self, task_path: str) -> _TaskKit:
        kit = self._kits.get(task_path)
        if kit is None:
            from harmonygraph.task import agent_for_task, load_task

            o = self.options
            spec = load_task(task_path)
            base = agent_for_task(spec, base_url=o.base_url, model=o.model, api=o.api)
            kit = _TaskKit(spec, base, GatedModel(base.model, self.limiter, self.name))
            self._kits[task_path] = kit
        return kit

    def _agent(self, kit: _TaskKit, run_dir: Path) -> Any:
        """The run's agent: the kit's, with this run's artifacts folder.

        The kit's agent (its compiled graph on the Postgres saver, tools, client) is built
        once; each run gets a shallow copy with its own `artifacts_dir`, which is all that
        differs between runs (building an Agent compiles its graph: ~40 ms a run)."""
        import copy

        if kit.agent is None:
            from harmonygraph.engine import Agent

            b = kit.base
            kit.agent = Agent(
                kit.model, b.registry, instructions=b.instructions, reasoning=b.reasoning,
                output_type=b.output_type, name=b.name, identity=b.identity,
                knowledge_cutoff=b.knowledge_cutoff,
                current_date=self.options.current_date or b.current_date, limits=b.limits,
                settings=b.settings, checkpointer=self._saver, redact=b.redactor.secrets,
                prices=b.prices,
            )  # fmt: skip
        agent = copy.copy(kit.agent)
        agent.artifacts_dir = run_dir / "artifacts"
        return agent

    async def info(self) -> dict[str, Any]:
        cpu = os.times()
        return {"name": self.name, "pid": os.getpid(), "rss_mb": round(rss_mb(), 1),
                "runs": self.runs, "cpu_s": round(cpu.user + cpu.system, 2)}  # fmt: skip

    async def close(self) -> None:
        for kit in self._kits.values():
            try:
                await kit.base.aclose()
            except Exception:
                pass
        self._kits.clear()
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
            self._saver = None

    async def run(self, item_data: dict[str, Any]) -> dict[str, Any]:
        """Run one item to its end (with its retries); never raises."""
        item = BatchItem.from_dict(item_data)
        run_dir = self.out / "runs" / item.key
        started = time.time()
        record: dict[str, Any] = {
            "key": item.key, "thread_id": item.thread_id, "source": item.source,
            "status": "failed", "run_status": None, "attempts": 0, "error": item.error,
            "worker": self.name, "pid": os.getpid(),
        }  # fmt: skip
        if item.error is not None:
            return record
        try:
            await self._ready()
        except Exception as exc:
            record["error"] = f"the worker cannot reach the checkpoint database: {exc}"
            return record
        run_dir.mkdir(parents=True, exist_ok=True)
        config: Any = {"configurable": {"thread_id": item.thread_id}}
        for attempt in range(self.options.retries + 1):
            record["attempts"] = attempt + 1
            try:
                kit = self._kit(item.task_path)
                snap = await self._graph.aget_state(config)
                values = snap.values if snap else {}
                if attempt == 0:
                    record["resumed"] = bool(values)
                if values and not snap.next and values.get("status") == "completed":
                    record.update(self._from_state(kit, values), status="completed")
                    record["from_checkpoint"] = True
                    break
                agent = self._agent(kit, run_dir)
                trace = run_dir / f"trace-{len(list(run_dir.glob('trace-*.jsonl'))) + 1}.jsonl"
                text = item.input if item.input is not None else kit.spec.input
                result = await agent.arun(
                    None if values else text, thread_id=item.thread_id, trace_path=trace
                )
                self._add_result(record, result)
                if result.ok:
                    record["status"] = "completed"
                    record["error"] = None
                    break
                record["error"] = f"the run ended {result.status}"
            except Exception as exc:
                res = getattr(exc, "result", None)
                if res is not None:
                    self._add_result(record, res)
                record["error"] = f"{type(exc).__name__}: {str(exc)[:2000]}"
        self.runs += 1
        record["started_at"], record["ended_at"] = started, time.time()
        record["wall_s"] = round(time.time() - started, 3)
        record["rate_limited"] = sum(k.model.rate_limited for k in self._kits.values())
        return record

    def _from_state(self, kit: _TaskKit, values: dict[str, Any]) -> dict[str, Any]:
        from harmonygraph.engine import estimate_cost
        from harmonygraph.models.base import Usage

        usage = values.get("usage") or Usage()
        text = values.get("output")
        output: Any = text
        if kit.base.output_type is not None and isinstance(text, str):
            try:  # the answer validated when the run ended; the checkpoint keeps its text
                output = json.loads(text)
            except ValueError:
                pass
        return {
            "run_status": values.get("status"),
            "output": _jsonable(output),
            "text": text if isinstance(text, str) else None,
            "usage": usage.to_dict(), "tokens": usage.total_tokens,
            "cost_usd": estimate_cost(kit.model.name, usage, kit.base.prices),
            "steps": values.get("steps", 0), "tool_calls": values.get("tool_calls", 0),
        }  # fmt: skip

    def _add_result(self, record: dict[str, Any], result: Any) -> None:
        """The attempt's result into the record; tokens and cost summed over attempts."""
        tokens, cost = record.get("tokens") or 0, record.get("cost_usd")
        record.update(self._from_result(result))
        record["tokens"] += tokens
        if cost is not None:
            record["cost_usd"] = (record["cost_usd"] or 0.0) + cost

    def _from_result(self, result: Any) -> dict[str, Any]:
        return {
            "run_status": result.status,
            "output": _jsonable(result.output),
            "text": result.text,
            "usage": result.usage.to_dict(),
            "tokens": result.usage.total_tokens,
            "cost_usd": result.cost_usd,
            "steps": result.steps,
            "tool_calls": result.tool_calls,
            "trace": str(result.trace_path) if result.trace_path else None,
        }
