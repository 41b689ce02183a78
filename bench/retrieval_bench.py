"""Retrieval benchmark: quality on three development sets, query latency, ingest, HNSW.

    python bench/retrieval_bench.py [--parts ingest,quality,serve,scale]
        [--sets vaswani_npl,scifact,dbpedia_entity_5k] [--max-docs scifact=800,...]

1. Quality. Each set (vaswani_npl: 11,429 abstracts, 93 queries, binary judgments;
   scifact: 5,183 abstracts, 300 claims, binary; dbpedia_entity_5k: 5,000 entities, 40
   judged keyword queries, graded 1-2) is indexed through the public API with MiniLM
   (ONNX Runtime, the default runtime; title, blank line, text, as BEIR does) and
   searched in every mode: text (BM25 in SQL), vector, hybrid with each fusion, and
   hybrid as a user gets it (the default fusion). Chunks are mapped to their documents
   (a document ranks where its best chunk does). nDCG@10 uses the graded judgments as
   gains; MAP is over the top 1000 (ef_search 1000), any positive grade relevant.
   `--max-docs SET=N` keeps every judged-relevant document and N in all (a fixed random
   draw of the others) when embedding a whole set does not fit the time; the results
   record it, and every mode is measured on the same documents.
2. Per-query latency: `search(k=10)` with the default depth, query embedding included,
   p50/p95 per mode and set; the nDCG@10 of those k=10 answers is reported beside it
   (hybrid fusions see fewer candidates than in the depth-1000 runs).
3. HNSW recall on the vaswani MiniLM vectors (ef_search 40 and 100 against exact).
4. Scale: latency and recall at 10k and 100k chunks. These collections hold synthetic
   *clustered* 384-d unit vectors (Gaussian clusters around 500 random centres, the
   shape of real embedding sets; uniform random vectors would make HNSW look broken),
   ingested through the same API by an embedder that returns the precomputed vectors.
   Query vectors are fresh draws from the same clusters. Latency is `search_vector`
   wall time (pool checkout, SQL, hit construction; no embedding), p50/p95 over 300
   queries; recall@10 compares HNSW (ef_search 40 and 100) with an exact scan.

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
    RetrievalStore,
    document_from_text,
    embedder_from_spec,
)
from harmonygraph.tools.retrieval.fusion import DEFAULT_FUSION, FUSIONS  # noqa: E402

CORPORA = ROOT.parent / "shared" / "corpora" / "retrieval"
CORPUS = CORPORA / "vaswani_npl"
RESULTS = ROOT / "bench" / "results" / "retrieval.json"
SETS = ("vaswani_npl", "scifact", "dbpedia_entity_5k")
# text, vector, hybrid with each other fusion, and hybrid as a user gets it (the default
# fusion, named in the results).
MODES = ("text", "vector", *(f"hybrid-{f}" for f in FUSIONS if f != DEFAULT_FUSION), "hybrid")

# A development set: documents (id -> (title, text)), queries (id -> text) and graded
# judgments (query id -> {document id: grade > 0}).
Docs = dict[str, tuple[str, str]]
Qrels = dict[str, dict[str, int]]


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


def load_beir(name: str) -> tuple[Docs, dict[str, str], Qrels]:
    """A BEIR-format set (corpus.jsonl, queries.jsonl, qrels/test.tsv): the judged queries
    only, graded judgments kept (0 = judged not relevant, dropped)."""
    folder = CORPORA / name
    docs: Docs = {}
    with (folder / "corpus.jsonl").open() as f:
        for line in f:
            d = json.loads(line)
            docs[d["_id"]] = (d.get("title") or "", " ".join(d["text"].split()))
    qrels: Qrels = {}
    for line in (folder / "qrels" / "test.tsv").read_text().splitlines()[1:]:
        qid, did, grade = line.split("\t")
        if int(grade) > 0:
            qrels.setdefault(qid, {})[did] = int(grade)
    queries: dict[str, str] = {}
    with (folder / "queries.jsonl").open() as f:
        for line in f:
            q = json.loads(line)
            if q["_id"] in qrels:
                queries[q["_id"]] = " ".join(q["text"].split())
    return docs, queries, qrels


def load_set(name: str) -> tuple[Docs, dict[str, str], Qrels]:
    if name == "vaswani_npl":
        docs, queries, binary = load_vaswani()
        return (
            {k: ("", v) for k, v in docs.items()},
            queries,
            {q: dict.fromkeys(r, 1) for q, r in binary.items()},
        )
    return load_beir(name)


def subsample(docs: Docs, qrels: Qrels, limit: int | None, seed: int = 13) -> Docs:
    """At most `limit` documents: every judged-relevant one, then distractors drawn at
    random (fixed seed). Only when embedding all of a set does not fit the time; the
    results then say so (scores run higher with fewer distractors, for every mode)."""
    if limit is None or limit >= len(docs):
        return docs
    relevant = {d for r in qrels.values() for d in r if d in docs}
    others = sorted(set(docs) - relevant)
    rng = np.random.default_rng(seed)
    picked = rng.choice(len(others), size=max(limit - len(relevant), 0), replace=False)
    keep = relevant | {others[i] for i in picked}
    return {k: v for k, v in docs.items() if k in keep}


def set_documents(docs: Docs, prefix: str) -> list[Any]:
    """The documents as the store gets them: title, blank line, text (BEIR's usage)."""
    return [
        document_from_text(
            (f"{title}\n\n{text}" if title else text) or "(empty)",
            source=f"{prefix}://{docno}",
            title=title or None,
            metadata={"docno": docno},
        )
        for docno, (title, text) in docs.items()
    ]


def average_precision(ranked: Sequence[str], grades: dict[str, int]) -> float:
    hits, total = 0, 0.0
    for i, d in enumerate(ranked, 1):
        if grades.get(d, 0) > 0:
            hits += 1
            total += hits / i
    relevant = sum(1 for g in grades.values() if g > 0)
    return total / relevant if relevant else 0.0


def ndcg_at(ranked: Sequence[str], grades: dict[str, int], k: int = 10) -> float:
    """nDCG@k with the grades as gains (linear, as trec_eval and BEIR)."""
    dcg = sum(grades.get(d, 0) / math.log2(i + 1) for i, d in enumerate(ranked[:k], 1))
    ideal = sorted(grades.values(), reverse=True)[:k]
    best = sum(g / math.log2(i + 1) for i, g in enumerate(ideal, 1))
    return dcg / best if best else 0.0


def documents_of(hits: Sequence[Any]) -> list[str]:
    """Document ids in the order of their best chunk."""
    seen: set[str] = set()
    out = []
    for h in hits:
        d = h.metadata["docno"]
        if d not in seen:
            seen.add(d)
            out.append(d)
    return out


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


async def ingest_set(
    url: str, name: str, docs: Docs, embedder: Any, limit: int | None
) -> dict[str, Any]:
    collection = f"{name}-minilm"
    async with RetrievalStore(url, embedder=embedder) as store:
        await store.delete_collection(collection)
        loaded = set_documents(docs, name)
        t0 = time.perf_counter()
        results = await store.add_documents(loaded, collection=collection, defer_index=True)
        elapsed = time.perf_counter() - t0
        t0 = time.perf_counter()
        again = await store.add_documents(loaded, collection=collection)
        reingest = time.perf_counter() - t0
    assert all(r.status == "unchanged" for r in again)
    chunks = sum(r.chunks for r in results)
    return {
        "set": name,
        "collection": collection,
        "embedder": embedder.spec,
        "documents": len(loaded),
        "subsampled_to": limit,
        "chunks": chunks,
        "seconds": round(elapsed, 1),
        "chunks_per_s": round(chunks / elapsed, 1),
        "reingest_unchanged_seconds": round(reingest, 2),
        "load_average_1m": round(os.getloadavg()[0], 1),
    }


def search_args(mode: str) -> dict[str, Any]:
    base, _, fusion = mode.partition("-")
    return {"mode": base, **({"fusion": fusion} if fusion else {})}


async def quality(
    url: str, embedder: Any, name: str, queries: dict[str, str], qrels: Qrels
) -> dict[str, Any]:
    """Per mode: nDCG@10 and MAP over the top 1000, then the latency of search(k=10) (and
    the nDCG@10 of those answers)."""
    collection = f"{name}-minilm"
    out: dict[str, dict[str, Any]] = {}
    async with RetrievalStore(url, embedder=embedder, ef_search=1000) as store:
        coll = await store.get_collection(collection)
        await store.search("warm up", collection=collection, k=10)
        for mode in MODES:
            aps, ndcgs = [], []
            for qid, text in queries.items():
                hits = await store.search(
                    text, collection=collection, k=1000, depth=1000, **search_args(mode)
                )
                ranked = documents_of(hits)
                aps.append(average_precision(ranked, qrels.get(qid, {})))
                ndcgs.append(ndcg_at(ranked, qrels.get(qid, {})))
            out[mode] = {"nDCG@10": round(statistics.mean(ndcgs), 4),
                         "MAP": round(statistics.mean(aps), 4)}  # fmt: skip
    async with RetrievalStore(url, embedder=embedder) as store:
        for mode in MODES:
            lat, ndcgs = [], []
            for qid, text in queries.items():
                t0 = time.perf_counter()
                hits = await store.search(text, collection=collection, k=10, **search_args(mode))
                lat.append((time.perf_counter() - t0) * 1000)
                ndcgs.append(ndcg_at(documents_of(hits), qrels.get(qid, {})))
            out[mode] |= {
                "nDCG@10_k10": round(statistics.mean(ndcgs), 4),
                "p50_ms": round(pct(lat, 50), 1),
                "p95_ms": round(pct(lat, 95), 1),
            }
    return {
        "documents": coll.documents,
        "chunks": coll.chunks,
        "queries": len(queries),
        "load_average_1m": round(os.getloadavg()[0], 1),
        "modes": out,
    }


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
    ap.add_argument("--sets", default=",".join(SETS))
    ap.add_argument(
        "--max-docs", default="", help="SET=N,...: subsample a set (judged documents kept)"
    )
    ap.add_argument("--sizes", default="10000,100000")
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument(
        "--parts",
        default="ingest,quality,serve,scale",
        help="ingest: (re)index the sets with MiniLM; quality: nDCG@10, MAP and latency per "
        "mode on those collections; serve: HNSW recall on vaswani; scale: synthetic "
        "10k/100k. Parts not run keep their previous values in the results file.",
    )
    args = ap.parse_args()
    parts = set(args.parts.split(","))
    sets = [s for s in args.sets.split(",") if s]
    limits = {k: int(v) for k, _, v in (x.partition("=") for x in args.max_docs.split(",") if x)}
    os.environ["HARMONYGRAPH_HOME"] = args.home
    os.makedirs(args.home, exist_ok=True)
    from harmonygraph.tools.retrieval.db import database_url

    url = database_url()
    report: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "notes": "nDCG@10 with graded gains and MAP over the top 1000 (ef_search 1000), "
        "per document (its best chunk); latency: search(k=10), default depth, query "
        "embedding included. Scale rows: synthetic clustered 384-d vectors, latency of "
        "search_vector through the API (no query embedding).",
    }
    async with RetrievalStore(url) as st, st._connection() as conn:
        cur = await conn.execute(
            "SELECT version(), (SELECT extversion FROM pg_extension WHERE extname='vector')"
        )
        row = await cur.fetchone()
        report["machine"]["postgres"] = row[0].split(",")[0]
        report["machine"]["pgvector"] = row[1]
    if RESULTS.exists():
        report = {**json.loads(RESULTS.read_text()), **report}
    # Keys of the earlier vaswani-only layout, superseded by ingest_sets / quality_sets.
    for stale in ("corpus", "quality", "ingest", "latency_vaswani_minilm_k10",
                  "load_average_1m_at_end_of_quality", "load_average_1m_after_serve"):  # fmt: skip
        report.pop(stale, None)
    report["default_fusion"] = DEFAULT_FUSION
    embedder = embedder_from_spec("minilm")
    ingest: dict[str, Any] = dict(report.get("ingest_sets", {}))
    qual: dict[str, Any] = dict(report.get("quality_sets", {}))
    for name in sets:
        docs, queries, qrels = load_set(name)
        if "ingest" in parts:
            docs = subsample(docs, qrels, limits.get(name))
            ingest[name] = await ingest_set(url, name, docs, embedder, limits.get(name))
            print(f"ingested {name}: {ingest[name]}", flush=True)
        if "quality" in parts:
            qual[name] = await quality(url, embedder, name, queries, qrels)
            qual[name]["subsampled"] = qual[name]["documents"] < len(docs)
            print(name, json.dumps(qual[name]), flush=True)
        report["ingest_sets"], report["quality_sets"] = ingest, qual
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(report, indent=2))
    if "serve" in parts and "vaswani_npl" in ingest:
        report["hnsw_recall_vaswani_minilm"] = await hnsw_recall_real(
            url, "vaswani_npl-minilm", load_set("vaswani_npl")[1], embedder
        )
        print("HNSW recall@10 on vaswani:", report["hnsw_recall_vaswani_minilm"])

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

    for name, q in report.get("quality_sets", {}).items():
        sub = f", subsampled to {q['documents']} documents" if q.get("subsampled") else ""
        rows = [
            [mode, m["nDCG@10"], m["MAP"], m.get("nDCG@10_k10", ""), m.get("p50_ms", ""),
             m.get("p95_ms", "")]
            for mode, m in q["modes"].items() if mode in MODES
        ]  # fmt: skip
        print(
            table(
                f"{name} ({q['queries']} queries{sub})",
                ["mode", "nDCG@10", "MAP", "nDCG@10 at k=10", "p50 ms", "p95 ms"],
                rows,
            )
        )
    print(
        table(
            "Ingest through add_documents (MiniLM, ONNX Runtime)",
            ["set", "docs", "chunks", "s", "chunks/s", "re-ingest s", "load"],
            [
                [i["set"], i["documents"], i["chunks"], i["seconds"], i["chunks_per_s"],
                 i["reingest_unchanged_seconds"], i["load_average_1m"]]
                for i in report.get("ingest_sets", {}).values()
            ],
        )
    )  # fmt: skip
    srows = []
    for n, s in report.get("scale", {}).items():
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


if __name__ == "__main__":
    asyncio.run(main())
