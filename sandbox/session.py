"""The host side of a sandbox: kernels, sessions and the backend interface.

A `KernelProcess` is one started kernel (a container, a subprocess) with a JSON-lines
channel. A `SandboxSession` drives one kernel at a time and replaces it when it dies or
will not stop after a timeout, saying plainly that the state was lost. The channel is
read by a thread, so sessions work from any event loop and from plain sync code.
"""

from __future__ import annotations

import abc
import base64
import itertools
import json
import logging
import mimetypes
import queue
import shutil
import tempfile
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from harmonygraph.concurrency import run_in_thread

from .config import SandboxConfig
from .errors import (
    KernelDiedError,
    SandboxCancelledError,
    SandboxClosedError,
    SandboxError,
    SandboxFileError,
    SandboxStartError,
)
from .files import DataEntry, FileView, TakeResult, take
from .results import ExecError, ExecResult, SandboxFile

__all__ = [
    "KernelProcess",
    "Sandbox",
    "SandboxSession",
    "kernel_config",
    "kernel_source",
    "supervisor_source",
]

log = logging.getLogger(__name__)

_EOF = object()


def kernel_source() -> str:
    """The kernel script's source, sent to the interpreter in the sandbox at start."""
    return (Path(__file__).with_name("kernel.py")).read_text(encoding="utf-8")


