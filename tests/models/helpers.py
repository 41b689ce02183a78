"""Shared scripted completions, tool configs and request builders for the model tests."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

from harmonygraph.harmony import DeveloperConfig, Message, SystemConfig
from harmonygraph.models import ModelRequest, ModelSettings, RetryPolicy
from openai_harmony import ToolDescription, ToolNamespaceConfig

# Completions as gpt-oss writes them (after the prompt's `<|start|>assistant`).
CALL = (
    "<|channel|>analysis<|message|>The user wants the weather; call get_weather.<|end|>"
    "<|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json"
    '<|message|>{"city":"Paris"}<|call|>'
)
FINAL = (
    "<|channel|>analysis<|message|>The tool says sunny, 21 °C.<|end|>"
    "<|start|>assistant<|channel|>final<|message|>It is sunny in Paris (21 °C).<|return|>"
)
TOOL_RESULT = Message.tool_result("functions.get_weather", '{"sky":"sunny","celsius":21}')

WEATHER = ToolNamespaceConfig(
    name="functions",
    description=None,
    tools=[
        ToolDescription.new(
            "get_weather",
            "Current weather for a city.",
            {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        )
    ],
)
SYSTEM = SystemConfig(current_date="2025-08-05", reasoning="high")
DEVELOPER = DeveloperConfig(instructions="Answer briefly.", tools=(WEATHER,))
# Tests retry fast; the policy's shape is what is under test, not its default delays.
FAST_RETRY = RetryPolicy(base_delay=0.01, cap=0.05)


def make_request(*messages: Message, settings: ModelSettings | None = None) -> ModelRequest:
    msgs = messages or (Message.user("What is the weather in Paris?"),)
    return ModelRequest(SYSTEM, DEVELOPER, tuple(msgs), settings or ModelSettings())


def answering_server(
    answer: bytes, content_type: str = "application/json"
) -> tuple[HTTPServer, list[str | None]]:
    """A server on 127.0.0.1 answering every POST with 200 and `answer`, and the list of
    each request's Authorization header (filled as requests come). `shutdown()` it."""
    auth: list[str | None] = []

    class Answer(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["content-length"]))
            auth.append(self.headers.get("authorization"))
            self.send_response(200)
            self.send_header("content-type", content_type)
            self.send_header("content-length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args: object) -> None:
            return

    httpd = HTTPServer(("127.0.0.1", 0), Answer)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, auth
