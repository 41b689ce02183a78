"""Page extraction in a child process that is killed at a deadline.

HTML and PDF parsers are C code that a hostile page can keep busy for minutes (one tag
with 300,000 attributes makes lxml and readability quadratic). A thread cannot be stopped
and keeps the interpreter from exiting; a process can. `ExtractionWorkers` keeps a few
idle worker processes (started once, about 0.8 s, while the page downloads) and sends each
page to one of them over its stdin/stdout; at the deadline, or when the caller is
cancelled, that worker is killed with SIGKILL and the next page gets a fresh one.

The worker also bounds itself: its CPU time per page (RLIMIT_CPU, so it dies even if the
parent was killed mid-page) and its address space (RLIMIT_AS). It exits when its stdin
closes, and the parent kills all its workers at exit.

Protocol (private): each message is an 8-byte big-endian length and that many bytes. A
request is two messages, a JSON header and the body bytes; a reply is one JSON message.
"""

from __future__ import annotations

import atexit
import json
import math
import os
import select
import subprocess
import sys
import threading
import time
from typing import Any

from harmonygraph.concurrency import run_in_thread
from harmonygraph.tools.browser.extract import ExtractionError
from harmonygraph.tools.browser.fetch import FetchResult
from harmonygraph.tools.browser.page import Link, PageContents

__all__ = ["ExtractionTimeoutError", "ExtractionWorkers", "default_workers"]

_LENGTH = 8


class ExtractionTimeoutError(ExtractionError):
    """Turning the page into text took longer than the extraction deadline; it was stopped."""


class _WorkerGone(Exception):
    """The worker process exited (killed, crashed, or out of memory).

    `before_page`: it was gone before it had the whole page (died while idle)."""

    def __init__(self, before_page: bool) -> None:
        self.before_page = before_page


# ---- the parent side -------------------------------------------------------------------


class _Worker:
    def __init__(self, memory_mb: int) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from harmonygraph.tools.browser.worker import main; main()",
                str(memory_mb),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            close_fds=True,
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.stdin = self.proc.stdin.fileno()
        self.stdout = self.proc.stdout.fileno()
        os.set_blocking(self.stdin, False)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        # The pipes are left to close with this object: a thread may still be reading one,
        # and an fd closed under it could be reused by another file.
        if self.proc.poll() is None:
            try:
                self.proc.kill()
            except ProcessLookupError:
                pass
        self.proc.wait()

    def exchange(self, header: dict[str, Any], body: bytes, deadline: float) -> dict[str, Any]:
        """Send one page, wait for its reply until `deadline` (time.monotonic)."""
        data = json.dumps(header).encode()
        out = b"".join(
            [len(data).to_bytes(_LENGTH, "big"), data, len(body).to_bytes(_LENGTH, "big"), body]
        )
        view = memoryview(out)
        while view:
            self._wait(self.stdin, "w", deadline)
            try:
                sent = os.write(self.stdin, view)
            except BlockingIOError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                raise _WorkerGone(before_page=True) from None
            view = view[sent:]
        size = int.from_bytes(self._read(_LENGTH, deadline), "big")
        reply: dict[str, Any] = json.loads(self._read(size, deadline))
        return reply

    def _read(self, n: int, deadline: float) -> bytes:
        parts: list[bytes] = []
        while n:
            self._wait(self.stdout, "r", deadline)
            chunk = os.read(self.stdout, min(n, 1 << 20))
            if not chunk:
                raise _WorkerGone(before_page=False)
            parts.append(chunk)
            n -= len(chunk)
        return b"".join(parts)

    @staticmethod
    def _wait(fd: int, mode: str, deadline: float) -> None:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        ready = select.select([fd] if mode == "r" else [], [fd] if mode == "w" else [], [], left)
        if not ready[0] and not ready[1]:
            raise TimeoutError


