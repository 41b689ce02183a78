"""JSON-Schema grammars over the o200k_harmony vocabulary, for constrained final answers.

The library is llguidance (Microsoft's Rust grammar engine, also a vLLM and llama.cpp
structured-output backend), chosen over xgrammar and outlines because:

- it has no Python dependencies; xgrammar 0.2 pulls in torch, transformers and triton
  (about 1 GB on Linux even for CPU-only use), outlines pulls in more still;
- a JSON Schema compiles lazily: the grammar for a schema is ready in milliseconds,
  where xgrammar precomputes a token-mask cache per schema (about 1.6 s for a nested
  schema over the 201k vocabulary, measured here on 2 CPU cores);
- it follows JSON Schema's own defaults (additional properties allowed unless the
  schema says no), so what the grammar admits is what pydantic later validates.

There is no Hugging Face tokenizer file offline, so the tokenizer llguidance needs is
built from openai-harmony's encoding: one byte string per token id. Building it takes a
few seconds for 201,088 ids and is done once per process (`harmony_tokenizer`).

`HarmonyJsonSchemaProcessor` is a Hugging Face-style logits processor that leaves the
model free until it opens the final channel (`<|channel|>final<|message|>`), then masks
every token the schema does not allow, and `<|return|>` until the JSON is complete.
"""

from __future__ import annotations

import functools
import json
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from harmonygraph.harmony.encoding import CALL, CHANNEL, END, MESSAGE, RETURN, START, get_encoding

if TYPE_CHECKING:
    import llguidance
    import torch

__all__ = [
    "GRAMMAR_PIP",
    "VOCAB_SIZE",
    "CompiledSchema",
    "FinalChannelWatcher",
    "GrammarUnavailableError",
    "HarmonyJsonSchemaProcessor",
    "JsonSchemaMatcher",
    "SchemaGrammarError",
    "close_objects",
    "compile_json_schema",
    "grammar_available",
    "harmony_tokenizer",
    "token_byte_table",
    "tokenizer_build_seconds",
]

GRAMMAR_PIP = "pip install 'harmonygraph[transformers]'  (or: pip install llguidance)"
# o200k_harmony's id space, special tokens included (the gpt-oss embedding size).
VOCAB_SIZE = 201_088

# The final channel's header, as the harmony text has it; `<|constrain|>json` may follow.
_FINAL_HEADER = re.compile(r"<\|channel\|>\s*final\b")


class GrammarUnavailableError(ImportError):
    """llguidance (the grammar engine) is not installed."""


class SchemaGrammarError(ValueError):
    """A JSON Schema that llguidance cannot turn into a grammar."""


def grammar_available() -> bool:
    try:
        import llguidance  # noqa: F401
    except ImportError:
        return False
    return True


def _llguidance() -> Any:
    try:
        import llguidance
    except ImportError as exc:
        raise GrammarUnavailableError(
            f"constrained output needs llguidance, which is not installed: {GRAMMAR_PIP}"
        ) from exc
    return llguidance


@functools.cache
def token_byte_table() -> tuple[bytes, ...]:
    """The bytes of every token id of o200k_harmony, special tokens as their text."""
    inner = get_encoding()._inner
    return tuple(bytes(inner.decode_bytes([i])) for i in range(VOCAB_SIZE))


class _HarmonyTokenizer:
    """The duck-typed tokenizer `llguidance.TokenizerWrapper` wraps: a byte table and encode."""

    def __init__(self) -> None:
        enc = get_encoding()
        self.tokens = list(token_byte_table())
        # gpt-oss ends a final answer with <|return|>: the grammar allows it once the
        # JSON is complete, and only then.
        self.eos_token_id = RETURN
        self.bos_token_id = None
        self.special_token_ids = [i for i in range(VOCAB_SIZE) if enc.is_special_token(i)]
        self._enc = enc

    def __call__(self, data: bytes) -> list[int]:
        text = data.decode("utf-8", errors="replace")
        return list(self._enc.encode(text, allowed_special=set()))


