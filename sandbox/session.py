"""The host side of a sandbox: kernels, sessions and the backend interface.

A `KernelProcess` is one started kernel (a container, a subprocess) with a JSON-lines
channel. A `SandboxSession` drives one kernel at a time and replaces it when it dies or
will not stop after a timeout, saying plainly that the state was lost. The channel is
read by a thread, so sessions work from any event loop and from plain sync code.
"""

from __future__ import annotations

import abc
import asyncio
import base64
import itertools
import json
import queue
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .config import SandboxConfig
from .errors import KernelDiedError, SandboxClosedError, SandboxError, SandboxStartError
from .results import ExecError, ExecResult, SandboxFile

__all__ = ["KernelProcess", "Sandbox", "SandboxSession", "kernel_config", "kernel_source"]

_EOF = object()


def kernel_source() -> str:
    """The kernel script's source, sent to the interpreter in the sandbox at start."""
    return (Path(__file__).with_name("kernel.py")).read_text(encoding="utf-8")


def kernel_config(
    config: SandboxConfig, *, data_dir: str, scratch_dir: str, kill_strays: bool
) -> dict[str, Any]:
    return {
        "data_dir": data_dir,
        "scratch_dir": scratch_dir,
        "max_output": config.max_output_chars,
        "hard_output": config.hard_output_chars,
        "max_file": config.max_file_mb * 1024 * 1024,
        "preload": list(config.preload),
        "kill_strays": kill_strays,
    }


class KernelProcess(abc.ABC):
    """One started kernel. Subclasses supply the byte stream and process control."""

    backend: str = "?"

    def __init__(self) -> None:
        self.ident = uuid.uuid4().hex[:12]
        self.ready: dict[str, Any] = {}
        self.started_at = time.monotonic()
        self.boot_ms = 0.0
        self._messages: queue.Queue[Any] = queue.Queue()
        self._diagnostics: deque[str] = deque(maxlen=50)
        self._eof = threading.Event()
        self._reader: threading.Thread | None = None

    # -- for subclasses -------------------------------------------------------------
    @abc.abstractmethod
    def _write(self, data: bytes) -> None: ...

    @abc.abstractmethod
    def _chunks(self) -> Iterator[tuple[int, bytes]]:
        """Yield (stream, bytes) until the kernel's output ends; stream 1 is the protocol."""

    @abc.abstractmethod
    def interrupt(self) -> None:
        """Deliver SIGINT to the kernel (KeyboardInterrupt in the user's code)."""

    @abc.abstractmethod
    def kill(self) -> None:
        """Stop the kernel and free everything it holds; safe to call twice."""

    def death_reason(self) -> str:
        """Why the kernel stopped, in words, once it has stopped."""
        return "the kernel process exited"

    # -- channel --------------------------------------------------------------------
    def _read_loop(self) -> None:
        pending = b""
        try:
            for stream, data in self._chunks():
                if stream != 1:
                    self._diagnostics.append(data.decode("utf-8", "replace"))
                    continue
                pending += data
                while b"\n" in pending:
                    line, pending = pending.split(b"\n", 1)
                    if not line.strip():
                        continue
                    try:
                        self._messages.put(json.loads(line))
                    except ValueError:
                        self._diagnostics.append(line.decode("utf-8", "replace"))
        except Exception as exc:
            self._diagnostics.append(f"channel error: {type(exc).__name__}: {exc}")
        finally:
            self._eof.set()
            self._messages.put(_EOF)

    @property
    def alive(self) -> bool:
        return not self._eof.is_set()

    def diagnostics(self) -> str:
        return "".join(self._diagnostics)[-4000:]

    def send(self, msg: dict[str, Any]) -> None:
        if not self.alive:
            raise KernelDiedError(f"the kernel has stopped: {self.death_reason()}")
        try:
            self._write((json.dumps(msg) + "\n").encode("utf-8"))
        except OSError as exc:
            raise KernelDiedError(f"the kernel has stopped: {self.death_reason()}") from exc

    def recv(self, timeout: float | None) -> dict[str, Any] | None:
        """The next message, None if none came within `timeout`; raises when the kernel died."""
        try:
            msg = self._messages.get(timeout=timeout)
        except queue.Empty:
            return None
        if msg is _EOF:
            self._messages.put(_EOF)
            raise KernelDiedError(f"the kernel stopped: {self.death_reason()}")
        return msg

    def boot(self, source: str, config: dict[str, Any], timeout: float) -> None:
        """Send the kernel its source and config, and wait until it says it is ready."""
        self._reader = threading.Thread(
            target=self._read_loop, name=f"hg-kernel-{self.ident}", daemon=True
        )
        self._reader.start()
        t0 = time.perf_counter()
        try:
            self._write((json.dumps(source) + "\n" + json.dumps(config) + "\n").encode())
            msg = self.recv(timeout)
        except (KernelDiedError, OSError) as exc:
            self.kill()
            raise SandboxStartError(
                f"the {self.backend} kernel exited during start ({exc}); its output:\n"
                f"{self.diagnostics() or '(none)'}"
            ) from None
        if msg is None or msg.get("type") != "ready":
            self.kill()
            raise SandboxStartError(
                f"the {self.backend} kernel did not report ready within {timeout:g} s; "
                f"raise HARMONYGRAPH_SANDBOX_START_TIMEOUT_S or check the image. Output:\n"
                f"{self.diagnostics() or '(none)'}"
            )
        self.ready = msg
        self.boot_ms = (time.perf_counter() - t0) * 1000