class ExtractionWorkers:
    """Worker processes for page extraction, reused between pages, killed at the deadline.

    One job per worker at a time; concurrent pages start more workers, and up to
    `keep_idle` stay for the next pages. Safe to share between event loops and threads."""

    def __init__(self, *, keep_idle: int = 2, memory_mb: int = 2048) -> None:
        self.keep_idle = keep_idle
        self.memory_mb = memory_mb
        self._idle: list[_Worker] = []
        self._all: set[_Worker] = set()
        self._lock = threading.Lock()
        atexit.register(self.close)

    def prewarm(self) -> None:
        """Start a worker now (it loads the parsers while the page downloads)."""
        with self._lock:
            if not self._idle:
                worker = _Worker(self.memory_mb)
                self._all.add(worker)
                self._idle.append(worker)

    def _take(self) -> _Worker:
        with self._lock:
            while self._idle:
                worker = self._idle.pop()
                if worker.alive():
                    return worker
                self._all.discard(worker)
                worker.kill()
            worker = _Worker(self.memory_mb)
            self._all.add(worker)
            return worker

    def _put(self, worker: _Worker) -> None:
        with self._lock:
            if worker.alive() and len(self._idle) < self.keep_idle:
                self._idle.append(worker)
                return
            self._all.discard(worker)
        worker.kill()

    def _discard(self, worker: _Worker) -> None:
        with self._lock:
            self._all.discard(worker)
        worker.kill()

    def close(self) -> None:
        """Kill every worker, busy or idle (registered to run at interpreter exit)."""
        with self._lock:
            workers = list(self._all)
            self._all.clear()
            self._idle.clear()
        for worker in workers:
            worker.kill()

    @property
    def processes(self) -> list[int]:
        """Process ids of the live workers (for tests and diagnostics)."""
        with self._lock:
            return [w.proc.pid for w in self._all if w.alive()]

    async def _run(self, header: dict[str, Any], body: bytes, timeout_s: float) -> dict[str, Any]:
        header = {**header, "cpu_s": timeout_s}
        for attempt in (1, 2):
            worker = self._take()
            deadline = time.monotonic() + timeout_s
            done = False
            try:
                reply = await run_in_thread(worker.exchange, header, body, deadline)
                done = True
            except TimeoutError:
                raise ExtractionTimeoutError(
                    f"turning {header.get('url') or 'the page'} into text took longer than "
                    f"{timeout_s:g} s and was stopped; the page is too complex, try another source"
                ) from None
            except _WorkerGone as gone:
                # A worker that died while idle gets one retry with a fresh one; one that
                # died on this page (its CPU or memory limit) is this page's fault.
                code = worker.proc.wait()
                if attempt == 1 and gone.before_page:
                    continue
                raise ExtractionError(
                    f"the extraction of {header.get('url') or 'the page'} was stopped "
                    f"({_exit_reason(code)}); the page is too complex, try another source"
                ) from None
            finally:
                if done:
                    self._put(worker)
                else:  # timed out, died, or the caller was cancelled: never reuse it
                    self._discard(worker)
            return reply
        raise AssertionError("unreachable: the second attempt returns or raises")

    async def page_from_fetch(
        self, result: FetchResult, *, max_page_chars: int, wrap_width: int, timeout_s: float
    ) -> PageContents:
        """`reading.page_from_fetch` in a worker: the page, or an `ExtractionError`."""
        header = {
            "kind": "fetch",
            "url": result.url,
            "status_code": result.status_code,
            "content_type": result.content_type,
            "charset": result.charset,
            "truncated": result.truncated,
            "max_page_chars": max_page_chars,
            "wrap_width": wrap_width,
        }
        return _page(await self._run(header, result.body, timeout_s))

    async def extract_html(self, html: str, url: str, *, timeout_s: float) -> PageContents:
        """`extract.extract_html` in a worker."""
        header = {"kind": "html", "url": url}
        return _page(await self._run(header, html.encode("utf-8", "surrogatepass"), timeout_s))


def _exit_reason(code: int | None) -> str:
    import signal

    if code is None:
        return "its worker stopped answering"
    if code == -signal.SIGXCPU:
        return "it used up its CPU time"
    if code < 0:
        return f"its worker was killed by {signal.Signals(-code).name}"
    return f"its worker exited with status {code}, most likely out of memory"


