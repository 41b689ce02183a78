"""`search_documents`: the retrieval store as a function tool for the model.

The text the model reads lists each hit with its citation id `[doc:<id>#<chunk>]`,
title, source and position; `ToolOutput.metadata["hits"]` carries the same hits as
dicts for the report pipeline, which resolves the ids the model cites.
"""

from __future__ import annotations

from typing import Any, Literal

from harmonygraph.tools.base import FunctionTool, Tool, ToolContext, ToolError, ToolOutput, Toolset
from harmonygraph.tools.retrieval.errors import (
    DatabaseUnavailableError,
    InvalidFilterError,
    RetrievalError,
    UnknownCollectionError,
)
from harmonygraph.tools.retrieval.store import RetrievalStore, SearchHit

__all__ = ["RetrievalToolset", "format_hits", "retrieval_tools"]

FilterValue = str | int | float | bool


def format_hits(query: str, hits: list[SearchHit], *, max_chars: int = 700) -> str:
    if not hits:
        return f"No documents match {query!r}. Try other words or mode 'text' for exact terms."
    lines = [f"{len(hits)} result(s) for {query!r}; cite them by their [doc:...] id."]
    for n, h in enumerate(hits, 1):
        where = f"chars {h.char_start}-{h.char_end}"
        if "page" in h.metadata:
            where = f"page {h.metadata['page']}, " + where
        heading = f" > {h.heading}" if h.heading else ""
        text = " ".join(h.text.split())
        if len(text) > max_chars:
            text = text[:max_chars].rsplit(" ", 1)[0] + " …"
        lines.append(
            f"\n{n}. [{h.id}] {h.title}{heading}\n   source: {h.url} ({where}; "
            f"score {h.score:.4f})\n   {text}"
        )
    return "\n".join(lines)


def retrieval_tools(
    store: RetrievalStore, collection: str = "default", *, max_k: int = 20
) -> list[Tool]:
    """The tools over an open store; `collection` is the one searched."""

    async def search_documents(
        query: str,
        k: int = 5,
        mode: Literal["hybrid", "vector", "text"] = "hybrid",
        filters: dict[str, FilterValue | list[FilterValue]] | None = None,
    ) -> ToolOutput:
        """Search the organisation's indexed documents. Returns passages with citation
        ids like [doc:12#3]; cite them in the answer. `mode`: hybrid (default, best),
        vector (meaning), text (exact words). `filters`: metadata equality, e.g.
        {"author": "Ada"} or {"source": ["a.pdf", "b.pdf"]}."""
        if not 1 <= k <= max_k:
            raise ToolError(f"k must be between 1 and {max_k}")
        try:
            if not store.is_open:
                # A toolset merged into another `functions` namespace loses its start()
                # call; open the store on first use instead.
                await store.open()
            hits = await store.search(query, collection=collection, k=k, mode=mode, filters=filters)
        except InvalidFilterError as exc:
            raise ToolError(f"bad filters: {exc}") from None
        except UnknownCollectionError:
            raise ToolError(
                f"the document collection {collection!r} is empty: nothing has been indexed"
            ) from None
        except DatabaseUnavailableError as exc:
            raise ToolError(f"the document store is unavailable right now ({exc})") from None
        except RetrievalError as exc:
            raise ToolError(str(exc)) from None
        return ToolOutput(
            text=format_hits(query, hits),
            metadata={
                "hits": [h.model_dump() for h in hits],
                "query": query,
                "mode": mode,
                "collection": collection,
            },
        )

    return [FunctionTool(search_documents)]


class RetrievalToolset(Toolset):
    """`functions.search_documents` over a store the toolset opens for the run.

    Give it an open `store` to share one across runs, or nothing (or a `url`) to have
    it open one in `start` and close it in `close`.
    """

    def __init__(
        self,
        store: RetrievalStore | None = None,
        *,
        collection: str = "default",
        url: str | None = None,
        **store_options: Any,
    ) -> None:
        self._owns_store = store is None
        self.store = store or RetrievalStore(url, **store_options)
        super().__init__(retrieval_tools(self.store, collection), namespace="functions")

    async def start(self, ctx: ToolContext) -> None:
        if self._owns_store:
            await self.store.open()

    async def close(self, ctx: ToolContext) -> None:
        if self._owns_store:
            await self.store.close()
