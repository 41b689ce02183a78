"""The kernel: a small stateful Python REPL that runs inside the sandbox.

The host starts `python3 -c BOOTSTRAP`, sends this file's source as the first stdin
line and a JSON config as the second, then speaks line-delimited JSON requests and
replies over stdin/stdout. The file must stay standard-library only and compatible with
the sandbox image's Python (3.11 in the offline Debian image), because it is sent to the
interpreter inside the container rather than imported from this package.

User output never reaches the protocol channel: Python-level writes go to capped
in-memory writers, and file descriptors 1 and 2 are pointed at a scratch file so that
subprocesses and C code cannot corrupt the replies.
"""

from __future__ import annotations

import ast
import base64
import io
import json
import linecache
import mimetypes
import os
import signal
import stat
import sys
import time
import traceback
from typing import Any

# What the host runs. Reading the source from stdin (rather than baking it into the
# image) keeps the kernel in step with the host package without rebuilding images.
BOOTSTRAP = (
    "import sys,json;src=json.loads(sys.stdin.readline());"
    "exec(compile(src,'<harmonygraph-kernel>','exec'),{'__name__':'__hg_kernel__'})"
)

KERNEL_FILENAME = "<harmonygraph-kernel>"


WARMUPS = [
    (
        "pandas",
        "import pandas as pd\n"
        "d = pd.DataFrame({'g': list('abab'), 'x': [1.0, 2.0, 3.0, 4.0]})\n"
        "d.describe(); d.groupby('g').mean(); d.corr(numeric_only=True); repr(d); d.head()\n",
    ),
    (
        "matplotlib.pyplot",
        "import io\nimport matplotlib.pyplot as plt\n"
        "fig, ax = plt.subplots(); ax.plot([1, 2], [3, 4]); ax.set_title('w')\n"
        "fig.savefig(io.BytesIO(), format='png'); plt.close('all')\n",
    ),
    (
        "pandas",
        "import io, sys\n"
        "if 'matplotlib.pyplot' in sys.modules:\n"
        "    import pandas as pd, matplotlib.pyplot as plt\n"
        "    ax = pd.DataFrame({'x': [1, 2], 'y': [3, 4]}).plot.scatter(x='x', y='y')\n"
        "    ax.figure.savefig(io.BytesIO(), format='png'); plt.close('all')\n",
    ),
]


class OutputLimitExceeded(BaseException):
    """Raised inside user code when it printed more than the hard output limit.

    A BaseException so that a bare `except Exception` in user code cannot swallow it.
    """


class CappedWriter(io.TextIOBase):
    """A text stream that keeps the first `cap` characters and stops runaway printing."""

    def __init__(self, cap: int, hard: int, fileno: int) -> None:
        self.cap = cap
        self.hard = hard
        self._fileno = fileno
        self.parts: list[str] = []
        self.kept = 0
        self.total = 0

    def writable(self) -> bool:
        return True

    def write(self, s: str) -> int:
        if not isinstance(s, str):
            raise TypeError(f"write() argument must be str, not {type(s).__name__}")
        self.total += len(s)
        if self.kept < self.cap:
            piece = s[: self.cap - self.kept]
            self.parts.append(piece)
            self.kept += len(piece)
        if self.total > self.hard:
            raise OutputLimitExceeded(
                f"output limit exceeded: more than {self.hard} characters printed"
            )
        return len(s)

    @property
    def buffer(self) -> _BinaryView:
        # `sys.stdout.buffer.write(b"...")` is common in scripts; keep it working.
        return _BinaryView(self)

    def fileno(self) -> int:
        # Libraries that need a real descriptor (faulthandler, subprocess) get the
        # scratch file, whose content is appended to the captured output.
        return self._fileno

    def isatty(self) -> bool:
        return False

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"

    def getvalue(self) -> str:
        return "".join(self.parts)

    @property
    def truncated(self) -> bool:
        return self.total > self.kept


