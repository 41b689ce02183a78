"""The retrieval store: collections, ingestion and search over Postgres + pgvector.

Ingestion is idempotent by source and content hash: a file seen before with the same
bytes is skipped, a changed one has its chunks replaced, and every batch of documents
is written in one transaction, so a failure (a lost connection, a crash) leaves each
document either fully stored or not at all.

Search has three modes. `vector`: cosine distance through the collection's HNSW index.
`text`: BM25 computed in SQL over Postgres `tsvector` lexemes, read from a postings
table (lexeme, chunk, term frequency, chunk length) filled at ingest; document
frequencies are counted from it at query time and the collection's totals are kept
with it. `hybrid`: the two merged, by reciprocal rank fusion (the default) or by a convex
combination of their min-max normalised scores (`fusion="convex"`).
"""

from __future__ import annotations

from harmonygraph.tools.retrieval.ingest import Ingest
from harmonygraph.tools.retrieval.records import (
    Collection,
    Filters,
    FilterValue,
    Fusion,
    IngestProgress,
    IngestResult,
    ProgressCallback,
    SearchHit,
    SearchMode,
)
from harmonygraph.tools.retrieval.search import Search

__all__ = [
    "Collection",
    "FilterValue",
    "Filters",
    "Fusion",
    "IngestProgress",
    "IngestResult",
    "ProgressCallback",
    "RetrievalStore",
    "SearchHit",
    "SearchMode",
]


class RetrievalStore(Ingest, Search):
    """Async store over one Postgres database; `await RetrievalStore(...).open()` first.

    `url`: a Postgres URL; default `DATABASE_URL`, else the embedded server (started if
    needed). `embedder`: used for new collections and checked against existing ones;
    without one, each collection's recorded embedder is rebuilt from its spec.

    One class over parts, one concept a module: the pool and settings (base.py),
    collections (catalog.py), ingest (ingest.py), search (search.py) and the fusion of
    hybrid search (fusion.py).
    """
