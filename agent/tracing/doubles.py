"""Test doubles for agents built on harmonygraph: a scripted model and a fake server.

Both are scripted with harmony completions: the text a gpt-oss server would return
after the prompt's `<|start|>assistant`, special tokens written out, e.g.

    "<|channel|>analysis<|message|>Need weather.<|end|><|start|>assistant"
    "<|channel|>commentary to=functions.get_weather <|constrain|>json"
    '<|message|>{"city":"Paris"}<|call|>'

or by a callable that returns one per request.

- `ScriptedModel` implements the `Model` protocol in process, for fast agent tests.
- `FakeOpenAIServer` is a real HTTP server on 127.0.0.1 answering `/v1/models`,
  `/v1/completions` and `/v1/chat/completions` (streaming and not) the way vLLM serving
  gpt-oss does, so the real `openai` client and our model clients run over real HTTP.

What `FakeOpenAIServer` emulates, and from where (vLLM's `vllm/entrypoints/openai/`):

- `/v1/completions`: a prompt of token ids (or text); `max_tokens` defaults to 16;
  generation stops at gpt-oss's EOS ids (`<|return|>` 200002, `<|endoftext|>` 199999,
  `<|call|>` 200012, from its generation_config) and at `stop_token_ids`;
  `finish_reason` "stop" or "length"; `stop_reason` is the stop token's id, except for
  the tokenizer's EOS `<|return|>`, which vLLM checks first and reports as null; the
  token that stopped generation is left out of the text unless
  `include_stop_str_in_output` (vLLM's detokenizer); special tokens are left out of
  the text unless `skip_special_tokens` is false; `return_token_ids` adds `token_ids`
  (stop token included) and `prompt_token_ids` to the choice (PR #22587; streamed:
  `token_ids` per chunk, `prompt_token_ids` on the first); usage with
  `prompt_tokens = len(prompt ids)`, streamed only with `stream_options.include_usage`,
  as a last chunk with no choices.
- `/v1/chat/completions` (gpt-oss's harmony path): analysis text as `reasoning`
  (`reasoning_content` with `reasoning_field="reasoning_content"`, as vLLM before
  PR #27752), final and preamble text as `content`, calls as `tool_calls` with
  `chatcmpl-tool-...` ids and `finish_reason` "tool_calls"; streamed as deltas: the
  role first, then reasoning, content and tool-call pieces (id and name first,
  arguments after). The request's messages are turned back into harmony messages as
  vLLM does (PR #28729: an assistant message's `reasoning` becomes an analysis message
  before its tool calls, a tool message is named after the call its `tool_call_id`
  answers) and kept in `chat_conversations` for tests to inspect.
- errors: a wrong API key gives 401 `{"error": "Unauthorized"}` (vLLM's `--api-key`
  check); an unknown model 404 `{"error": {"message": "The model `x` does not exist.",
  "type": "NotFoundError", "param": null, "code": 404}}`; an unknown path FastAPI's
  404 `{"detail": "Not Found"}`.

- strictness (vLLM's request models, `vllm/entrypoints/openai/protocol.py`): vLLM
  rejects `stream_options` without `stream: true` with a 400 and *ignores* every field
  its request model does not know, logging only "The following fields were present in
  the request but ignored". The fake answers the same way and lists each such field in
  `ignored_fields`, so a test can assert that its client sent nothing a vLLM would drop
  in silence. Which fields are known depends on `vllm_version`: `structured_outputs`
  and `return_token_ids` since 0.10.2; the `guided_*` fields until 0.12 (removed then).
- `stop` strings are honoured (matched in the detokenized text, as vLLM's detokenizer
  does, so `<|channel|>final<|message|>` only matches with `skip_special_tokens: false`):
  generation ends there with `finish_reason` "stop" and `stop_reason` the string, which
  stays in the text only with `include_stop_str_in_output`.
- structured outputs are applied only under a name the configured version accepts
  (`structured_outputs: {json|regex|choice|json_object|grammar}`, `guided_json`... before
  0.12, `response_format` always); each applied constraint is kept in `constraints`.
  The fake cannot sample under a grammar, so it checks the scripted completion instead
  (the whole text on `/v1/completions`, the final answer on chat): one that a server
  applying the constraint could not have produced is answered with a 400 that says so.
- `/version` answers `{"version": vllm_version}`, as vLLM does.
- errors mid-stream (`fail_stream_after`): the stream stops after some chunks with an
  SSE event `data: {"error": {...}}` and `data: [DONE]`, as vLLM's
  `create_streaming_error_response` sends them (type "BadRequestError", code 400 unless
  told otherwise), on an HTTP 200 that has already started.
- `delta_tokens=n`: chat stream deltas are built per n sampled tokens, as vLLM's harmony
  streaming does when a step yields several tokens, so one delta may carry reasoning,
  content and tool-call pieces together; by default each delta carries one kind.

Knobs: `fail_next(n, status)` (429/500... for retries), `fail_stream_after(chunks)`,
`api_key`, `models`, `delay`, `vllm_version`, `reasoning_field`, `delta_tokens`, `port`.
"""

from __future__ import annotations

import asyncio
import codecs
import json
import re
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from harmonygraph.concurrency import iterate_sync, run_sync
from harmonygraph.harmony import Message, Role, StreamParser, parse_completion_text
from harmonygraph.harmony.encoding import CALL, RETURN, get_encoding
from harmonygraph.harmony.parser import ContentDelta, HeaderDone
from harmonygraph.harmony.prompt import DeveloperConfig, SystemConfig
from harmonygraph.models.base import (
    ModelError,
    ModelRequest,
    ModelResponse,
    ResponseDone,
    StreamEvent,
    Usage,
)

