"""`DockerSandbox`: one locked-down container per kernel, driven over its attached stdin/stdout."""

from __future__ import annotations

import atexit
import os
import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .config import SandboxConfig
from .errors import (
    DockerUnavailableError,
    ImageNotFoundError,
    SandboxCancelledError,
    SandboxStartError,
)
from .files import DataEntry, entries_from_tar_stream
from .kernel import BOOTSTRAP
from .session import KernelProcess, Sandbox, kernel_config
from .supervisor import SUPERVISOR_BOOTSTRAP

__all__ = ["LABEL", "DockerKernel", "DockerSandbox", "reap_stale_containers"]

LABEL = "harmonygraph.sandbox"
SANDBOX_UID = 1000
DATA_DIR = "/mnt/data"
# Where the supervisor reads the container's count of out-of-memory kills.
CGROUP_OOM_FILES = ["/sys/fs/cgroup/memory.events", "/sys/fs/cgroup/memory/memory.oom_control"]


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "unknown"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# Containers this process started and has not removed yet, removed at exit.
_LIVE: dict[str, Any] = {}
_LIVE_LOCK = threading.Lock()
# Set at interpreter exit: a kernel start that fails from then on was stopped by us.
_EXITING = threading.Event()


def _remove_live_at_exit() -> None:
    _EXITING.set()
    with _LIVE_LOCK:
        containers = list(_LIVE.values())
        _LIVE.clear()
    for c in containers:
        try:
            c.remove(force=True, v=True)
        except Exception:
            pass


atexit.register(_remove_live_at_exit)


def docker_client(base_url: str | None = None) -> Any:
    """A connected `docker.DockerClient`, or a `DockerUnavailableError` saying what to do."""
    try:
        import docker
    except ImportError:
        raise DockerUnavailableError(
            "the `docker` Python package is missing: pip install 'harmonygraph[sandbox]' "
            "(or use HARMONYGRAPH_SANDBOX=local)"
        ) from None
    where = base_url or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    try:
        # An engine on another host: DOCKER_HOST=tcp://host:2376 with DOCKER_TLS_VERIFY=1 and
        # DOCKER_CERT_PATH (ca.pem, cert.pem, key.pem); the TLS settings apply to an explicit
        # `base_url` too.
        env = {**os.environ, "DOCKER_HOST": base_url} if base_url else None
        if (env or os.environ).get("DOCKER_TLS_VERIFY"):
            client = _tls_client(docker, env)
        else:
            client = docker.from_env(environment=env, timeout=120)
        client.ping()
    except Exception as exc:
        tls = (
            " (a TCP engine with TLS also needs DOCKER_TLS_VERIFY=1 and DOCKER_CERT_PATH)"
            if where.startswith("tcp://") and not os.environ.get("DOCKER_TLS_VERIFY")
            else ""
        )
        raise DockerUnavailableError(
            f"no Docker engine answers at {where}{tls} ({type(exc).__name__}: {exc}); start "
            "one (`sudo dockerd --iptables=false --bridge=none &`, or run .ci/setup-docker) or "
            "use HARMONYGRAPH_SANDBOX=local"
        ) from None
    return client


def _tls_client(docker: Any, env: dict[str, str] | None) -> Any:
    """A client that checks the engine with DOCKER_CERT_PATH's own CA.

    requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE (set on many hosts) replace the CA a
    client was given, so the engine's certificate would be checked against the wrong one;
    these clients ignore the environment's HTTP settings (the first asks the API version
    without asking the environment, which docker-py's own version probe would)."""
    first = docker.from_env(environment=env, timeout=120, version="1.24")
    first.api.trust_env = False
    api = first.api.version(api_version=False)["ApiVersion"]
    first.close()
    client = docker.from_env(environment=env, timeout=120, version=api)
    client.api.trust_env = False
    return client


def reap_stale_containers(client: Any) -> list[str]:
    """Remove sandbox containers whose owning process is gone (crashed or killed hosts).

    Each container is labelled with its owner's PID and the machine's boot id; one whose
    owner is not running on this boot is stale. Stopped ones are removed in any case.
    """
    removed = []
    boot = _boot_id()
    host = socket.gethostname()
    for c in client.containers.list(all=True, filters={"label": LABEL}):
        labels = c.labels or {}
        owner_pid = int(labels.get("harmonygraph.owner_pid", "0") or 0)
        same_host = labels.get("harmonygraph.host") == host
        if owner_pid == os.getpid() and same_host:
            stale = c.id not in _LIVE and c.status != "created"
        elif same_host:
            stale = labels.get("harmonygraph.boot_id") != boot or not _pid_alive(owner_pid)
        else:
            # Another machine sharing this engine: only its stopped kernels are surely dead.
            stale = c.status in ("exited", "dead")
        if stale:
            try:
                c.remove(force=True, v=True)
                removed.append(c.id[:12])
            except Exception:
                pass
    return removed


