"""The one bridge between sync and async code.

- `run_sync` / `iterate_sync`: a coroutine or an async iterator driven from sync code, on
  one event loop in a background thread that every sync wrapper shares (async clients bind
  to the loop they first ran on). Refused clearly inside a running loop.
- `run_in_thread`: blocking work awaited from async code, on reused daemon threads, so a
  call that never returns cannot keep the process from exiting.
"""

from __future__ import annotations

import asyncio
import contextvars
import queue
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from typing import Any, TypeVar

__all__ = ["iterate_sync", "run_in_thread", "run_sync"]

_R = TypeVar("_R")


class _DaemonWorkers:
    """Reused daemon threads for sync tools.

    `asyncio.to_thread`'s executor joins its threads at exit, so one stuck call would
    hang the process; a fresh thread per call costs a thread start every step. These
    threads are reused while free, and one stuck in a call is simply never freed.
    """

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._idle = 0
        self._lock = threading.Lock()

    def submit(self, job: Callable[[], None]) -> None:
        with self._lock:
            start = self._idle == 0
            if not start:
                self._idle -= 1
        if start:
            threading.Thread(target=self._work, name="harmonygraph-tool", daemon=True).start()
        self._jobs.put(job)

    def _work(self) -> None:
        while True:
            self._jobs.get()()
            with self._lock:
                self._idle += 1


_workers = _DaemonWorkers()


async def run_in_thread(fn: Callable[..., _R], *args: Any, **kwargs: Any) -> _R:
    """`fn(*args, **kwargs)` on a daemon worker thread, awaited.

    Unlike `asyncio.to_thread`, a call that never returns cannot keep the process from
    exiting: a sync tool past its timeout is abandoned, and the run (and the CLI) end.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[_R] = loop.create_future()
    ctx = contextvars.copy_context()

    def settle(ok: bool, value: Any) -> None:
        if not future.done():
            future.set_result(value) if ok else future.set_exception(value)

    def job() -> None:
        outcome: tuple[bool, Any]
        try:
            outcome = (True, ctx.run(fn, *args, **kwargs))
        except BaseException as exc:  # handed to the awaiting task
            outcome = (False, exc)
        try:
            loop.call_soon_threadsafe(settle, *outcome)
        except RuntimeError:  # the loop is gone: the call was abandoned long ago
            pass

    _workers.submit(job)
    return await future


class _Portal:
    """One event loop in a background thread that every sync wrapper runs its coroutines on.

    Async clients (httpx, openai) bind to the loop they were first used on, so sync calls
    must all share one loop: a fresh `asyncio.run` per call would leave the second call
    with a client whose loop is closed.
    """

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()

    def loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._loop.is_closed():
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=loop.run_forever, name="harmonygraph-sync", daemon=True
                )
                thread.start()
                self._loop = loop
            return self._loop

    def call(self, coro: Any) -> Any:
        future = asyncio.run_coroutine_threadsafe(coro, self.loop())
        try:
            return future.result()
        except BaseException:
            future.cancel()  # Ctrl-C in the caller cancels the work too
            raise


_PORTAL = _Portal()


def _refuse_inside_loop(what: Any) -> None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    close = getattr(what, "close", None) or getattr(what, "aclose", None)
    if close is not None and asyncio.iscoroutinefunction(close) is False:
        close()
    raise RuntimeError(
        "called a sync method inside a running event loop; await the async variant instead"
    )


def run_sync(coro: Coroutine[Any, Any, _R]) -> _R:
    """Run a coroutine from sync code; refuses clearly inside a running event loop."""
    _refuse_inside_loop(coro)
    return _PORTAL.call(coro)


def iterate_sync(agen: AsyncIterator[Any]) -> Iterator[Any]:
    """Drive an async iterator from sync code, on the same loop as `run_sync`."""
    _refuse_inside_loop(None)
    try:
        while True:
            try:
                yield _PORTAL.call(agen.__anext__())
            except StopAsyncIteration:
                break
    finally:
        aclose = getattr(agen, "aclose", None)
        if aclose is not None:
            _PORTAL.call(aclose())
