"""The store's settings and its connection pool: open, close, one connection at a time."""

from __future__ import annotations

from typing import Any, Self

from harmonygraph.concurrency import run_in_thread
from harmonygraph.tools.retrieval.db import database_url
from harmonygraph.tools.retrieval.embeddings import (
    Embedder,
)
from harmonygraph.tools.retrieval.errors import (
    DatabaseUnavailableError,
    RetrievalError,
)
from harmonygraph.tools.retrieval.loaders import (
    DEFAULT_MAX_BYTES,
    STREAM_BYTES,
)
from harmonygraph.tools.retrieval.records import Collection
from harmonygraph.tools.retrieval.schema import migrate

__all__ = ["StoreBase", "is_connection_error"]


def is_connection_error(exc: BaseException) -> bool:
    import psycopg

    return isinstance(exc, psycopg.OperationalError | psycopg.errors.AdminShutdown)


class StoreBase:
    """Settings and the connection pool that every part of the store shares."""

    def __init__(
        self,
        url: str | None = None,
        *,
        embedder: Embedder | None = None,
        max_connections: int = 4,
        ef_search: int = 100,
        chunk_tokens: int = 200,
        chunk_overlap: int = 40,
        embed_batch: int = 256,
        write_batch: int = 1000,
        max_bytes: int = DEFAULT_MAX_BYTES,
        stream_bytes: int = STREAM_BYTES,
        group_chars: int = 16_000_000,
    ) -> None:
        self._url = url
        self.embedder = embedder
        self.max_connections = max_connections
        self.ef_search = ef_search
        self.chunk_tokens = chunk_tokens
        self.chunk_overlap = chunk_overlap
        self.embed_batch = embed_batch
        self.write_batch = write_batch
        self.max_bytes = max_bytes
        self.stream_bytes = stream_bytes  # text/Markdown files over this are streamed
        self.group_chars = group_chars  # characters of small files held at once
        self._pool: Any = None
        self._embedders: dict[str, Embedder] = {}
        self._collections: dict[str, Collection] = {}

    # -- lifecycle -------------------------------------------------------------------

    @property
    def url(self) -> str:
        if self._url is None:
            raise RetrievalError("the store is not open: await store.open() first")
        return self._url

    async def open(self) -> Self:
        import psycopg
        from pgvector.psycopg import register_vector_async
        from psycopg_pool import AsyncConnectionPool

        if self._pool is not None:
            return self
        self._url = await run_in_thread(database_url, self._url)
        try:
            async with await psycopg.AsyncConnection.connect(self._url, autocommit=True) as conn:
                await migrate(conn)
        except psycopg.OperationalError as exc:
            raise DatabaseUnavailableError(
                f"cannot connect to Postgres ({str(exc).strip()}): start the embedded one with "
                "`harmonygraph db start`, or set DATABASE_URL to a reachable server"
            ) from exc

        async def configure(conn: Any) -> None:
            await register_vector_async(conn)
            # Custom plans always: a generic plan cannot match the per-collection partial
            # HNSW index (`WHERE collection_id = N`) and would scan every vector.
            await conn.execute(
                "SELECT set_config('plan_cache_mode', 'force_custom_plan', false),"
                " set_config('hnsw.ef_search', %s, false)",
                (str(self.ef_search),),
            )

        pool = AsyncConnectionPool(
            self._url,
            min_size=1,
            max_size=self.max_connections,
            kwargs={"autocommit": True},
            configure=configure,
            open=False,
        )
        try:
            await pool.open(wait=True, timeout=15)
        except Exception as exc:
            await pool.close()
            raise DatabaseUnavailableError(f"cannot open a connection pool: {exc}") from exc
        self._pool = pool
        return self

    @property
    def is_open(self) -> bool:
        return self._pool is not None

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def __aenter__(self) -> Self:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _connection(self) -> Any:
        if self._pool is None:
            raise RetrievalError("the store is not open: await store.open() first")
        return self._pool.connection()
