"""Collections: create, get, list and delete them, and the embedder each one records."""

from __future__ import annotations

from harmonygraph.tools.retrieval.base import StoreBase
from harmonygraph.tools.retrieval.embeddings import (
    Embedder,
    embedder_for_collection,
    embedder_from_spec,
)
from harmonygraph.tools.retrieval.errors import (
    DimensionMismatchError,
    EmbedderMismatchError,
    UnknownCollectionError,
)
from harmonygraph.tools.retrieval.records import Collection
from harmonygraph.tools.retrieval.schema import collection_index_sql

__all__ = ["CollectionCatalog"]


class CollectionCatalog(StoreBase):
    """Collections by name (cached per store), each with its embedder and dimension."""

    async def create_collection(
        self, name: str, *, embedder: Embedder | None = None, text_config: str = "english"
    ) -> Collection:
        """Create `name` (or return it if it exists and its embedder matches)."""
        import psycopg

        if not name or len(name) > 200:
            raise ValueError("a collection name must be 1 to 200 characters")
        emb = embedder or self.embedder or embedder_from_spec()
        dim = await emb.dimension()
        async with self._connection() as conn:
            try:
                async with conn.transaction():
                    cur = await conn.execute(
                        "INSERT INTO rag_collections (name, embedder, dimension, text_config)"
                        " VALUES (%s, %s, %s, %s::regconfig) ON CONFLICT (name) DO NOTHING"
                        " RETURNING id",
                        (name, emb.spec, dim, text_config),
                    )
                    row = await cur.fetchone()
                    if row is not None:
                        await conn.execute(collection_index_sql(row[0], dim))
            except psycopg.errors.UndefinedObject as exc:
                raise ValueError(
                    f"unknown text search configuration {text_config!r}: see "
                    "`SELECT cfgname FROM pg_ts_config` (english, simple, german, ...)"
                ) from exc
        coll = await self.get_collection(name)
        self._check_embedder(coll, emb)
        self._embedders.setdefault(coll.embedder, emb)
        return coll

    async def get_collection(self, name: str) -> Collection:
        async with self._connection() as conn:
            cur = await conn.execute(
                "SELECT k.id, k.name, k.embedder, k.dimension, k.text_config::text,"
                " (SELECT count(*) FROM rag_documents d WHERE d.collection_id = k.id),"
                " k.n_chunks FROM rag_collections k WHERE k.name = %s",
                (name,),
            )
            row = await cur.fetchone()
        if row is None:
            raise UnknownCollectionError(
                f"no collection named {name!r}: index documents into it first "
                "(`harmonygraph index add PATH --collection NAME`)"
            )
        coll = Collection(
            id=row[0], name=row[1], embedder=row[2], dimension=row[3], text_config=row[4],
            documents=row[5], chunks=row[6],
        )  # fmt: skip
        self._collections[name] = coll
        return coll

    async def list_collections(self) -> list[Collection]:
        async with self._connection() as conn:
            cur = await conn.execute("SELECT name FROM rag_collections ORDER BY name")
            names = [r[0] for r in await cur.fetchall()]
        return [await self.get_collection(n) for n in names]

    async def delete_collection(self, name: str) -> bool:
        async with self._connection() as conn, conn.transaction():
            cur = await conn.execute(
                "DELETE FROM rag_collections WHERE name = %s RETURNING id", (name,)
            )
            row = await cur.fetchone()
            if row is not None:
                await conn.execute(f"DROP INDEX IF EXISTS rag_chunks_hnsw_{int(row[0])}")
        self._collections.pop(name, None)
        return row is not None

    async def _collection(self, name: str, *, create: bool) -> Collection:
        try:
            return self._collections.get(name) or await self.get_collection(name)
        except UnknownCollectionError:
            if not create:
                raise
            return await self.create_collection(name)

    def _check_embedder(self, coll: Collection, emb: Embedder) -> None:
        if emb.spec != coll.embedder:
            raise EmbedderMismatchError(
                f"collection {coll.name!r} holds {coll.dimension}-d vectors from embedder "
                f"{coll.embedder!r}, not {emb.spec!r}: vectors of different models are not "
                "comparable; use that embedder, or another collection for this one"
            )

    async def embedder_for(self, coll: Collection) -> Embedder:
        if self.embedder is not None:
            dim = await self.embedder.dimension()
            if dim != coll.dimension:
                raise DimensionMismatchError(
                    f"collection {coll.name!r} stores {coll.dimension}-d vectors "
                    f"({coll.embedder}); the embedder {self.embedder.spec!r} makes {dim}-d "
                    "vectors: use a different collection for it"
                )
            self._check_embedder(coll, self.embedder)
            return self.embedder
        if coll.embedder not in self._embedders:
            self._embedders[coll.embedder] = embedder_for_collection(coll.name, coll.embedder)
        return self._embedders[coll.embedder]
