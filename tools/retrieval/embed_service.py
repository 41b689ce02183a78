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
import socketserver
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from harmonygraph.tools.retrieval.embed_client import (
    MAX_REQUEST,
    EmbeddingServiceError,
    embed_via_service,
    home_dir,
    service_enabled,
    socket_path,
)

__all__ = [
    "EmbeddingServiceError",
    "ServiceStatus",
    "embed_via_service",
    "service_enabled",
    "service_status",
    "socket_path",
    "start_service",
    "stop_service",
]


def _pid_path() -> Path:
    return home_dir() / "embed.pid"


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
    log = home_dir() / "embed.log"
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
