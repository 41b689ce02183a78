"""The supervisor: the sandbox's watchdog, a process the user's code cannot reach.

The host starts `python3 -c SUPERVISOR_BOOTSTRAP` as the sandbox's main process (under
docker-init in a container, under bwrap's init or bare for the local backend) and sends
four lines on stdin: this file's source, the supervisor's config, then the kernel's
source and config, which are passed on to the kernel. The supervisor starts the kernel
as its child, under another user id where it runs as root (the container: the kernel is
uid 1000 and cannot signal, stop or trace the supervisor, uid 0), and relays:

- host stdin -> kernel stdin, except control lines (`{"sv": ...}`) that it handles:
  `interrupt` (SIGINT to the kernel) and `deadline` (a hard limit for the next request);
- kernel stdout -> its own stdout, byte for byte (the protocol replies);
- its own messages -> stderr, one JSON line each (`{"sv": "exit", ...}`); the kernel's
  stderr is wrapped into them and never copied through raw, so the kernel cannot forge
  one.

It stops every process of the sandbox (the kernel, whatever the kernel started) when:
the host goes away (stdin reaches end of file: the host exited or was killed), a
request runs past its hard deadline (the host normally interrupts long before), or the
kernel exits. Then it reports and exits itself, so the container (or bwrap) ends.

Standard library only, Python 3.11 compatible: the source is sent to the interpreter in
the sandbox rather than imported from this package.
"""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Any

SUPERVISOR_BOOTSTRAP = (
    "import sys,json;src=json.loads(sys.stdin.buffer.readline());"
    "exec(compile(src,'<harmonygraph-supervisor>','exec'),{'__name__':'__hg_supervisor__'})"
)

CONTROL_PREFIX = b'{"sv":'
MAX_STDERR = 16 * 1024


def _oom_kills(paths: list[str]) -> int | None:
    """The memory cgroup's count of out-of-memory kills (v2 memory.events, v1 oom_control)."""
    for path in paths:
        try:
            with open(path, encoding="ascii") as fh:
                for line in fh:
                    key, _, value = line.partition(" ")
                    if key == "oom_kill":
                        return int(value)
        except (OSError, ValueError):
            continue
    return None


