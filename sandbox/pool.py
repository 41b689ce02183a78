"""`SandboxPool`: kernels started and warmed (scientific stack imported) before they are needed.

A kernel serves exactly one session and is destroyed with it; the pool only moves the
start cost (container start plus ~0.5-2 s of imports) off the critical path. Restarts
after a timeout or a crash also take a warm kernel when one is ready.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any

from harmonygraph.concurrency import run_in_thread

from .errors import SandboxCancelledError, SandboxError
from .session import KernelProcess, Sandbox, SandboxSession

__all__ = ["SandboxPool"]

log = logging.getLogger(__name__)


class SandboxPool:
    """Keeps `size` warm kernels of one sandbox ready; `acquire()` hands out sessions.

    `refill=False` warms `size` kernels once and then stops: a caller that knows it needs
    exactly that many warm (the survey pipeline: one, for its analysis) does not pay for a
    replacement that nobody takes, started while its session runs. Later takes start a
    kernel then, as with an empty pool.
    """

    def __init__(self, sandbox: Sandbox, size: int | None = None, *, refill: bool = True) -> None:
        self.sandbox = sandbox
        self.size = sandbox.config.pool_size if size is None else size
        self.refill = refill
        self.hits = 0
        self.misses = 0
        self.last_error: str | None = None
        self._ready: queue.Queue[KernelProcess] = queue.Queue()
        self._wake = threading.Event()
        self._closed = threading.Event()
        self._filling = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    # -- lifecycle ------------------------------------------------------------------
    def start_sync(self) -> None:
        """Begin filling in the background; returns at once."""
        with self._lock:
            if self._thread is None and self.size > 0:
                self._thread = threading.Thread(target=self._fill_loop, name="hg-pool", daemon=True)
                self._thread.start()

    async def start(self) -> None:
        self.start_sync()

    def wait_ready(self, timeout: float = 120.0) -> bool:
        """Block until the pool holds `size` kernels (for benchmarks and tests)."""
        self.start_sync()
        deadline = threading.Event()
        waited = 0.0
        while self._ready.qsize() < self.size and waited < timeout:
            if self.last_error and not self._filling.is_set():
                return False
            deadline.wait(0.05)
            waited += 0.05
        return self._ready.qsize() >= self.size

    def _fill_loop(self) -> None:
        failures = 0
        started = 0
        while not self._closed.is_set():
            if not self.refill and started >= self.size:
                # Filled once. The thread stays until the pool closes: a local kernel
                # dies with the thread that started it (PR_SET_PDEATHSIG).
                self._closed.wait()
                return
            if self._ready.qsize() >= self.size:
                self._wake.wait(1.0)
                self._wake.clear()
                continue
            self._filling.set()
            try:
                # Closing the pool cancels a start under way: shutdown neither waits for
                # it nor reports the kernel it stops as a failure.
                kernel = self.sandbox.spawn_kernel(cancel=self._closed)
            except SandboxCancelledError:
                self._filling.clear()
                return
            except SandboxError as exc:
                if self._closed.is_set():
                    self._filling.clear()
                    return
                # Keep the reason for whoever asks; back off so a broken engine is not
                # hammered, and let acquire() start kernels itself (and raise).
                self.last_error = str(exc)
                log.warning("sandbox pool could not start a kernel: %s", exc)
                failures += 1
                self._filling.clear()
                self._closed.wait(min(30.0, 2.0**failures))
                continue
            except BaseException:
                self._filling.clear()  # nobody may wait for a kernel that is not coming
                raise
            failures = 0
            self.last_error = None
            if self._closed.is_set():
                self._filling.clear()
                kernel.kill()
                return
            # Ready before "not filling": a taker never sees neither and starts a second one.
            self._ready.put(kernel)
            started += 1
            self._filling.clear()

    # -- use ------------------------------------------------------------------------
    def take_kernel(self) -> KernelProcess:
        """A ready kernel: a warm one if there is one, else one started now."""
        self.start_sync()
        deadline = time.monotonic() + self.sandbox.config.start_timeout_s
        while True:
            try:
                kernel = self._ready.get_nowait()
            except queue.Empty:
                # A kernel is on its way (the pool was warmed moments ago): waiting for
                # it is never slower than starting another, and starts one container, not
                # two. Waited for in short slices, so a failed start is noticed at once.
                if not self._filling.is_set() or time.monotonic() >= deadline:
                    break
                try:
                    kernel = self._ready.get(timeout=0.05)
                except queue.Empty:
                    continue
            self._wake.set()
            if kernel.alive:
                self.hits += 1
                return kernel
            kernel.kill()
        self.misses += 1
        self._wake.set()
        return self.sandbox.spawn_kernel()

    def acquire_sync(self) -> SandboxSession:
        if self._closed.is_set():
            raise SandboxError("the sandbox pool is closed")
        return self.sandbox.session_for(self.take_kernel(), spawn=self.take_kernel)

    async def acquire(self) -> SandboxSession:
        """A new session; its kernel is destroyed when the session closes."""
        return await run_in_thread(self.acquire_sync)

    async def release(self, session: SandboxSession) -> None:
        # Kernels are never reused across sessions: state would leak between runs.
        await session.close()

    def close_sync(self) -> None:
        self._closed.set()
        self._wake.set()
        if self._thread is not None:
            # A start under way sees `_closed` within 0.1 s and stops its kernel itself.
            self._thread.join(timeout=2.0)
        while True:
            try:
                self._ready.get_nowait().kill()
            except queue.Empty:
                break

    async def close(self) -> None:
        await run_in_thread(self.close_sync)

    def stats(self) -> dict[str, Any]:
        return {
            "size": self.size,
            "ready": self._ready.qsize(),
            "hits": self.hits,
            "misses": self.misses,
            "last_error": self.last_error,
        }

    def __enter__(self) -> SandboxPool:
        self.start_sync()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close_sync()