_TOKENIZER_BUILD_S: list[float] = []


@functools.cache
def harmony_tokenizer() -> llguidance.LLTokenizer:
    """llguidance's tokenizer for o200k_harmony, built once per process (seconds)."""
    llg = _llguidance()
    started = time.perf_counter()
    tokenizer = llg.LLTokenizer(llg.TokenizerWrapper(_HarmonyTokenizer()), n_vocab=VOCAB_SIZE)
    _TOKENIZER_BUILD_S.append(time.perf_counter() - started)
    return tokenizer


def tokenizer_build_seconds() -> float | None:
    """How long building the tokenizer took in this process, once it has been built."""
    return _TOKENIZER_BUILD_S[0] if _TOKENIZER_BUILD_S else None


@dataclass(frozen=True)
class CompiledSchema:
    """A schema's llguidance grammar, checked against the harmony tokenizer."""

    schema: str  # canonical JSON of the schema, the cache key
    grammar: str
    compile_s: float


def close_objects(schema: Any) -> Any:
    """The schema with `additionalProperties: false` on objects that list properties
    and say nothing about others.

    The schema describes a typed answer: keys it does not name would be dropped by
    pydantic anyway, and leaving objects open lets the model spend its tokens inventing
    keys (a weak model may never close one). OpenAI's strict structured outputs close
    objects the same way. An explicit `additionalProperties` is kept as it is.
    """
    if isinstance(schema, list):
        return [close_objects(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in _SCHEMA_MAPS and isinstance(value, dict):
            # Maps of name -> schema: the names are data, only the values are schemas.
            out[key] = {name: close_objects(sub) for name, sub in value.items()}
        elif key in ("enum", "const", "default", "examples", "required"):
            out[key] = value  # data, not schemas
        else:
            out[key] = close_objects(value)
    if isinstance(out.get("properties"), dict) and "additionalProperties" not in out:
        out["additionalProperties"] = False
    return out


_SCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")


def compile_json_schema(schema: Mapping[str, Any] | str, *, closed: bool = True) -> CompiledSchema:
    """The grammar for a JSON Schema; cached per schema (canonical JSON) in this process.

    `closed`: forbid keys the schema does not name (see `close_objects`).
    """
    try:
        value = json.loads(schema) if isinstance(schema, str) else schema
    except ValueError as exc:
        raise SchemaGrammarError(f"the schema is not valid JSON: {exc}") from None
    if closed:
        value = close_objects(value)
    return _compile(json.dumps(value, sort_keys=True))


@functools.lru_cache(maxsize=128)
def _compile(schema_json: str) -> CompiledSchema:
    llg = _llguidance()
    tokenizer = harmony_tokenizer()
    started = time.perf_counter()
    try:
        # Compact JSON only: free whitespace would let a weak model pad forever.
        grammar = llg.LLMatcher.grammar_from_json_schema(
            schema_json, defaults={"whitespace_flexible": False}
        )
    except ValueError as exc:
        raise SchemaGrammarError(f"not a JSON Schema object: {exc}") from None
    is_error, messages = llg.LLMatcher.validate_grammar_with_warnings(grammar, tokenizer)
    if is_error:
        raise SchemaGrammarError(
            f"llguidance cannot compile this JSON Schema: {'; '.join(messages)}"
        )
    return CompiledSchema(schema_json, grammar, time.perf_counter() - started)


class JsonSchemaMatcher:
    """One generation's grammar state: which tokens may come next, and what came."""

    def __init__(self, compiled: CompiledSchema) -> None:
        llg = _llguidance()
        self._matcher = llg.LLMatcher(harmony_tokenizer(), compiled.grammar)
        if self._matcher.is_error():
            raise SchemaGrammarError(self._matcher.get_error())
        self.mask_s = 0.0  # time spent computing masks, for the benchmark
        self.masks = 0

    def allowed(self, size: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """A bool tensor of `size` entries: True where the grammar allows that token id."""
        import torch

        started = time.perf_counter()
        packed = torch.frombuffer(bytearray(self._matcher.compute_bitmask()), dtype=torch.uint8)
        # One bit per token, least significant first (llguidance's bitmask layout).
        shifts = torch.arange(8, dtype=torch.uint8)
        bits = ((packed.unsqueeze(1) >> shifts) & 1).reshape(-1).bool()
        if bits.numel() >= size:
            bits = bits[:size]
        else:  # a model whose logits are padded past the vocabulary: padding is never allowed
            bits = torch.cat([bits, torch.zeros(size - bits.numel(), dtype=torch.bool)])
        self.mask_s += time.perf_counter() - started
        self.masks += 1
        return bits.to(device)

    def consume(self, token: int) -> None:
        if not self._matcher.consume_token(token):
            raise SchemaGrammarError(
                f"token {token} does not fit the schema: {self._matcher.get_error()}"
            )


class FinalChannelWatcher:
    """Follows a completion's message headers token by token; reports a final body opening.

    The completion begins after the prompt's `<|start|>assistant`, inside a header. A
    final-channel header without a recipient (`to=...` would be a tool call) that ends
    in `<|message|>` opens the body to constrain; `<|constrain|>json` may be in it.
    """

    def __init__(self) -> None:
        self._header: list[int] | None = []

    def feed(self, token: int) -> bool:
        """Take the next token; True when it was the `<|message|>` opening a final body."""
        if token == START:
            self._header = []
            return False
        if token in (END, RETURN, CALL):
            self._header = None
            return False
        if self._header is None:
            if token == CHANNEL:  # a header without <|end|><|start|>, as the parser allows
                self._header = [token]
            return False
        if token != MESSAGE:
            self._header.append(token)
            return False
        text = get_encoding().decode(self._header)
        self._header = None
        return bool(_FINAL_HEADER.search(text)) and "to=" not in text


class HarmonyJsonSchemaProcessor:
    """Constrains the final channel's body to a JSON Schema; leaves everything else free.

    A Hugging Face `LogitsProcessor` in all but base class (so torch and transformers
    stay optional at import): `processor(input_ids, scores) -> scores`, called once per
    generated token with the whole sequence so far. `prompt_length` says where the
    completion starts in `input_ids`.
    """

    def __init__(
        self, schema: Mapping[str, Any] | str, prompt_length: int, *, closed: bool = True
    ) -> None:
        self.compiled = compile_json_schema(schema, closed=closed)
        self.prompt_length = prompt_length
        self._watcher = FinalChannelWatcher()
        self._matcher: JsonSchemaMatcher | None = None
        self._seen = 0  # completion tokens already fed to the watcher or the matcher
        self._done = False
        self.constrained_tokens = 0

    @property
    def active(self) -> bool:
        """Whether the final body has opened (and the grammar decides from there)."""
        return self._matcher is not None

    @property
    def mask_seconds(self) -> float:
        return self._matcher.mask_s if self._matcher is not None else 0.0

    def _advance(self, tokens: Sequence[int]) -> None:
        for token in tokens:
            if self._done:
                continue
            if self._matcher is None:
                if self._watcher.feed(token):
                    self._matcher = JsonSchemaMatcher(self.compiled)
            elif token in (RETURN, END):
                self._done = True
            else:
                self._matcher.consume(token)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if input_ids.shape[0] != 1:
            raise ValueError("HarmonyJsonSchemaProcessor constrains one sequence (batch size 1)")
        completion = input_ids[0, self.prompt_length + self._seen :].tolist()
        self._seen += len(completion)
        self._advance(completion)
        if self._matcher is None or self._done:
            return scores
        allowed = self._matcher.allowed(scores.shape[-1], scores.device)
        self.constrained_tokens += 1
        return scores.masked_fill(~allowed, float("-inf"))
