"""Search: BM25 over Postgres lexemes (`text`), cosine distance through HNSW (`vector`),
and the two merged (`hybrid`, see fusion.py); metadata filters as bound parameters.

`text` reads a postings table (lexeme, chunk, term frequency, chunk length) filled at
ingest; document frequencies are counted from it at query time and the collection's
totals are kept with it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from harmonygraph.tools.retrieval.base import is_connection_error
from harmonygraph.tools.retrieval.catalog import CollectionCatalog
from harmonygraph.tools.retrieval.errors import (
    DatabaseUnavailableError,
    DimensionMismatchError,
    InvalidFilterError,
)
from harmonygraph.tools.retrieval.fusion import (
    DEFAULT_FUSION,
    FUSIONS,
    fuse_convex,
    fuse_rrf,
    is_question,
)
from harmonygraph.tools.retrieval.records import (
    Collection,
    Filters,
    Fusion,
    SearchHit,
    SearchMode,
)

__all__ = ["BM25_B", "BM25_K1", "Search"]

# BM25 parameters (Robertson's defaults).
BM25_K1 = 1.2
BM25_B = 0.75

_HIT_COLUMNS = """c.id, c.document_id, c.chunk_index, c.text, c.char_start, c.char_end,
    c.token_start, c.token_count, c.heading, c.metadata, d.title, d.source, d.metadata"""


_BM25_SQL = """
WITH q AS (
    SELECT DISTINCT lex FROM unnest(tsvector_to_array(
        to_tsvector(%(cfg)s::regconfig, %(query)s))) AS lex
), idf AS (
    SELECT q.lex, ln(1 + (%(n)s - s.df + 0.5) / (s.df + 0.5)) AS idf
    FROM q CROSS JOIN LATERAL (
        SELECT count(*) AS df FROM rag_postings p
        WHERE p.collection_id = %(cid)s::bigint AND p.lexeme = q.lex) s
    WHERE s.df > 0
), scored AS (
    SELECT p.chunk_id, sum(idf.idf * p.tf * (%(k1)s + 1)
        / (p.tf + %(k1)s * (1 - %(b)s + %(b)s * p.dl / %(avgdl)s))) AS score
    FROM idf JOIN rag_postings p
        ON p.collection_id = %(cid)s::bigint AND p.lexeme = idf.lex
    {join}
    GROUP BY p.chunk_id ORDER BY score DESC, p.chunk_id LIMIT %(k)s
)
SELECT {columns}, scored.score FROM scored
JOIN rag_chunks c ON c.id = scored.chunk_id JOIN rag_documents d ON d.id = c.document_id
ORDER BY scored.score DESC, c.id
"""


def _filter_sql(filters: Filters | None) -> tuple[str, dict[str, Any]]:
    """Metadata filters as SQL with bound parameters, never values spliced into SQL.

    `{"key": value}` matches documents whose metadata has `key` equal to `value`;
    `{"key": [v1, v2]}` matches any of them. `source`, `format` and `document_id` match
    the document's own columns. Everything else is JSON containment (`@>`), so quotes,
    semicolons or SQL in keys or values are just data.
    """
    if not filters:
        return "", {}
    if not isinstance(filters, Mapping):
        raise InvalidFilterError(
            'filters must be an object like {"author": "Ada"}, got ' + type(filters).__name__
        )
    clauses: list[str] = []
    params: dict[str, Any] = {}
    from psycopg.types.json import Jsonb

    for i, (key, value) in enumerate(filters.items()):
        if not isinstance(key, str) or not key or len(key) > 200:
            raise InvalidFilterError(f"filter key {key!r} must be a non-empty string")
        values = list(value) if isinstance(value, list | tuple) else [value]
        if not values:
            raise InvalidFilterError(f"filter {key!r} has an empty list of values")
        for v in values:
            if not isinstance(v, str | int | float | bool):
                raise InvalidFilterError(
                    f"filter {key!r}: {v!r} is not a string, number or boolean"
                )
        name = f"f{i}"
        if key in ("source", "format"):
            if not all(isinstance(v, str) for v in values):
                raise InvalidFilterError(f"filter {key!r} takes strings")
            clauses.append(f"d.{key} = ANY(%({name})s::text[])")
            params[name] = values
        elif key == "document_id":
            if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
                raise InvalidFilterError("filter 'document_id' takes integers")
            clauses.append(f"d.id = ANY(%({name})s::bigint[])")
            params[name] = values
        else:
            clauses.append(f"d.metadata @> ANY(%({name})s::jsonb[])")
            params[name] = [Jsonb({key: v}) for v in values]
    return "".join(f" AND {c}" for c in clauses), params


class Search(CollectionCatalog):
    """Reading: search by text, vector or both, and documents rebuilt from chunks."""

    async def document_text(
        self, source: str, *, collection: str = "default"
    ) -> tuple[str, str] | None:
        """(title, text) of a stored document, rebuilt from its chunks, or None.

        Chunks overlap and each records where it starts in the original text, so laying
        them at their offsets gives the document back without storing it twice.
        """
        coll = await self._collection(collection, create=False)
        async with self._connection() as conn:
            cur = await conn.execute(
                "SELECT d.title, c.text, c.char_start FROM rag_documents d "
                "JOIN rag_chunks c ON c.document_id = d.id "
                "WHERE d.collection_id = %s AND d.source = %s ORDER BY c.char_start, c.chunk_index",
                (coll.id, source),
            )
            rows = await cur.fetchall()
        if not rows:
            return None
        parts: list[str] = []
        end = 0
        for _title, text, start in rows:
            if start + len(text) > end:
                parts.append(text[max(end - start, 0) :] if start < end else text)
                end = start + len(text)
        return rows[0][0], "".join(parts)

    async def search(
        self,
        query: str,
        *,
        collection: str = "default",
        k: int = 5,
        mode: SearchMode = "hybrid",
        filters: Filters | None = None,
        depth: int | None = None,
        fusion: Fusion = DEFAULT_FUSION,
    ) -> list[SearchHit]:
        """The `k` best chunks for `query`. `depth`: candidates per side in hybrid mode;
        `fusion`: how hybrid mode merges them: `auto` (the default: a question is
        answered by the vector ranking, anything else by `rrf`), `rrf` (reciprocal rank
        fusion), or `convex` (equal weights of min-max normalised scores); see fusion.py."""
        if mode not in ("vector", "text", "hybrid"):
            raise ValueError(f"unknown search mode {mode!r}: use vector, text or hybrid")
        if fusion not in FUSIONS:
            raise ValueError(f"unknown fusion {fusion!r}: use {', '.join(FUSIONS)}")
        if not 1 <= k <= 1000:
            raise ValueError("k must be between 1 and 1000")
        if not query.strip():
            return []
        coll = await self._collection(collection, create=False)
        where, params = _filter_sql(filters)
        if mode == "text":
            return await self._text(coll, query, k, where, params)
        emb = await self.embedder_for(coll)
        vector = (await emb.embed([query]))[0]
        if mode == "vector":
            return await self._vector(coll, vector, k, where, params)
        n = depth or max(100, 4 * k)
        if fusion == "auto" and is_question(query, english=coll.text_config == "english"):
            # The vector ranking alone, as hybrid hits (RRF-scored, vector ranks kept).
            return fuse_rrf([], await self._vector(coll, vector, k, where, params), k)
        text_hits, vector_hits = await asyncio.gather(
            self._text(coll, query, n, where, params), self._vector(coll, vector, n, where, params)
        )
        if fusion == "convex":
            return fuse_convex(text_hits, vector_hits, k)
        return fuse_rrf(text_hits, vector_hits, k)

    async def search_vector(
        self,
        vector: Sequence[float] | np.ndarray,
        *,
        collection: str = "default",
        k: int = 5,
        filters: Filters | None = None,
        exact: bool = False,
    ) -> list[SearchHit]:
        """Nearest chunks to a vector; `exact` scans every vector (no index) for ground truth."""
        coll = await self._collection(collection, create=False)
        v = np.asarray(vector, dtype=np.float32).reshape(-1)
        if v.shape[0] != coll.dimension:
            raise DimensionMismatchError(
                f"a {v.shape[0]}-d query vector for collection {coll.name!r}, which stores "
                f"{coll.dimension}-d vectors ({coll.embedder})"
            )
        where, params = _filter_sql(filters)
        return await self._vector(coll, v, k, where, params, exact=exact)

    def _hit(
        self, coll: Collection, row: Sequence[Any], score: float, mode: SearchMode
    ) -> SearchHit:
        meta = {**(row[12] or {}), **(row[9] or {})}
        return SearchHit(
            id=f"doc:{row[1]}#{row[2]}", document_id=row[1], chunk_index=row[2], text=row[3],
            char_start=row[4], char_end=row[5], token_start=row[6], token_count=row[7],
            heading=row[8], metadata=meta, title=row[10], url=row[11], score=float(score),
            collection=coll.name, mode=mode,
        )  # fmt: skip

    async def _vector(
        self,
        coll: Collection,
        vector: np.ndarray,
        k: int,
        where: str,
        params: dict[str, Any],
        *,
        exact: bool = False,
    ) -> list[SearchHit]:
        dim = int(coll.dimension)
        # The expression must be the index's (`embedding::vector(DIM)`) for the planner
        # to use the collection's HNSW index; DIM is an int from our own table.
        sql = (
            f"SELECT {_HIT_COLUMNS}, c.embedding::vector({dim}) <=> %(q)s AS distance"
            " FROM rag_chunks c JOIN rag_documents d ON d.id = c.document_id"
            f" WHERE c.collection_id = %(cid)s::bigint{where}"
            f" ORDER BY c.embedding::vector({dim}) <=> %(q)s LIMIT %(k)s"
        )
        args = {**params, "q": vector, "cid": coll.id, "k": k}
        async with self._connection() as conn:
            try:
                if exact or where:
                    async with conn.transaction():
                        if exact:
                            await conn.execute("SET LOCAL enable_indexscan = off")
                        else:
                            # pgvector 0.6 filters after the index scan: look further so
                            # that k hits survive a selective filter.
                            await conn.execute(
                                "SELECT set_config('hnsw.ef_search', %s, true)",
                                (str(min(1000, max(self.ef_search, 10 * k, 400))),),
                            )
                        cur = await conn.execute(sql, args)
                        rows = await cur.fetchall()
                else:
                    cur = await conn.execute(sql, args)
                    rows = await cur.fetchall()
            except Exception as exc:
                if is_connection_error(exc):
                    raise DatabaseUnavailableError(
                        f"lost the database during search: {exc}"
                    ) from exc
                raise
        return [self._hit(coll, r, 1.0 - float(r[13]), "vector") for r in rows]

    async def _text(
        self, coll: Collection, query: str, k: int, where: str, params: dict[str, Any]
    ) -> list[SearchHit]:
        # BM25 over the query's lexemes, ORed (an AND of all terms answers few queries).
        # Each lexeme is quoted into a tsquery by hand: tsquery input syntax doubles
        # quotes and backslashes, and the lexeme comes from to_tsvector, not the user.
        # Documents are joined before scoring only when a filter needs them.
        join = f"JOIN rag_documents d ON d.id = p.document_id WHERE true{where}" if where else ""
        sql = _BM25_SQL.format(columns=_HIT_COLUMNS, join=join)
        async with self._connection() as conn:
            cur = await conn.execute(
                "SELECT n_chunks, total_lexemes FROM rag_collections WHERE id = %s", (coll.id,)
            )
            stats = await cur.fetchone()
            n = max(int(stats[0]), 1)
            avgdl = max(float(stats[1]) / n, 1.0)
            args = {
                **params, "cfg": coll.text_config, "query": query, "n": float(n), "cid": coll.id,
                "k1": BM25_K1, "b": BM25_B, "avgdl": avgdl, "k": k,
            }  # fmt: skip
            try:
                cur = await conn.execute(sql, args)
                rows = await cur.fetchall()
            except Exception as exc:
                if is_connection_error(exc):
                    raise DatabaseUnavailableError(
                        f"lost the database during search: {exc}"
                    ) from exc
                raise
        return [self._hit(coll, r, float(r[13]), "text") for r in rows]