class _BinaryView:
    """The bytes side of a CappedWriter: decodes and forwards."""

    def __init__(self, text: CappedWriter) -> None:
        self.text = text

    def write(self, data: bytes) -> int:
        self.text.write(bytes(data).decode("utf-8", "backslashreplace"))
        return len(data)

    def flush(self) -> None:
        pass


class Kernel:
    def __init__(self, config: dict[str, Any], proto_out: Any) -> None:
        self.config = config
        self.proto_out = proto_out
        self.pid = os.getpid()
        self.data_dir = config.get("data_dir", "/mnt/data")
        self.scratch_dir = config.get("scratch_dir", "/tmp")
        self.max_output = int(config.get("max_output", 65536))
        self.hard_output = int(config.get("hard_output", 16 * 1024 * 1024))
        self.max_value = int(config.get("max_value", 16384))
        self.max_file = int(config.get("max_file", 64 * 1024 * 1024))
        self.ns: dict[str, Any] = {"__name__": "__main__", "__builtins__": __builtins__}
        self.cell = 0
        self.figure_count = 0
        # fds 1 and 2 go to scratch files so that subprocess output is captured too
        # and can never interleave with protocol replies.
        self.fd_out = os.open(
            os.path.join(self.scratch_dir, ".hg_stdout"),
            os.O_RDWR | os.O_CREAT | os.O_APPEND,
            0o600,
        )
        self.fd_err = os.open(
            os.path.join(self.scratch_dir, ".hg_stderr"),
            os.O_RDWR | os.O_CREAT | os.O_APPEND,
            0o600,
        )
        os.dup2(self.fd_out, 1)
        os.dup2(self.fd_err, 2)

    # -- protocol -------------------------------------------------------------------
    def send(self, msg: dict[str, Any]) -> None:
        if os.getpid() != self.pid:
            # A forked child of user code must never speak for the kernel.
            os._exit(0)
        self.proto_out.write(json.dumps(msg, ensure_ascii=True) + "\n")
        self.proto_out.flush()

    def preload(self) -> dict[str, Any]:
        errors = {}
        t0 = time.perf_counter()
        for name in self.config.get("preload", []):
            try:
                # Importing here (before a session takes the kernel) is what makes the
                # warm pool fast: pandas and matplotlib cost ~400 ms to import.
                exec(f"import {name}", self.ns)
            except BaseException as exc:
                errors[name] = f"{type(exc).__name__}: {exc}"
        # Imports alone leave lazy work for the first real use: pandas' plotting
        # backend, font loading and the first Agg render cost ~300 ms. Do it now, in a
        # scratch namespace, so a session's first chart is as fast as its second.
        scratch: dict[str, Any] = {"__name__": "__warmup__"}
        for module, code in WARMUPS:
            if module in sys.modules:
                try:
                    exec(code, scratch)
                except BaseException as exc:
                    errors[f"warmup:{module}"] = f"{type(exc).__name__}: {exc}"
        # Pre-imported modules stay available through sys.modules; the user namespace
        # starts empty apart from builtins, like a fresh notebook.
        self.ns.clear()
        self.ns.update({"__name__": "__main__", "__builtins__": __builtins__})
        return {"preload_ms": (time.perf_counter() - t0) * 1000, "preload_errors": errors}

    def serve(self) -> None:
        ready = {"type": "ready", "pid": self.pid, "python": sys.version.split()[0]}
        ready.update(self.preload())
        self.send(ready)
        stdin = sys.stdin
        while True:
            try:
                line = stdin.readline()
            except KeyboardInterrupt:
                # An interrupt that arrived between executions: nothing to stop.
                continue
            if not line:
                # The host went away (stdin closed): exit so nothing is left running.
                return
            try:
                req = json.loads(line)
            except ValueError:
                self.send({"type": "error", "error": "bad request line"})
                continue
            try:
                reply = self.handle(req)
            except KeyboardInterrupt:
                reply = {"type": "error", "error": "interrupted"}
            except BaseException as exc:
                reply = {"type": "error", "error": f"{type(exc).__name__}: {exc}"}
            reply["id"] = req.get("id")
            try:
                self.send(reply)
            except KeyboardInterrupt:
                self.send(reply)

    def handle(self, req: dict[str, Any]) -> dict[str, Any]:
        op = req.get("op")
        if op == "exec":
            return self.execute(str(req.get("code", "")))
        if op == "ping":
            return {"type": "pong"}
        if op == "list":
            return {"type": "files", "files": self.snapshot_list()}
        if op == "read":
            return self.read_op(str(req["path"]))
        if op == "write":
            path = self.resolve(str(req["path"]))
            os.makedirs(os.path.dirname(path), exist_ok=True)
            # No following a link, no blocking on a FIFO: a special file is an error.
            fd = os.open(
                path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o644
            )
            with os.fdopen(fd, "wb") as fh:
                if not stat.S_ISREG(os.fstat(fd).st_mode):
                    raise OSError(f"{req['path']} is not a regular file")
                fh.truncate(0)
                fh.write(base64.b64decode(req["data"]))
            return {"type": "ok"}
        return {"type": "error", "error": f"unknown op {op!r}"}

    def read_op(self, rel: str) -> dict[str, Any]:
        path = self.resolve(rel)
        # O_NONBLOCK: opening a FIFO must not wait for a writer; fstat then refuses
        # everything but a regular file (FIFOs, devices, sockets, directories).
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as fh:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                return {"type": "error", "error": f"{rel} is not a regular file"}
            if st.st_size > self.max_file:
                return {
                    "type": "error",
                    "error": f"{rel} is {st.st_size} bytes, over the {self.max_file}-byte limit",
                }
            data = fh.read(self.max_file + 1)
        if len(data) > self.max_file:
            return {"type": "error", "error": f"{rel} grew over the {self.max_file}-byte limit"}
        return {"type": "data", "data": base64.b64encode(data).decode("ascii")}

    def resolve(self, path: str) -> str:
        full = os.path.realpath(os.path.join(self.data_dir, path))
        root = os.path.realpath(self.data_dir)
        if full != root and not full.startswith(root + os.sep):
            raise PermissionError(f"{path} is outside {self.data_dir}")
        return full

    # -- files ----------------------------------------------------------------------
    def snapshot(self) -> dict[str, tuple[int, int]]:
        out: dict[str, tuple[int, int]] = {}
        root = self.data_dir
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            for name in filenames:
                if len(out) >= 2000:
                    return out
                full = os.path.join(dirpath, name)
                try:
                    st = os.stat(full)
                except OSError:
                    continue
                out[os.path.relpath(full, root)] = (st.st_mtime_ns, st.st_size)
        return out

    def snapshot_list(self) -> list[dict[str, Any]]:
        return [
            {"path": p, "size": size, "mime_type": mimetypes.guess_type(p)[0] or ""}
            for p, (_, size) in sorted(self.snapshot().items())
        ]

    def save_figures(self) -> None:
        plt = sys.modules.get("matplotlib.pyplot")
        if plt is None:
            return
        try:
            nums = plt.get_fignums()
        except Exception:
            return
        # Like a notebook's inline backend: figures left open at the end of a cell are
        # rendered, so a model that calls plt.show() still produces a PNG.
        for num in nums:
            self.figure_count += 1
            path = os.path.join(self.data_dir, f"figure_{self.figure_count}.png")
            try:
                plt.figure(num).savefig(path, dpi=100, bbox_inches="tight")
            except Exception as exc:
                sys.stderr.write(f"could not save figure {num}: {exc}\n")
        plt.close("all")

    # -- execution ------------------------------------------------------------------
    def read_fd_capture(self, fd: int) -> tuple[str, bool]:
        size = os.lseek(fd, 0, os.SEEK_END)
        os.lseek(fd, 0, os.SEEK_SET)
        data = os.read(fd, self.max_output) if size else b""
        os.ftruncate(fd, 0)
        return data.decode("utf-8", "backslashreplace"), size > len(data)

    def execute(self, code: str) -> dict[str, Any]:
        self.cell += 1
        filename = f"<cell-{self.cell}>"
        linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)
        before = self.snapshot()
        os.ftruncate(self.fd_out, 0)
        os.ftruncate(self.fd_err, 0)
        out = CappedWriter(self.max_output, self.hard_output, 1)
        err = CappedWriter(self.max_output, self.hard_output, 2)
        saved = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = out, err
        value = None
        error = None
        interrupted = False
        output_limited = False
        t0 = time.perf_counter()
        try:
            try:
                tree = ast.parse(code, filename, "exec")
                last = None
                tail = tree.body[-1] if tree.body else None
                if isinstance(tail, ast.Expr):
                    tree.body.pop()
                    last = ast.Expression(tail.value)
                exec(compile(tree, filename, "exec"), self.ns)
                if last is not None:
                    result = eval(compile(last, filename, "eval"), self.ns)
                    if result is not None:
                        self.ns["_"] = result
                        value = self.safe_repr(result)
                self.save_figures()
            except OutputLimitExceeded as exc:
                output_limited = True
                error = self.format_error(exc)
            except KeyboardInterrupt as exc:
                interrupted = True
                error = self.format_error(exc)
            except SystemExit as exc:
                # A notebook does not die on sys.exit(); neither does the session.
                error = {
                    "ename": "SystemExit",
                    "evalue": str(exc.code),
                    "traceback": f"SystemExit: {exc.code} (the session keeps running)",
                }
            except BaseException as exc:
                error = self.format_error(exc)
        except KeyboardInterrupt as exc:
            # The interrupt landed while we were handling the user's exception.
            interrupted = True
            error = error or self.format_error(exc)
        finally:
            if os.getpid() != self.pid:
                os._exit(0)
            sys.stdout, sys.stderr = saved
        duration = (time.perf_counter() - t0) * 1000
        strays = 0
        if self.config.get("kill_strays"):
            # Only set where the kernel has its own PID namespace (a container, bwrap):
            # there -1 means "this sandbox"; on a bare host it would mean everything.
            # Processes the cell started and left running (a fork bomb, a busy
            # subprocess, a background child) would go on taking CPU and process slots
            # between cells that the model believes are finished; signal -1 reaches
            # every process this user may signal except ourselves and init.
            if interrupted:
                strays = len(self.other_processes())
                self.kill_strays()
            else:
                # A finished cell's workers the user keeps for the next cell (a
                # multiprocessing pool, a process executor) are not strays.
                strays = self.stop_processes(self.other_processes(), keep=self.workers())
        fd_out, fd_out_trunc = self.read_fd_capture(self.fd_out)
        fd_err, fd_err_trunc = self.read_fd_capture(self.fd_err)
        after = self.snapshot()
        files = [
            {"path": p, "size": meta[1], "mime_type": mimetypes.guess_type(p)[0] or ""}
            for p, meta in sorted(after.items())
            if before.get(p) != meta
        ]
        return {
            "type": "result",
            "stdout": (out.getvalue() + fd_out)[: self.max_output],
            "stderr": (err.getvalue() + fd_err)[: self.max_output],
            "stdout_truncated": out.truncated or fd_out_trunc,
            "stderr_truncated": err.truncated or fd_err_trunc,
            "value": value,
            "error": error,
            "files": files,
            "duration_ms": duration,
            "interrupted": interrupted,
            "output_limited": output_limited,
            "strays_killed": strays,
        }

    def other_processes(self) -> list[int]:
        """Live processes of this user in this PID namespace besides init, the
        supervisor (our parent) and this kernel."""
        pids = []
        uid = os.getuid()
        skip = (1, self.pid, os.getppid())
        for entry in os.listdir("/proc"):
            if entry.isdigit() and int(entry) not in skip:
                try:
                    if os.stat(f"/proc/{entry}").st_uid != uid:
                        continue  # not ours to stop (the supervisor in a container)
                    with open(f"/proc/{entry}/stat", "rb") as f:
                        state = f.read().rsplit(b")", 1)[1].split()[0]
                except OSError:
                    continue  # gone already
                if state != b"Z":  # a zombie is already dead; init or we reap it
                    pids.append(int(entry))
        return pids

    @staticmethod
    def workers() -> set[int]:
        """Live worker processes of the user's multiprocessing pools and executors."""
        mp = sys.modules.get("multiprocessing")  # never imported on the user's behalf
        return {p.pid for p in mp.active_children() if p.pid} if mp else set()

    def stop_processes(self, pids: list[int], *, keep: set[int]) -> int:
        """SIGKILL `pids` but `keep`, again while new ones appear (a cell's forking loop
        goes on forking); reap our own children. Returns how many were stopped."""
        stopped: set[int] = set()
        for _ in range(50):
            targets = [p for p in pids if p not in keep]
            if not targets:
                break
            for pid in targets:
                try:
                    os.kill(pid, signal.SIGKILL)
                    stopped.add(pid)
                except OSError:
                    pass
            time.sleep(0.005)
            pids = self.other_processes()
        for pid in stopped:
            try:
                os.waitpid(pid, 0)  # killed: returns at once; no zombie left behind
            except ChildProcessError:
                pass  # not our child: init reaps it
        return len(stopped)

    def kill_strays(self) -> None:
        # Not kill(-1): in the local sandbox the supervisor shares our user id. A fork
        # bomb keeps forking while we signal, so stop_processes repeats until none is left.
        self.stop_processes(self.other_processes(), keep=set())
        while True:
            try:
                if os.waitpid(-1, os.WNOHANG)[0] == 0:
                    break
            except ChildProcessError:
                break

    def safe_repr(self, obj: Any) -> str:
        try:
            text = repr(obj)
        except BaseException as exc:
            text = f"<repr failed: {type(exc).__name__}: {exc}>"
        if len(text) > self.max_value:
            text = text[: self.max_value] + f"... [{len(text) - self.max_value} more characters]"
        return text

    def format_error(self, exc: BaseException) -> dict[str, Any]:
        tb = exc.__traceback__
        # Show only the user's code: drop the frames before the first frame of a cell
        # (the kernel's own, and the parser's for a SyntaxError, which then shows just
        # the offending line and caret, like a notebook).
        while tb is not None and not tb.tb_frame.f_code.co_filename.startswith("<cell-"):
            tb = tb.tb_next
        lines = traceback.format_exception(type(exc), exc, tb)
        text = "".join(lines)
        if len(text) > self.max_output:
            text = text[: self.max_output // 2] + "\n...\n" + text[-self.max_output // 2 :]
        return {"ename": type(exc).__name__, "evalue": str(exc), "traceback": text}


def main() -> None:
    # The protocol channel is a private copy of the original stdout; fd 1 itself is
    # redirected to a scratch file by Kernel.__init__.
    proto_fd = os.dup(1)
    proto_out = io.TextIOWrapper(io.FileIO(proto_fd, "w"), encoding="utf-8", newline="\n")
    config = json.loads(sys.stdin.readline())
    os.makedirs(config.get("data_dir", "/mnt/data"), exist_ok=True)
    os.chdir(config.get("data_dir", "/mnt/data"))
    sys.path.insert(0, config.get("data_dir", "/mnt/data"))
    kernel = Kernel(config, proto_out)
    kernel.serve()


if __name__ == "__hg_kernel__":
    main()
