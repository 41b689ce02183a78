"""all-MiniLM-L6-v2 on ONNX Runtime: the same vectors as sentence-transformers, without torch.

The ONNX graph is written once from the model's own safetensors weights
(`onnx_bert.build_bert_onnx`) and cached under `$HARMONYGRAPH_HOME/models/`; later
processes load the cached, already optimised graph (about 0.3 s) instead of importing
torch and sentence-transformers (about 10 s cold). Tokenisation is the model's own
`tokenizer.json` through the `tokenizers` library, truncated to the model's window
(256 tokens for MiniLM), as sentence-transformers does. Texts are embedded in batches of
similar length, so little compute goes to padding, then mean-pooled and normalised.

When `harmonygraph db start` runs the embedding service (embed_service.py), a process
that has not loaded the model asks the service, which has: a cold `index search` then
pays a few milliseconds for its query, not the session start.

Nothing is loaded until something needs it: the window and dimension come from the
model's config files, counting tokens loads only the tokenizer, and the ONNX session
starts on the first `embed`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from harmonygraph.tools.retrieval.errors import EmbeddingError

__all__ = ["OnnxMiniLMEmbedder", "default_threads"]

# Tokens per batch (padding included): big enough to keep the matrix products efficient,
# small enough that the attention matrices of 256-token texts stay in cache.
BATCH_TOKENS = 4096
MAX_BATCH = 128


def default_threads() -> int:
    """Threads for the matrix products: `$HARMONYGRAPH_EMBED_THREADS`, else the CPUs this
    process may run on (one thread per core; more only contend)."""
    env = os.environ.get("HARMONYGRAPH_EMBED_THREADS")
    if env:
        try:
            return max(1, int(env))
        except ValueError as exc:
            raise EmbeddingError(
                f"HARMONYGRAPH_EMBED_THREADS={env!r} is not a number: set it to a thread count"
            ) from exc
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def _cache_dir() -> Path:
    from harmonygraph.settings import harmonygraph_home

    return harmonygraph_home() / "models"


class OnnxMiniLMEmbedder:
    """A sentence-transformers BERT folder (MiniLM by default) run on ONNX Runtime.

    `spec` is the same as the sentence-transformers embedder's (`minilm`): the vectors
    agree within 1e-4 cosine (tests/retrieval/test_embedding_runtime.py), so a collection
    written by either is searched by the other.
    """

    runtime = "onnx"

    def __init__(
        self,
        model: str | None = None,
        *,
        threads: int | None = None,
        cache_dir: Path | None = None,
        on_load: Callable[[str], None] | None = None,
        use_service: bool = True,
    ) -> None:
        self.model_name = model or "minilm"
        self.use_service = use_service  # ask the resident service before loading
        self.threads = threads
        self._cache_dir = cache_dir
        self.on_load = on_load
        self._session: Any = None
        self._tokenizer: Any = None
        self._counter: Any = None
        self._config: dict[str, Any] | None = None
        self._lock = threading.Lock()
        self.load_seconds: float | None = None

    # -- what needs no model -------------------------------------------------------

    @property
    def spec(self) -> str:
        return "minilm" if self.model_name == "minilm" else f"st:{self.model_name}"

    @property
    def model_dir(self) -> Path:
        from harmonygraph.tools.retrieval.model_files import minilm_path

        return Path(minilm_path() if self.model_name == "minilm" else self.model_name)

    def _settings(self) -> dict[str, Any]:
        if self._config is None:
            from harmonygraph.tools.retrieval.onnx_bert import check_architecture

            config = check_architecture(self.model_dir)
            st_file = self.model_dir / "sentence_bert_config.json"
            st = json.loads(st_file.read_text()) if st_file.exists() else {}
            window = int(st.get("max_seq_length") or config.get("max_position_embeddings", 512))
            self._config = {
                "dimension": int(config["hidden_size"]),
                "window": min(window, int(config.get("max_position_embeddings", 512))),
            }
        return self._config

    @property
    def max_input_tokens(self) -> int:
        """The model's input window, less its two special tokens ([CLS], [SEP])."""
        return int(self._settings()["window"]) - 2

    async def dimension(self) -> int:
        return int(self._settings()["dimension"])

    @property
    def loaded(self) -> bool:
        """Whether the ONNX session has started (the expensive part)."""
        return self._session is not None

    # -- tokenizer -----------------------------------------------------------------

    def _load_tokenizer(self, truncate: bool) -> Any:
        try:
            from tokenizers import Tokenizer
        except ImportError as exc:
            raise EmbeddingError(
                "the ONNX embedder needs the `tokenizers` package: "
                "`pip install 'harmonygraph[embeddings]'`"
            ) from exc
        tok = Tokenizer.from_file(str(self.model_dir / "tokenizer.json"))
        tok.no_padding()  # the file pads to 128; batches are padded here, to their longest
        if truncate:
            tok.enable_truncation(int(self._settings()["window"]))
        else:
            tok.no_truncation()
        return tok

    def count_input_tokens(self, text: str) -> int:
        """Tokens the model's own tokenizer makes of `text` (what the window limits)."""
        if self._counter is None:
            with self._lock:
                if self._counter is None:
                    self._counter = self._load_tokenizer(truncate=False)
        return len(self._counter.encode(text, add_special_tokens=False).ids)

    # -- the session ---------------------------------------------------------------

    def graph_path(self) -> Path:
        """Where the ONNX graph of this model is cached (keyed by the weights file)."""
        from harmonygraph.tools.retrieval.onnx_bert import ONNX_GRAPH_VERSION

        weights = self.model_dir / "model.safetensors"
        stat = weights.stat()
        key = hashlib.sha256(
            f"{weights.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{ONNX_GRAPH_VERSION}".encode()
        ).hexdigest()[:16]
        name = "minilm" if self.model_name == "minilm" else Path(self.model_name).name
        return (self._cache_dir or _cache_dir()) / f"{name}-{key}.onnx"

    def load(self) -> None:
        """Start the ONNX session (building and caching the graph the first time)."""
        if self._session is not None:
            return
        with self._lock:
            if self._session is not None:
                return
            started = time.perf_counter()
            try:
                import onnxruntime as ort
            except ImportError as exc:
                raise EmbeddingError(
                    "the ONNX embedder needs onnxruntime: `pip install 'harmonygraph[embeddings]'`"
                    " (or HARMONYGRAPH_EMBED_RUNTIME=torch for sentence-transformers)"
                ) from exc
            graph = self.graph_path()
            optimized = graph.with_suffix(f".ort{ort.__version__}.onnx")
            if not optimized.exists():
                if not graph.exists():
                    if self.on_load is not None:
                        self.on_load(f"writing the ONNX graph of {self.spec} (once)")
                    self._build(graph)
                self._optimize(ort, graph, optimized)
            options = ort.SessionOptions()
            threads = self.threads or default_threads()
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            options.log_severity_level = 3
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            try:
                session = ort.InferenceSession(
                    str(optimized), options, providers=["CPUExecutionProvider"]
                )
            except Exception as exc:  # a damaged cache file: rebuild it once
                optimized.unlink(missing_ok=True)
                graph.unlink(missing_ok=True)
                raise EmbeddingError(
                    f"could not load the cached ONNX graph {optimized} ({exc}); it was "
                    "removed and is rebuilt on the next run: run the command again"
                ) from exc
            self._tokenizer = self._load_tokenizer(truncate=True)
            self._session = session
            self.load_seconds = time.perf_counter() - started

    def _build(self, graph: Path) -> None:
        try:
            import onnx  # noqa: F401
            import safetensors  # noqa: F401
        except ImportError as exc:
            raise EmbeddingError(
                "writing the ONNX graph of the model needs `onnx` and `safetensors` (once): "
                "`pip install 'harmonygraph[embeddings]'`"
            ) from exc
        from harmonygraph.tools.retrieval.onnx_bert import build_bert_onnx

        build_bert_onnx(self.model_dir, graph)

    @staticmethod
    def _optimize(ort: Any, graph: Path, optimized: Path) -> None:
        """Save ONNX Runtime's optimised graph (fused attention, layer norm, GELU) so that
        later sessions skip the optimisation passes. EXTENDED level: no hardware-specific
        layouts, so the file stays valid on another CPU."""
        tmp = optimized.with_name(f".{optimized.name}.{os.getpid()}.tmp")
        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        options.optimized_model_filepath = str(tmp)
        try:
            ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
            tmp.replace(optimized)
        finally:
            tmp.unlink(missing_ok=True)

    # -- embedding -----------------------------------------------------------------

    def embed_sync(self, texts: Sequence[str]) -> np.ndarray:
        dim = int(self._settings()["dimension"])
        if not texts:
            return np.zeros((0, dim), dtype=np.float32)
        if self._session is None and self.use_service:
            # The resident service (`harmonygraph db start`) has the model loaded already.
            from harmonygraph.tools.retrieval.embed_client import embed_via_service

            served = embed_via_service(self.graph_path().name, texts)
            if served is not None:
                return served
        self.load()
        encodings = self._tokenizer.encode_batch(list(texts))
        lengths = np.array([len(e.ids) for e in encodings])
        order = np.argsort(lengths, kind="stable")
        out = np.zeros((len(texts), dim), dtype=np.float32)
        start = 0
        while start < len(order):
            # Sorted by length: a batch is as long as its last text; fill it to BATCH_TOKENS.
            end = start + 1
            while (
                end < len(order)
                and end - start < MAX_BATCH
                and (end - start + 1) * lengths[order[end]] <= BATCH_TOKENS
            ):
                end += 1
            rows = order[start:end]
            width = int(lengths[rows[-1]])
            ids = np.zeros((len(rows), width), dtype=np.int64)
            mask = np.zeros((len(rows), width), dtype=np.int64)
            for r, i in enumerate(rows):
                n = int(lengths[i])
                ids[r, :n] = encodings[i].ids
                mask[r, :n] = 1
            out[rows] = self._session.run(None, {"input_ids": ids, "attention_mask": mask})[0]
            start = end
        # sentence-transformers' Normalize: x / max(|x|, 1e-12).
        norms = np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return (out / norms).astype(np.float32)

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, await self.dimension()), dtype=np.float32)
        return await asyncio.to_thread(self.embed_sync, texts)