class Sandbox(abc.ABC):
    """A backend that starts kernels: `DockerSandbox` or `LocalSandbox`."""

    kind: str = "?"
    #: "strong" for containers; "weak" for a subprocess on the host.
    isolation: str = "?"

    def __init__(self, config: SandboxConfig | None = None) -> None:
        self.config = config or SandboxConfig.from_env()

    @abc.abstractmethod
    def spawn_kernel(self) -> KernelProcess:
        """Start a kernel and wait until it is ready (blocking)."""

    @abc.abstractmethod
    def check(self) -> dict[str, Any]:
        """Raise `SandboxUnavailableError` if this backend cannot run; else facts about it."""

    def session_for(
        self, kernel: KernelProcess, spawn: Callable[[], KernelProcess] | None = None
    ) -> SandboxSession:
        return SandboxSession(kernel, spawn or self.spawn_kernel, self.config, self.kind)

    async def start_session(self) -> SandboxSession:
        """A new session on a freshly started kernel (no pool)."""
        kernel = await asyncio.to_thread(self.spawn_kernel)
        return self.session_for(kernel)

    def start_session_sync(self) -> SandboxSession:
        return self.session_for(self.spawn_kernel())


class SandboxSession:
    """A stateful Python session: variables, imports and /mnt/data files persist.

    Async methods run the blocking protocol in a worker thread; each has a `*_sync` twin.
    """

    def __init__(
        self,
        kernel: KernelProcess,
        spawn: Callable[[], KernelProcess],
        config: SandboxConfig,
        backend: str,
    ) -> None:
        self.id = uuid.uuid4().hex[:12]
        self.kernel = kernel
        self.config = config
        self.backend = backend
        self.restarts = 0
        self.executions = 0
        self._spawn = spawn
        self._ids = itertools.count(1)
        self._lock = threading.RLock()
        self._closed = False

    # -- async API ------------------------------------------------------------------
    async def execute(
        self,
        code: str,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> ExecResult:
        # `timeout` is the wall-time limit enforced inside the sandbox (it interrupts the
        # kernel and reports), not a cancellation of this coroutine.
        return await asyncio.to_thread(self.execute_sync, code, timeout)

    async def read_file(self, path: str) -> bytes:
        return await asyncio.to_thread(self.read_file_sync, path)

    async def write_file(self, path: str, data: bytes) -> None:
        await asyncio.to_thread(self.write_file_sync, path, data)

    async def list_files(self) -> list[SandboxFile]:
        return await asyncio.to_thread(self.list_files_sync)

    async def restart(self) -> None:
        await asyncio.to_thread(self.restart_sync)

    async def close(self) -> None:
        await asyncio.to_thread(self.close_sync)

    async def __aenter__(self) -> SandboxSession:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- sync API -------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise SandboxClosedError("this sandbox session is closed; start a new one")

    def _replace_kernel(self) -> None:
        old = self.kernel
        old.kill()
        self.kernel = self._spawn()
        self.restarts += 1

    def restart_sync(self) -> None:
        """Throw the state away and continue on a new kernel."""
        with self._lock:
            self._check_open()
            self._replace_kernel()

    def _wait_reply(self, req_id: int, timeout: float) -> dict[str, Any] | None:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            msg = self.kernel.recv(left)
            if msg is None:
                return None
            # Replies to requests abandoned after a timeout may still arrive: skip them.
            if msg.get("id") == req_id:
                return msg

    def _request(self, msg: dict[str, Any], timeout: float = 60.0) -> dict[str, Any]:
        with self._lock:
            self._check_open()
            if not self.kernel.alive:
                self._replace_kernel()
            req_id = next(self._ids)
            self.kernel.send({**msg, "id": req_id})
            reply = self._wait_reply(req_id, timeout)
            if reply is None:
                raise SandboxError(f"the kernel did not answer {msg['op']} within {timeout:g} s")
            if reply.get("type") == "error":
                raise SandboxError(f"{msg['op']} failed in the sandbox: {reply.get('error')}")
            return reply

    def read_file_sync(self, path: str) -> bytes:
        """A file under /mnt/data (path relative to it)."""
        reply = self._request({"op": "read", "path": path})
        return base64.b64decode(reply["data"])

    def write_file_sync(self, path: str, data: bytes) -> None:
        """Put a file under /mnt/data (path relative to it)."""
        self._request({"op": "write", "path": path, "data": base64.b64encode(data).decode()})

    def list_files_sync(self) -> list[SandboxFile]:
        reply = self._request({"op": "list"})
        return [SandboxFile(**f) for f in reply["files"]]

    def execute_sync(self, code: str, timeout: float | None = None) -> ExecResult:
        """Run `code` in the session; never raises for anything the code does."""
        limit = timeout if timeout is not None else self.config.timeout_s
        with self._lock:
            self._check_open()
            self.executions += 1
            note = ""
            restarted = False
            if not self.kernel.alive:
                # Died between executions (killed from outside, a stray child's doing).
                reason = self.kernel.death_reason()
                self._replace_kernel()
                restarted = True
                note = (
                    f"Note: the previous kernel had stopped ({reason}); this code ran in a new "
                    "session, so earlier variables, imports and files were lost."
                )
            req_id = next(self._ids)
            t0 = time.perf_counter()
            try:
                self.kernel.send({"op": "exec", "code": code, "id": req_id})
                reply = self._wait_reply(req_id, limit)
            except KernelDiedError:
                return self._after_death(t0)
            if reply is None:
                return self._after_timeout(req_id, limit, t0)
            result = _parse_result(reply)
            if restarted:
                result.restarted = result.state_lost = True
                result.note = "\n".join(p for p in (note, result.note) if p)
            return result

    def _after_death(self, t0: float) -> ExecResult:
        reason = self.kernel.death_reason()
        self._replace_kernel()
        return ExecResult(
            status="killed",
            duration_ms=(time.perf_counter() - t0) * 1000,
            restarted=True,
            state_lost=True,
            note=(
                f"The Python kernel died ({reason}). The session was restarted: all "
                "variables, imports and files in /mnt/data were lost."
            ),
        )

    def _after_timeout(self, req_id: int, limit: float, t0: float) -> ExecResult:
        # First ask nicely: SIGINT raises KeyboardInterrupt and keeps the state.
        try:
            self.kernel.interrupt()
            reply = self._wait_reply(req_id, self.config.interrupt_grace_s)
        except KernelDiedError:
            reply = None
        if reply is not None:
            result = _parse_result(reply)
            result.status = "timeout"
            result.duration_ms = (time.perf_counter() - t0) * 1000
            result.note = (
                f"Execution timed out after {limit:g} s and was interrupted; the session is "
                "still running and its variables and files are kept."
            )
            return result
        self._replace_kernel()
        return ExecResult(
            status="timeout",
            duration_ms=(time.perf_counter() - t0) * 1000,
            restarted=True,
            state_lost=True,
            note=(
                f"Execution timed out after {limit:g} s and did not stop when interrupted; "
                "the session was restarted, state lost (variables, imports and files in "
                "/mnt/data)."
            ),
        )

    def close_sync(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self.kernel.kill()

    def __enter__(self) -> SandboxSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close_sync()

    def __repr__(self) -> str:
        return f"SandboxSession(id={self.id!r}, backend={self.backend!r}, restarts={self.restarts})"


def _parse_result(reply: dict[str, Any]) -> ExecResult:
    if reply.get("type") != "result":
        raise SandboxError(f"unexpected reply from the kernel: {reply.get('error', reply)}")
    err = reply.get("error")
    error = ExecError(**err) if err else None
    if reply.get("output_limited"):
        status = "output_limit"
        note = (
            "Output limit exceeded: the code printed too much and was stopped; the session "
            "is still running and its state is kept."
        )
    else:
        status = "error" if error else "ok"
        note = ""
    strays = int(reply.get("strays_killed") or 0)
    if strays:
        note = " ".join(
            filter(
                None,
                [
                    note,
                    f"Stopped {strays} background process(es) the code left running: each "
                    "call runs to completion, so nothing may keep running between calls "
                    "(multiprocessing pools and process executors are kept).",
                ],
            )
        )
    return ExecResult(
        status=status,  # type: ignore[arg-type]
        stdout=reply.get("stdout", ""),
        stderr=reply.get("stderr", ""),
        value=reply.get("value"),
        error=error,
        files=[SandboxFile(**f) for f in reply.get("files", [])],
        duration_ms=float(reply.get("duration_ms", 0.0)),
        stdout_truncated=bool(reply.get("stdout_truncated")),
        stderr_truncated=bool(reply.get("stderr_truncated")),
        note=note,
    )
