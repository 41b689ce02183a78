"""`LocalSandbox`: the kernel as a subprocess of the host. Opt-in and WEAKER than Docker.

Without bwrap it is only a separate process with resource limits (address space, file
size, processes) and a cleared environment: it can read the host's files and use the
network. With bubblewrap (`bwrap`) installed it also gets private PID, network, IPC and
mount namespaces, a read-only view of just the interpreter's directories, a private
/tmp and the session directory as /mnt/data. Memory is capped by address space, not by
a cgroup, and process limits do not apply to root. Use it where Docker is not available.
"""

from __future__ import annotations

import os
import resource
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .config import SandboxConfig
from .errors import SandboxStartError, SandboxUnavailableError
from .files import DataEntry, walk_nofollow
from .kernel import BOOTSTRAP
from .session import KernelProcess, Sandbox, kernel_config
from .supervisor import SUPERVISOR_BOOTSTRAP

__all__ = ["LocalKernel", "LocalSandbox"]


class LocalKernel(KernelProcess):
    backend = "local"

    def __init__(self, proc: subprocess.Popen[bytes], workdir: Path, owns_workdir: bool):
        super().__init__()
        self.proc = proc
        self.workdir = workdir
        self._owns_workdir = owns_workdir
        self._killed = False
        self._lock = threading.Lock()
        self.starts_empty = owns_workdir
        self.take_always = True  # walking a local folder is cheap

    def _write(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def _chunks(self) -> Iterator[tuple[int, bytes]]:
        # stdout carries the kernel's replies; stderr the supervisor's own JSON lines.
        assert self.proc.stdout is not None and self.proc.stderr is not None
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout.fileno(), selectors.EVENT_READ, 1)
        sel.register(self.proc.stderr.fileno(), selectors.EVENT_READ, 2)
        try:
            while sel.get_map():
                for key, _ in sel.select():
                    data = os.read(key.fd, 1 << 16)
                    if not data:
                        sel.unregister(key.fd)
                        continue
                    yield key.data, data
        finally:
            sel.close()

    def data_entries(self, max_depth: int) -> Iterator[DataEntry]:
        # The session folder on the host, walked by the host with no-follow semantics.
        return walk_nofollow(self.workdir, max_depth)

    def death_reason(self) -> str:
        said = self.supervisor_reason(oom=False)
        if said:
            return said
        try:
            code = self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            return "the kernel stopped answering"
        if code < 0:
            return f"the sandbox's supervisor was killed by {signal.Signals(-code).name}"
        return f"the sandbox exited with status {code}"

    def kill(self) -> None:
        with self._lock:
            if self._killed:
                return
            self._killed = True
        try:
            # The kernel leads its own process group: this takes its children too.
            os.killpg(self.proc.pid, signal.SIGKILL)
        except OSError:
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass
        if self._owns_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)


