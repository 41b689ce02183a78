"""The survey pipeline's slow resources, started before they are needed.

A sandbox kernel takes 1-2 s to be ready (a container, then the scientific imports) and
the embedded Postgres a moment (seconds the first time, to create its database). Both run
in other processes, so they can warm while this one imports its modules, preprocesses the
survey and ingests the documents. `SurveyResources.start()` begins both in background
threads and returns at once; the pipeline takes them when it reaches them, and anything
that went wrong is raised there, where it would have been raised without the head start.

This module imports nothing heavy itself, so a command can start the resources first
thing (`harmonygraph demo` does, before it imports the pipeline).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import importlib
import threading
from dataclasses import dataclass
from typing import Any

__all__ = ["StartedSandbox", "SurveyResources"]


@dataclass(frozen=True, slots=True)
class StartedSandbox:
    """The sandbox chosen, its warming pool, and how to describe the choice."""

    sandbox: Any  # harmonygraph.sandbox.Sandbox
    pool: Any  # harmonygraph.sandbox.SandboxPool, filling
    description: str
    fallback_reason: str | None = None


class SurveyResources:
    """The sandbox pool and the database of one pipeline run, started in the background.

    `sandbox`: "auto" (Docker if it answers, else the local sandbox), a `Sandbox`, or None;
    `store`: "demo" (the demo's own embedded Postgres, stopped at exit), "embedded"
    (`DATABASE_URL`, else the shared embedded Postgres), or anything else (an open store,
    None: nothing to start). The same values as `run_survey_pipeline` takes.
    """

    def __init__(self, sandbox: Any = "auto", store: Any = "embedded") -> None:
        self.sandbox_spec = sandbox
        self.store_spec = store
        self._sandbox: concurrent.futures.Future[StartedSandbox | None] = (
            concurrent.futures.Future()
        )
        self._database: concurrent.futures.Future[str | None] = concurrent.futures.Future()
        self._started = False
        self._taken = False
        self._lock = threading.Lock()

    def start(self) -> SurveyResources:
        """Begin starting both; returns at once (idempotent)."""
        with self._lock:
            if self._started:
                return self
            self._started = True
        # The modules are imported here, not in the threads: the caller goes on importing
        # in its own thread, and two threads importing the same packages is best avoided.
        if self.sandbox_spec is None:
            self._sandbox.set_result(None)
        elif _imported(self._sandbox, "harmonygraph.sandbox"):
            _thread(self._sandbox, self._start_sandbox, "hg-start-sandbox")
        if self.store_spec not in ("demo", "embedded"):
            self._database.set_result(None)
        elif _imported(self._database, "harmonygraph.tools.retrieval.db"):
            _thread(self._database, self._start_database, "hg-start-database")
        return self

    def _start_sandbox(self) -> StartedSandbox:
        from harmonygraph.sandbox import SandboxPool, choose_sandbox

        if self.sandbox_spec == "auto":
            choice = choose_sandbox(fallback_to_local=True)
            sandbox, description = choice.sandbox, choice.description
            reason = choice.fallback_reason
        else:
            sandbox, description, reason = self.sandbox_spec, type(self.sandbox_spec).__name__, None
        # One warm kernel, for the analysis; a section that calls python later starts its
        # own, rather than a replacement warming (and taking a core) during the analysis.
        pool = SandboxPool(sandbox, refill=False)
        pool.start_sync()
        return StartedSandbox(sandbox, pool, description, reason)

    def _start_database(self) -> str:
        from harmonygraph.tools.retrieval.db import database_url, start_embedded

        if self.store_spec == "demo":
            # The demo's own embedded database: only the framework documents ever go in,
            # so their ids (which the recorded trace cites) are the same on every machine,
            # whatever else the user has indexed. Stopped when the process exits.
            from harmonygraph.settings import harmonygraph_home

            return start_embedded(harmonygraph_home() / "demo-pgdata", keep_running=False)
        return database_url()

    # -- taking them -------------------------------------------------------------------
    async def sandbox(self) -> StartedSandbox | None:
        """The started sandbox (its pool now belongs to the caller); raises what the start raised."""
        self.start()
        started = await asyncio.wrap_future(self._sandbox)
        self._taken = True
        return started

    async def database_url(self) -> str | None:
        """The database's URL once it runs; raises what starting it raised."""
        self.start()
        return await asyncio.wrap_future(self._database)

    def close_sync(self) -> None:
        """Stop a pool nobody took (the run ended before its analysis)."""
        if self._taken or not self._started:
            return
        self._taken = True
        try:
            started = self._sandbox.result()
        except Exception:
            return  # nothing was started, or it was reported where it was taken
        if started is not None:
            started.pool.close_sync()

    async def aclose(self) -> None:
        from harmonygraph.concurrency import run_in_thread

        await run_in_thread(self.close_sync)


def _imported(future: concurrent.futures.Future[Any], module: str) -> bool:
    try:
        importlib.import_module(module)
    except Exception as exc:  # raised where the resource is taken, as without a head start
        future.set_exception(exc)
        return False
    return True


def _thread(future: concurrent.futures.Future[Any], fn: Any, name: str) -> None:
    def work() -> None:
        try:
            future.set_result(fn())
        except BaseException as exc:  # handed to whoever takes the resource
            future.set_exception(exc)

    threading.Thread(target=work, name=name, daemon=True).start()
