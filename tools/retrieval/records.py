"""The store's records and argument types: collections, ingest results and progress,
search hits, modes and filters (shared by every part of the store)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, Field

__all__ = [
    "Collection",
    "FilterValue",
    "Filters",
    "Fusion",
    "IngestProgress",
    "IngestResult",
    "ProgressCallback",
    "SearchHit",
    "SearchMode",
]

SearchMode = Literal["vector", "text", "hybrid"]
# How hybrid mode merges its two lists: `auto` (the default) chooses per query (see
# fusion.py); `rrf`, reciprocal rank fusion (ranks only); `convex`, a convex combination of
# the two scores, each min-max normalised over its candidates.
Fusion = Literal["auto", "rrf", "convex"]
FilterValue = str | int | float | bool
Filters = Mapping[str, FilterValue | Sequence[FilterValue]]


class Collection(BaseModel):
    id: int
    name: str
    embedder: str
    dimension: int
    text_config: str
    documents: int = 0
    chunks: int = 0


class IngestResult(BaseModel):
    source: str
    status: Literal["added", "replaced", "unchanged", "skipped", "error"]
    document_id: int | None = None
    chunks: int = 0
    error: str | None = None
    error_type: str | None = None


class SearchHit(BaseModel):
    """One chunk found; `id` is the citation the report pipeline uses."""

    id: str = Field(description="citation id: doc:<document_id>#<chunk_index>")
    title: str
    url: str = Field(description="the document's source: a file path or doc:// URI")
    text: str
    score: float
    collection: str
    document_id: int
    chunk_index: int
    char_start: int
    char_end: int
    token_start: int
    token_count: int
    heading: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    mode: SearchMode = "hybrid"
    vector_rank: int | None = None
    text_rank: int | None = None

    @property
    def citation(self) -> str:
        return f"[{self.id}]"


@dataclass(frozen=True, slots=True)
class IngestProgress:
    source: str
    chunks_written: int  # in this call, so far
    documents_done: int
    documents_total: int
    # What runs now: "reading", "chunking", "loading the model", "embedding", "writing".
    phase: str = "writing"
    chunks_embedded: int = 0  # in this call, so far
    embed_seconds: float = 0.0  # time spent embedding them (rate = chunks / seconds)


ProgressCallback = Callable[[IngestProgress], Awaitable[None] | None]
