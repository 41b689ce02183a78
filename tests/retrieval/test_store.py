"""The store against real Postgres + pgvector: schema, ingestion, search, bad input."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from harmonygraph.tools.retrieval import (
    DatabaseUnavailableError,
    DimensionMismatchError,
    EmbedderMismatchError,
    EmbeddingError,
    HashingEmbedder,
    IngestProgress,
    InvalidFilterError,
    RetrievalStore,
    UnknownCollectionError,
    document_from_text,
)
from harmonygraph.tools.retrieval.schema import SCHEMA_VERSION, migrate

pytestmark = pytest.mark.postgres


async def scalar(store: RetrievalStore, sql: str, *args: Any) -> Any:
    async with store._connection() as conn:
        cur = await conn.execute(sql, args)
        row = await cur.fetchone()
    return row[0]


async def test_schema_is_versioned_and_migrations_are_idempotent(store: RetrievalStore) -> None:
    import psycopg

    assert await scalar(store, "SELECT max(version) FROM rag_schema_version") == SCHEMA_VERSION
    async with await psycopg.AsyncConnection.connect(store.url, autocommit=True) as conn:
        assert await migrate(conn) == 0


async def test_upgrade_from_version_2_backfills_postings(pg_url: str) -> None:
    import psycopg
    from harmonygraph.tools.retrieval.schema import MIGRATIONS

    name = "hg_upgrade_test"
    async with await psycopg.AsyncConnection.connect(pg_url, autocommit=True) as admin:
        await admin.execute(f"DROP DATABASE IF EXISTS {name}")
        await admin.execute(f"CREATE DATABASE {name}")
    url = psycopg.conninfo.make_conninfo(pg_url, dbname=name)
    try:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            # A database as version 2 of this schema left it, with one indexed chunk.
            await conn.execute("CREATE EXTENSION vector")
            await conn.execute(
                "CREATE TABLE rag_schema_version (version integer PRIMARY KEY,"
                " name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            for version, title, sql in MIGRATIONS[:2]:
                await conn.execute(sql)
                await conn.execute(
                    "INSERT INTO rag_schema_version (version, name) VALUES (%s, %s)",
                    (version, title),
                )
            await conn.execute(
                "INSERT INTO rag_collections (name, embedder, dimension, n_chunks, total_lexemes)"
                " VALUES ('old', 'hashing:8', 8, 1, 3);"
                "INSERT INTO rag_documents (collection_id, source, title, format, content_hash,"
                " n_chars, n_chunks) VALUES (1, 'doc://old', 'Old', 'text', 'h', 20, 1);"
                "INSERT INTO rag_chunks (document_id, collection_id, chunk_index, text, char_start,"
                " char_end, token_start, token_count, embedding, tsv, lexeme_count) VALUES"
                " (1, 1, 0, 'Zebras graze zebras', 0, 19, 0, 3, '[1,0,0,0,0,0,0,0]',"
                " to_tsvector('english', 'Zebras graze zebras'), 3)"
            )
            assert await migrate(conn) == len(MIGRATIONS) - 2
        async with RetrievalStore(url, embedder=HashingEmbedder(8)) as store:
            hits = await store.search("zebra", collection="old", mode="text")
            assert [h.url for h in hits] == ["doc://old"] and hits[0].score > 0
    finally:
        async with await psycopg.AsyncConnection.connect(pg_url, autocommit=True) as admin:
            await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


async def test_folder_ingest_search_and_citations(
    store: RetrievalStore, docs_dir: Path, collection_name: str
) -> None:
    results = await store.add_paths([docs_dir], collection=collection_name)
    assert sorted(r.status for r in results) == ["added"] * 5
    coll = await store.get_collection(collection_name)
    assert coll.documents == 5 and coll.dimension == 384 and coll.embedder == "hashing:384"

    for mode in ("text", "vector", "hybrid"):
        hits = await store.search(
            "how many weeks of parental leave", collection=collection_name, mode=mode, k=3
        )
        top = hits[0]
        assert top.title == "Leave policy", mode
        assert top.heading == "Leave policy > Parental leave"
        assert top.id == f"doc:{top.document_id}#{top.chunk_index}"
        assert top.url == str((docs_dir / "leave.md").resolve())
        assert top.metadata["owner"] == "hr" and top.collection == collection_name
        source_text = (docs_dir / "leave.md").read_text().split("---\n", 2)[2]
        # Positions point into the loaded text, which for Markdown starts after the front matter.
        assert source_text.strip()[top.char_start : top.char_end] == top.text
    assert [h.mode for h in hits] == ["hybrid"] * len(hits)

    # Convex fusion: normalised scores in [0, 1], both lists' ranks kept on each hit.
    query = "how many weeks of parental leave"
    convex = await store.search(query, collection=collection_name, k=3, fusion="convex")
    assert convex[0].title == "Leave policy" and convex[0].mode == "hybrid"
    assert 0.0 <= convex[-1].score <= convex[0].score <= 1.0
    assert convex[0].text_rank is not None and convex[0].vector_rank is not None
    with pytest.raises(ValueError, match="unknown fusion 'max': use auto, rrf, convex"):
        await store.search(query, collection=collection_name, fusion="max")  # type: ignore[arg-type]

    # The default (auto): a question is answered by the vector ranking, as hybrid hits;
    # anything else by reciprocal rank fusion of both lists.
    vector = await store.search(query, collection=collection_name, k=4, mode="vector")
    auto = await store.search(query, collection=collection_name, k=4)
    assert [h.id for h in auto] == [h.id for h in vector]
    assert [h.vector_rank for h in auto] == [1, 2, 3, 4]
    assert {h.mode for h in auto} == {"hybrid"} and all(h.text_rank is None for h in auto)
    keywords = "parental leave weeks"
    auto = await store.search(keywords, collection=collection_name, k=4)
    rrf = await store.search(keywords, collection=collection_name, k=4, fusion="rrf")
    assert [(h.id, h.score) for h in auto] == [(h.id, h.score) for h in rrf]
    assert any(h.text_rank is not None for h in auto)


@pytest.mark.parametrize(
    ("query", "question"),
    [
        ("Which U.S. state has been admitted latest?", True),
        ("how many weeks of parental leave", True),
        ("  Does aspirin reduce the risk of stroke", True),
        ("parental leave policy", False),
        ("B. F. Skinner", False),
        ("0-dimensional biomaterials show inductive properties.", False),
        ("whole genome sequencing of howler monkeys", False),  # "who"/"how" inside words
        ("Isotope ratios in carbonates", False),
        ("Welche Stadt ist die Hauptstadt?", True),  # any language: the question mark
    ],
)
def test_question_detection(query: str, question: bool) -> None:
    from harmonygraph.tools.retrieval.fusion import is_question

    assert is_question(query) is question
    assert is_question("Was ist das", english=False) is False


async def test_same_file_twice_is_stored_once_and_a_changed_file_replaces_its_chunks(
    store: RetrievalStore, tmp_path: Path, collection_name: str
) -> None:
    path = tmp_path / "memo.txt"
    path.write_text("The launch is planned for March.\n\nBudget: four million.")
    first = (await store.add_paths([path], collection=collection_name))[0]
    again = await store.add_paths([path, path], collection=collection_name)
    assert first.status == "added" and [r.status for r in again] == ["unchanged", "unchanged"]
    assert again[0].document_id == first.document_id
    coll = await store.get_collection(collection_name)
    assert (coll.documents, coll.chunks) == (1, 1)

    versions = [
        document_from_text("Draft one.", source="doc://same"),
        document_from_text("Draft two.", source="doc://same"),
    ]
    twice = await store.add_documents(versions, collection=collection_name)
    assert [r.status for r in twice] == ["unchanged", "added"] and twice[0].error
    hits = await store.search("draft", collection=collection_name, mode="text")
    assert [h.text for h in hits] == ["Draft two."]
    await store.delete_document(twice[1].document_id or 0)

    path.write_text("The launch moved to September.\n\nBudget: five million.")
    changed = (await store.add_paths([path], collection=collection_name))[0]
    assert changed.status == "replaced" and changed.document_id == first.document_id
    n = await scalar(
        store, "SELECT count(*) FROM rag_chunks WHERE document_id = %s", first.document_id
    )
    assert n == 1
    hits = await store.search("launch", collection=collection_name, mode="text")
    assert [h.text for h in hits] == ["The launch moved to September.\n\nBudget: five million."]
    # The postings hold exactly the lexemes of the current chunks, nothing stale.
    postings = await scalar(
        store,
        "SELECT count(*) FROM rag_postings WHERE document_id = %s",
        first.document_id,
    )
    assert postings == await scalar(
        store, "SELECT sum(length(tsv)) FROM rag_chunks WHERE document_id = %s", first.document_id
    )
    # BM25 statistics follow the replacement instead of accumulating.
    lexemes = await scalar(
        store, "SELECT total_lexemes FROM rag_collections WHERE name = %s", collection_name
    )
    actual = await scalar(
        store,
        "SELECT sum(lexeme_count) FROM rag_chunks c JOIN rag_collections k"
        " ON k.id = c.collection_id WHERE k.name = %s",
        collection_name,
    )
    assert lexemes == actual


async def test_bm25_prefers_rare_terms_and_ors_the_query(
    store: RetrievalStore, collection_name: str
) -> None:
    texts = {
        "common": "The report covers the market and the market outlook.",
        "rare": "A note on zirconium supply.",
        "both": "Zirconium market prices rose.",
        "none": "Unrelated text about gardens.",
    }
    for name, text in texts.items():
        await store.add_text(text, source=f"doc://{name}", collection=collection_name)
    for _ in range(3):  # make "market" common
        await store.add_text(
            f"Market news {_}.", source=f"doc://filler{_}", collection=collection_name
        )
    hits = await store.search("zirconium market", collection=collection_name, mode="text", k=10)
    urls = [h.url for h in hits]
    # An AND of terms would return only "both"; OR with BM25 ranks it first, then the
    # rare-term document above the common-term ones, and never the unrelated one.
    assert urls[0] == "doc://both" and urls[1] == "doc://rare"
    assert "doc://common" in urls and "doc://none" not in urls
    assert hits[0].score > hits[1].score > hits[2].score > 0


async def test_filters_are_parameters_not_sql(store: RetrievalStore, collection_name: str) -> None:
    evil = "x' OR '1'='1'; DROP TABLE rag_chunks; --"
    await store.add_text(
        "Budget figures for the north region.", source="doc://north",
        collection=collection_name, metadata={"region": "north", "owner": evil},
    )  # fmt: skip
    await store.add_text(
        "Budget figures for the south region.", source="doc://south",
        collection=collection_name, metadata={"region": "south", "owner": "bob"},
    )  # fmt: skip
    for mode in ("text", "vector", "hybrid"):
        hits = await store.search(
            "budget", collection=collection_name, mode=mode, filters={"owner": evil}
        )
        assert [h.url for h in hits] == ["doc://north"], mode
        none = await store.search(
            "budget", collection=collection_name, mode=mode, filters={"owner": "x' OR '1'='1"}
        )
        assert none == [], mode
        quoted_key = await store.search(
            "budget", collection=collection_name, mode=mode, filters={"re'gion\"; --": "north"}
        )
        assert quoted_key == [], mode
    both = await store.search(
        "budget", collection=collection_name, mode="text", filters={"region": ["north", "south"]}
    )
    assert sorted(h.url for h in both) == ["doc://north", "doc://south"]
    by_source = await store.search(
        "budget", collection=collection_name, mode="vector", filters={"source": "doc://south"}
    )
    assert [h.url for h in by_source] == ["doc://south"]
    assert await scalar(store, "SELECT count(*) FROM rag_chunks") >= 2  # still there
    nested: Any = {"owner": {"$ne": 1}}  # what a model might send despite the schema
    with pytest.raises(InvalidFilterError, match="not a string, number or boolean"):
        await store.search("budget", collection=collection_name, filters=nested)
    with pytest.raises(InvalidFilterError, match="takes integers"):
        await store.search("budget", collection=collection_name, filters={"document_id": "1"})


async def test_wrong_dimension_and_mixed_embedders_are_refused(
    pg_url: str, store: RetrievalStore, collection_name: str
) -> None:
    await store.add_text("Vectors of 384 dimensions.", collection=collection_name)
    async with RetrievalStore(pg_url, embedder=HashingEmbedder(256)) as other:
        with pytest.raises(DimensionMismatchError, match="stores 384-d vectors"):
            await other.add_text("Different model.", collection=collection_name)
        with pytest.raises(DimensionMismatchError):
            await other.search("model", collection=collection_name, mode="vector")
    async with RetrievalStore(pg_url, embedder=HashingEmbedder(384, bigrams=False)) as other:
        with pytest.raises(EmbedderMismatchError, match="not comparable"):
            await other.add_text("Same size, other model.", collection=collection_name)
    with pytest.raises(DimensionMismatchError, match="a 3-d query vector"):
        await store.search_vector([0.1, 0.2, 0.3], collection=collection_name)

    class Broken(HashingEmbedder):
        async def embed(self, texts: Any) -> np.ndarray:
            return np.ones((len(texts), 100), dtype=np.float32)

    async with RetrievalStore(pg_url, embedder=Broken(384)) as broken:
        with pytest.raises(DimensionMismatchError, match="returned 100-dimensional vectors"):
            await broken.add_text("The embedder lies about its size.", collection=collection_name)
    coll = await store.get_collection(collection_name)
    assert coll.documents == 1  # nothing of the refused writes stayed


async def test_database_going_away_mid_ingest_leaves_nothing_half_written(
    pg_url: str, collection_name: str
) -> None:
    import psycopg

    text = "\n\n".join(f"Paragraph {i} about item {i} and its many properties." for i in range(60))
    doc = document_from_text(text, source="doc://big")
    killed: list[int] = []
    store = RetrievalStore(pg_url, embedder=HashingEmbedder(), chunk_tokens=12, chunk_overlap=0)
    store.write_batch = 10  # several INSERTs inside the one transaction
    await store.open()
    await store.create_collection(collection_name)

    async def kill_writer(p: IngestProgress) -> None:
        # After the first slice of chunks is written, inside the open transaction,
        # terminate the writing backend from another connection.
        if p.chunks_written and not killed:
            async with await psycopg.AsyncConnection.connect(pg_url, autocommit=True) as admin:
                cur = await admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE pid <> pg_backend_pid() AND backend_xid IS NOT NULL"
                    " AND datname = current_database() AND state = 'idle in transaction'"
                )
                killed.extend(r[0] for r in await cur.fetchall())

    try:
        with pytest.raises(DatabaseUnavailableError, match="rolled back, so none of them"):
            await store.add_documents([doc], collection=collection_name, progress=kill_writer)
        assert killed == [True]
        coll = await store.get_collection(collection_name)
        assert (coll.documents, coll.chunks) == (0, 0)
        n = await scalar(
            store,
            "SELECT count(*) FROM rag_chunks c JOIN rag_collections k ON k.id = c.collection_id"
            " WHERE k.name = %s",
            collection_name,
        )
        assert n == 0
        # The pool replaced the dead connection; the retry stores the whole document.
        result = (await store.add_documents([doc], collection=collection_name))[0]
        assert result.status == "added" and result.chunks == 60
    finally:
        await store.close()


async def test_failing_embedder_mid_batch_stores_nothing(pg_url: str, collection_name: str) -> None:
    class FailsOnSecondCall(HashingEmbedder):
        calls = 0

        async def embed(self, texts: Any) -> np.ndarray:
            self.calls += 1
            if self.calls == 2:
                raise EmbeddingError("embedding server crashed")
            return await super().embed(texts)

    embedder = FailsOnSecondCall()
    async with RetrievalStore(pg_url, embedder=embedder, embed_batch=4) as store:
        await store.create_collection(collection_name)
        docs = [document_from_text(f"Document number {i}.", source=f"doc://{i}") for i in range(6)]
        with pytest.raises(EmbeddingError, match="crashed"):
            await store.add_documents(docs, collection=collection_name)
        coll = await store.get_collection(collection_name)
        # The first batch (4 documents) was committed whole; the failing one not at all.
        assert coll.documents == 4 and coll.chunks == 4
        results = await store.add_documents(docs, collection=collection_name)
        assert [r.status for r in results] == ["unchanged"] * 4 + ["added"] * 2


async def test_bad_files_in_a_folder_are_reported_and_the_rest_indexed(
    store: RetrievalStore, tmp_path: Path, collection_name: str
) -> None:
    (tmp_path / "good.txt").write_text("A perfectly good document about tea.")
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "blob.txt").write_bytes(bytes(range(256)) * 10)
    (tmp_path / "broken.pdf").write_bytes(b"%PDF-1.7 not really")
    with (tmp_path / "huge.txt").open("wb") as f:
        f.truncate(100 * 1024 * 1024)
    results = {
        Path(r.source).name: r
        for r in await store.add_paths([tmp_path], collection=collection_name)
    }
    assert results["good.txt"].status == "added"
    assert {n: r.error_type for n, r in results.items() if r.status == "error"} == {
        "empty.txt": "EmptyDocumentError",
        "blob.txt": "UnsupportedFileError",
        "broken.pdf": "UnreadableDocumentError",
        "huge.txt": "FileTooLargeError",
    }
    assert "split the file" in (results["huge.txt"].error or "")


async def test_hnsw_index_serves_vector_search(store: RetrievalStore, collection_name: str) -> None:
    coll = await store.create_collection(collection_name)
    docs = [
        document_from_text(f"Record {i} of the inventory, shelf {i % 17}.", source=f"doc://r{i}")
        for i in range(300)
    ]
    await store.add_documents(docs, collection=collection_name)
    query = (await HashingEmbedder().embed(["inventory shelf 3"]))[0]
    async with store._connection() as conn:
        # Fresh statistics: with the stale ones earlier tests leave (autovacuum's timing),
        # the planner may think the collection holds 14 rows and sort them instead.
        await conn.execute("ANALYZE rag_chunks")
    async with store._connection() as conn, conn.transaction():
        await conn.execute("SET LOCAL enable_seqscan = off")
        await conn.execute("SET LOCAL enable_bitmapscan = off")
        cur = await conn.execute(
            "EXPLAIN SELECT c.id FROM rag_chunks c WHERE c.collection_id = %(cid)s::bigint"
            " ORDER BY c.embedding::vector(384) <=> %(q)s LIMIT 5",
            {"cid": coll.id, "q": query},
        )
        plan = "\n".join(r[0] for r in await cur.fetchall())
    assert f"rag_chunks_hnsw_{coll.id}" in plan
    approx = await store.search_vector(query, collection=collection_name, k=5)
    exact = await store.search_vector(query, collection=collection_name, k=5, exact=True)
    assert approx[0].id == exact[0].id


async def test_deferred_index_bulk_load_and_unknown_collection(
    store: RetrievalStore, collection_name: str
) -> None:
    docs = [
        document_from_text(f"Bulk row {i} on topic {i % 5}.", source=f"doc://b{i}")
        for i in range(50)
    ]
    results = await store.add_documents(docs, collection=collection_name, defer_index=True)
    assert all(r.status == "added" for r in results)
    coll = await store.get_collection(collection_name)
    assert (
        await scalar(
            store,
            "SELECT count(*) FROM pg_indexes WHERE indexname = %s",
            f"rag_chunks_hnsw_{coll.id}",
        )
        == 1
    )
    with pytest.raises(UnknownCollectionError, match="index documents into it first"):
        await store.search("anything", collection="no-such-collection")
    assert await store.search("   ", collection=collection_name) == []


async def test_delete_document_and_collection(store: RetrievalStore, collection_name: str) -> None:
    a = await store.add_text("Alpha text.", source="doc://a", collection=collection_name)
    await store.add_text("Beta text.", source="doc://b", collection=collection_name)
    assert a.document_id is not None and await store.delete_document(a.document_id)
    coll = await store.get_collection(collection_name)
    assert (coll.documents, coll.chunks) == (1, 1)
    coll_id = coll.id
    assert await store.delete_collection(collection_name)
    assert (
        await scalar(store, "SELECT count(*) FROM rag_postings WHERE collection_id = %s", coll_id)
        == 0
    )
    assert collection_name not in [c.name for c in await store.list_collections()]
