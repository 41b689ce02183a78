"""A small Ollama-like server on 127.0.0.1, for `harmonygraph doctor --server`.

It answers as Ollama serving gpt-oss does, on the paths the probe asks: `/api/version`
(`{"version": ...}`), `/v1/models` (cards `owned_by: "library"`), a streamed
`/v1/chat/completions` whose deltas carry `reasoning` then `content`,
`/v1/completions` with text only (Ollama takes no `return_token_ids`), `/api/generate`,
and `/v1/responses` when `responses=True` (Ollama >= 0.13). vLLM's `/version` is a 404.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class OllamaLikeServer:
    def __init__(self, *, version: str = "0.12.6", responses: bool = False) -> None:
        self.version = version
        self.responses = responses
        self.requests: list[tuple[str, str, Any]] = []
        self._httpd: ThreadingHTTPServer | None = None

    @property
    def base_url(self) -> str:
        assert self._httpd is not None, "use the server as a context manager"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def __enter__(self) -> OllamaLikeServer:
        handler = type("_Handler", (_Handler,), {"owner": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None


def _chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
    data = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "gpt-oss:20b",
        "system_fingerprint": "fp_ollama",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return f"data: {json.dumps(data)}\n\n".encode()


class _Handler(BaseHTTPRequestHandler):
    owner: OllamaLikeServer
    protocol_version = "HTTP/1.0"

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _json(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _handle(self, method: str) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        path = self.path.split("?", 1)[0]
        self.owner.requests.append((method, path, body))
        if (method, path) == ("GET", "/api/version"):
            self._json(200, {"version": self.owner.version})
        elif (method, path) == ("GET", "/v1/models"):
            card = {"id": "gpt-oss:20b", "object": "model", "created": 0, "owned_by": "library"}
            self._json(200, {"object": "list", "data": [card]})
        elif (method, path) == ("POST", "/v1/chat/completions"):
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.end_headers()
            self.wfile.write(_chunk({"role": "assistant", "content": "", "reasoning": "Greet."}))
            self.wfile.write(_chunk({"content": "Hi"}))
            self.wfile.write(_chunk({}, "stop"))
            self.wfile.write(b"data: [DONE]\n\n")
        elif (method, path) == ("POST", "/v1/completions"):
            choice = {"index": 0, "text": "Hello", "finish_reason": "length"}
            self._json(200, {"id": "cmpl-1", "object": "text_completion", "choices": [choice]})
        elif (method, path) == ("POST", "/api/generate"):
            self._json(200, {"model": "gpt-oss:20b", "response": "Hi", "done": True})
        elif (method, path) == ("POST", "/v1/responses") and self.owner.responses:
            output = [{"type": "message", "role": "assistant",
                       "content": [{"type": "output_text", "text": "Hi"}]}]  # fmt: skip
            self._json(200, {"id": "resp_1", "object": "response", "status": "completed",
                             "output": output})  # fmt: skip
        else:
            self._json(404, {"error": "404 page not found"})

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")
