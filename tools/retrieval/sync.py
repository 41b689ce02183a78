"""A blocking wrapper of `RetrievalStore` for scripts and notebooks without asyncio."""

from __future__ import annotations

from collections.abc import Coroutine, Iterable, Sequence
from pathlib import Path
from typing import Any, Self, TypeVar

import numpy as np
from harmonygraph.concurrency import run_sync
from harmonygraph.tools.retrieval.embeddings import Embedder
from harmonygraph.tools.retrieval.loaders import LoadedDocument
from harmonygraph.tools.retrieval.store import (
    Collection,
    Filters,
    Fusion,
    IngestResult,
    ProgressCallback,
    RetrievalStore,
    SearchHit,
    SearchMode,
)

__all__ = ["SyncRetrievalStore"]

T = TypeVar("T")


class SyncRetrievalStore:
    """Same methods as `RetrievalStore`, blocking, through the package's one sync bridge
    (`harmonygraph.concurrency.run_sync`): not for use inside a running event loop (use the
    async store there)."""

    def __init__(self, url: str | None = None, *, embedder: Embedder | None = None, **options: Any):
        self.store = RetrievalStore(url, embedder=embedder, **options)
        self._closed = False
        self._run(self.store.open())

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return run_sync(coro)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._run(self.store.close())

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def url(self) -> str:
        return self.store.url

    def create_collection(self, name: str, **kw: Any) -> Collection:
        return self._run(self.store.create_collection(name, **kw))

    def get_collection(self, name: str) -> Collection:
        return self._run(self.store.get_collection(name))

    def list_collections(self) -> list[Collection]:
        return self._run(self.store.list_collections())

    def delete_collection(self, name: str) -> bool:
        return self._run(self.store.delete_collection(name))

    def add_paths(
        self,
        paths: Iterable[str | Path],
        *,
        collection: str = "default",
        metadata: dict[str, Any] | None = None,
        progress: ProgressCallback | None = None,
    ) -> list[IngestResult]:
        return self._run(
            self.store.add_paths(paths, collection=collection, metadata=metadata, progress=progress)
        )

    def add_text(self, text: str, **kw: Any) -> IngestResult:
        return self._run(self.store.add_text(text, **kw))

    def add_documents(
        self, documents: Sequence[LoadedDocument], *, collection: str = "default"
    ) -> list[IngestResult]:
        return self._run(self.store.add_documents(documents, collection=collection))

    def delete_document(self, document_id: int) -> bool:
        return self._run(self.store.delete_document(document_id))

    def search(
        self,
        query: str,
        *,
        collection: str = "default",
        k: int = 5,
        mode: SearchMode = "hybrid",
        filters: Filters | None = None,
        fusion: Fusion = "auto",
    ) -> list[SearchHit]:
        return self._run(
            self.store.search(
                query, collection=collection, k=k, mode=mode, filters=filters, fusion=fusion
            )
        )

    def search_vector(
        self, vector: Sequence[float] | np.ndarray, *, collection: str = "default", k: int = 5,
        exact: bool = False,
    ) -> list[SearchHit]:  # fmt: skip
        return self._run(self.store.search_vector(vector, collection=collection, k=k, exact=exact))
