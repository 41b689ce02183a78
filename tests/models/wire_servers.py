"""Small real HTTP servers on 127.0.0.1 for the paths the project's fake does not serve:
Ollama's `/api/generate` (raw harmony) and `/v1/responses`. Each is scripted with
harmony completions, as `FakeOpenAIServer` is, and answers in the server's own wire
shape, strict where the real server is strict.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from harmonygraph.harmony import Message, get_encoding, parse_completion_text

Answer = tuple[int, Any] | tuple[str, Iterator[Any]]


class _Error(Exception):
    def __init__(self, status: int, body: Any) -> None:
        super().__init__(status)
        self.status, self.body = status, body


class ScriptedServer:
    """A threaded HTTP server whose routes answer from a script of harmony completions."""

    def __init__(self, completions: Sequence[str] = ()) -> None:
        self.script = list(completions)
        self.requests: list[tuple[str, str, Any]] = []
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self.routes: dict[tuple[str, str], Callable[[Any], Answer]] = {}

    def add(self, *completions: str) -> None:
        self.script.extend(completions)

    def next(self) -> str:
        with self._lock:
            if not self.script:
                raise _Error(400, {"error": "script exhausted: add() more completions"})
            return self.script.pop(0)

    def bodies(self, path: str) -> list[Any]:
        return [b for _, p, b in self.requests if p == path]

    def __enter__(self) -> ScriptedServer:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return

            def _write(self, status: int, ctype: str, data: bytes) -> None:
                self.send_response(status)
                self.send_header("content-type", ctype)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _chunked(self, ctype: str, pieces: Iterator[bytes]) -> None:
                self.send_response(200)
                self.send_header("content-type", ctype)
                self.send_header("transfer-encoding", "chunked")
                self.end_headers()
                for data in pieces:
                    self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                    self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()

            def _handle(self, method: str) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                path = self.path.split("?", 1)[0]
                with owner._lock:
                    owner.requests.append((method, path, body))
                route = owner.routes.get((method, path))
                try:
                    if route is None:
                        raise _Error(404, {"detail": "Not Found"})
                    kind, payload = route(body)
                    if kind == "ndjson":
                        lines = (json.dumps(x).encode() + b"\n" for x in payload)
                        self._chunked("application/x-ndjson", lines)
                    elif kind == "raw-sse":
                        data = (f"data: {x}\n\n".encode() for x in payload)
                        self._chunked("text/event-stream", data)
                    elif kind == "sse":
                        events = (
                            f"event: {x['type']}\ndata: {json.dumps(x)}\n\n".encode()
                            for x in payload
                        )
                        self._chunked("text/event-stream", events)
                    else:
                        assert isinstance(kind, int)
                        self._write(kind, "application/json", json.dumps(payload).encode())
                except _Error as err:
                    self._write(err.status, "application/json", json.dumps(err.body).encode())
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def do_GET(self) -> None:
                self._handle("GET")

            def do_POST(self) -> None:
                self._handle("POST")

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._httpd is not None
        self._httpd.shutdown()
        self._httpd.server_close()

    @property
    def root(self) -> str:
        assert self._httpd is not None
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    @property
    def base_url(self) -> str:
        return f"{self.root}/v1"


# -- Ollama ---------------------------------------------------------------------------


class OllamaServer(ScriptedServer):
    """Ollama's `/api/generate` as its runner answers a raw gpt-oss prompt: the text with
    its special tokens, the consumed `<|return|>`/`<|call|>` left out, stop strings cut
    (and left out), `num_predict` honoured; `/api/version`; `/v1/models` (`library`)."""

    def __init__(self, completions: Sequence[str] = (), *, version: str = "0.12.6") -> None:
        super().__init__(completions)
        self.version = version
        self.routes = {
            ("POST", "/api/generate"): self.generate,
            ("GET", "/api/version"): lambda _b: (200, {"version": self.version}),
            ("GET", "/v1/models"): lambda _b: (
                200,
                {"object": "list", "data": [{"id": "gpt-oss:20b", "object": "model",
                                             "created": 0, "owned_by": "library"}]},
            ),
        }  # fmt: skip

    def generate(self, body: Any) -> Answer:
        if not isinstance(body, dict) or body.get("model") != "gpt-oss:20b":
            name = body.get("model") if isinstance(body, dict) else None
            raise _Error(404, {"error": f'model "{name}" not found, try pulling it first'})
        if body.get("raw") is not True or not isinstance(body.get("prompt"), str):
            raise _Error(400, {"error": "this server expects raw: true and a string prompt"})
        options = body.get("options") or {}
        enc = get_encoding()
        text = self.next()
        ids = enc.encode(text, allowed_special="all")
        limit = options.get("num_predict")
        done_reason = "stop"
        if isinstance(limit, int) and limit >= 0 and len(ids) > limit:
            text, done_reason = enc.decode(ids[:limit]), "length"
        for stop in options.get("stop") or []:
            at = text.find(stop)
            if at >= 0:
                text, done_reason = text[:at], "stop"
        for marker in ("<|return|>", "<|call|>"):
            if text.endswith(marker):
                text = text[: -len(marker)]  # an end-of-generation token is not written
        prompt_tokens = len(enc.encode(body["prompt"], allowed_special="all"))
        done = {
            "model": body["model"],
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "done": True,
            "done_reason": done_reason,
            "prompt_eval_count": prompt_tokens,
            "eval_count": len(enc.encode(text, allowed_special="all")) + 1,
        }
        if body.get("stream", True) is False:
            return 200, {**done, "response": text}

        def lines() -> Iterator[dict[str, Any]]:
            for i in range(0, len(text), 7):
                yield {"model": body["model"], "response": text[i : i + 7], "done": False}
            yield {**done, "response": ""}

        return "ndjson", lines()


# -- /v1/responses ----------------------------------------------------------------------


class ResponsesServer(ScriptedServer):
    """`/v1/responses` as vLLM's gpt-oss path answers: scripted harmony completions become
    reasoning, message and function_call items; input items are checked as vLLM reads
    them (every function_call_output answers a known call_id); `store: true` keeps the
    response for `previous_response_id`."""

    def __init__(self, completions: Sequence[str] = ()) -> None:
        super().__init__(completions)
        self.stored: dict[str, list[dict[str, Any]]] = {}  # id -> its conversation items
        self.routes = {("POST", "/v1/responses"): self.respond}

    def _check_input(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        previous = body.get("previous_response_id")
        if previous is not None:
            if previous not in self.stored:
                raise _Error(
                    404,
                    {"error": {"message": f"Response with id '{previous}' not found.",
                               "type": "invalid_request_error", "code": 404}},
                )  # fmt: skip
            items = list(self.stored[previous])
        data = body.get("input")
        items += [{"role": "user", "content": data}] if isinstance(data, str) else list(data)
        calls = {i.get("call_id") for i in items if i.get("type") == "function_call"}
        for item in items:
            if item.get("type") == "function_call_output" and item.get("call_id") not in calls:
                raise _Error(
                    400,
                    {"error": {"message": f"No tool call found for call_id {item['call_id']}",
                               "type": "invalid_request_error", "code": 400}},
                )  # fmt: skip
        return items

    def respond(self, body: Any) -> Answer:
        items = self._check_input(body)
        messages: list[Message] = parse_completion_text(self.next()).messages
        output: list[dict[str, Any]] = []
        for m in messages:
            uid = uuid.uuid4().hex[:12]
            if m.is_reasoning:
                output.append(
                    {
                        "type": "reasoning",
                        "id": f"rs_{uid}",
                        "summary": [],
                        "content": [{"type": "reasoning_text", "text": m.content}],
                    }
                )
            elif m.is_tool_call:
                output.append(
                    {
                        "type": "function_call",
                        "id": f"fc_{uid}",
                        "call_id": f"call_{uid}",
                        "status": "completed",
                        "name": (m.recipient or "").removeprefix("functions."),
                        "arguments": m.content,
                    }
                )
            else:
                output.append({"type": "message", "id": f"msg_{uid}", "role": "assistant",
                               "status": "completed",
                               "content": [{"type": "output_text", "text": m.content,
                                            "annotations": []}]})  # fmt: skip
        rid = f"resp_{uuid.uuid4().hex}"
        if body.get("store"):
            self.stored[rid] = items + output
        enc = get_encoding()
        usage = {
            "input_tokens": sum(len(json.dumps(i)) // 4 for i in items) + 50,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": sum(len(enc.encode(m.content)) for m in messages),
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": 0,
        }
        response = {
            "id": rid, "object": "response", "created_at": int(time.time()),
            "model": body.get("model"), "status": "completed", "output": output,
            "parallel_tool_calls": True, "tool_choice": body.get("tool_choice", "auto"),
            "tools": body.get("tools") or [], "usage": usage,
        }  # fmt: skip
        if not body.get("stream"):
            return 200, response

        def events() -> Iterator[dict[str, Any]]:
            seq = iter(range(10_000))
            started = {**response, "status": "in_progress", "output": [], "usage": None}
            yield {"type": "response.created", "response": started, "sequence_number": next(seq)}
            for n, item in enumerate(output):
                kind = item["type"]
                empty = {**item, "content": []} if "content" in item else {**item, "arguments": ""}
                yield {"type": "response.output_item.added", "output_index": n, "item": empty,
                       "sequence_number": next(seq)}  # fmt: skip
                if kind == "function_call":
                    text, event = item["arguments"], "response.function_call_arguments.delta"
                elif kind == "reasoning":
                    text, event = item["content"][0]["text"], "response.reasoning_text.delta"
                else:
                    text, event = item["content"][0]["text"], "response.output_text.delta"
                for i in range(0, len(text), 9):
                    delta = {"type": event, "output_index": n, "item_id": item["id"],
                             "delta": text[i : i + 9], "sequence_number": next(seq)}  # fmt: skip
                    if kind != "function_call":
                        delta["content_index"] = 0
                    if kind == "message":
                        delta["logprobs"] = []
                    yield delta
                yield {"type": "response.output_item.done", "output_index": n, "item": item,
                       "sequence_number": next(seq)}  # fmt: skip
            yield {"type": "response.completed", "response": response,
                   "sequence_number": next(seq)}  # fmt: skip

        return "sse", events()


# -- recorded hosted answers -------------------------------------------------------------


class RecordedChatServer(ScriptedServer):
    """`/v1/chat/completions` answered with recorded exchanges (`../shared/corpora/wire`),
    one per request: their status and body, or their SSE lines as recorded. `/v1/models`
    is a 404, as on the hosted APIs that do not list models at that path."""

    def __init__(self, recordings: Sequence[dict[str, Any]]) -> None:
        super().__init__()
        self.recordings = list(recordings)
        self.routes = {("POST", "/v1/chat/completions"): self.answer}

    def answer(self, body: Any) -> Answer:
        if not self.recordings:
            raise _Error(400, {"error": "no recording left"})
        rec = self.recordings.pop(0)
        if rec.get("sse"):
            lines = [line.removeprefix("data: ") for line in rec["sse"]]
            return "raw-sse", iter(lines)
        return int(rec.get("status") or 200), rec["response"]
