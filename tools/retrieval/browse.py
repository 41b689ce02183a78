"""The pgvector store as the browser's local search backend (air-gapped browsing).

`BrowserToolset(backend=LocalBackend(StoreDocuments(store, "handbook")))` lets the model
`search` the organisation's documents and `open` a result as a whole document, with the
same cursors, line numbers and citations as web pages. By configuration:
`HARMONYGRAPH_SEARCH_BACKEND=local HARMONYGRAPH_LOCAL_COLLECTION=handbook`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from harmonygraph.tools.browser.backends import StoredDocument
from harmonygraph.tools.retrieval.store import RetrievalStore, SearchHit, SearchMode

__all__ = ["StoreDocuments"]


@dataclass(frozen=True, slots=True)
class _Hit:
    title: str
    url: str
    text: str
    score: float


_MEDIA = {"markdown": "text/markdown", "html": "text/plain", "md": "text/markdown"}


class StoreDocuments:
    """A collection of the store, answering the browser's `DocumentSearch`/`DocumentStore`."""

    def __init__(
        self, store: RetrievalStore, collection: str = "default", *, mode: SearchMode = "hybrid"
    ) -> None:
        self.store = store
        self.collection = collection
        self.mode = mode
        self._formats: dict[str, str] = {}

    def url_for(self, source: str) -> str:
        """A `doc://` URL for a stored source: the browser opens only http(s) and doc:// here."""
        if urlsplit(source).scheme == "doc":
            return source
        return f"doc://{quote(self.collection, safe='')}/{quote(source, safe='')}"

    def source_for(self, url: str) -> str:
        prefix = f"doc://{quote(self.collection, safe='')}/"
        return unquote(url[len(prefix) :]) if url.startswith(prefix) else url

    @classmethod
    def configured(
        cls, collection: str, *, url: str | None = None, mode: SearchMode = "hybrid"
    ) -> StoreDocuments:
        """A collection of the store at `url` (else `DATABASE_URL`, else the embedded
        Postgres), opened on first use: for `BrowserConfig`, which is built synchronously.
        The query embedder is the one the collection was indexed with."""
        return cls(RetrievalStore(url), collection, mode=mode)

    async def aclose(self) -> None:
        await self.store.close()

    async def search(self, query: str, k: int) -> list[_Hit]:
        if not self.store.is_open:
            await self.store.open()
        hits: list[SearchHit] = await self.store.search(
            query, collection=self.collection, k=k, mode=self.mode
        )
        out = []
        for hit in hits:
            url = self.url_for(hit.url)
            self._formats[url] = str(hit.metadata.get("format", ""))
            out.append(_Hit(hit.title, url, hit.text, hit.score))
        return out

    async def get(self, url: str) -> StoredDocument | None:
        if not self.store.is_open:
            await self.store.open()
        found: Any = await self.store.document_text(
            self.source_for(url), collection=self.collection
        )
        if found is None:
            return None
        title, text = found
        # Stored text is already extracted (HTML to text at ingest), so it is shown as text.
        return StoredDocument(
            url=url,
            title=title,
            content=text,
            media_type=_MEDIA.get(self._formats.get(url, ""), "text/plain"),
        )