def _page(reply: dict[str, Any]) -> PageContents:
    if not reply.get("ok"):
        raise ExtractionError(str(reply.get("message") or "the page could not be read"))
    p = reply["page"]
    return PageContents(
        url=p["url"],
        title=p["title"],
        text=p["text"],
        links={int(k): Link(**v) for k, v in p["links"].items()},
        kind=p["kind"],
        notes=list(p["notes"]),
        raw=p["raw"],
        wrap_width=p["wrap_width"],
    )


_default: ExtractionWorkers | None = None
_default_lock = threading.Lock()


def default_workers() -> ExtractionWorkers:
    """The process-wide workers that every `BrowserToolset` shares unless given its own."""
    global _default
    with _default_lock:
        if _default is None:
            _default = ExtractionWorkers()
        return _default


# ---- the worker side -------------------------------------------------------------------


def _limit_self(memory_mb: int) -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # SIGXCPU must not leave core files
    if memory_mb > 0:
        size = memory_mb * 1024 * 1024
        try:
            resource.setrlimit(resource.RLIMIT_AS, (size, size))
        except (ValueError, OSError):
            pass


def _cpu_budget(seconds: float) -> None:
    """SIGXCPU (which kills) once this page has used `seconds` of CPU, whoever waits."""
    import resource

    used = resource.getrusage(resource.RUSAGE_SELF)
    spent = used.ru_utime + used.ru_stime
    soft = math.ceil(spent + seconds) + 1
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    try:
        resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))
    except (ValueError, OSError):
        pass


def _read_message(stream: Any) -> bytes | None:
    head = stream.read(_LENGTH)
    if len(head) < _LENGTH:
        return None
    size = int.from_bytes(head, "big")
    data: bytes = stream.read(size)
    return data if len(data) == size else None


def _serve_one(header: dict[str, Any], body: bytes) -> dict[str, Any]:
    from harmonygraph.tools.browser.config import BrowserConfig
    from harmonygraph.tools.browser.extract import extract_html
    from harmonygraph.tools.browser.reading import page_from_fetch

    if header["kind"] == "html":
        page = extract_html(body.decode("utf-8", "surrogatepass"), header["url"])
    else:
        result = FetchResult(
            url=header["url"],
            status_code=header["status_code"],
            content_type=header["content_type"],
            charset=header["charset"],
            body=body,
            truncated=header["truncated"],
        )
        config = BrowserConfig(
            max_page_chars=header["max_page_chars"], wrap_width=header["wrap_width"]
        )
        page = page_from_fetch(result, config)
    links = {
        str(k): {
            "url": v.url,
            "text": v.text,
            "cursor": v.cursor,
            "loc": v.loc,
            "snippet": v.snippet,
        }
        for k, v in page.links.items()
    }
    return {
        "ok": True,
        "page": {
            "url": page.url,
            "title": page.title,
            "text": page.text,
            "links": links,
            "kind": page.kind,
            "notes": page.notes,
            "raw": page.raw,
            "wrap_width": page.wrap_width,
        },
    }


def main() -> None:
    """The worker's loop: read a page, write its reply, until stdin closes."""
    memory_mb = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # a library's stray print must not corrupt the replies
    _limit_self(memory_mb)
    # Load the parsers now, while the parent is still downloading the first page.
    import harmonygraph.tools.browser.extract  # noqa: F401
    import readability  # noqa: F401

    try:
        while True:
            raw_header = _read_message(stdin)
            body = _read_message(stdin) if raw_header is not None else None
            if raw_header is None or body is None:
                return
            header = json.loads(raw_header)
            _cpu_budget(float(header.get("cpu_s", 30)))
            try:
                reply = _serve_one(header, body)
            except ExtractionError as exc:
                reply = {"ok": False, "message": str(exc)}
            except MemoryError:
                reply = {
                    "ok": False,
                    "message": f"{header['url']} needs more than {memory_mb} MB to turn into "
                    "text; the page is too large, try another source",
                }
            except Exception as exc:  # a parser bug on an odd page is this page's error
                reply = {
                    "ok": False,
                    "message": f"could not read {header['url']} ({type(exc).__name__}: "
                    f"{str(exc)[:200]}); try another page",
                }
            data = json.dumps(reply).encode()
            stdout.write(len(data).to_bytes(_LENGTH, "big") + data)
            stdout.flush()
    except (KeyboardInterrupt, BrokenPipeError):
        return