def supervisor_source() -> str:
    """The supervisor script's source, sent first to the interpreter in the sandbox."""
    return (Path(__file__).with_name("supervisor.py")).read_text(encoding="utf-8")


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
        self._write_lock = threading.Lock()
        # The supervisor's last word (`{"sv": "exit", ...}`): why the kernel stopped.
        self.exit_info: dict[str, Any] | None = None
        # The longest line the host accepts from the sandbox (a file read's base64 and
        # slack): a longer one is a broken or hostile kernel and ends the channel.
        self.max_line_bytes = 64 * 1024 * 1024
        self.protocol_error = ""
        # A fresh kernel's /mnt/data is empty (not so for a local session directory).
        self.starts_empty = True
        # Look at /mnt/data after every execution, not only when the kernel says that
        # something changed (where looking is cheap: a local folder).
        self.take_always = False

    # -- for subclasses -------------------------------------------------------------
    @abc.abstractmethod
    def _write(self, data: bytes) -> None: ...

    @abc.abstractmethod
    def _chunks(self) -> Iterator[tuple[int, bytes]]:
        """Yield (stream, bytes) until the kernel's output ends; stream 1 is the protocol."""

    def interrupt(self) -> None:
        """SIGINT to the kernel (KeyboardInterrupt in the user's code), by the supervisor."""
        try:
            self._write_raw(b'{"sv": "interrupt"}\n')
        except OSError:
            pass

    @abc.abstractmethod
    def kill(self) -> None:
        """Stop the kernel and free everything it holds; safe to call twice."""

    @abc.abstractmethod
    def data_entries(self, max_depth: int) -> Iterator[DataEntry]:
        """The entries of /mnt/data, read by the host itself (never by the kernel)."""

    def death_reason(self) -> str:
        """Why the kernel stopped, in words, once it has stopped."""
        return self.supervisor_reason(oom=False) or "the kernel process exited"

    def supervisor_reason(self, *, oom: bool) -> str:
        """The supervisor's account of the kernel's end ("" if it gave none). An
        out-of-memory kill is named only when `oom` (the engine says so) or the memory
        cgroup counted one; any other signal is named as what it is."""
        if self.protocol_error:
            return self.protocol_error
        info = self.exit_info
        if info is None:
            return "out of memory: the out-of-memory killer stopped it" if oom else ""
        if info.get("cause") == "deadline":
            return (
                f"it ran past the sandbox's hard limit of {float(info.get('limit_s') or 0):g} s "
                "and the supervisor stopped it"
            )
        if info.get("cause") == "host":
            return "the host connection closed"
        if oom or (info.get("oom_kills") or 0) > 0:
            return "out of memory: the out-of-memory killer stopped it"
        if info.get("signal"):
            return (
                f"killed by {info['signal']}, not by the out-of-memory killer: the memory "
                "cgroup counted no out-of-memory kill"
                if info.get("oom_kills") is not None
                else f"killed by {info['signal']}"
            )
        return f"the kernel exited with status {info.get('returncode')}"

    # -- channel --------------------------------------------------------------------
    def _on_line(self, stream: int, line: bytes) -> None:
        if stream == 1:
            try:
                self._messages.put(json.loads(line))
            except ValueError:
                self._diagnostics.append(line.decode("utf-8", "replace"))
            return
        # Stream 2 is the supervisor's: JSON lines only it writes.
        try:
            msg = json.loads(line)
        except ValueError:
            self._diagnostics.append(line.decode("utf-8", "replace") + "\n")
            return
        if not isinstance(msg, dict):
            return
        if msg.get("sv") == "exit":
            self.exit_info = msg
            if msg.get("stderr"):
                self._diagnostics.append(str(msg["stderr"]))
        elif msg.get("sv") == "stderr":
            self._diagnostics.append(str(msg.get("text", "")))

    def _read_loop(self) -> None:
        # Lines are assembled from chunks without rescanning what came before: a 40 MB
        # reply (a file read) costs linear time, not quadratic.
        pending: dict[int, list[bytes]] = {1: [], 2: []}
        sizes: dict[int, int] = {1: 0, 2: 0}
        try:
            for stream, data in self._chunks():
                parts = pending.setdefault(stream, [])
                start = 0
                while True:
                    nl = data.find(b"\n", start)
                    if nl < 0:
                        if start < len(data):
                            parts.append(data[start:])
                            sizes[stream] = sizes.get(stream, 0) + len(data) - start
                        break
                    parts.append(data[start:nl])
                    line = b"".join(parts)
                    parts.clear()
                    sizes[stream] = 0
                    start = nl + 1
                    if line.strip():
                        self._on_line(stream, line)
                if sizes.get(stream, 0) > self.max_line_bytes:
                    self.protocol_error = (
                        f"the kernel sent a message over {self.max_line_bytes} bytes, which "
                        "the host refuses; it was stopped"
                    )
                    return
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

    def _write_raw(self, data: bytes) -> None:
        with self._write_lock:
            self._write(data)

    def send(self, msg: dict[str, Any], deadline_s: float | None = None) -> None:
        """Send a request; `deadline_s` is the supervisor's hard limit for it."""
        if not self.alive:
            raise KernelDiedError(f"the kernel has stopped: {self.death_reason()}")
        data = (json.dumps(msg) + "\n").encode("utf-8")
        if deadline_s is not None:
            data = (json.dumps({"sv": "deadline", "s": deadline_s}) + "\n").encode() + data
        try:
            self._write_raw(data)
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

    def boot(
        self,
        supervisor: dict[str, Any],
        config: dict[str, Any],
        timeout: float,
        cancel: threading.Event | None = None,
    ) -> None:
        """Send the supervisor and the kernel their source and config, and wait until the
        kernel says it is ready; `cancel` set meanwhile abandons the start at once."""
        self._reader = threading.Thread(
            target=self._read_loop, name=f"hg-kernel-{self.ident}", daemon=True
        )
        self._reader.start()
        t0 = time.perf_counter()
        lines = (supervisor_source(), supervisor, kernel_source(), config)
        msg: dict[str, Any] | None = None
        try:
            self._write_raw("".join(json.dumps(x) + "\n" for x in lines).encode())
            deadline = time.monotonic() + timeout
            while msg is None and time.monotonic() < deadline:
                if cancel is not None and cancel.is_set():
                    raise SandboxCancelledError("the kernel start was cancelled: shutting down")
                msg = self.recv(min(0.1, max(0.0, deadline - time.monotonic())))
        except SandboxCancelledError:
            self.kill()
            raise
        except (KernelDiedError, OSError) as exc:
            self.kill()
            if cancel is not None and cancel.is_set():
                raise SandboxCancelledError(
                    "the kernel start was cancelled: shutting down"
                ) from None
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
    def spawn_kernel(self, cancel: threading.Event | None = None) -> KernelProcess:
        """Start a kernel and wait until it is ready (blocking); `cancel` set abandons it
        (`SandboxCancelledError`)."""

    @abc.abstractmethod
    def check(self) -> dict[str, Any]:
        """Raise `SandboxUnavailableError` if this backend cannot run; else facts about it."""

    def session_for(
        self, kernel: KernelProcess, spawn: Callable[[], KernelProcess] | None = None
    ) -> SandboxSession:
        return SandboxSession(kernel, spawn or self.spawn_kernel, self.config, self.kind)

    async def start_session(self) -> SandboxSession:
        """A new session on a freshly started kernel (no pool)."""
        kernel = await run_in_thread(self.spawn_kernel)
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
        # The host's own view of /mnt/data, and a private folder for the copies it takes.
        self._view = FileView()
        self._staging: Path | None = None
        self._baseline_pending = not kernel.starts_empty

    # -- async API ------------------------------------------------------------------
    async def execute(
        self,
        code: str,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> ExecResult:
        # `timeout` is the wall-time limit enforced inside the sandbox (it interrupts the
        # kernel and reports), not a cancellation of this coroutine.
        return await run_in_thread(self.execute_sync, code, timeout)

    async def read_file(self, path: str) -> bytes:
        return await run_in_thread(self.read_file_sync, path)

    async def write_file(self, path: str, data: bytes) -> None:
        await run_in_thread(self.write_file_sync, path, data)

    async def list_files(self) -> list[SandboxFile]:
        return await run_in_thread(self.list_files_sync)

    async def restart(self) -> None:
        await run_in_thread(self.restart_sync)

    async def close(self) -> None:
        await run_in_thread(self.close_sync)

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
        self._view.clear()
        self._baseline_pending = not self.kernel.starts_empty

    # -- files, read by the host ----------------------------------------------------------
    def _take(self, copy: bool) -> TakeResult:
        """Read /mnt/data (the host's reading: an engine archive or a no-follow walk) and
        copy what is new or changed into a fresh private staging folder."""
        staging: Path | None = None
        if copy:
            if self._staging is not None:
                shutil.rmtree(self._staging, ignore_errors=True)
            self._staging = staging = Path(tempfile.mkdtemp(prefix="hg-sandbox-files-"))
        limits = self.config.take_limits()
        try:
            return take(self.kernel.data_entries(limits.max_depth), self._view, limits, staging)
        except SandboxFileError as exc:
            return TakeResult(skipped=[str(exc)], complete=False)
        except Exception as exc:  # the engine failed mid-stream: say so, keep the session
            log.warning("could not read /mnt/data: %s", exc)
            return TakeResult(
                skipped=[
                    f"the files in /mnt/data could not be read ({type(exc).__name__}: "
                    f"{exc}); they are still in the session"
                ],
                complete=False,
            )

    def _baseline(self) -> None:
        if self._baseline_pending:
            self._baseline_pending = False
            self._take(copy=False)

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

    def _hard_limit(self, limit: float) -> float:
        return limit + self.config.interrupt_grace_s + self.config.hard_deadline_margin_s

    def _request(self, msg: dict[str, Any], timeout: float = 60.0) -> dict[str, Any]:
        with self._lock:
            self._check_open()
            if not self.kernel.alive:
                self._replace_kernel()
            req_id = next(self._ids)
            self.kernel.send({**msg, "id": req_id}, self._hard_limit(timeout))
            reply = self._wait_reply(req_id, timeout)
            if reply is None:
                # The kernel is still busy with a request we gave up on: it must not stay
                # queued in front of the next cell. Interrupt it, else replace the kernel.
                self.kernel.interrupt()
                if self._wait_reply(req_id, self.config.interrupt_grace_s) is None:
                    self._replace_kernel()
                    raise SandboxError(
                        f"the kernel did not answer {msg['op']} within {timeout:g} s and was "
                        "restarted (variables and files were lost); try again"
                    )
                raise SandboxError(
                    f"the kernel did not answer {msg['op']} within {timeout:g} s and was "
                    "interrupted; the session is kept"
                )
            if reply.get("type") == "error":
                raise SandboxError(f"{msg['op']} failed in the sandbox: {reply.get('error')}")
            return reply

    def read_file_sync(self, path: str) -> bytes:
        """A file under /mnt/data (path relative to it), as the kernel reads it: the
        bytes are the user's (untrusted) content; the kernel refuses non-regular files."""
        reply = self._request({"op": "read", "path": path})
        return base64.b64decode(reply["data"])

    def write_file_sync(self, path: str, data: bytes) -> None:
        """Put a file under /mnt/data (path relative to it)."""
        self._request({"op": "write", "path": path, "data": base64.b64encode(data).decode()})
        self._view.expect(path, data)

    def list_files_sync(self) -> list[SandboxFile]:
        """The regular files under /mnt/data, as the host reads them (not the kernel)."""
        with self._lock:
            self._check_open()
            limits = self.config.take_limits()
            out = []
            for i, entry in enumerate(self.kernel.data_entries(limits.max_depth)):
                if i >= limits.max_entries:
                    break
                parts = entry.name.strip("/").split("/")
                if entry.kind == "file" and not any(p.startswith(".") for p in parts):
                    from .files import display_path, safe_name

                    shown = display_path(entry.name.strip("/"))
                    mime = mimetypes.guess_type(safe_name(entry.name))[0] or ""
                    out.append(SandboxFile(path=shown, size=entry.size, mime_type=mime))
            return out

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
            self._baseline()
            req_id = next(self._ids)
            t0 = time.perf_counter()
            try:
                self.kernel.send(
                    {"op": "exec", "code": code, "id": req_id}, self._hard_limit(limit)
                )
                reply = self._wait_reply(req_id, limit)
            except KernelDiedError:
                return self._after_death(t0)
            if reply is None:
                result = self._after_timeout(req_id, limit, t0)
            else:
                result = _parse_result(reply)
            if restarted:
                result.restarted = result.state_lost = True
                result.note = "\n".join(p for p in (note, result.note) if p)
            # The kernel cuts output itself; the host does not rely on it.
            cap = self.config.max_output_chars
            if len(result.stdout) > cap:
                result.stdout, result.stdout_truncated = result.stdout[:cap], True
            if len(result.stderr) > cap:
                result.stderr, result.stderr_truncated = result.stderr[:cap], True
            if not result.state_lost and self.kernel.alive:
                # The kernel's file list says only whether to look (lying can only hide
                # the code's own files); what is taken, and under which name, is the host's.
                hint = reply is None or bool(reply.get("files"))
                if hint or self.kernel.take_always:
                    taken = self._take(copy=True)
                    result.files = taken.files
                    result.files_skipped = taken.skipped
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
            if self._staging is not None:
                shutil.rmtree(self._staging, ignore_errors=True)
                self._staging = None

    def __enter__(self) -> SandboxSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close_sync()

    def __repr__(self) -> str:
        return f"SandboxSession(id={self.id!r}, backend={self.backend!r}, restarts={self.restarts})"


def _parse_result(reply: dict[str, Any]) -> ExecResult:
    # `files` in the reply is the kernel's claim: used by the caller only as a hint.
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
        duration_ms=float(reply.get("duration_ms", 0.0)),
        stdout_truncated=bool(reply.get("stdout_truncated")),
        stderr_truncated=bool(reply.get("stderr_truncated")),
        note=note,
    )