class LocalSandbox(Sandbox):
    """Kernels as host subprocesses with rlimits, inside bwrap when available. Weaker."""

    kind = "local"

    def __init__(
        self,
        config: SandboxConfig | None = None,
        *,
        session_dir: Path | None = None,
        use_bwrap: bool | None = None,
    ) -> None:
        super().__init__(config)
        self.session_dir = session_dir
        want = self.config.local_bwrap if use_bwrap is None else use_bwrap
        self.bwrap = shutil.which("bwrap") if want else None
        self.python = self.config.local_python
        if self.python == "python3" and Path(sys.executable).exists():
            # The host interpreter is the one known to have the scientific stack.
            self.python = sys.executable

    @property
    def isolation(self) -> str:  # type: ignore[override]
        if self.bwrap:
            return "weak (bwrap namespaces + rlimits)"
        if os.geteuid() == 0:
            # The kernel ignores RLIMIT_NPROC for root: nothing caps a fork bomb.
            return "weak (rlimits only; as root no process cap: install bubblewrap)"
        return "weak (rlimits only)"

    def check(self) -> dict[str, Any]:
        if not shutil.which(self.python):
            raise SandboxUnavailableError(
                f"no Python interpreter at {self.python}: set HARMONYGRAPH_SANDBOX_LOCAL_PYTHON"
            )
        return {"python": self.python, "bwrap": self.bwrap, "isolation": self.isolation}

    def _interpreter_roots(self) -> list[str]:
        """The interpreter's prefixes and site-packages, bound read-only inside bwrap."""
        probe = (
            "import sys, site\n"
            "print('\\n'.join({sys.prefix, sys.base_prefix, *site.getsitepackages()}))"
        )
        try:
            out = subprocess.run(
                [self.python, "-c", probe], capture_output=True, text=True, timeout=30, check=True
            ).stdout
        except (OSError, subprocess.SubprocessError) as exc:
            raise SandboxUnavailableError(
                f"the local interpreter {self.python} does not run ({exc}): set "
                "HARMONYGRAPH_SANDBOX_LOCAL_PYTHON"
            ) from None
        return [p for p in out.splitlines() if p and Path(p).exists()]

    def _limits(self) -> None:
        # Runs in the child between fork and exec.
        cfg = self.config
        os.setsid()
        # The supervisor dies with the host process (and the kernel with the supervisor).
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except Exception:
            pass
        # Address space, not resident memory: leave room for the interpreter's and
        # BLAS's mappings on top of what the code may use.
        mem = (cfg.memory_mb + 1024) * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
        fsize = cfg.disk_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if os.getuid() != 0:
            resource.setrlimit(resource.RLIMIT_NPROC, (cfg.pids_limit, cfg.pids_limit))

    def spawn_kernel(self, cancel: threading.Event | None = None) -> LocalKernel:
        self.check()
        cfg = self.config
        owns = self.session_dir is None
        if self.session_dir is None:
            workdir = Path(tempfile.mkdtemp(prefix="hg-local-"))
        else:
            workdir = Path(self.session_dir)
        workdir.mkdir(parents=True, exist_ok=True)
        scratch = workdir / ".tmp"
        scratch.mkdir(exist_ok=True)
        threads = str(max(1, int(cfg.cpus)))
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "MPLBACKEND": "Agg",
            "PYTHONDONTWRITEBYTECODE": "1",
            "OPENBLAS_NUM_THREADS": threads,
            "OMP_NUM_THREADS": threads,
            "LANG": "C.UTF-8",
        }
        if self.bwrap:
            data_dir, scratch_dir = "/mnt/data", "/tmp"
            env.update(HOME=data_dir, MPLCONFIGDIR="/tmp/matplotlib")
            argv = [self.bwrap, "--unshare-all", "--die-with-parent", "--new-session"]
            for top in ("/usr", "/bin", "/sbin", "/lib", "/lib64", "/lib32", "/etc/alternatives"):
                argv += ["--ro-bind-try", top, top]
            for root in self._interpreter_roots():
                argv += ["--ro-bind", root, root]
            argv += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
            argv += ["--bind", str(workdir), data_dir, "--chdir", data_dir, "--clearenv"]
            for k, v in env.items():
                argv += ["--setenv", k, v]
            argv += [self.python, "-u", "-c", SUPERVISOR_BOOTSTRAP]
            popen_env: dict[str, str] | None = None
        else:
            data_dir, scratch_dir = str(workdir), str(scratch)
            env.update(HOME=data_dir, MPLCONFIGDIR=str(scratch / "matplotlib"))
            argv = [self.python, "-u", "-c", SUPERVISOR_BOOTSTRAP]
            popen_env = env
        try:
            proc = self._popen(argv, workdir, popen_env if popen_env is not None else env)
        except OSError as exc:
            if owns:
                shutil.rmtree(workdir, ignore_errors=True)
            raise SandboxStartError(f"could not start the local kernel: {exc}") from None
        kernel = LocalKernel(proc, workdir, owns)
        kernel.max_line_bytes = self.config.max_file_mb * (1 << 20) * 4 // 3 + (16 << 20)
        supervisor = {
            "uid": None,
            "gid": None,
            "kernel_argv": [self.python, "-u", "-c", BOOTSTRAP],
            "cwd": data_dir,
            # In bwrap's PID namespace the supervisor can stop every process of the
            # sandbox; bare, it stops the kernel's process group.
            "pid_namespace": bool(self.bwrap),
            "cgroup_files": [],
            "boot_deadline_s": cfg.start_timeout_s + cfg.hard_deadline_margin_s,
            "request_deadline_s": 60.0 + cfg.interrupt_grace_s + cfg.hard_deadline_margin_s,
        }
        kernel.boot(
            supervisor,
            kernel_config(
                cfg, data_dir=data_dir, scratch_dir=scratch_dir, kill_strays=bool(self.bwrap)
            ),
            cfg.start_timeout_s,
            cancel,
        )
        return kernel

    def _popen(
        self, argv: list[str], workdir: Path, env: dict[str, str]
    ) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=str(workdir),
            env=env,
            preexec_fn=self._limits,
        )