class Supervisor:
    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.out_lock = threading.Lock()
        self.host_gone = threading.Event()
        self.kernel_out_done = threading.Event()
        # One entry per request forwarded to the kernel: (hard deadline (monotonic), the
        # limit in seconds), or None. Each reply line from the kernel retires the oldest.
        self.outstanding: collections.deque[tuple[float, float] | None] = collections.deque()
        self.pending_deadline: float | None = None
        self.lock = threading.Lock()
        self.stderr_tail = bytearray()
        self.cgroup_paths = list(config.get("cgroup_files") or [])
        self.oom_start = _oom_kills(self.cgroup_paths) if self.cgroup_paths else None
        self.proc: subprocess.Popen[bytes] | None = None
        self.queue: collections.deque[bytes] = collections.deque()
        self.queue_ready = threading.Condition()

    # -- messages -----------------------------------------------------------------------
    def emit(self, msg: dict[str, Any]) -> None:
        data = (json.dumps(msg, ensure_ascii=True) + "\n").encode("ascii")
        with self.out_lock:
            try:
                os.write(2, data)
            except OSError:
                pass

    # -- the kernel -----------------------------------------------------------------------
    def _child_setup(self) -> None:
        # Between fork and exec, in the child. The out-of-memory killer is pointed at the
        # kernel (and what it starts) first; raising one's own score needs no privilege.
        try:
            with open("/proc/self/oom_score_adj", "w") as fh:
                fh.write("1000")
        except OSError:
            pass
        uid = self.config.get("uid")
        gid = self.config.get("gid")
        if uid is not None and gid is not None and os.getuid() == 0:
            os.setgroups([])
            os.setresgid(gid, gid, gid)
            os.setresuid(uid, uid, uid)
        # Set after the user change (which clears it): the kernel dies with us.
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except Exception:
            pass

    def start_kernel(self, first_lines: bytes) -> None:
        self.proc = subprocess.Popen(
            self.config["kernel_argv"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=self.config.get("cwd") or None,
            preexec_fn=self._child_setup,
            start_new_session=True,
            close_fds=True,
        )
        boot = float(self.config["boot_deadline_s"])
        with self.lock:
            self.outstanding.append((time.monotonic() + boot, boot))  # answered by "ready"
        self.queue.append(first_lines)

    # -- relays ---------------------------------------------------------------------------
    def host_reader(self, stdin: Any) -> None:
        try:
            while True:
                line = stdin.readline()
                if not line:
                    break
                if line.startswith(CONTROL_PREFIX):
                    self.control(line)
                    continue
                limit = self.pending_deadline
                self.pending_deadline = None
                if limit is None:
                    limit = float(self.config.get("request_deadline_s") or 0) or None
                with self.lock:
                    self.outstanding.append(
                        (time.monotonic() + limit, limit) if limit is not None else None
                    )
                with self.queue_ready:
                    self.queue.append(line)
                    self.queue_ready.notify()
        except (OSError, ValueError):
            pass
        self.host_gone.set()
        with self.queue_ready:
            self.queue_ready.notify()

    def control(self, line: bytes) -> None:
        try:
            msg = json.loads(line)
        except ValueError:
            return
        op = msg.get("sv")
        if op == "interrupt" and self.proc is not None:
            try:
                os.kill(self.proc.pid, signal.SIGINT)
            except OSError:
                pass
        elif op == "deadline":
            try:
                self.pending_deadline = float(msg.get("s"))
            except (TypeError, ValueError):
                self.pending_deadline = None

    def kernel_writer(self) -> None:
        # A thread of its own: a kernel that stops reading its stdin (a busy cell) must
        # never keep the host reader from seeing the end of the host's input.
        assert self.proc is not None and self.proc.stdin is not None
        fd = self.proc.stdin.fileno()
        while True:
            with self.queue_ready:
                while not self.queue and not self.host_gone.is_set():
                    self.queue_ready.wait(0.5)
                if not self.queue:
                    return
                data = self.queue.popleft()
            view = memoryview(data)
            try:
                while view:
                    n = os.write(fd, view)
                    view = view[n:]
            except OSError:
                return

    def kernel_reader(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        try:
            while True:
                data = os.read(fd, 1 << 16)
                if not data:
                    break
                replies = data.count(b"\n")
                if replies:
                    with self.lock:
                        for _ in range(min(replies, len(self.outstanding))):
                            self.outstanding.popleft()
                view = memoryview(data)
                with self.out_lock:
                    while view:
                        n = os.write(1, view)
                        view = view[n:]
        except OSError:
            pass
        self.kernel_out_done.set()

    def kernel_stderr(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        fd = self.proc.stderr.fileno()
        try:
            while True:
                data = os.read(fd, 1 << 14)
                if not data:
                    return
                if len(self.stderr_tail) < MAX_STDERR:
                    self.stderr_tail += data[: MAX_STDERR - len(self.stderr_tail)]
                    self.emit({"sv": "stderr", "text": data.decode("utf-8", "replace")[:4000]})
        except OSError:
            return

    # -- stopping -------------------------------------------------------------------------
    def stop_all(self) -> None:
        """SIGKILL every process of the sandbox but ourselves (and init)."""
        assert self.proc is not None
        if self.config.get("pid_namespace"):
            # Our own PID namespace: -1 is every process we may signal here. Repeated,
            # since a forking loop goes on forking while it is being stopped.
            for _ in range(20):
                try:
                    os.kill(-1, signal.SIGKILL)
                except ProcessLookupError:
                    break
                except OSError:
                    break
                time.sleep(0.01)
        else:
            for _ in range(3):
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except OSError:
                    break
                time.sleep(0.01)
        try:
            self.proc.kill()
        except OSError:
            pass

    def report(self, cause: str, limit: float | None = None) -> None:
        assert self.proc is not None
        try:
            rc = self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            rc = None
        oom = None
        if self.oom_start is not None:
            now = _oom_kills(self.cgroup_paths)
            oom = None if now is None else now - self.oom_start
        msg: dict[str, Any] = {"sv": "exit", "cause": cause, "returncode": rc, "oom_kills": oom}
        if rc is not None and rc < 0:
            try:
                msg["signal"] = signal.Signals(-rc).name
            except ValueError:
                msg["signal"] = f"signal {-rc}"
        if limit is not None:
            msg["limit_s"] = limit
        msg["stderr"] = self.stderr_tail.decode("utf-8", "replace")[-4000:]
        self.emit(msg)

    def run(self, stdin: Any) -> int:
        assert self.proc is not None
        threads = [
            threading.Thread(target=self.host_reader, args=(stdin,), daemon=True),
            threading.Thread(target=self.kernel_writer, daemon=True),
            threading.Thread(target=self.kernel_reader, daemon=True),
            threading.Thread(target=self.kernel_stderr, daemon=True),
        ]
        for t in threads:
            t.start()
        while True:
            if self.host_gone.is_set():
                self.stop_all()
                self.report("host")
                return 0
            if self.proc.poll() is not None:
                # Let the last reply through before reporting the death.
                self.kernel_out_done.wait(2.0)
                if self.config.get("pid_namespace"):
                    self.stop_all()  # the kernel's orphans go with it
                self.report("kernel")
                return 0
            with self.lock:
                head = self.outstanding[0] if self.outstanding else None
            if head is not None and time.monotonic() > head[0]:
                self.stop_all()
                self.report("deadline", limit=head[1])
                return 0
            time.sleep(0.05)


def main() -> None:
    stdin = sys.stdin.buffer
    config = json.loads(stdin.readline())
    first = stdin.readline() + stdin.readline()  # the kernel's source and config lines
    sup = Supervisor(config)

    def forward(_signum: int, _frame: object) -> None:
        # Interrupts come as control lines; a SIGINT sent to the container is passed on.
        # (A handler, not SIG_IGN: an ignored SIGINT would be inherited by the kernel.)
        if sup.proc is not None:
            try:
                os.kill(sup.proc.pid, signal.SIGINT)
            except OSError:
                pass

    signal.signal(signal.SIGINT, forward)
    sup.start_kernel(first)
    code = sup.run(stdin)
    sys.stdout.flush()
    os._exit(code)


if __name__ == "__hg_supervisor__":
    main()
