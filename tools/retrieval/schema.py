"""The retrieval schema and its versioned migrations.

`migrate` applies, in order and once each, the migrations a database lacks; each runs
in its own transaction under an advisory lock, so two processes starting together do
not both apply one. Tables are prefixed `rag_` so they can share a database.

Embeddings live in one `vector` column of no fixed dimension, because collections may
use different embedders; each collection gets its own partial HNSW index over
`embedding::vector(DIM)`, created with the collection (see `collection_index_sql`).
"""

from __future__ import annotations

from typing import Any

from harmonygraph.tools.retrieval.errors import DatabaseUnavailableError, ExtensionUnavailableError

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "collection_index_sql", "migrate"]

# Any constant works; it only has to be the same in every process.
_MIGRATION_LOCK = 0x4847_5241_4701

MIGRATIONS: list[tuple[int, str, str]] = [
    (
        1,
        "collections, documents, chunks",
        """
        CREATE TABLE rag_collections (
            id bigserial PRIMARY KEY,
            name text NOT NULL UNIQUE,
            embedder text NOT NULL,
            dimension integer NOT NULL CHECK (dimension BETWEEN 1 AND 2000),
            text_config regconfig NOT NULL DEFAULT 'english',
            metadata jsonb NOT NULL DEFAULT '{}',
            created_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE TABLE rag_documents (
            id bigserial PRIMARY KEY,
            collection_id bigint NOT NULL REFERENCES rag_collections(id) ON DELETE CASCADE,
            source text NOT NULL,
            title text NOT NULL,
            format text NOT NULL,
            content_hash text NOT NULL,
            metadata jsonb NOT NULL DEFAULT '{}',
            n_chars integer NOT NULL,
            n_chunks integer NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now(),
            UNIQUE (collection_id, source)
        );
        CREATE INDEX rag_documents_metadata ON rag_documents USING gin (metadata jsonb_path_ops);
        CREATE INDEX rag_documents_hash ON rag_documents (collection_id, content_hash);
        CREATE TABLE rag_chunks (
            id bigserial PRIMARY KEY,
            document_id bigint NOT NULL REFERENCES rag_documents(id) ON DELETE CASCADE,
            collection_id bigint NOT NULL REFERENCES rag_collections(id) ON DELETE CASCADE,
            chunk_index integer NOT NULL,
            text text NOT NULL,
            char_start integer NOT NULL,
            char_end integer NOT NULL,
            token_start integer NOT NULL,
            token_count integer NOT NULL,
            heading text,
            metadata jsonb NOT NULL DEFAULT '{}',
            embedding vector NOT NULL,
            tsv tsvector NOT NULL,
            UNIQUE (document_id, chunk_index)
        );
        CREATE INDEX rag_chunks_tsv ON rag_chunks USING gin (tsv);
        CREATE INDEX rag_chunks_collection ON rag_chunks (collection_id);
        """,
    ),
    (
        2,
        "statistics for BM25 ranking",
        # BM25 needs each chunk's length in lexemes and the collection's chunk count and
        # total length; keeping them at ingest time saves a scan per query.
        """
        ALTER TABLE rag_chunks ADD COLUMN lexeme_count integer;
        UPDATE rag_chunks c SET lexeme_count = coalesce(
            (SELECT sum(coalesce(array_length(u.positions, 1), 1)) FROM unnest(c.tsv) u), 0);
        ALTER TABLE rag_chunks ALTER COLUMN lexeme_count SET NOT NULL;
        ALTER TABLE rag_collections
            ADD COLUMN n_chunks bigint NOT NULL DEFAULT 0,
            ADD COLUMN total_lexemes bigint NOT NULL DEFAULT 0;
        UPDATE rag_collections k SET
            n_chunks = (SELECT count(*) FROM rag_chunks c WHERE c.collection_id = k.id),
            total_lexemes = (SELECT coalesce(sum(lexeme_count), 0)
                             FROM rag_chunks c WHERE c.collection_id = k.id);
        """,
    ),
    (
        3,
        "postings for BM25",
        # An inverted index as a table: scoring then reads only the postings of the
        # query's lexemes (an index-only range scan each) instead of unnesting the
        # tsvector of every candidate chunk, which cost ~100 ms per query at 11k chunks.
        """
        CREATE TABLE rag_postings (
            collection_id bigint NOT NULL,
            lexeme text NOT NULL,
            chunk_id bigint NOT NULL REFERENCES rag_chunks(id) ON DELETE CASCADE,
            document_id bigint NOT NULL,
            tf integer NOT NULL,
            dl integer NOT NULL,
            PRIMARY KEY (collection_id, lexeme, chunk_id) INCLUDE (tf, dl, document_id)
        );
        CREATE INDEX rag_postings_chunk ON rag_postings (chunk_id);
        INSERT INTO rag_postings
            SELECT c.collection_id, u.lexeme, c.id, c.document_id,
                   coalesce(array_length(u.positions, 1), 1), c.lexeme_count
            FROM rag_chunks c CROSS JOIN LATERAL unnest(c.tsv) u;
        """,
    ),
]
SCHEMA_VERSION = MIGRATIONS[-1][0]


def collection_index_sql(collection_id: int, dimension: int) -> str:
    """The HNSW index of one collection (ints only: safe to format into SQL)."""
    cid, dim = int(collection_id), int(dimension)
    return (
        f"CREATE INDEX IF NOT EXISTS rag_chunks_hnsw_{cid} ON rag_chunks "
        f"USING hnsw ((embedding::vector({dim})) vector_cosine_ops) "
        f"WITH (m = 16, ef_construction = 64) WHERE collection_id = {cid}"
    )


async def ensure_vector_extension(conn: Any) -> None:
    import psycopg

    try:
        await conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    except psycopg.errors.InsufficientPrivilege as exc:
        raise ExtensionUnavailableError(
            "this database user may not CREATE EXTENSION vector: ask an administrator to run "
            "`CREATE EXTENSION vector;` in this database once, then retry"
        ) from exc
    except (psycopg.errors.UndefinedFile, psycopg.errors.FeatureNotSupported) as exc:
        raise ExtensionUnavailableError(
            f"pgvector is not installed on this Postgres server ({exc.diag.message_primary}): "
            "install it (Debian/Ubuntu: apt-get install postgresql-16-pgvector), or use the "
            "embedded server (`harmonygraph db start` and unset DATABASE_URL)"
        ) from exc


async def migrate(conn: Any) -> int:
    """Bring the schema to `SCHEMA_VERSION`; return the number of migrations applied."""
    import psycopg

    applied = 0
    try:
        await ensure_vector_extension(conn)
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS rag_schema_version ("
                " version integer PRIMARY KEY, name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            cur = await conn.execute("SELECT coalesce(max(version), 0) FROM rag_schema_version")
            row = await cur.fetchone()
            current = int(row[0])
            if current > SCHEMA_VERSION:
                raise DatabaseUnavailableError(
                    f"the database schema is at version {current}, newer than this "
                    f"harmonygraph ({SCHEMA_VERSION}): upgrade harmonygraph"
                )
            for version, name, sql in MIGRATIONS:
                if version <= current:
                    continue
                await conn.execute(sql)
                await conn.execute(
                    "INSERT INTO rag_schema_version (version, name) VALUES (%s, %s)",
                    (version, name),
                )
                applied += 1
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailableError(f"lost the database while migrating: {exc}") from exc
    return applied
