"""A replay server for recorded exchanges (`../shared/corpora/wire/*.json`), on 127.0.0.1.

Each recording holds one request a client sent to a real server serving gpt-oss and the
answer it got: a JSON body with its status, or the lines of an SSE stream (some cut
short where the source only showed an excerpt). `ReplayServer(recording)` answers a
POST on the recording's path with exactly that: the status and JSON body, or the SSE
lines, each as one event (`event: error` before an error event where the recording
says the server sent one), the connection closed after the last line, with no
`[DONE]` added to a stream that had none. Any other path is a 404 (FastAPI's body).
Every request received is kept in `requests` as (method, path, JSON body).

`base_url` is the URL an `openai` client takes so that its requests land on the
recorded path: `/openai/v1` for Groq, `/api/v1` for OpenRouter, `/v1` otherwise.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

WIRE = Path(__file__).resolve().parents[3] / "shared" / "corpora" / "wire"
SUFFIXES = ("/chat/completions", "/responses")


class RecordingError(ValueError):
    """A recording the replay server cannot serve (no response, an unknown endpoint)."""


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((WIRE / f"{name}.json").read_text(encoding="utf-8"))
    return data


def recordings() -> list[str]:
    return sorted(p.stem for p in WIRE.glob("*.json"))


def kind(recording: dict[str, Any]) -> str:
    """`chat`, `responses` or `converse` (Bedrock's own API), from the recorded endpoint."""
    endpoint = str(recording["endpoint"])
    if endpoint.endswith("/chat/completions"):
        return "chat"
    if endpoint.endswith("/responses"):
        return "responses"
    if "/converse" in endpoint:
        return "converse"
    raise RecordingError(f"unknown endpoint {endpoint!r}: add it to tests/wire/replay.py")


class ReplayServer:
    def __init__(self, recording: dict[str, Any]) -> None:
        if kind(recording) == "converse":
            raise RecordingError(
                "a Bedrock Converse recording has no OpenAI-compatible answer to replay"
            )
        if recording.get("response") is None and not recording.get("sse"):
            raise RecordingError("the recording holds neither a response nor SSE lines")
        self.recording = recording
        self.path = str(recording["endpoint"])
        self.requests: list[tuple[str, str, Any]] = []
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None

    @property
    def base_url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("start the replay server first (use it as a context manager)")
        prefix = next(self.path[: -len(s)] for s in SUFFIXES if self.path.endswith(s))
        return f"http://127.0.0.1:{self._httpd.server_address[1]}{prefix}"

    def bodies(self) -> list[Any]:
        """The JSON bodies POSTed to the recorded path."""
        return [body for method, path, body in self.requests if path == self.path]

    def sse_payload(self) -> bytes:
        error_event = "event: error" in (self.recording.get("sse_events") or [])
        out: list[str] = []
        for line in self.recording["sse"]:
            if error_event and line.startswith("data: {") and '"error"' in line[:12]:
                out.append("event: error\n")
            out.append(f"{line}\n\n")
        return "".join(out).encode()

    def __enter__(self) -> ReplayServer:
        handler = type("_Handler", (_Handler,), {"replay": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None


class _Handler(BaseHTTPRequestHandler):
    replay: ReplayServer
    protocol_version = "HTTP/1.0"  # one exchange per connection; a cut stream just ends

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _send(self, status: int, content_type: str, data: bytes) -> None:
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _handle(self, method: str) -> None:
        replay = self.replay
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", errors="replace")
        path = self.path.split("?", 1)[0]
        with replay._lock:
            replay.requests.append((method, path, body))
        if method != "POST" or path != replay.path:
            self._send(404, "application/json", b'{"detail": "Not Found"}')
            return
        rec = replay.recording
        status = int(rec.get("status") or 200)
        if rec.get("sse"):
            self.send_response(status)
            self.send_header("content-type", "text/event-stream; charset=utf-8")
            self.end_headers()  # no length: the stream ends when the connection closes
            self.wfile.write(replay.sse_payload())
            self.wfile.flush()
            return
        self._send(status, "application/json", json.dumps(rec["response"]).encode())

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")
