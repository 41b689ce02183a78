"""`OllamaRawModel`: gpt-oss on Ollama through `/api/generate` with `raw: true`.

Ollama's `/v1/completions` takes only a string prompt and its chat endpoint renders and
parses harmony itself (without built-in tools, and with its own tool-name bugs), so the
gpt-oss reference implementation drives Ollama the raw way: the harmony prompt is
rendered here, sent as text with `raw: true` (no template; Ollama tokenizes the special
tokens in it), and the completion comes back as text that our codec parses. So built-in
tools (browser, python), MCP namespaces and the chain of thought of an ongoing turn all
work as on vLLM's `/v1/completions`.

What is sent (Ollama's `api/types.go`, `server/routes.go`):

- `prompt`: the rendered prompt, special tokens written out; `raw: true`;
- `options.num_predict`: the token limit (Ollama's default is unlimited or the context);
  `temperature`, `top_p`, `seed` in `options` too;
- `stream`: NDJSON lines, each with a `response` piece; the last has `done: true`,
  `done_reason` ("stop" or "length"), `prompt_eval_count` and `eval_count`.

Ollama ends generation on gpt-oss's `<|return|>` and `<|call|>` without writing them, and
does not say which it was. A turn that stopped is completed with `<|call|>` when its last
header names a recipient (`to=`), else `<|return|>`.

Usage: the prompt's length is ours (we rendered it); `prompt_eval_count` counts only the
tokens Ollama evaluated, so the difference is reported as cached.

Constrained output (`enforce_output_schema`, or `ModelSettings.enforce_output`) runs in
two requests, as on vLLM: the first stops at the final channel's opening (stop strings,
which Ollama cuts from the text), the second continues the same prefix with Ollama's
`format` (a JSON schema). Whether Ollama's engine for gpt-oss applies `format` to a raw
generation depends on its version, and the answer cannot show it, so `constrained` is
reported False unless `trust_format=True`; the engine validates the answer either way.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
from harmonygraph.concurrency import iterate_sync, run_sync
from harmonygraph.harmony import ParseResult, StreamParser
from harmonygraph.harmony.encoding import get_encoding
from harmonygraph.harmony.render import RenderedPrompt
from harmonygraph.models._server import api_root, registered_tool_names
from harmonygraph.models.base import (
    ModelAuthError,
    ModelConnectionError,
    ModelError,
    ModelNotFoundError,
    ModelRequest,
    ModelResponse,
    ModelSettings,
    ModelTimeoutError,
    ResponseDone,
    StreamEvent,
    Usage,
    effective_settings,
    replay_as_stream,
)
from harmonygraph.models.completions import RendererCache
from harmonygraph.models.constrained import FINAL_OPEN, FINAL_OPENINGS
from harmonygraph.models.errors import RETRYABLE_STATUS, RetryPolicy, redact_secrets, safe_url
from harmonygraph.settings import Settings

__all__ = ["OllamaRawModel", "complete_marker"]

DEFAULT_OLLAMA_URL = "http://localhost:11434"


def complete_marker(text: str, done_reason: str | None) -> str:
    """`text` with the stop token Ollama consumed put back (see the module docstring)."""
    if done_reason != "stop" or text.endswith(("<|return|>", "<|call|>")):
        return text
    at = text.rfind("<|message|>")
    if at < 0:
        return text  # no header to read (special tokens stripped): the parser copes
    start = text.rfind("<|start|>", 0, at)
    header = text[max(start, 0) : at]
    return text + ("<|call|>" if "to=" in header else "<|return|>")


def _stopped_at_final_open(text: str, done_reason: str | None) -> bool:
    """Phase one hit a final-opening stop string: the last message has no header yet."""
    if done_reason != "stop":
        return False
    end = text.rfind("<|end|>")
    tail = text[end + len("<|end|>") :] if end >= 0 else text
    return "<|message|>" not in tail


@dataclass
class _Generated:
    text: str
    done_reason: str | None
    prompt_eval: int
    evaluated: int


class OllamaRawModel:
    """gpt-oss on Ollama's `/api/generate` (`raw: true`): harmony rendered and parsed here.

    >>> model = OllamaRawModel("gpt-oss:20b", base_url="http://localhost:11434")
    """

    endpoint = "api/generate"
    supports_constrained_output = True

    def __init__(
        self,
        model: str | None = None,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        settings: ModelSettings | None = None,
        retry_policy: RetryPolicy | None = None,
        enforce_output_schema: bool = False,
        trust_format: bool = False,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        env = Settings()
        self.name = model or env.model
        self.settings = settings or ModelSettings()
        self.retry_policy = retry_policy or RetryPolicy()
        self.retries = 0
        self.enforce_output_schema = enforce_output_schema
        self.trust_format = trust_format
        self.root = api_root(base_url or env.base_url)
        self._api_key = api_key if api_key and api_key != "EMPTY" else None
        self._http = http_client
        self.renderers = RendererCache()

    # -- plumbing ----------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return safe_url(self.root)

    @property
    def secrets(self) -> list[str]:
        return [self._api_key] if self._api_key else []

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            headers = {"authorization": f"Bearer {self._api_key}"} if self._api_key else {}
            self._http = httpx.AsyncClient(headers=headers)
        return self._http

    def settings_for(self, request: ModelRequest) -> ModelSettings:
        return effective_settings(self.settings, request.settings)

    def render(self, request: ModelRequest) -> RenderedPrompt:
        return self.renderers.get(request.system, request.developer).render(request.messages)

    def tool_names(self, request: ModelRequest) -> list[str]:
        return registered_tool_names(request.system, request.developer)

    def request_body(
        self,
        prompt_text: str,
        settings: ModelSettings,
        *,
        stream: bool,
        max_tokens: int | None = None,
        stop: list[str] | None = None,
        schema: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The JSON body for `POST /api/generate`."""
        options: dict[str, Any] = {
            "num_predict": settings.max_tokens if max_tokens is None else max_tokens,
            "temperature": settings.temperature,
            "top_p": settings.top_p,
        }
        if settings.seed is not None:
            options["seed"] = settings.seed
        if stop:
            options["stop"] = stop
        body: dict[str, Any] = {
            "model": self.name,
            "prompt": prompt_text,
            "raw": True,
            "stream": stream,
            "options": options,
        }
        if schema is not None:
            body["format"] = dict(schema)
        body.update(settings.extra_body)
        return body

    def _error(self, status: int, text: str) -> ModelError:
        try:
            data = json.loads(text)
            message = str(data.get("error", text)) if isinstance(data, dict) else text
        except ValueError:
            message = text.strip() or f"HTTP {status}"
        url = f"{self.base_url}/{self.endpoint}"
        if status in (401, 403):
            error: ModelError = ModelAuthError(
                f"{url} refused the API key (HTTP {status}: {message}); set the key with "
                "--api-key or HARMONYGRAPH_API_KEY"
            )
        elif status == 404 and "model" in message.lower():
            error = ModelNotFoundError(
                f"{self.base_url} does not serve model {self.name!r} ({message}); pull it "
                f"with `ollama pull {self.name}`, or choose one with --model"
            )
        elif status == 404:
            error = ModelConnectionError(
                f"{url} does not exist (HTTP 404); is {self.base_url} an Ollama server? "
                "set its root URL (http://HOST:11434) with --base-url or HARMONYGRAPH_BASE_URL"
            )
        elif status >= 500 or status in RETRYABLE_STATUS:
            error = ModelError(f"{url} failed with HTTP {status}: {message}; check Ollama's log")
        else:
            error = ModelError(f"{url} rejected the request (HTTP {status}): {message}")
        return type(error)(redact_secrets(str(error), self.secrets))

    async def _send(self, body: dict[str, Any], settings: ModelSettings) -> httpx.Response:
        """POST with retries (429, 5xx, dropped connections); the response is open when
        streaming, and the caller closes it."""
        url = f"{self.root}/{self.endpoint}"
        attempt = 0
        while True:
            try:
                request = self._client().build_request(
                    "POST", url, json=body, timeout=settings.timeout
                )
                response = await self._client().send(request, stream=True)
            except httpx.TimeoutException as exc:
                if attempt < settings.max_retries:
                    attempt += 1
                    self.retries += 1
                    await asyncio.sleep(self.retry_policy.delay(attempt - 1, exc))
                    continue
                raise ModelTimeoutError(
                    f"{self.base_url}/{self.endpoint} did not answer within "
                    f"{settings.timeout:g} s for model {self.name!r}; raise "
                    "ModelSettings.timeout, or check that Ollama is healthy"
                ) from None
            except httpx.ConnectError as exc:
                raise ModelConnectionError(
                    f"could not connect to {self.base_url} ({exc}); is Ollama running there? "
                    "set its URL with --base-url or HARMONYGRAPH_BASE_URL "
                    f"(default {DEFAULT_OLLAMA_URL})"
                ) from None
            except httpx.TransportError as exc:
                if attempt < settings.max_retries:
                    attempt += 1
                    self.retries += 1
                    await asyncio.sleep(self.retry_policy.delay(attempt - 1, exc))
                    continue
                raise ModelConnectionError(
                    f"{self.base_url}/{self.endpoint}: the connection failed ({exc})"
                ) from None
            if response.status_code == 200:
                return response
            text = (await response.aread()).decode("utf-8", errors="replace")
            await response.aclose()
            retryable = response.status_code >= 500 or response.status_code in RETRYABLE_STATUS
            if retryable and attempt < settings.max_retries:
                attempt += 1
                self.retries += 1
                await asyncio.sleep(self.retry_policy.base_delay * (2 ** (attempt - 1)))
                continue
            raise self._error(response.status_code, text)

    async def _lines(self, response: httpx.Response) -> AsyncIterator[dict[str, Any]]:
        try:
            async for line in response.aiter_lines():
                if not line.strip():
                    continue
                try:
                    data = json.loads(line)
                except ValueError:
                    raise ModelError(
                        f"{self.base_url}/{self.endpoint} sent a line that is not JSON "
                        f"({line[:60]!r}); is it an Ollama server?"
                    ) from None
                if isinstance(data, dict) and data.get("error"):
                    raise ModelError(
                        f"{self.base_url}/{self.endpoint} failed mid-generation: {data['error']}"
                    )
                if isinstance(data, dict):
                    yield data
        except httpx.TransportError as exc:
            raise ModelConnectionError(
                f"{self.base_url}/{self.endpoint}: the connection dropped mid-answer ({exc})"
            ) from None

    async def _generate(self, body: dict[str, Any], settings: ModelSettings) -> _Generated:
        """One whole generation (the body's `stream` is forced off)."""
        response = await self._send({**body, "stream": False}, settings)
        try:
            raw = (await response.aread()).decode("utf-8", errors="replace")
        except httpx.TransportError as exc:
            raise ModelConnectionError(
                f"{self.base_url}/{self.endpoint}: the connection dropped mid-answer ({exc})"
            ) from None
        finally:
            await response.aclose()
        try:
            whole = json.loads(raw)
            parts = [whole] if isinstance(whole, dict) else []
        except ValueError:  # NDJSON after all (a proxy that streams regardless)
            parts = [json.loads(line) for line in raw.splitlines() if line.strip()]
        for part in parts:
            if part.get("error"):
                raise ModelError(f"{self.base_url}/{self.endpoint} failed: {part['error']}")
        last = parts[-1] if parts else {}
        return _Generated(
            "".join(str(p.get("response") or "") for p in parts),
            last.get("done_reason"),
            int(last.get("prompt_eval_count") or 0),
            int(last.get("eval_count") or 0),
        )

    def _usage(self, prompt: RenderedPrompt, prompt_eval: int, evaluated: int, text: str) -> Usage:
        cached = max(0, prompt.length - prompt_eval) if prompt_eval else 0
        output = evaluated or len(get_encoding().encode(text, allowed_special="all"))
        return Usage(prompt.length, output, cached, estimated=not evaluated)

    def _response(
        self,
        result: ParseResult,
        usage: Usage,
        *,
        raw: str,
        done_reason: str | None,
        latency: float,
        prompt: RenderedPrompt,
        constrained: bool = False,
    ) -> ModelResponse:
        return ModelResponse(
            messages=tuple(result.messages),
            usage=usage,
            raw=raw,
            finish_reason=done_reason,
            model=self.name,
            latency_s=latency,
            prompt_sha256=prompt.sha256,
            prompt_tokens=prompt.length,
            repairs=tuple(result.repairs),
            constrained=constrained,
        )

    def _constrains(self, request: ModelRequest) -> bool:
        enforce = self.enforce_output_schema or request.settings.enforce_output
        return enforce and request.developer.response_format is not None

    # -- the protocol ------------------------------------------------------------------
    async def complete(self, request: ModelRequest) -> ModelResponse:
        if self._constrains(request):
            return await self._complete_constrained(request)
        settings = self.settings_for(request)
        prompt = self.render(request)
        prompt_text = get_encoding().decode(prompt.tokens)
        started = time.perf_counter()
        gen = await self._generate(self.request_body(prompt_text, settings, stream=False), settings)
        text = complete_marker(gen.text, gen.done_reason)
        parser = StreamParser(tools=self.tool_names(request))
        parser.feed_text(text)
        return self._response(
            parser.finish(),
            self._usage(prompt, gen.prompt_eval, gen.evaluated, text),
            raw=text,
            done_reason=gen.done_reason,
            latency=time.perf_counter() - started,
            prompt=prompt,
        )

    async def _complete_constrained(self, request: ModelRequest) -> ModelResponse:
        settings = self.settings_for(request)
        fmt = request.developer.response_format
        assert fmt is not None
        prompt = self.render(request)
        prompt_text = get_encoding().decode(prompt.tokens)
        started = time.perf_counter()
        first = await self._generate(
            self.request_body(prompt_text, settings, stream=False, stop=list(FINAL_OPENINGS)),
            settings,
        )
        text, done_reason = first.text, first.done_reason
        prompt_eval, evaluated, constrained = first.prompt_eval, first.evaluated, False
        if _stopped_at_final_open(text, done_reason):
            head = text + FINAL_OPEN
            used = len(get_encoding().encode(head, allowed_special="all"))
            remaining = settings.max_tokens - used
            if remaining > 0:
                second = await self._generate(
                    self.request_body(
                        prompt_text + head,
                        settings,
                        stream=False,
                        max_tokens=remaining,
                        schema=fmt.schema,
                    ),
                    settings,
                )
                text, done_reason = head + second.text, second.done_reason
                evaluated += second.evaluated
                if done_reason == "stop" and not text.endswith("<|return|>"):
                    text += "<|return|>"  # the answer's own end; no recipient to call
                constrained = self.trust_format
            else:
                text, done_reason = head, "length"
        else:
            text = complete_marker(text, done_reason)
        result_parser = StreamParser(tools=self.tool_names(request))
        result_parser.feed_text(text)
        return self._response(
            result_parser.finish(),
            self._usage(prompt, prompt_eval, evaluated, text),
            raw=text,
            done_reason=done_reason,
            latency=time.perf_counter() - started,
            prompt=prompt,
            constrained=constrained,
        )

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamEvent]:
        if self._constrains(request):
            # The two requests are not streamed; their completion is replayed as events.
            response = await self._complete_constrained(request)
            async for event in replay_as_stream(response, self.tool_names(request)):
                yield event
            return
        settings = self.settings_for(request)
        prompt = self.render(request)
        prompt_text = get_encoding().decode(prompt.tokens)
        started = time.perf_counter()
        http = await self._send(self.request_body(prompt_text, settings, stream=True), settings)
        parser = StreamParser(tools=self.tool_names(request))
        pieces: list[str] = []
        last: dict[str, Any] = {}
        try:
            async for data in self._lines(http):
                piece = str(data.get("response") or "")
                if piece:
                    pieces.append(piece)
                    for event in parser.feed_text(piece):
                        yield event
                if data.get("done"):
                    last = data
                    break
        finally:
            await http.aclose()  # Ollama stops generating when the client goes away
        text = "".join(pieces)
        done_reason = last.get("done_reason")
        fixed = complete_marker(text, done_reason)
        if len(fixed) > len(text):
            for event in parser.feed_text(fixed[len(text) :]):
                yield event
        events, result = parser.finish_events()
        for event in events:
            yield event
        usage = self._usage(
            prompt,
            int(last.get("prompt_eval_count") or 0),
            int(last.get("eval_count") or 0),
            fixed,
        )
        yield ResponseDone(
            self._response(
                result,
                usage,
                raw=fixed,
                done_reason=done_reason,
                latency=time.perf_counter() - started,
                prompt=prompt,
            )
        )

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def __aenter__(self) -> OllamaRawModel:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- sync wrappers: each runs on a private loop with an HTTP client of its own ------
    async def _fresh(self, request: ModelRequest, streaming: bool) -> AsyncIterator[Any]:
        original, self._http = self._http, None
        try:
            if streaming:
                async for event in self.stream(request):
                    yield event
            else:
                yield await self.complete(request)
        finally:
            await self.aclose()
            self._http = original

    def complete_sync(self, request: ModelRequest) -> ModelResponse:
        async def one() -> ModelResponse:
            out = [r async for r in self._fresh(request, False)]
            response: ModelResponse = out[0]
            return response

        result: ModelResponse = run_sync(one())
        return result

    def stream_sync(self, request: ModelRequest) -> Iterator[StreamEvent]:
        return iterate_sync(self._fresh(request, True))

    def __repr__(self) -> str:
        return f"OllamaRawModel(model={self.name!r}, base_url={self.base_url!r})"