__all__ = [
    "DEFAULT_VLLM_VERSION",
    "AppliedConstraint",
    "FakeOpenAIServer",
    "RecordedRequest",
    "ScriptExhaustedError",
    "ScriptedModel",
    "version_tuple",
    "vllm_accepted_fields",
]

# gpt-oss's generation_config eos_token_id: generation stops at any of these.
GPT_OSS_EOS_IDS = (RETURN, 199999, CALL)

# The vLLM the fake answers as by default: structured outputs under `structured_outputs`
# only (the `guided_*` fields were removed in 0.12).
DEFAULT_VLLM_VERSION = "0.12.0"

# The request fields vLLM's request models know (vllm/entrypoints/openai/protocol.py);
# anything else is ignored with a log line. Version-dependent ones are added below.
_SAMPLING_FIELDS = frozenset(
    {
        "model", "echo", "frequency_penalty", "logit_bias", "logprobs", "max_tokens", "n",
        "presence_penalty", "seed", "stop", "stream", "stream_options", "temperature", "top_p",
        "user", "use_beam_search", "top_k", "min_p", "repetition_penalty", "length_penalty",
        "stop_token_ids", "include_stop_str_in_output", "ignore_eos", "min_tokens",
        "skip_special_tokens", "spaces_between_special_tokens", "truncate_prompt_tokens",
        "allowed_token_ids", "prompt_logprobs", "add_special_tokens", "response_format",
        "priority", "request_id", "logits_processors", "return_tokens_as_token_ids",
        "cache_salt", "kv_transfer_params", "vllm_xargs", "bad_words",
    }
)  # fmt: skip
_COMPLETION_FIELDS = _SAMPLING_FIELDS | {"prompt", "suffix", "prompt_embeds"}
_CHAT_FIELDS = _SAMPLING_FIELDS | {
    "messages", "top_logprobs", "max_completion_tokens", "tools", "tool_choice",
    "reasoning_effort", "include_reasoning", "parallel_tool_calls", "add_generation_prompt",
    "continue_final_message", "documents", "chat_template", "chat_template_kwargs",
    "mm_processor_kwargs",
}  # fmt: skip
_GUIDED_FIELDS = frozenset(
    {"guided_json", "guided_regex", "guided_choice", "guided_grammar",
     "guided_decoding_backend", "guided_whitespace_pattern"}
)  # fmt: skip
_STRUCTURED_OUTPUTS_SINCE = (0, 10, 2)  # vLLM PR #22772; return_token_ids too (PR #22587)
_GUIDED_UNTIL = (0, 12, 0)  # the guided_* fields are removed from this version on


def version_tuple(version: str) -> tuple[int, ...]:
    """`"0.10.2"` → `(0, 10, 2)`; suffixes such as `rc1` or `+cu128` are dropped."""
    parts: list[int] = []
    for piece in version.split("+", 1)[0].split("."):
        digits = ""
        for ch in piece:
            if not ch.isdigit():
                break
            digits += ch
        if not digits:
            break
        parts.append(int(digits))
    if not parts:
        raise ValueError(f"not a version: {version!r} (expected e.g. '0.10.2')")
    return tuple(parts)


def vllm_accepted_fields(path: str, version: str) -> frozenset[str]:
    """The request fields a vLLM `version` knows on `path`; it ignores the others."""
    base = _CHAT_FIELDS if path.endswith("/chat/completions") else _COMPLETION_FIELDS
    v = version_tuple(version)
    extra: set[str] = set()
    if v >= _STRUCTURED_OUTPUTS_SINCE:
        extra |= {"structured_outputs", "return_token_ids"}
    if v < _GUIDED_UNTIL:
        extra |= _GUIDED_FIELDS
    return frozenset(base | extra)


@dataclass(frozen=True)
class AppliedConstraint:
    """A structured-output constraint the fake applied: where, under which field, what."""

    path: str
    field: str  # "structured_outputs", "guided_json", "response_format", ...
    kind: str  # "json", "json_object", "regex", "choice", "grammar"
    spec: Any


@dataclass
class _StreamFailure:
    after_chunks: int
    message: str
    kind: str
    code: int


class ScriptExhaustedError(ModelError):
    """A scripted double was asked for more completions than it was given."""


class _Script:
    """Completions handed out in order (thread-safe), or made by a callable."""

    def __init__(self, script: Sequence[str] | Callable[[Any], str], owner: str) -> None:
        self._lock = threading.Lock()
        self._owner = owner
        self._callable = script if callable(script) else None
        self._items: list[str] = [] if callable(script) else list(script)
        self.used = 0

    def next(self, request: Any) -> str:
        with self._lock:
            index = self.used
            self.used += 1
            if self._callable is not None:
                text = self._callable(request)
                if not isinstance(text, str):
                    raise TypeError(
                        f"{self._owner}'s script returned {type(text).__name__}, not str"
                    )
                return text
            if index >= len(self._items):
                raise ScriptExhaustedError(
                    f"{self._owner} was asked for completion #{index + 1} but was given "
                    f"{len(self._items)}; add completions to its script or pass a callable"
                )
            return self._items[index]

    def add(self, *completions: str) -> None:
        with self._lock:
            if self._callable is not None:
                raise TypeError(f"{self._owner} is scripted by a callable; it takes no list items")
            self._items.extend(completions)

    @property
    def remaining(self) -> int | None:
        return None if self._callable is not None else len(self._items) - self.used