class DockerKernel(KernelProcess):
    backend = "docker"

    def __init__(self, client: Any, container: Any, sock: Any, config: SandboxConfig) -> None:
        super().__init__()
        self.client = client
        self.container = container
        self.config = config
        # docker-py hands back a SocketIO around the real socket; we want the socket.
        self._sock: socket.socket = getattr(sock, "_sock", sock)
        self._sock_io = sock
        self._killed = False
        self._kill_lock = threading.Lock()
        self._state: dict[str, Any] | None = None

    def _write(self, data: bytes) -> None:
        self._sock.sendall(data)

    def _recv_exact(self, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            chunk = self._sock.recv(n - len(buf))
            if not chunk:
                return bytes(buf)
            buf += chunk
        return bytes(buf)

    def _chunks(self) -> Iterator[tuple[int, bytes]]:
        # Without a TTY the attach stream is multiplexed: an 8-byte header (stream id,
        # three zero bytes, big-endian length) before each frame.
        while True:
            header = self._recv_exact(8)
            if len(header) < 8:
                return
            stream, size = struct.unpack(">BxxxL", header)
            payload = self._recv_exact(size)
            if len(payload) < size:
                return
            yield stream, payload

    def death_reason(self) -> str:
        state = self._inspect_state()
        oom = bool(state and state.get("OOMKilled"))
        said = self.supervisor_reason(oom=oom)
        if said:
            return said
        if not state:
            return "the container is gone"
        if state.get("Running"):
            return "the kernel stopped answering"
        # No word from the supervisor: it was killed itself, or never started.
        return f"the sandbox exited with status {state.get('ExitCode')}"

    def data_entries(self, max_depth: int) -> Iterator[DataEntry]:
        # The engine archives /mnt/data (a volume, so the engine sees it): nothing here
        # comes from the kernel. Read as a stream; closing it early stops the transfer.
        api = self.client.api
        res = api._get(
            api._url("/containers/{0}/archive", self.container.id),
            params={"path": DATA_DIR},
            stream=True,
            headers={"Accept-Encoding": "identity"},
        )
        try:
            api._raise_for_status(res)
            yield from entries_from_tar_stream(res.iter_content(1 << 16), "data")
        finally:
            res.close()

    def _inspect_state(self) -> dict[str, Any] | None:
        if self._state is not None:
            return self._state
        # The reader may see EOF a moment before the engine records the exit.
        for _ in range(20):
            try:
                self.container.reload()
            except Exception:
                return None
            state: dict[str, Any] = self.container.attrs.get("State", {})
            if not state.get("Running"):
                self._state = state
                return state
            time.sleep(0.05)
        return self.container.attrs.get("State", {})

    def kill(self) -> None:
        with self._kill_lock:
            if self._killed:
                return
            self._killed = True
        if not self._eof.is_set():
            self._state = {"Running": False, "ExitCode": None, "removed": True}
        # shutdown() first: it ends the connection at once even while docker-py's
        # SocketIO still holds the socket (close() alone would wait for that reference),
        # so the engine is never left blocked writing output nobody reads.
        for end in (lambda: self._sock.shutdown(socket.SHUT_RDWR), self._sock.close):
            try:
                end()
            except OSError:
                pass
        try:
            self.container.remove(force=True, v=True)
        except Exception:
            pass
        with _LIVE_LOCK:
            _LIVE.pop(self.container.id, None)


class DockerSandbox(Sandbox):
    """Kernels in Docker containers: no network, read-only root, non-root, capped resources."""

    kind = "docker"
    isolation = "strong"

    def __init__(self, config: SandboxConfig | None = None, *, base_url: str | None = None):
        super().__init__(config)
        self.base_url = base_url
        self._client: Any = None
        self._reaped = False
        self._lock = threading.Lock()

    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = docker_client(self.base_url)
            if not self._reaped:
                self._reaped = True
                reap_stale_containers(self._client)
            return self._client

    def check(self) -> dict[str, Any]:
        client = self.client()
        image = self._image(client)
        version = client.version()
        return {
            "engine": version.get("Version"),
            "image": self.config.image,
            "image_id": image.id[:19],
            "isolation": self.isolation,
        }

    def _image(self, client: Any) -> Any:
        import docker.errors

        try:
            return client.images.get(self.config.image)
        except docker.errors.ImageNotFound:
            raise ImageNotFoundError(
                f"the sandbox image {self.config.image} is not in the Docker engine: build it "
                "with `harmonygraph sandbox build` (add --offline without a registry) or set "
                "HARMONYGRAPH_SANDBOX_IMAGE"
            ) from None

    def container_options(self) -> dict[str, Any]:
        """The `containers.create` arguments: where the isolation is decided."""
        cfg = self.config
        uid = SANDBOX_UID
        env = {
            "HOME": "/mnt/data",
            "MPLBACKEND": "Agg",
            "MPLCONFIGDIR": "/tmp/matplotlib",
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONUNBUFFERED": "1",
            # BLAS thread pools sized to the CPU quota instead of the host's core count.
            "OPENBLAS_NUM_THREADS": str(max(1, int(cfg.cpus))),
            "OMP_NUM_THREADS": str(max(1, int(cfg.cpus))),
            "MKL_NUM_THREADS": str(max(1, int(cfg.cpus))),
        }
        from docker.types import DriverConfig, Mount

        # /mnt/data is a tmpfs *volume* (not a HostConfig tmpfs): size-capped like one, and
        # visible to the engine, so the host can take it with get_archive.
        data = Mount(
            target=DATA_DIR,
            source=None,
            type="volume",
            driver_config=DriverConfig(
                "local",
                {
                    "type": "tmpfs",
                    "device": "tmpfs",
                    "o": f"size={cfg.disk_mb}m,uid={uid},gid={uid},mode=0755",
                },
            ),
        )
        return {
            "image": cfg.image,
            # The supervisor is the main process (under docker-init), as root with only
            # the capabilities to start the kernel as uid 1000 and to signal it; the
            # kernel, and the user's code, run as uid 1000 with none.
            "command": ["python3", "-u", "-c", SUPERVISOR_BOOTSTRAP],
            "stdin_open": True,
            # Not detached: docker-py then sets StdinOnce, so when our attach connection
            # closes (the host process died) the kernel reads EOF and exits, and the
            # container stops instead of idling until the next reap.
            "detach": False,
            "tty": False,
            "init": True,
            "user": "0:0",
            "working_dir": "/mnt/data",
            "environment": env,
            "network_mode": "bridge" if cfg.network else "none",
            "read_only": True,
            "mounts": [data],
            "tmpfs": {"/tmp": f"rw,size={cfg.tmp_mb}m,mode=1777"},
            "mem_limit": f"{cfg.memory_mb}m",
            "memswap_limit": f"{cfg.memory_mb}m",
            "nano_cpus": int(cfg.cpus * 1e9),
            "pids_limit": cfg.pids_limit,
            "cap_drop": ["ALL"],
            "cap_add": ["SETUID", "SETGID", "KILL"],
            "security_opt": ["no-new-privileges"],
            "labels": {
                LABEL: "1",
                "harmonygraph.owner_pid": str(os.getpid()),
                "harmonygraph.host": socket.gethostname(),
                "harmonygraph.boot_id": _boot_id(),
            },
            "log_config": {"type": "none", "config": {}},
        }

    def supervisor_config(self) -> dict[str, Any]:
        cfg = self.config
        return {
            "uid": SANDBOX_UID,
            "gid": SANDBOX_UID,
            "kernel_argv": ["python3", "-u", "-c", BOOTSTRAP],
            "cwd": DATA_DIR,
            "pid_namespace": True,
            "cgroup_files": CGROUP_OOM_FILES,
            "boot_deadline_s": cfg.start_timeout_s + cfg.hard_deadline_margin_s,
            "request_deadline_s": 60.0 + cfg.interrupt_grace_s + cfg.hard_deadline_margin_s,
        }

    def spawn_kernel(self, cancel: threading.Event | None = None) -> DockerKernel:
        client = self.client()
        import docker.errors

        try:
            container = client.containers.create(**self.container_options())
        except docker.errors.ImageNotFound:
            self._image(client)
            raise
        except docker.errors.APIError as exc:
            raise SandboxStartError(f"could not create the sandbox container: {exc}") from None
        with _LIVE_LOCK:
            _LIVE[container.id] = container
        try:
            sock = container.attach_socket(
                params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1}
            )
            container.start()
        except Exception as exc:
            try:
                container.remove(force=True, v=True)
            finally:
                with _LIVE_LOCK:
                    _LIVE.pop(container.id, None)
            raise SandboxStartError(f"could not start the sandbox container: {exc}") from None
        kernel = DockerKernel(client, container, sock, self.config)
        kernel.max_line_bytes = self.config.max_file_mb * (1 << 20) * 4 // 3 + (16 << 20)
        try:
            kernel.boot(
                self.supervisor_config(),
                kernel_config(self.config, data_dir=DATA_DIR, scratch_dir="/tmp", kill_strays=True),
                self.config.start_timeout_s,
                cancel,
            )
        except SandboxStartError:
            if _EXITING.is_set():  # removed by our own exit handler: not a failure
                raise SandboxCancelledError("the kernel start was cancelled: exiting") from None
            raise
        return kernel
