"""`TransformersModel`: gpt-oss in process, on Hugging Face Transformers.

The third private way to run gpt-oss, beside vLLM and Ollama over HTTP. As with
`HarmonyCompletionsModel`, the prompt is our own harmony rendering as token ids and the
completion is parsed by our codec; here the sampling is ours too, which is what makes
grammar-constrained final answers possible (`enforce_output_schema`, see
`agent.models.grammar`).

Generation is a step loop over the model's forward pass with its KV cache, not
`generate()`, because the loop gives us, cheaply:

- the order of logits processing: constraints (the grammar, a test's script) first,
  then temperature and top-p, so nucleus sampling never cuts away every token the
  grammar allows (`generate` puts a caller's processors after its own warpers);
- a seed that is this request's own `torch.Generator`, not the global RNG;
- a token at a time for streaming, and a cancel flag checked between tokens.

The loop runs in a worker thread, so the event loop stays free while the CPU or GPU works.

Install with `pip install 'harmonygraph[transformers]'` (torch, transformers, llguidance).
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
import warnings
from collections.abc import AsyncGenerator, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from harmonygraph.concurrency import iterate_sync, run_sync
from harmonygraph.harmony import STOP_TOKENS, StreamParser
from harmonygraph.harmony.encoding import get_encoding
from harmonygraph.harmony.render import RenderedPrompt
from harmonygraph.models.base import (
    ModelError,
    ModelNotFoundError,
    ModelRequest,
    ModelResponse,
    ModelSettings,
    ResponseDone,
    StreamEvent,
    Usage,
    effective_settings,
)
from harmonygraph.models.completions import RendererCache
from harmonygraph.models.grammar import HarmonyJsonSchemaProcessor, grammar_available

if TYPE_CHECKING:
    import torch

__all__ = [
    "TRANSFORMERS_PIP",
    "LogitsProcessorLike",
    "ProcessorFactory",
    "TransformersModel",
    "require_transformers",
]

TRANSFORMERS_PIP = "pip install 'harmonygraph[transformers]'  (torch, transformers, llguidance)"

# A Hugging Face `LogitsProcessor` or any callable of the same shape.
LogitsProcessorLike = Callable[["torch.Tensor", "torch.Tensor"], "torch.Tensor"]
# Builds a request's processors (they hold per-generation state) from its prompt ids.
ProcessorFactory = Callable[[Sequence[int]], Sequence[LogitsProcessorLike]]


def require_transformers() -> tuple[Any, Any]:
    """(torch, transformers), or an ImportError that says what to install."""
    try:
        import torch
        import transformers
    except ImportError as exc:
        raise ImportError(
            f"TransformersModel needs torch and transformers ({exc.name} is missing): "
            f"{TRANSFORMERS_PIP}"
        ) from exc
    return torch, transformers


@dataclass(slots=True)
class _Generation:
    tokens: list[int]
    finish_reason: str
    constrained: bool


class TransformersModel:
    """gpt-oss through `transformers`, in this process.

    >>> model = TransformersModel.from_pretrained("openai/gpt-oss-20b")  # from the HF cache
    >>> model = TransformersModel(hf_model)  # an already-built model object

    `settings` are the defaults a request left at `ModelSettings()` gets: gpt-oss's
    recommended temperature 1.0 and top-p 1.0. `top_k` (off by default) adds a cut.
    `enforce_output_schema`: when the request's developer message carries a response
    format, the final channel's body is generated under its JSON Schema.
    `logits_processors` builds extra processors per request (they see the prompt ids).
    """

    def __init__(
        self,
        model: Any,
        *,
        name: str | None = None,
        settings: ModelSettings | None = None,
        top_k: int | None = None,
        enforce_output_schema: bool = False,
        logits_processors: ProcessorFactory | None = None,
        renderer_cache_size: int = 8,
    ) -> None:
        require_transformers()
        self.model = model
        self.name = name or str(getattr(model.config, "_name_or_path", "") or "gpt-oss")
        self.settings = settings or ModelSettings()
        self.top_k = top_k
        self.enforce_output_schema = enforce_output_schema
        self.logits_processors = logits_processors
        self.renderers = RendererCache(renderer_cache_size)
        self.device = next(model.parameters()).device
        # One generation at a time per model: the weights are shared and the work is
        # compute bound, so a second thread would only slow both down.
        self._lock = threading.Lock()
        self._warned_unconstrained = False
        self.last_processors: list[LogitsProcessorLike] = []

    @property
    def supports_constrained_output(self) -> bool:
        """Whether a response format can be enforced (llguidance is installed)."""
        return grammar_available()

    @classmethod
    def from_pretrained(
        cls,
        path_or_id: str | os.PathLike[str],
        *,
        device: str = "cpu",
        dtype: Any = "auto",
        local_files_only: bool = True,
        name: str | None = None,
        **options: Any,
    ) -> TransformersModel:
        """Load weights from a folder or the Hugging Face cache; never downloads by default.

        `dtype`: "auto" (the checkpoint's), a `torch.dtype` or its name ("bfloat16").
        `options` are the constructor's (settings, top_k, enforce_output_schema, ...).
        """
        torch, transformers = require_transformers()
        if isinstance(dtype, str) and dtype != "auto":
            dtype = getattr(torch, dtype)
        try:
            hf_model = transformers.AutoModelForCausalLM.from_pretrained(
                str(path_or_id), dtype=dtype, local_files_only=local_files_only
            )
        except OSError as exc:
            where = "the folder" if os.path.isdir(path_or_id) else "the Hugging Face cache"
            hint = (
                f"download it first (`hf download {path_or_id}`) or pass local_files_only=False"
                if local_files_only
                else "check the id or path"
            )
            raise ModelNotFoundError(
                f"could not load {str(path_or_id)!r} from {where}: {hint} ({exc})"
            ) from exc
        hf_model.to(device).eval()
        return cls(hf_model, name=name or str(path_or_id), **options)

    # -- request -------------------------------------------------------------------
    def settings_for(self, request: ModelRequest) -> ModelSettings:
        return effective_settings(self.settings, request.settings)

    def render(self, request: ModelRequest) -> RenderedPrompt:
        return self.renderers.get(request.system, request.developer).render(request.messages)

    def processors_for(
        self, request: ModelRequest, prompt: Sequence[int]
    ) -> list[LogitsProcessorLike]:
        """The request's logits processors: the caller's, then the schema's grammar."""
        processors = list(self.logits_processors(prompt)) if self.logits_processors else []
        fmt = request.developer.response_format
        enforce = self.enforce_output_schema or request.settings.enforce_output
        if enforce and fmt is not None:
            if self.supports_constrained_output:
                processors.append(HarmonyJsonSchemaProcessor(fmt.schema, len(prompt)))
            elif not self._warned_unconstrained:
                self._warned_unconstrained = True
                warnings.warn(
                    f"{self.name}: cannot enforce the output schema (llguidance is not "
                    f"installed: {TRANSFORMERS_PIP}); the answer is validated and retried "
                    "instead",
                    RuntimeWarning,
                    stacklevel=3,
                )
        return processors

    # -- generation (worker thread) ----------------------------------------------------
    def _sample(
        self, scores: torch.Tensor, settings: ModelSettings, generator: torch.Generator
    ) -> int:
        import torch

        if not bool(torch.isfinite(scores).any()):
            raise ModelError(
                "every token was masked out (a logits processor or the grammar allowed none)"
            )
        if settings.temperature <= 0:
            return int(scores.argmax(dim=-1))
        scores = scores / settings.temperature
        if self.top_k:
            kth = torch.topk(scores, min(self.top_k, scores.shape[-1])).values[..., -1:]
            scores = scores.masked_fill(scores < kth, float("-inf"))
        probs = torch.softmax(scores, dim=-1)
        if settings.top_p < 1.0:
            sorted_probs, order = torch.sort(probs, descending=True)
            # Keep the smallest prefix whose mass reaches top_p (the first token always).
            cut = (sorted_probs.cumsum(-1) - sorted_probs) >= settings.top_p
            sorted_probs = sorted_probs.masked_fill(cut, 0.0)
            choice = torch.multinomial(sorted_probs, 1, generator=generator)
            return int(order.gather(-1, choice))
        return int(torch.multinomial(probs, 1, generator=generator))

    def _generate(
        self,
        prompt: Sequence[int],
        settings: ModelSettings,
        processors: Sequence[LogitsProcessorLike],
        emit: Callable[[int], None],
        cancel: threading.Event,
    ) -> _Generation:
        import torch

        generator = torch.Generator(device=self.device)
        if settings.seed is not None:
            generator.manual_seed(settings.seed)
        else:
            generator.seed()
        tokens: list[int] = []
        finish = "length"
        with self._lock, torch.inference_mode():
            seq = torch.tensor([list(prompt)], dtype=torch.long, device=self.device)
            out = self.model(input_ids=seq, use_cache=True, logits_to_keep=1)
            for _ in range(settings.max_tokens):
                if cancel.is_set():
                    finish = "cancelled"
                    break
                scores = out.logits[:, -1, :].float()
                for processor in processors:
                    scores = processor(seq, scores)
                token = self._sample(scores, settings, generator)
                tokens.append(token)
                emit(token)
                if token in STOP_TOKENS:
                    finish = "stop"
                    break
                step = torch.tensor([[token]], dtype=torch.long, device=self.device)
                seq = torch.cat([seq, step], dim=1)
                out = self.model(
                    input_ids=step, past_key_values=out.past_key_values, use_cache=True
                )
        constrained = any(
            isinstance(p, HarmonyJsonSchemaProcessor) and p.active for p in processors
        )
        return _Generation(tokens, finish, constrained)

    # -- the protocol ------------------------------------------------------------------
    async def complete(self, request: ModelRequest) -> ModelResponse:
        response: ModelResponse | None = None
        async for event in self.stream(request):
            if isinstance(event, ResponseDone):
                response = event.response
        assert response is not None  # stream always ends with ResponseDone
        return response

    async def stream(self, request: ModelRequest) -> AsyncGenerator[StreamEvent, None]:
        settings = self.settings_for(request)
        prompt = self.render(request)
        prompt_ids = prompt.tokens
        processors = self.processors_for(request, prompt_ids)
        self.last_processors = processors
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[int | None] = asyncio.Queue()
        cancel = threading.Event()

        def emit(token: int) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, token)

        def work() -> _Generation:
            try:
                return self._generate(prompt_ids, settings, processors, emit, cancel)
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, None)

        started = time.perf_counter()
        future = loop.run_in_executor(None, work)
        parser = StreamParser()
        try:
            while (token := await queue.get()) is not None:
                for event in parser.feed_tokens([token]):
                    yield event
            generation = await future  # raises what the worker raised
        finally:
            # A consumer that stopped early (or a cancelled task) stops the worker too.
            cancel.set()
            if not future.done():
                await asyncio.wait([future])
        events, result = parser.finish_events()
        for event in events:
            yield event
        tokens = generation.tokens
        raw = bytes(get_encoding()._inner.decode_bytes(tokens))
        yield ResponseDone(
            ModelResponse(
                messages=tuple(result.messages),
                usage=Usage(prompt.length, len(tokens)),
                raw=raw.decode("utf-8", errors="replace"),
                token_ids=tuple(tokens),
                finish_reason=generation.finish_reason,
                model=self.name,
                latency_s=time.perf_counter() - started,
                prompt_sha256=prompt.sha256,
                prompt_tokens=prompt.length,
            )
        )

    async def aclose(self) -> None:
        """Nothing to release: the weights live as long as this object does."""

    async def __aenter__(self) -> TransformersModel:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def complete_sync(self, request: ModelRequest) -> ModelResponse:
        """`complete` from sync code (not from inside a running event loop)."""
        result: ModelResponse = run_sync(self.complete(request))
        return result

    def stream_sync(self, request: ModelRequest) -> Iterator[StreamEvent]:
        """`stream` from sync code, on a private event loop."""
        return iterate_sync(self.stream(request))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={self.name!r}, device={str(self.device)!r})"
