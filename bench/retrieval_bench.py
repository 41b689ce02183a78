"""Retrieval benchmark: quality on vaswani_npl, ingest throughput, latency and HNSW recall.

    python bench/retrieval_bench.py [--quick] [--sizes 10000,100000] [--home DIR]

1. Quality. The NPL collection (11,429 abstracts, 93 queries, binary judgments) is
   indexed through the public API with all-MiniLM-L6-v2 and with the hashing embedder;
   MAP (over the top 1000) and nDCG@10 for text (BM25 in SQL), vector and hybrid (RRF).
2. Ingest throughput through `RetrievalStore.add_documents` (chunk, embed, write).
3. Latency and recall at 10k and 100k chunks. These collections hold synthetic
   *clustered* 384-d unit vectors (Gaussian clusters around 500 random centres, the
   shape of real embedding sets; uniform random vectors would make HNSW look broken),
   ingested through the same API by an embedder that returns the precomputed vectors.
   Query vectors are fresh draws from the same clusters. Latency is `search_vector`
   wall time (pool checkout, SQL, hit construction; no embedding), p50/p95 over 300
   queries; recall@10 compares HNSW (ef_search 40 and 100) with an exact scan.
4. End-to-end query latency on vaswani with MiniLM (embedding the query included).

Writes bench/results/retrieval.json and prints the tables.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harmonygraph.tools.retrieval import (  # noqa: E402
    HashingEmbedder,
    RetrievalStore,
    SentenceTransformerEmbedder,
    document_from_text,
)

CORPUS = ROOT.parent / "shared" / "corpora" / "retrieval" / "vaswani_npl"
RESULTS = ROOT / "bench" / "results" / "retrieval.json"


# -- data ------------------------------------------------------------------------------


def load_vaswani() -> tuple[dict[str, str], dict[str, str], dict[str, set[str]]]:
    raw = (CORPUS / "corpus" / "doc-text.trec").read_text()
    docs = {
        m.group(1): " ".join(m.group(2).split())
        for m in re.finditer(r"<DOCNO>\s*(\S+)\s*</DOCNO>(.*?)</DOC>", raw, re.DOTALL)
    }
    rawq = (CORPUS / "query-text.trec").read_text()
    queries = {
        m.group(1): " ".join(m.group(2).split()).lower()
        for m in re.finditer(r"<num>\s*(\S+)\s*</num>\s*<title>(.*?)</title>", rawq, re.DOTALL)
    }
    qrels: dict[str, set[str]] = {}
    for line in (CORPUS / "qrels").read_text().splitlines():
        parts = line.split()
        if len(parts) == 4 and int(parts[3]) > 0:
            qrels.setdefault(parts[0], set()).add(parts[2])
    return docs, queries, qrels


def average_precision(ranked: Sequence[str], relevant: set[str]) -> float:
    hits, total = 0, 0.0
    for i, d in enumerate(ranked, 1):
        if d in relevant:
            hits += 1
            total += hits / i
    return total / len(relevant) if relevant else 0.0


def ndcg_at(ranked: Sequence[str], relevant: set[str], k: int = 10) -> float:
    dcg = sum(1 / math.log2(i + 1) for i, d in enumerate(ranked[:k], 1) if d in relevant)
    ideal = sum(1 / math.log2(i + 1) for i in range(1, min(k, len(relevant)) + 1))
    return dcg / ideal if ideal else 0.0


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


class PrecomputedEmbedder:
    """Bench-only: returns stored vectors for texts `vec <i> ...` (synthetic sets)."""

    def __init__(self, vectors: np.ndarray, name: str) -> None:
        self.vectors = vectors
        self.name = name

    @property
    def spec(self) -> str:
        return f"bench:{self.name}"

    async def dimension(self) -> int:
        return int(self.vectors.shape[1])

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        return self.vectors[[int(t.split()[1]) for t in texts]]


def clustered_vectors(n: int, dim: int, seed: int, centers: np.ndarray) -> np.ndarray:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, len(centers), n)
    # Noise of norm ~0.6 around unit centres: neighbours share a cluster but are not
    # duplicates, so the top 10 is not decided by the cluster alone.
    points = centers[labels] + rng.normal(0, 0.6 / math.sqrt(dim), (n, dim))
    return (points / np.linalg.norm(points, axis=1, keepdims=True)).astype(np.float32)


# -- parts -----------------------------------------------------------------------------


async def ingest_vaswani(
    url: str, docs: dict[str, str], name: str, embedder: Any
) -> tuple[RetrievalStore, dict[str, Any]]:
    store = await RetrievalStore(url, embedder=embedder, ef_search=1000).open()
    await store.delete_collection(name)
    loaded = [
        document_from_text(
            text or "(empty)", source=f"vaswani://{docno}", metadata={"docno": docno}
        )
        for docno, text in docs.items()
    ]
    t0 = time.perf_counter()
    results = await store.add_documents(loaded, collection=name)
    elapsed = time.perf_counter() - t0
    chunks = sum(r.chunks for r in results)
    t0 = time.perf_counter()
    again = await store.add_documents(loaded, collection=name)
    reingest = time.perf_counter() - t0
    assert all(r.status == "unchanged" for r in again)
    return store, {
        "collection": name,
        "embedder": embedder.spec,
        "documents": len(loaded),
        "chunks": chunks,
        "seconds": round(elapsed, 2),
        "docs_per_s": round(len(loaded) / elapsed, 1),
        "chunks_per_s": round(chunks / elapsed, 1),
        "reingest_unchanged_seconds": round(reingest, 2),
    }


async def quality(
    store: RetrievalStore,
    name: str,
    queries: dict[str, str],
    qrels: dict[str, set[str]],
    modes: Sequence[str],
    depth: int = 1000,
) -> dict[str, dict[str, float]]:
    out = {}
    for mode in modes:
        aps, ndcgs, answered, lat = [], [], 0, []
        for qid, text in queries.items():
            relevant = qrels.get(qid, set())
            t0 = time.perf_counter()
            # "hybrid-convex": hybrid mode with fusion="convex" instead of RRF.
            base, _, fusion = mode.partition("-")
            hits = await store.search(
                text,
                collection=name,
                k=depth,
                mode=base,  # type: ignore[arg-type]
                depth=depth,
                fusion=fusion or "rrf",  # type: ignore[arg-type]
            )
            lat.append((time.perf_counter() - t0) * 1000)
            ranked = [h.metadata["docno"] for h in hits]
            answered += bool(ranked)
            aps.append(average_precision(ranked, relevant))
            ndcgs.append(ndcg_at(ranked, relevant))
        out[mode] = {
            "MAP": round(statistics.mean(aps), 4),
            "nDCG@10": round(statistics.mean(ndcgs), 4),
            "answered": answered,
            "queries": len(queries),
            "p50_ms_depth1000": round(pct(lat, 50), 2),
        }
    return out


async def latency_at_k10(
    store: RetrievalStore, name: str, queries: dict[str, str], modes: Sequence[str]
) -> dict[str, dict[str, float]]:
    """End-to-end `search(k=10)` latency, query embedding included."""
    out = {}
    for mode in modes:
        lat = []
        for _ in range(2):
            for text in queries.values():
                t0 = time.perf_counter()
                await store.search(text, collection=name, k=10, mode=mode)  # type: ignore[arg-type]
                lat.append((time.perf_counter() - t0) * 1000)
        out[mode] = {"p50_ms": round(pct(lat, 50), 2), "p95_ms": round(pct(lat, 95), 2)}
    return out


async def hnsw_recall_real(
    url: str, name: str, queries: dict[str, str], embedder: Any
) -> dict[str, Any]:
    vectors = await embedder.embed(list(queries.values()))
    out: dict[str, Any] = {}
    for ef in (40, 100):
        # A fresh store per setting: ef_search is set on every pooled connection.
        async with RetrievalStore(url, embedder=embedder, ef_search=ef) as store:
            recalls = []
            for v in vectors:
                approx = await store.search_vector(v, collection=name, k=10)
                exact = await store.search_vector(v, collection=name, k=10, exact=True)
                # Compare distances, not ids: NPL has duplicate abstracts, whose equal
                # vectors tie and may be listed in either order.
                cutoff = exact[-1].score - 1e-6
                recalls.append(sum(1 for h in approx if h.score >= cutoff) / len(exact))
            out[f"ef_search={ef}"] = round(statistics.mean(recalls), 4)
    return out


async def scale(url: str, n: int, centers: np.ndarray, nq: int) -> dict[str, Any]:
    dim = centers.shape[1]
    data = clustered_vectors(n, dim, seed=n, centers=centers)
    queries = clustered_vectors(nq, dim, seed=n + 1, centers=centers)
    name = f"synthetic-{n}"
    store = await RetrievalStore(url, embedder=PrecomputedEmbedder(data, f"clustered-{n}")).open()
    await store.delete_collection(name)
    # 100 chunks per document: one paragraph per vector, each its own chunk.
    per_doc = 100
    docs = []
    for d in range(0, n, per_doc):
        paras = [f"vec {i} synthetic passage number {i}" for i in range(d, min(n, d + per_doc))]
        docs.append(document_from_text("\n\n".join(paras), source=f"synthetic://{n}/{d}"))
    store.chunk_tokens = 8  # each paragraph is 7 tokens: one chunk per vector
    store.chunk_overlap = 0
    t0 = time.perf_counter()
    # Bulk path: rows first, then one HNSW build (maintenance_work_mem 1GB).
    results = await store.add_documents(docs, collection=name, defer_index=True)
    ingest_s = time.perf_counter() - t0
    assert sum(r.chunks for r in results) == n, "one chunk per vector expected"
    out: dict[str, Any] = {
        "chunks": n,
        "ingest_seconds": round(ingest_s, 1),
        "ingest_chunks_per_s": round(n / ingest_s),
        "ingest_note": "add_documents(defer_index=True): rows, then one HNSW build",
        "load_average_before_queries": os.getloadavg()[0],
    }
    for q in queries[:20]:  # warm the pool, caches and the index pages
        await store.search_vector(q, collection=name, k=10)
    exact_lat, truth = [], []
    for q in queries:
        t0 = time.perf_counter()
        hits = await store.search_vector(q, collection=name, k=10, exact=True)
        exact_lat.append((time.perf_counter() - t0) * 1000)
        truth.append({h.id for h in hits})
    out["exact_p50_ms"] = round(pct(exact_lat, 50), 2)
    for ef in (40, 100):
        await store.close()
        store.ef_search = ef
        await store.open()
        for q in queries[:20]:
            await store.search_vector(q, collection=name, k=10)
        lat, recalls = [], []
        for q, t in zip(queries, truth, strict=True):
            t0 = time.perf_counter()
            hits = await store.search_vector(q, collection=name, k=10)
            lat.append((time.perf_counter() - t0) * 1000)
            recalls.append(len(t & {h.id for h in hits}) / 10)
        out[f"ef_search={ef}"] = {
            "p50_ms": round(pct(lat, 50), 3),
            "p95_ms": round(pct(lat, 95), 3),
            "recall@10": round(statistics.mean(recalls), 4),
        }
    await store.close()
    return out


def table(title: str, header: list[str], rows: list[list[Any]]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=True)]

    def line(r: list[Any]) -> str:
        return "| " + " | ".join(str(x).ljust(w) for x, w in zip(r, widths, strict=True)) + " |"

    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([f"\n{title}", line(header), sep, *(line(r) for r in rows)])


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--home", default=str(Path(tempfile.gettempdir()) / "harmonygraph-bench"))
    ap.add_argument("--sizes", default="10000,100000")
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--skip-minilm", action="store_true")
    ap.add_argument(
        "--parts",
        default="ingest,quality,serve,scale",
        help="ingest: (re)index vaswani with hashing and MiniLM; quality: MAP/nDCG on those "
        "collections; serve: k=10 latency and HNSW recall on the MiniLM collection; scale: "
        "synthetic 10k/100k. Parts not run keep their previous values in the results file.",
    )
    args = ap.parse_args()
    parts = set(args.parts.split(","))
    os.environ["HARMONYGRAPH_HOME"] = args.home
    os.makedirs(args.home, exist_ok=True)
    from harmonygraph.tools.retrieval.db import database_url

    url = database_url()
    docs, queries, qrels = load_vaswani()
    report: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "corpus": {"name": "vaswani_npl", "documents": len(docs), "queries": len(queries)},
        "notes": "MAP over the top 1000 (ef_search 1000 for the quality runs); nDCG@10 with "
        "binary judgments. Scale rows: synthetic clustered 384-d vectors, latency of "
        "search_vector through the API (no query embedding).",
    }
    async with RetrievalStore(url) as st:
        async with st._connection() as conn:
            cur = await conn.execute(
                "SELECT version(), (SELECT extversion FROM pg_extension WHERE extname='vector')"
            )
            row = await cur.fetchone()
            report["machine"]["postgres"] = row[0].split(",")[0]
            report["machine"]["pgvector"] = row[1]

    if RESULTS.exists():
        report = {**json.loads(RESULTS.read_text()), **report}
    if "quality" in parts:
        ingest: list[dict[str, Any]] = list(report.get("ingest", []))
        qual: dict[str, Any] = {}
        specs: list[tuple[str, Any, list[str]]] = [
            ("hashing", HashingEmbedder(), ["text", "vector", "hybrid", "hybrid-convex"])
        ]
        if not args.skip_minilm:
            specs.append(
                ("minilm", SentenceTransformerEmbedder(), ["vector", "hybrid", "hybrid-convex"])
            )
        for label, embedder, modes in specs:
            name = f"vaswani-{label}"
            if "ingest" in parts:
                store, info = await ingest_vaswani(url, docs, name, embedder)
                ingest = [i for i in ingest if i["collection"] != name] + [info]
                print(f"ingested {name}: {info}", flush=True)
            else:  # evaluate the collections a previous `ingest` run left
                store = await RetrievalStore(url, embedder=embedder, ef_search=1000).open()
            qual[label] = await quality(store, name, queries, qrels, modes)
            await store.close()
        report["ingest"] = ingest
        report["load_average_1m_at_end_of_quality"] = os.getloadavg()[0]
        report["quality"] = {**report.get("quality", {}), **qual}
        print(json.dumps(qual, indent=1), flush=True)
    if "serve" in parts and not args.skip_minilm:
        minilm = SentenceTransformerEmbedder()
        async with RetrievalStore(url, embedder=minilm) as store:
            report["latency_vaswani_minilm_k10"] = await latency_at_k10(
                store, "vaswani-minilm", queries, ["text", "vector", "hybrid"]
            )
        report["hnsw_recall_vaswani_minilm"] = await hnsw_recall_real(
            url, "vaswani-minilm", queries, minilm
        )
        report["load_average_1m_after_serve"] = os.getloadavg()[0]
        print("serve:", report["latency_vaswani_minilm_k10"], report["hnsw_recall_vaswani_minilm"])
    qual = report.get("quality", {})
    ingest = report.get("ingest", [])

    rng = np.random.default_rng(7)
    centers = rng.normal(size=(500, 384))
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    if "scale" in parts:
        report["scale"] = {}
        for n in [int(s) for s in args.sizes.split(",") if s]:
            report["scale"][str(n)] = await scale(url, n, centers, args.queries)
            print(f"scale {n}: {report['scale'][str(n)]}", flush=True)
            RESULTS.write_text(json.dumps(report, indent=2))

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2))

    rows = []
    for emb, modes in qual.items():
        for mode, m in modes.items():
            if emb == "minilm" or mode in ("text",) or emb == "hashing":
                label = "text (BM25)" if mode == "text" else f"{mode} ({emb})"
                rows.append([label, m["MAP"], m["nDCG@10"], f"{m['answered']}/{m['queries']}"])
    print(table("Quality on vaswani_npl", ["mode", "MAP", "nDCG@10", "answered"], rows))
    print(
        table(
            "Ingest through add_documents",
            ["embedder", "docs", "chunks", "s", "docs/s", "re-ingest s"],
            [
                [i["embedder"], i["documents"], i["chunks"], i["seconds"], i["docs_per_s"],
                 i["reingest_unchanged_seconds"]]
                for i in ingest
            ],
        )
    )  # fmt: skip
    srows = []
    for n, s in report["scale"].items():
        for ef in (40, 100):
            e = s[f"ef_search={ef}"]
            srows.append([n, ef, e["p50_ms"], e["p95_ms"], e["recall@10"], s["exact_p50_ms"],
                          s["ingest_chunks_per_s"]])  # fmt: skip
    print(
        table(
            "Vector search latency and HNSW recall (synthetic clustered 384-d)",
            ["chunks", "ef_search", "p50 ms", "p95 ms", "recall@10", "exact p50 ms", "ingest/s"],
            srows,
        )
    )
    if "latency_vaswani_minilm_k10" in report:
        lat = report["latency_vaswani_minilm_k10"]
        print(
            table(
                "search(k=10) on vaswani, MiniLM query embedding included",
                ["mode", "p50 ms", "p95 ms"],
                [[m, v["p50_ms"], v["p95_ms"]] for m, v in lat.items()],
            )
        )
        print("HNSW recall@10 on real MiniLM vectors:", report["hnsw_recall_vaswani_minilm"])


if __name__ == "__main__":
    asyncio.run(main())