# -- ScriptedModel ------------------------------------------------------------------


class ScriptedModel:
    """A `Model` that returns scripted harmony completions in order, parsed by the codec.

    It records each `ModelRequest` in `requests`. With `count_tokens` (the default) the
    usage is real: the rendered prompt's length (incremental, as in
    `HarmonyCompletionsModel`) and the completion's token count; turn it off when
    measuring the agent loop's own overhead.
    """

    def __init__(
        self,
        completions: Sequence[str] | Callable[[ModelRequest], str],
        *,
        name: str = "scripted",
        count_tokens: bool = True,
        chunk_chars: int = 16,
    ) -> None:
        self.name = name
        self.requests: list[ModelRequest] = []
        self.count_tokens = count_tokens
        self.chunk_chars = max(1, chunk_chars)
        self._script = _Script(completions, f"ScriptedModel {name!r}")
        self._renderers: Any = None
        self.closed = False

    def add(self, *completions: str) -> None:
        """Append completions to the script."""
        self._script.add(*completions)

    @property
    def remaining(self) -> int | None:
        return self._script.remaining

    def _usage(self, request: ModelRequest, text: str) -> tuple[Usage, str, int]:
        if not self.count_tokens:
            return Usage(), "", 0
        if self._renderers is None:
            from harmonygraph.models.completions import RendererCache

            self._renderers = RendererCache()
        prompt = self._renderers.get(request.system, request.developer).render(request.messages)
        output = len(get_encoding().encode(text, allowed_special="all"))
        return Usage(prompt.length, output), prompt.sha256, prompt.length

    def _response(
        self, request: ModelRequest, text: str, messages: list[Message], t0: float
    ) -> ModelResponse:
        usage, sha, length = self._usage(request, text)
        last = messages[-1] if messages else None
        finish = "length" if last is not None and last.stop is None else "stop"
        return ModelResponse(
            messages=tuple(messages),
            usage=usage,
            raw=text,
            finish_reason=finish,
            model=self.name,
            latency_s=time.perf_counter() - t0,
            prompt_sha256=sha,
            prompt_tokens=length,
        )

    async def complete(self, request: ModelRequest) -> ModelResponse:
        t0 = time.perf_counter()
        self.requests.append(request)
        text = self._script.next(request)
        result = parse_completion_text(text)
        return self._response(request, text, result.messages, t0)

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamEvent]:
        t0 = time.perf_counter()
        self.requests.append(request)
        text = self._script.next(request)
        parser = StreamParser()
        step = self.chunk_chars
        for i in range(0, len(text), step):
            for event in parser.feed_text(text[i : i + step]):
                yield event
            await asyncio.sleep(0)  # a real stream yields to the loop between chunks
        events, result = parser.finish_events()
        for event in events:
            yield event
        yield ResponseDone(self._response(request, text, result.messages, t0))

    async def aclose(self) -> None:
        self.closed = True

    def complete_sync(self, request: ModelRequest) -> ModelResponse:
        response: ModelResponse = run_sync(self.complete(request))
        return response

    def stream_sync(self, request: ModelRequest) -> Iterator[StreamEvent]:
        return iterate_sync(self.stream(request))


# -- FakeOpenAIServer -----------------------------------------------------------------


