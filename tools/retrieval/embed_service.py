"""A resident embedding service: the ONNX MiniLM kept loaded behind a Unix socket.

`harmonygraph db start` starts it beside the embedded Postgres and `db stop` stops it. A
command that embeds a query (`index search`) then asks it over
`$HARMONYGRAPH_HOME/embed.sock` (a few milliseconds) instead of starting ONNX Runtime
itself (about half a second). The service runs the same `OnnxMiniLMEmbedder`, so its
vectors are the in-process ones; a client uses it only when the service names the same
model files and graph version, and falls back to loading the model itself when the
service is absent, stale or fails. `HARMONYGRAPH_EMBED_SERVICE=0` turns the client off.

Protocol, one request per connection: the client sends one JSON line
`{"graph": NAME, "texts": [...]}`; the service answers one JSON line
`{"rows": N, "dim": D}` followed by N*D little-endian float32, or `{"error": MESSAGE}`.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import socketserver
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from harmonygraph.tools.retrieval.errors import EmbeddingError

__all__ = [
    "EmbeddingServiceError",
    "ServiceStatus",
    "embed_via_service",
    "service_status",
    "start_service",
    "stop_service",
]

MAX_REQUEST = 64 * 1024 * 1024


class EmbeddingServiceError(EmbeddingError):
    """The embedding service could not be started or answered something unusable."""


def _home() -> Path:
    from harmonygraph.settings import harmonygraph_home

    return harmonygraph_home()


def socket_path() -> Path:
    return _home() / "embed.sock"


def _pid_path() -> Path:
    return _home() / "embed.pid"


class ServiceStatus(dict[str, Any]):
    """`running`, `pid`, `socket`."""


def _pid() -> int | None:
    try:
        pid = int(_pid_path().read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def service_status() -> ServiceStatus:
    pid = _pid()
    return ServiceStatus(running=pid is not None, pid=pid, socket=str(socket_path()))


def service_enabled() -> bool:
    return os.environ.get("HARMONYGRAPH_EMBED_SERVICE", "1").strip().lower() not in (
        "0", "false", "no", "off",
    )  # fmt: skip


# -- client ----------------------------------------------------------------------------


def _recv_exact(conn: socket.socket, n: int) -> bytes:
    chunks = []
    while n:
        chunk = conn.recv(min(n, 1 << 20))
        if not chunk:
            raise EmbeddingServiceError("the embedding service closed the connection early")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def _recv_line(conn: socket.socket) -> bytes:
    buf = bytearray()
    while not buf.endswith(b"\n"):
        chunk = conn.recv(1)
        if not chunk:
            raise EmbeddingServiceError("the embedding service closed the connection early")
        buf += chunk
        if len(buf) > 65536:
            raise EmbeddingServiceError("the embedding service sent an overlong header")
    return bytes(buf)


def embed_via_service(graph: str, texts: Sequence[str], timeout: float = 120.0) -> np.ndarray | None:
    """Vectors from the running service, or None when there is none for this graph.

    `graph`: the cached graph's file name (model files and graph version); a service
    that runs another answers an error and None is returned, so the caller loads its own.
    """
    if not service_enabled():
        return None
    path = socket_path()
    if len(str(path)) > 100 or not path.exists():
        return None
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(timeout)
            conn.connect(str(path))
            conn.sendall(json.dumps({"graph": graph, "texts": list(texts)}).encode() + b"\n")
            header = json.loads(_recv_line(conn))
            if "error" in header:
                return None
            rows, dim = int(header["rows"]), int(header["dim"])
            data = _recv_exact(conn, rows * dim * 4)
    except (OSError, ValueError, KeyError, EmbeddingServiceError):
        return None  # no service, a stale socket, or a broken answer: embed locally
    matrix = np.frombuffer(data, dtype="<f4").reshape(rows, dim)
    return matrix.astype(np.float32) if rows == len(texts) else None


# -- server ----------------------------------------------------------------------------


def serve() -> None:
    """Run the service in this process until SIGTERM (what `start_service` launches)."""
    from harmonygraph.tools.retrieval.onnx_embedder import OnnxMiniLMEmbedder

    embedder = OnnxMiniLMEmbedder()
    embedder.load()
    graph = embedder.graph_path().name
    path = socket_path()
    path.unlink(missing_ok=True)

    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            try:
                line = self.rfile.readline(MAX_REQUEST)
                request = json.loads(line)
                if request.get("graph") != graph:
                    raise ValueError(f"this service runs {graph}, not {request.get('graph')}")
                texts = request["texts"]
                if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
                    raise ValueError("texts must be a list of strings")
                matrix = np.ascontiguousarray(embedder.embed_sync(texts), dtype="<f4")
            except Exception as exc:
                self.wfile.write(json.dumps({"error": f"{type(exc).__name__}: {exc}"}).encode() + b"\n")
                return
            header = {"rows": matrix.shape[0], "dim": matrix.shape[1]}
            self.wfile.write(json.dumps(header).encode() + b"\n")
            self.wfile.write(matrix.tobytes())

    class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
        daemon_threads = True

    with Server(str(path), Handler) as server:
        path.chmod(0o600)
        _pid_path().write_text(str(os.getpid()))

        def stop(*_: Any) -> None:
            raise KeyboardInterrupt

        signal.signal(signal.SIGTERM, stop)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            path.unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                if _pid_path().read_text().strip() == str(os.getpid()):
                    _pid_path().unlink()


def start_service(wait: float = 120.0) -> ServiceStatus:
    """Start the service (a no-op when it runs) and wait until it answers."""
    status = service_status()
    if status["running"]:
        return status
    if len(str(socket_path())) > 100:
        raise EmbeddingServiceError(
            f"the socket path {socket_path()} is too long for a Unix socket: set "
            "HARMONYGRAPH_HOME to a shorter folder"
        )
    from harmonygraph.tools.retrieval.onnx_embedder import OnnxMiniLMEmbedder

    graph = OnnxMiniLMEmbedder().graph_path().name  # fails early if the model is missing
    log = _home() / "embed.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "harmonygraph.tools.retrieval.embed_service"],
            stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True,
        )  # fmt: skip
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-600:]
            raise EmbeddingServiceError(
                f"the embedding service exited ({proc.returncode}); its log {log} ends: {tail}"
            )
        if embed_via_service(graph, ["ready?"], timeout=5) is not None:
            return service_status()
        time.sleep(0.1)
    proc.terminate()
    raise EmbeddingServiceError(
        f"the embedding service did not answer within {wait:.0f} s (see {log}); commands "
        "still work, loading the model themselves"
    )


def stop_service() -> bool:
    """Stop the service; False when it was not running."""
    pid = _pid()
    if pid is None:
        socket_path().unlink(missing_ok=True)
        return False
    os.kill(pid, signal.SIGTERM)
    for _ in range(50):
        try:
            os.kill(pid, 0)
        except OSError:
            break
        time.sleep(0.1)
    return True


if __name__ == "__main__":
    serve()
