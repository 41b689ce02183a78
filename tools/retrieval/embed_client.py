"""The embedding service's client side and wire format (the service is embed_service.py).

A process that embeds asks the resident service over `$HARMONYGRAPH_HOME/embed.sock`
first; `onnx_embedder` uses this module, and `embed_service` (which runs that embedder)
answers it, so neither has to import the other's side.

Protocol, one request per connection: the client sends one JSON line
`{"graph": NAME, "texts": [...]}`; the service answers one JSON line
`{"rows": N, "dim": D}` followed by N*D little-endian float32, or `{"error": MESSAGE}`.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from harmonygraph.tools.retrieval.errors import EmbeddingError

__all__ = [
    "MAX_REQUEST",
    "EmbeddingServiceError",
    "embed_via_service",
    "home_dir",
    "service_enabled",
    "socket_path",
]

MAX_REQUEST = 64 * 1024 * 1024


class EmbeddingServiceError(EmbeddingError):
    """The embedding service could not be started or answered something unusable."""


def home_dir() -> Path:
    from harmonygraph.settings import harmonygraph_home

    return harmonygraph_home()


def socket_path() -> Path:
    return home_dir() / "embed.sock"


def service_enabled() -> bool:
    return os.environ.get("HARMONYGRAPH_EMBED_SERVICE", "1").strip().lower() not in (
        "0", "false", "no", "off",
    )  # fmt: skip


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


def embed_via_service(
    graph: str, texts: Sequence[str], timeout: float = 120.0
) -> np.ndarray | None:
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