@dataclass(frozen=True)
class RecordedRequest:
    """One request the fake server received; also readable as a dict (`r["body"]`)."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any

    def __getitem__(self, key: str) -> Any:
        if key not in ("method", "path", "headers", "body"):
            raise KeyError(key)
        return getattr(self, key)


class _HTTPError(Exception):
    def __init__(self, status: int, body: Any) -> None:
        super().__init__(status)
        self.status = status
        self.body = body


def _error_body(message: str, kind: str, status: int, param: str | None = None) -> dict[str, Any]:
    # vLLM >= 0.10's ErrorResponse: {"error": {message, type, param, code}}.
    return {"error": {"message": message, "type": kind, "param": param, "code": status}}


def _stop_strings(stop: Any) -> list[str]:
    if isinstance(stop, str):
        return [stop] if stop else []
    if isinstance(stop, list):
        return [s for s in stop if isinstance(s, str) and s]
    return []


def _first_stop(text: str, stops: Sequence[str], new_from: int) -> tuple[int, str] | None:
    """The earliest stop string in `text` that ends after `new_from`: (index, string)."""
    best: tuple[int, str] | None = None
    for stop in stops:
        at = text.find(stop, max(0, new_from - len(stop) + 1))
        if at != -1 and (best is None or at < best[0]):
            best = (at, stop)
    return best


def _trim_pieces(pieces: list[bytes], text: str) -> list[bytes]:
    """Per-token text pieces cut so that they join to `text` (a prefix of their join)."""
    budget = len(text.encode("utf-8"))
    out: list[bytes] = []
    for piece in pieces:
        take = piece[: max(0, budget)]
        budget -= len(take)
        out.append(take)
    return out


@dataclass
class _Generated:
    """One scripted completion as a server would sample it."""

    token_ids: list[int]  # as sampled, the stop token included
    text_token_ids: list[int]  # what goes into `text`
    finish_reason: str
    stop_reason: int | str | None
    text: str = ""
    messages: list[Message] = field(default_factory=list)
    # A `stop` string ended generation: the detokenized text up to it (or through it,
    # with include_stop_str_in_output) and how many characters of the last token's
    # text lie beyond that cut.
    cut_text: str | None = None
    excess_chars: int = 0


class FakeOpenAIServer:
    """A vLLM-like OpenAI-compatible server on 127.0.0.1, scripted with harmony completions.

    >>> with FakeOpenAIServer(["<|channel|>final<|message|>Hi<|return|>"]) as server:
    ...     model = HarmonyCompletionsModel(base_url=server.base_url)

    `vllm_version` picks the request fields it knows (see the module docstring);
    `port=0` (the default) takes a free port, read back from `port` / `base_url`.
    After a run, `ignored_fields` lists every request field a real vLLM of that version
    would have ignored, and `constraints` every structured-output constraint applied.
    """

    def __init__(
        self,
        completions: Sequence[str] | Callable[[dict[str, Any]], str] = (),
        *,
        models: Sequence[str] = ("openai/gpt-oss-20b",),
        api_key: str | None = None,
        reasoning_field: str = "reasoning",
        delay: float = 0.0,
        chunk_tokens: int = 3,
        chunk_chars: int = 12,
        vllm_version: str = DEFAULT_VLLM_VERSION,
        delta_tokens: int | None = None,
        port: int = 0,
    ) -> None:
        version_tuple(vllm_version)  # a bad version fails here, not on the first request
        if reasoning_field not in ("reasoning", "reasoning_content"):
            raise ValueError(
                f"reasoning_field must be 'reasoning' (vLLM since PR #27752) or "
                f"'reasoning_content' (before it), not {reasoning_field!r}"
            )
        if delta_tokens is not None and delta_tokens < 1:
            raise ValueError(f"delta_tokens must be at least 1 (or None), not {delta_tokens}")
        self.models = list(models)
        self.api_key = api_key
        self.reasoning_field = reasoning_field
        self.delay = delay
        self.chunk_tokens = max(1, chunk_tokens)
        self.chunk_chars = max(1, chunk_chars)
        self.vllm_version = vllm_version
        self.delta_tokens = delta_tokens
        self.requests: list[RecordedRequest] = []
        self.chat_conversations: list[list[Message]] = []
        # Fields a vLLM of `vllm_version` would have ignored, one entry per request and field.
        self.ignored_fields: list[str] = []
        self.constraints: list[AppliedConstraint] = []
        self._script = _Script(completions, "FakeOpenAIServer")
        self._failures: list[int] = []
        self._stream_failures: list[_StreamFailure] = []
        self._port = port
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------
    def start(self) -> FakeOpenAIServer:
        if self._httpd is not None:
            return self
        handler = type("_Handler", (_Handler,), {"fake": self})
        httpd = _ListeningServer(("127.0.0.1", self._port), handler)
        httpd.daemon_threads = True
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is None:
            return
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = None
        self._thread = None

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("the fake server is not started; use it as a context manager")
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    # -- knobs -----------------------------------------------------------------
    def add(self, *completions: str) -> None:
        self._script.add(*completions)

    def fail_next(self, n: int = 1, status: int = 500) -> None:
        """Answer the next `n` generation requests with `status` (429, 500, 503, ...)."""
        with self._lock:
            self._failures.extend([status] * n)

    def fail_stream_after(
        self,
        chunks: int = 1,
        message: str = "the engine failed while generating (injected)",
        *,
        kind: str = "BadRequestError",
        code: int = 400,
    ) -> None:
        """End the next streamed generation after `chunks` chunks with an error event.

        vLLM sends it as `data: {"error": {"message", "type", "param", "code"}}` and then
        `data: [DONE]`, on a response whose status (200) has already been sent.
        """
        if chunks < 0:
            raise ValueError(f"chunks must be 0 or more, not {chunks}")
        with self._lock:
            self._stream_failures.append(_StreamFailure(chunks, message, kind, code))

    def bodies(self, path: str) -> list[Any]:
        """The JSON bodies received on `path` (e.g. "/v1/completions"), in order."""
        return [r.body for r in self.requests if r.path == path]

    # -- request handling (called on the handler's thread) -----------------------
    def _take_failure(self) -> int | None:
        with self._lock:
            return self._failures.pop(0) if self._failures else None

    def _take_stream_failure(self) -> _StreamFailure | None:
        with self._lock:
            return self._stream_failures.pop(0) if self._stream_failures else None

    def _check_request(self, path: str, body: dict[str, Any]) -> None:
        """vLLM's request validation: unknown fields ignored (and listed), strict checks 400."""
        accepted = vllm_accepted_fields(path, self.vllm_version)
        ignored = [k for k in body if k not in accepted]
        if ignored:
            with self._lock:
                self.ignored_fields.extend(ignored)
        if body.get("stream_options") and not body.get("stream"):
            raise _HTTPError(
                400,
                _error_body(
                    "Stream options can only be defined when `stream=True`.",
                    "BadRequestError",
                    400,
                    "stream_options",
                ),
            )

    def _constraint(self, path: str, body: dict[str, Any]) -> AppliedConstraint | None:
        """The structured-output constraint this vLLM version would apply, if any."""
        accepted = vllm_accepted_fields(path, self.vllm_version)
        found: list[AppliedConstraint] = []
        so = body.get("structured_outputs")
        if "structured_outputs" in accepted and isinstance(so, dict):
            for kind in ("json", "regex", "choice", "grammar", "json_object"):
                if so.get(kind) not in (None, False):
                    spec = so[kind]
                    if kind == "json" and isinstance(spec, str):
                        spec = json.loads(spec)
                    found.append(AppliedConstraint(path, "structured_outputs", kind, spec))
        for name, kind in (
            ("guided_json", "json"),
            ("guided_regex", "regex"),
            ("guided_choice", "choice"),
            ("guided_grammar", "grammar"),
        ):
            if name in accepted and body.get(name) is not None:
                spec = body[name]
                if kind == "json" and isinstance(spec, str):
                    spec = json.loads(spec)
                found.append(AppliedConstraint(path, name, kind, spec))
        fmt = body.get("response_format")
        if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
            schema = (fmt.get("json_schema") or {}).get("schema")
            found.append(AppliedConstraint(path, "response_format", "json", schema))
        elif isinstance(fmt, dict) and fmt.get("type") == "json_object":
            found.append(AppliedConstraint(path, "response_format", "json_object", True))
        if len(found) > 1:
            names = ", ".join(f"{c.field}.{c.kind}" for c in found)
            raise _HTTPError(
                400,
                _error_body(
                    "You can only use one kind of structured outputs constraint but multiple "
                    f"are specified: {names}",
                    "BadRequestError",
                    400,
                ),
            )
        if found:
            with self._lock:
                self.constraints.append(found[0])
            return found[0]
        return None

    @staticmethod
    def _check_constrained(constraint: AppliedConstraint, text: str, where: str) -> None:
        """A scripted text a server applying `constraint` could not have produced: a 400."""
        problem: str | None = None
        if constraint.kind in ("json", "json_object"):
            try:
                value = json.loads(text)
            except ValueError as exc:
                problem = f"it is not JSON ({exc})"
            else:
                if constraint.kind == "json_object" and not isinstance(value, dict):
                    problem = "it is not a JSON object"
                elif constraint.kind == "json" and isinstance(constraint.spec, dict):
                    import jsonschema

                    errors = list(
                        jsonschema.Draft202012Validator(constraint.spec).iter_errors(value)
                    )
                    if errors:
                        problem = f"it breaks the schema: {errors[0].message}"
        elif constraint.kind == "regex":
            if re.fullmatch(str(constraint.spec), text) is None:
                problem = f"it does not match the regex {constraint.spec!r}"
        elif constraint.kind == "choice":
            if text not in list(constraint.spec):
                problem = f"it is not one of {list(constraint.spec)!r}"
        if problem is not None:
            raise _HTTPError(
                400,
                _error_body(
                    f"FakeOpenAIServer: the scripted {where} {text[:80]!r} could not come from a "
                    f"server applying {constraint.field} ({constraint.kind}): {problem}. Script "
                    "a completion that satisfies the constraint, or leave the constraint out",
                    "BadRequestError",
                    400,
                    constraint.field,
                ),
            )

    def _check_model(self, body: dict[str, Any]) -> str:
        name = body.get("model") or self.models[0]
        if name not in self.models:
            raise _HTTPError(
                404, _error_body(f"The model `{name}` does not exist.", "NotFoundError", 404)
            )
        return str(name)

    def _generate(
        self, body: dict[str, Any], max_tokens: int, extra_stops: Sequence[int]
    ) -> _Generated:
        try:
            text = self._script.next(body)
        except ScriptExhaustedError as exc:
            raise _HTTPError(400, _error_body(str(exc), "BadRequestError", 400)) from None
        enc = get_encoding()
        ids = enc.encode(text, allowed_special="all")
        stops = set(GPT_OSS_EOS_IDS) | set(extra_stops)
        stop_strings = _stop_strings(body.get("stop"))
        skip_special = body.get("skip_special_tokens", True) is not False
        include_stop = bool(body.get("include_stop_str_in_output", False))
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        seen = ""  # the detokenized text so far, as vLLM's stop-string check sees it
        out: list[int] = []
        finish, stop_reason, stopped_by_token = "length", None, False
        stop_reason_text: str | None = None
        cut: tuple[str, int] | None = None
        for tok in ids:
            if len(out) >= max_tokens:
                break
            out.append(tok)
            if tok in stops:
                finish, stopped_by_token = "stop", True
                # vLLM checks the tokenizer's EOS first and gives it no stop_reason.
                stop_reason = None if tok == RETURN else tok
                break
            if stop_strings:
                start = len(seen)
                if not (skip_special and enc.is_special_token(tok)):
                    seen += decoder.decode(bytes(enc._inner.decode_bytes([tok])))
                hit = _first_stop(seen, stop_strings, start)
                if hit is not None:
                    at, matched = hit
                    end = at + len(matched) if include_stop else at
                    finish, stop_reason_text, cut = "stop", matched, (seen[:end], len(seen) - end)
                    break
        # A script that ends without a stop token ran out of tokens: gpt-oss always ends
        # a turn with <|return|> or <|call|>, so anything else was cut.
        text_ids = out[:-1] if stopped_by_token and not include_stop else list(out)
        gen = _Generated(out, text_ids, finish, stop_reason)
        if cut is not None:
            gen.stop_reason = stop_reason_text
            gen.cut_text, gen.excess_chars = cut
        return gen

    @staticmethod
    def _token_text(ids: Sequence[int], skip_special: bool) -> list[bytes]:
        enc = get_encoding()
        pieces = []
        for tok in ids:
            if skip_special and enc.is_special_token(tok):
                pieces.append(b"")
            else:
                pieces.append(bytes(enc._inner.decode_bytes([tok])))
        return pieces

    # /v1/completions
    def completions(
        self, body: dict[str, Any]
    ) -> tuple[dict[str, Any] | None, Iterator[dict[str, Any]] | None]:
        model = self._check_model(body)
        enc = get_encoding()
        prompt = body.get("prompt")
        if isinstance(prompt, list) and prompt and isinstance(prompt[0], list):
            prompt = prompt[0]
        if isinstance(prompt, list) and prompt and isinstance(prompt[0], str):
            prompt = prompt[0]
        if isinstance(prompt, str):
            prompt_ids = enc.encode(prompt, allowed_special="all")
        elif isinstance(prompt, list) and all(isinstance(t, int) for t in prompt) and prompt:
            prompt_ids = list(prompt)
        else:
            raise _HTTPError(
                400, _error_body("please provide at least one prompt", "BadRequestError", 400)
            )
        max_tokens = body.get("max_tokens")
        constraint = self._constraint("/v1/completions", body)
        gen = self._generate(
            body, 16 if max_tokens is None else int(max_tokens), body.get("stop_token_ids") or ()
        )
        skip_special = body.get("skip_special_tokens", True) is not False
        with_ids = (
            bool(body.get("return_token_ids"))
            and version_tuple(self.vllm_version) >= _STRUCTURED_OUTPUTS_SINCE
        )
        if constraint is not None:
            # A grammar covers every sampled token: the text without special tokens.
            plain = b"".join(self._token_text(gen.text_token_ids, True)).decode(
                "utf-8", errors="replace"
            )
            self._check_constrained(constraint, plain, "completion")
        usage = {
            "prompt_tokens": len(prompt_ids),
            "completion_tokens": len(gen.token_ids),
            "total_tokens": len(prompt_ids) + len(gen.token_ids),
            "prompt_tokens_details": None,
        }
        cid, created = f"cmpl-{uuid.uuid4().hex}", int(time.time())
        pieces = self._token_text(gen.text_token_ids, skip_special)
        if gen.cut_text is not None:
            pieces = _trim_pieces(pieces, gen.cut_text)
        if not body.get("stream"):
            choice: dict[str, Any] = {
                "index": 0,
                "text": b"".join(pieces).decode("utf-8", errors="replace"),
                "logprobs": None,
                "finish_reason": gen.finish_reason,
                "stop_reason": gen.stop_reason,
                "prompt_logprobs": None,
            }
            if with_ids:
                choice["token_ids"] = gen.token_ids
                choice["prompt_token_ids"] = prompt_ids
            return {
                "id": cid,
                "object": "text_completion",
                "created": created,
                "model": model,
                "choices": [choice],
                "usage": usage,
            }, None

        def chunks() -> Iterator[dict[str, Any]]:
            decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
            n = self.chunk_tokens
            total = len(gen.token_ids)
            for start in range(0, max(total, 1), n):
                ids = gen.token_ids[start : start + n]
                text = decoder.decode(b"".join(pieces[start : start + n]), final=start + n >= total)
                last = start + n >= total
                choice: dict[str, Any] = {
                    "index": 0,
                    "text": text,
                    "logprobs": None,
                    "finish_reason": gen.finish_reason if last else None,
                    "stop_reason": gen.stop_reason if last else None,
                }
                if with_ids:
                    choice["token_ids"] = ids
                    if start == 0:
                        choice["prompt_token_ids"] = prompt_ids
                yield {
                    "id": cid,
                    "object": "text_completion",
                    "created": created,
                    "model": model,
                    "choices": [choice],
                }
            if (body.get("stream_options") or {}).get("include_usage"):
                yield {
                    "id": cid,
                    "object": "text_completion",
                    "created": created,
                    "model": model,
                    "choices": [],
                    "usage": usage,
                }

        return None, chunks()

    # /v1/chat/completions
    def _chat_to_harmony(self, body: dict[str, Any]) -> tuple[list[Message], str | None]:
        """The request's messages as vLLM's gpt-oss path turns them into harmony."""
        out: list[Message] = []
        instructions: list[str] = []
        calls: dict[str, str] = {}
        for i, m in enumerate(body.get("messages") or []):
            role = m.get("role")
            content = m.get("content")
            if isinstance(content, list):
                content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
            content = content or ""
            if role in ("system", "developer"):
                instructions.append(content)
            elif role == "user":
                out.append(Message.user(content))
            elif role == "assistant":
                reasoning = m.get("reasoning") or m.get("reasoning_content")
                if reasoning:
                    out.append(Message(Role.ASSISTANT, reasoning, channel="analysis"))
                tool_calls = m.get("tool_calls") or []
                if content:
                    channel = "commentary" if tool_calls else "final"
                    out.append(Message(Role.ASSISTANT, content, channel=channel))
                for call in tool_calls:
                    fn = call.get("function") or {}
                    calls[call.get("id", "")] = fn.get("name", "")
                    out.append(
                        Message(
                            Role.ASSISTANT,
                            fn.get("arguments") or "",
                            channel="commentary",
                            recipient=f"functions.{fn.get('name', '')}",
                            content_type="<|constrain|>json",
                        )
                    )
            elif role == "tool":
                call_id = m.get("tool_call_id")
                if call_id not in calls:
                    raise _HTTPError(
                        400,
                        _error_body(
                            f"messages[{i}]: tool_call_id {call_id!r} matches no assistant tool call",
                            "BadRequestError",
                            400,
                            "messages",
                        ),
                    )
                out.append(Message.tool_result(f"functions.{calls[call_id]}", content))
            else:
                raise _HTTPError(
                    400,
                    _error_body(f"messages[{i}]: unknown role {role!r}", "BadRequestError", 400),
                )
        return out, "\n".join(instructions) or None

    def chat(
        self, body: dict[str, Any]
    ) -> tuple[dict[str, Any] | None, Iterator[dict[str, Any]] | None]:
        model = self._check_model(body)
        effort = body.get("reasoning_effort")
        if effort is not None and effort not in ("low", "medium", "high"):
            raise _HTTPError(
                400,
                _error_body(
                    f"reasoning_effort must be 'low', 'medium' or 'high', not {effort!r}",
                    "BadRequestError",
                    400,
                    "reasoning_effort",
                ),
            )
        conversation, instructions = self._chat_to_harmony(body)
        with self._lock:
            self.chat_conversations.append(conversation)
        prompt_tokens = self._chat_prompt_tokens(
            body, conversation, instructions, effort or "medium"
        )
        max_tokens = body.get("max_completion_tokens") or body.get("max_tokens") or 1 << 30
        constraint = self._constraint("/v1/chat/completions", body)
        gen = self._generate(body, int(max_tokens), body.get("stop_token_ids") or ())
        enc = get_encoding()
        messages = parse_completion_text(enc.decode(gen.token_ids)).messages
        if gen.cut_text is not None and gen.excess_chars and messages:
            # A stop string ended the turn inside the last token's text: cut it there.
            last = messages[-1]
            kept = last.content[: max(0, len(last.content) - gen.excess_chars)]
            messages[-1] = Message(
                last.role, kept, last.channel, last.recipient, last.content_type, stop=last.stop
            )
        if constraint is not None:
            # gpt-oss's reasoning parser lets the grammar start at the final answer.
            for m in messages:
                if m.is_final:
                    self._check_constrained(constraint, m.content, "final answer")
        reasoning = "\n".join(m.content for m in messages if m.is_reasoning) or None
        content = (
            "".join(m.content for m in messages if m.is_final or m.is_preamble or m.channel is None)
            or None
        )
        tool_calls: list[dict[str, Any]] = [
            {
                "id": f"chatcmpl-tool-{uuid.uuid4().hex}",
                "type": "function",
                "function": {
                    "name": (m.recipient or "").removeprefix("functions."),
                    "arguments": m.content,
                },
            }
            for m in messages
            if m.is_tool_call
        ]
        finish = "tool_calls" if tool_calls else gen.finish_reason
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": len(gen.token_ids),
            "total_tokens": prompt_tokens + len(gen.token_ids),
            "prompt_tokens_details": None,
        }
        cid, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        if not body.get("stream"):
            message = {
                "role": "assistant",
                "content": content,
                "refusal": None,
                "annotations": None,
                "audio": None,
                "function_call": None,
                "tool_calls": tool_calls,
                self.reasoning_field: reasoning,
            }
            return {
                "id": cid,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": message,
                        "logprobs": None,
                        "finish_reason": finish,
                        "stop_reason": gen.stop_reason,
                    }
                ],
                "usage": usage,
            }, None

        def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
            return {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [
                    {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
                ],
            }

        def pieces(text: str) -> Iterator[str]:
            for i in range(0, len(text), self.chunk_chars):
                yield text[i : i + self.chunk_chars]

        def grouped() -> Iterator[dict[str, Any]]:
            # One delta per `delta_tokens` sampled tokens, whatever channels they span.
            parser = StreamParser()
            calls: dict[int, int] = {}  # message index -> tool-call index
            size = self.delta_tokens or 1
            budget = {i: len(m.content) for i, m in enumerate(messages)}
            for start in range(0, len(gen.token_ids), size):
                delta: dict[str, Any] = {}
                for event in parser.feed_tokens(gen.token_ids[start : start + size]):
                    if isinstance(event, HeaderDone) and (event.recipient or "").startswith(
                        "functions."
                    ):
                        index = calls[event.index] = len(calls)
                        call = tool_calls[index] if index < len(tool_calls) else None
                        delta.setdefault("tool_calls", []).append(
                            {
                                "index": index,
                                "id": call["id"] if call else f"chatcmpl-tool-{index}",
                                "type": "function",
                                "function": {
                                    "name": (event.recipient or "").removeprefix("functions."),
                                    "arguments": "",
                                },
                            }
                        )
                    elif isinstance(event, ContentDelta):
                        text = event.delta[: budget.get(event.index, len(event.delta))]
                        budget[event.index] = budget.get(event.index, 0) - len(text)
                        if not text:
                            continue
                        if event.index in calls:
                            delta.setdefault("tool_calls", []).append(
                                {"index": calls[event.index], "function": {"arguments": text}}
                            )
                        elif event.channel == "analysis":
                            key = self.reasoning_field
                            delta[key] = delta.get(key, "") + text
                        else:
                            delta["content"] = delta.get("content", "") + text
                if delta:
                    yield chunk(delta)

        def chunks() -> Iterator[dict[str, Any]]:
            yield chunk({"role": "assistant", "content": ""})
            if self.delta_tokens is not None:
                yield from grouped()
                yield chunk({}, finish)
                if (body.get("stream_options") or {}).get("include_usage"):
                    yield {
                        "id": cid,
                        "object": "chat.completion.chunk",
                        "created": created,
                        "model": model,
                        "choices": [],
                        "usage": usage,
                    }
                return
            for piece in pieces(reasoning or ""):
                yield chunk({self.reasoning_field: piece})
            for piece in pieces(content or ""):
                yield chunk({"content": piece})
            for index, call in enumerate(tool_calls):
                fn = call["function"]
                yield chunk(
                    {
                        "tool_calls": [
                            {
                                "index": index,
                                "id": call["id"],
                                "type": "function",
                                "function": {"name": fn["name"], "arguments": ""},
                            }
                        ]
                    }
                )
                for piece in pieces(fn["arguments"]):
                    yield chunk(
                        {"tool_calls": [{"index": index, "function": {"arguments": piece}}]}
                    )
            yield chunk({}, finish)
            if (body.get("stream_options") or {}).get("include_usage"):
                yield {
                    "id": cid,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": model,
                    "choices": [],
                    "usage": usage,
                }

        return None, chunks()

    def _chat_prompt_tokens(
        self,
        body: dict[str, Any],
        conversation: list[Message],
        instructions: str | None,
        effort: str,
    ) -> int:
        from harmonygraph.harmony import ConversationRenderer
        from openai_harmony import ToolDescription, ToolNamespaceConfig

        tools = [
            ToolDescription.new(
                t["function"]["name"],
                t["function"].get("description") or "",
                t["function"].get("parameters"),
            )
            for t in body.get("tools") or []
            if t.get("type") == "function"
        ]
        namespaces = (
            (ToolNamespaceConfig(name="functions", description=None, tools=tools),) if tools else ()
        )
        renderer = ConversationRenderer(
            SystemConfig(reasoning=effort, current_date=None),  # type: ignore[arg-type]
            DeveloperConfig(instructions=instructions, tools=namespaces),
        )
        return renderer.render(conversation).length


def _failing(events: Iterator[dict[str, Any]], failure: _StreamFailure) -> Iterator[dict[str, Any]]:
    """`events` cut after `failure.after_chunks`, then vLLM's streamed error event."""
    for sent, event in enumerate(events):
        if sent >= failure.after_chunks:
            break
        yield event
    yield _error_body(failure.message, failure.kind, failure.code)


class _ListeningServer(ThreadingHTTPServer):
    # socketserver's default backlog is 5: a hundred clients connecting at once overflow
    # it, and the kernel drops SYNs that are retried a second later (latency, then errors).
    request_queue_size = 1024

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up between requests is normal; anything else is printed.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    fake: FakeOpenAIServer
    protocol_version = "HTTP/1.1"  # keep-alive, as uvicorn; streams use chunked encoding
    # TCP_NODELAY, as uvicorn: with Nagle's algorithm a reply written in two sends waits
    # for the client's delayed ACK, 40 ms a request on keep-alive connections.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:  # quiet in test output
        return

    def _send_json(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _send_sse(self, events: Iterator[dict[str, Any]]) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/event-stream; charset=utf-8")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()

        def write(data: bytes) -> None:
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()

        for event in events:
            write(f"data: {json.dumps(event)}\n\n".encode())
        write(b"data: [DONE]\n\n")
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _authorized(self) -> bool:
        key = self.fake.api_key
        return key is None or self.headers.get("authorization") == f"Bearer {key}"

    def _handle(self, method: str) -> None:
        fake = self.fake
        body: Any = None
        length = int(self.headers.get("content-length") or 0)
        if length:
            raw = self.rfile.read(length)
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw.decode("utf-8", errors="replace")
        with fake._lock:
            fake.requests.append(
                RecordedRequest(
                    method, self.path, {k.lower(): v for k, v in self.headers.items()}, body
                )
            )
        try:
            if not self._authorized():
                raise _HTTPError(401, {"error": "Unauthorized"})
            path = self.path.split("?", 1)[0].rstrip("/")
            if method == "GET" and path == "/v1/models":
                created = int(time.time())
                cards: list[dict[str, Any]] = [
                    {
                        "id": m,
                        "object": "model",
                        "created": created,
                        "owned_by": "vllm",
                        "root": m,
                        "parent": None,
                        "max_model_len": 131072,
                        "permission": [],
                    }
                    for m in fake.models
                ]
                self._send_json(200, {"object": "list", "data": cards})
                return
            if method == "GET" and path == "/version":
                self._send_json(200, {"version": fake.vllm_version})
                return
            routes = {"/v1/completions": fake.completions, "/v1/chat/completions": fake.chat}
            if method != "POST" or path not in routes:
                raise _HTTPError(404, {"detail": "Not Found"})
            if not isinstance(body, dict):
                raise _HTTPError(
                    400, _error_body("the body must be a JSON object", "BadRequestError", 400)
                )
            fake._check_request(path, body)
            if fake.delay:
                time.sleep(fake.delay)
            status = fake._take_failure()
            if status is not None:
                kind = "RateLimitError" if status == 429 else "InternalServerError"
                raise _HTTPError(
                    status, _error_body(f"injected failure (HTTP {status})", kind, status)
                )
            whole, stream = routes[path](body)
            if stream is not None:
                failure = fake._take_stream_failure()
                self._send_sse(stream if failure is None else _failing(stream, failure))
            else:
                self._send_json(200, whole)
        except _HTTPError as err:
            self._send_json(err.status, err.body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a timeout, a cancelled stream)
        except Exception as exc:  # a bug here should reach the test as a 500 with its text
            self._send_json(
                500, _error_body(f"{type(exc).__name__}: {exc}", "InternalServerError", 500)
            )

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")
