"""`HarmonyCompletionsModel`: we render harmony, the server only samples (`/v1/completions`).

The path with full control: the prompt is our own rendering (built-in tools, response
formats, the chain of thought of an ongoing turn), sent as token ids, and the completion
comes back with its special tokens, so the whole turn (analysis included) is parsed by
our codec.

What is sent, and why (vLLM's OpenAI-compatible server, `vllm/entrypoints/openai/protocol.py`
and `serving_completion.py`):

- `prompt`: the token ids; vLLM takes a list of ints as one tokenized prompt;
- `max_tokens`: always explicit, since vLLM's `/v1/completions` defaults to 16;
- `stop_token_ids`: `<|return|>` 200002 and `<|call|>` 200012, the assistant's stops;
- `skip_special_tokens: false`: without it vLLM strips `<|channel|>`, `<|message|>`, ...
  from the text and the harmony structure is lost;
- `include_stop_str_in_output: true`: vLLM's detokenizer leaves the token that stopped
  generation out of the text unless asked (`vllm/v1/engine/detokenizer.py`), and the
  parser needs `<|call|>` to tell a tool call from a cut-off message;
- `return_token_ids: true` (vLLM >= 0.10.2, PR #22587): each choice carries `token_ids`
  (the stop token included) and `prompt_token_ids`; when present we parse the ids,
  which is exact, and fall back to the text for servers without the option;
- `temperature` 1.0 and `top_p` 1.0, gpt-oss's recommended sampling, unless configured;
- `stream_options.include_usage` when streaming, or vLLM sends no usage at all.

Two-phase constrained output (`enforce_output_schema`, see `constrained.py`) is only
reported `constrained=True` when the server is known to enforce the schema field it was
sent: vLLM takes `structured_outputs` from 0.10.2 and `guided_json` before 0.12, and a
field it does not know is only logged, so the version is read from `GET /version` once.
`structured_output_style="auto"` (the default) picks the field from that version; an
unknown server gets `structured_outputs` and `constrained=False`, and the engine's
validation (with its retries) is what holds the answer to the schema.

The registered tool names (the developer's namespaces and the built-ins) go to the
parser, so a recipient glued to its content type (`to=functions.shelljson`) resolves to
the tool; every repair the tolerant reader made is on `ModelResponse.repairs`.

`stop_reason` is only a hint: vLLM reports the stop token id for `<|call|>` (a
`stop_token_ids` hit) but `null` for `<|return|>`, which is gpt-oss's EOS token and is
checked before the stop list. A text-only answer that ended on "stop" without a marker
is therefore completed with `<|call|>` when `stop_reason` says so, else `<|return|>`.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence
from typing import Any, Literal

import openai
from harmonygraph.harmony import (
    STOP_TOKENS,
    ConversationRenderer,
    ParseResult,
    StreamParser,
    parse_completion_text,
)
from harmonygraph.harmony.encoding import CALL, RETURN, get_encoding
from harmonygraph.harmony.prompt import DeveloperConfig, SystemConfig
from harmonygraph.harmony.render import RenderedPrompt
from harmonygraph.models._openai import OpenAICompatibleModel, usage_from
from harmonygraph.models._server import (
    ServerInfo,
    probe_server,
    registered_tool_names,
    vllm_structured_fields,
)
from harmonygraph.models.base import (
    ModelError,
    ModelRequest,
    ModelResponse,
    ModelSettings,
    ResponseDone,
    StreamEvent,
    Usage,
    replay_as_stream,
)
from harmonygraph.models.constrained import (
    StructuredOutputStyle,
    complete_with_final_schema,
    create_token_completion,
)
from harmonygraph.models.errors import RetryPolicy

__all__ = ["HarmonyCompletionsModel", "RendererCache"]

_MARKER = {RETURN: "<|return|>", CALL: "<|call|>"}


class RendererCache:
    """One incremental renderer per (system, developer) pair, least recently used out.

    The configs hold tool namespaces that are not hashable, so the lookup is by identity
    first (an agent reuses its config objects step after step) and equality second.
    """

    def __init__(self, size: int = 8) -> None:
        self.size = size
        self._items: OrderedDict[int, tuple[SystemConfig, DeveloperConfig, ConversationRenderer]]
        self._items = OrderedDict()
        self._next = 0

    def get(self, system: SystemConfig, developer: DeveloperConfig) -> ConversationRenderer:
        match = None
        for key, (s, d, _r) in self._items.items():
            if s is system and d is developer:
                match = key
                break
        if match is None:
            for key, (s, d, _r) in self._items.items():
                if s == system and d == developer:
                    match = key
                    break
        if match is not None:
            self._items.move_to_end(match)
            return self._items[match][2]
        renderer = ConversationRenderer(system, developer)
        self._items[self._next] = (system, developer, renderer)
        self._next += 1
        while len(self._items) > self.size:
            self._items.popitem(last=False)
        return renderer

    def __len__(self) -> int:
        return len(self._items)


class HarmonyCompletionsModel(OpenAICompatibleModel):
    """gpt-oss over `/v1/completions`: harmony rendered here, parsed here.

    >>> model = HarmonyCompletionsModel("openai/gpt-oss-20b", base_url="http://localhost:8000/v1")
    """

    endpoint = "completions"

    def __init__(
        self,
        model: str | None = None,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        settings: ModelSettings | None = None,
        client: openai.AsyncOpenAI | None = None,
        retry_policy: RetryPolicy | None = None,
        return_token_ids: bool = True,
        renderer_cache_size: int = 8,
        enforce_output_schema: bool = False,
        structured_output_style: StructuredOutputStyle | Literal["auto"] = "auto",
    ) -> None:
        super().__init__(
            model,
            base_url=base_url,
            api_key=api_key,
            settings=settings,
            client=client,
            retry_policy=retry_policy,
        )
        # Off for servers that reject unknown fields (vLLM before 0.10.2 only warns).
        self.return_token_ids = return_token_ids
        self.renderers = RendererCache(renderer_cache_size)
        # With a response format, generate the final answer's body under the schema: a
        # second request continues the first's tokens with vLLM's structured outputs
        # (`structured_outputs` since vLLM 0.10.2, `guided_json` before).
        self.enforce_output_schema = enforce_output_schema
        if structured_output_style not in ("auto", "structured_outputs", "guided_json"):
            raise ValueError(
                "structured_output_style must be 'auto', 'structured_outputs' or "
                f"'guided_json', not {structured_output_style!r}"
            )
        self.structured_output_style = structured_output_style
        self.server_info: ServerInfo | None = None  # probed on the first constrained call

    supports_constrained_output = True

    def tool_names(self, request: ModelRequest) -> list[str]:
        """The recipients the request registers, for the parser."""
        return registered_tool_names(request.system, request.developer)

    async def structured_output_plan(self) -> tuple[StructuredOutputStyle, bool]:
        """The schema field to send, and whether the server certainly enforces it."""
        if self.server_info is None:
            self.server_info = await probe_server(self.client)
        accepted = (
            vllm_structured_fields(self.server_info.version)
            if self.server_info.kind == "vllm"
            else frozenset()
        )
        style = self.structured_output_style
        if style == "auto":
            if "structured_outputs" in accepted or not accepted:
                return "structured_outputs", bool(accepted)
            return "guided_json", True
        return style, style in accepted

    # -- request -------------------------------------------------------------------
    def render(self, request: ModelRequest) -> RenderedPrompt:
        return self.renderers.get(request.system, request.developer).render(request.messages)

    def request_body(self, request: ModelRequest, *, stream: bool) -> dict[str, Any]:
        """The request's JSON fields but `prompt` (see `create_token_completion`)."""
        settings = self.settings_for(request)
        extra: dict[str, Any] = {
            "stop_token_ids": list(STOP_TOKENS),
            "skip_special_tokens": False,
            "include_stop_str_in_output": True,
        }
        if self.return_token_ids:
            extra["return_token_ids"] = True
        body: dict[str, Any] = {
            "model": self.name,
            "max_tokens": settings.max_tokens,
            "temperature": settings.temperature,
            "top_p": settings.top_p,
            "stream": stream,
            **extra,
        }
        if settings.seed is not None:
            body["seed"] = settings.seed
        if stream:
            body["stream_options"] = {"include_usage": True}
        # extra_body last, as the SDK merges it: it overrides any field (seed, stream_options)
        body.update(settings.extra_body)
        return body

    # -- complete --------------------------------------------------------------------
    async def _complete_constrained(
        self, request: ModelRequest
    ) -> tuple[ModelResponse, ParseResult]:
        settings = self.settings_for(request)
        prompt = self.render(request)
        fmt = request.developer.response_format
        assert fmt is not None
        style, certain = await self.structured_output_plan()
        two = await self.call(
            settings,
            lambda: complete_with_final_schema(
                self.client,
                self.name,
                prompt.tokens,
                fmt.schema,
                settings=settings,
                style=style,
                return_token_ids=self.return_token_ids,
                prompt_json=prompt.tokens_json(),
            ),
        )
        result = parse_completion_text(two.text, tools=self.tool_names(request))
        response = self._response(
            result,
            two.usage,
            raw=two.text,
            token_ids=two.token_ids,
            finish_reason=two.finish_reason,
            latency=two.latency_s,
            prompt=prompt,
            constrained=two.constrained and certain,
        )
        return response, result

    def _constrains(self, request: ModelRequest) -> bool:
        enforce = self.enforce_output_schema or request.settings.enforce_output
        return enforce and request.developer.response_format is not None

    async def complete(self, request: ModelRequest) -> ModelResponse:
        if self._constrains(request):
            response, _ = await self._complete_constrained(request)
            return response
        settings = self.settings_for(request)
        prompt = self.render(request)
        body, prompt_json = self.request_body(request, stream=False), prompt.tokens_json()
        started = time.perf_counter()
        completion = await self.call(
            settings,
            lambda: create_token_completion(
                self.client, body, prompt_json, request_timeout=settings.timeout
            ),
        )
        latency = time.perf_counter() - started
        if not completion.choices:
            raise ModelError(
                f"{self.base_url} answered with no choices; is it an OpenAI-compatible server?"
            )
        choice = completion.choices[0]
        extra = choice.model_extra or {}
        token_ids = extra.get("token_ids")
        parser = StreamParser(tools=self.tool_names(request))
        text = choice.text or ""
        if token_ids:
            parser.feed_tokens(token_ids)
        else:
            text = _complete_text(text, choice.finish_reason, extra.get("stop_reason"))
            parser.feed_text(text)
        result = parser.finish()
        if token_ids and not text:
            text = get_encoding().decode(token_ids)
        return self._response(
            result,
            usage_from(completion.usage),
            raw=text,
            token_ids=token_ids,
            finish_reason=choice.finish_reason,
            latency=latency,
            prompt=prompt,
        )

    # -- stream ----------------------------------------------------------------------
    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamEvent]:
        if self._constrains(request):
            # The two requests are not streamed; their completion is replayed as events.
            response, _ = await self._complete_constrained(request)
            async for event in replay_as_stream(response, self.tool_names(request)):
                yield event
            return
        settings = self.settings_for(request)
        prompt = self.render(request)
        body, prompt_json = self.request_body(request, stream=True), prompt.tokens_json()
        started = time.perf_counter()
        chunks = await self.call(
            settings,
            lambda: create_token_completion(
                self.client, body, prompt_json, request_timeout=settings.timeout, stream=True
            ),
        )
        parser = StreamParser(tools=self.tool_names(request))
        texts: list[str] = []
        token_ids: list[int] | None = None
        finish_reason: str | None = None
        stop_reason: Any = None
        usage = Usage()
        try:
            async for chunk in chunks:
                if chunk.usage is not None:
                    usage = usage_from(chunk.usage)
                for choice in chunk.choices:
                    extra = choice.model_extra or {}
                    ids = extra.get("token_ids")
                    if choice.text:
                        texts.append(choice.text)
                    # The first chunk decides: ids when the server sends them, else text.
                    if token_ids is None and ids is not None:
                        token_ids = []
                    if token_ids is not None:
                        if ids:
                            token_ids.extend(ids)
                            for event in parser.feed_tokens(ids):
                                yield event
                    elif choice.text:
                        for event in parser.feed_text(choice.text):
                            yield event
                    if choice.finish_reason is not None:
                        finish_reason = choice.finish_reason
                        stop_reason = extra.get("stop_reason")
        except openai.OpenAIError as exc:
            raise await self.translate(exc, settings) from exc
        finally:
            # Closing the response tells vLLM to abort the request (it watches for
            # disconnects), so a cancelled step stops costing GPU time.
            await chunks.close()
        text = "".join(texts)
        if token_ids is None:
            fixed = _complete_text(text, finish_reason, stop_reason)
            if len(fixed) > len(text):
                for event in parser.feed_text(fixed[len(text) :]):
                    yield event
            text = fixed
        events, result = parser.finish_events()
        for event in events:
            yield event
        yield ResponseDone(
            self._response(
                result,
                usage,
                raw=text,
                token_ids=token_ids,
                finish_reason=finish_reason,
                latency=time.perf_counter() - started,
                prompt=prompt,
            )
        )

    def _response(
        self,
        result: ParseResult,
        usage: Usage,
        *,
        raw: str,
        token_ids: Sequence[int] | None,
        finish_reason: str | None,
        latency: float,
        prompt: RenderedPrompt,
        constrained: bool = False,
    ) -> ModelResponse:
        if usage.input_tokens == 0:
            # A server that sent no usage: we know the prompt's length exactly; the
            # completion's is counted from its ids, or its text re-encoded (an estimate).
            output = len(token_ids) if token_ids else _count_tokens(raw)
            usage = Usage(prompt.length, output, usage.cached_tokens, estimated=not token_ids)
        return ModelResponse(
            messages=tuple(result.messages),
            usage=usage,
            raw=raw,
            token_ids=tuple(token_ids) if token_ids is not None else None,
            finish_reason=finish_reason,
            model=self.name,
            latency_s=latency,
            prompt_sha256=prompt.sha256,
            prompt_tokens=prompt.length,
            repairs=tuple(result.repairs),
            constrained=constrained,
        )


def _count_tokens(text: str) -> int:
    return len(get_encoding().encode(text, allowed_special="all")) if text else 0


def _complete_text(text: str, finish_reason: str | None, stop_reason: Any) -> str:
    """Put back the stop marker a server left out of the text (see the module docstring)."""
    if finish_reason != "stop" or text.endswith(("<|return|>", "<|call|>")):
        return text
    if isinstance(stop_reason, int) and stop_reason in _MARKER:
        return text + _MARKER[stop_reason]
    if stop_reason is None:
        return text + _MARKER[RETURN]  # gpt-oss's EOS, which vLLM reports as no stop_reason
    return text  # a stop string of the caller's: no marker to restore
