"""Retrieval over Postgres + pgvector: collections, ingestion, vector/BM25/hybrid search.

    async with RetrievalStore() as store:          # DATABASE_URL or the embedded Postgres
        await store.add_paths(["docs/"], collection="handbook")
        hits = await store.search("parental leave", collection="handbook", k=5)

Heavy dependencies (psycopg, pgvector, pgserver, torch) load only when used.
"""

from harmonygraph.tools.retrieval.chunking import Chunk, chunk_text
from harmonygraph.tools.retrieval.db import (
    DbStatus,
    database_url,
    embedded_status,
    start_embedded,
    stop_embedded,
)
from harmonygraph.tools.retrieval.embeddings import (
    Embedder,
    HashingEmbedder,
    OpenAIEmbedder,
    SentenceTransformerEmbedder,
    embedder_from_spec,
)
from harmonygraph.tools.retrieval.errors import (
    DatabaseUnavailableError,
    DimensionMismatchError,
    DocumentError,
    EmbedderMismatchError,
    EmbeddingError,
    EmptyDocumentError,
    ExtensionUnavailableError,
    FileTooLargeError,
    InvalidFilterError,
    RetrievalError,
    UnknownCollectionError,
    UnreadableDocumentError,
    UnsupportedFileError,
)
from harmonygraph.tools.retrieval.loaders import (
    LoadedDocument,
    document_from_text,
    load_bytes,
    load_path,
)
from harmonygraph.tools.retrieval.store import (
    Collection,
    IngestProgress,
    IngestResult,
    RetrievalStore,
    SearchHit,
    SearchMode,
)
from harmonygraph.tools.retrieval.sync import SyncRetrievalStore
from harmonygraph.tools.retrieval.tool import RetrievalToolset, format_hits, retrieval_tools

__all__ = [
    "Chunk",
    "Collection",
    "DatabaseUnavailableError",
    "DbStatus",
    "DimensionMismatchError",
    "DocumentError",
    "Embedder",
    "EmbedderMismatchError",
    "EmbeddingError",
    "EmptyDocumentError",
    "ExtensionUnavailableError",
    "FileTooLargeError",
    "HashingEmbedder",
    "IngestProgress",
    "IngestResult",
    "InvalidFilterError",
    "LoadedDocument",
    "OpenAIEmbedder",
    "RetrievalError",
    "RetrievalStore",
    "RetrievalToolset",
    "SearchHit",
    "SearchMode",
    "SentenceTransformerEmbedder",
    "SyncRetrievalStore",
    "UnknownCollectionError",
    "UnreadableDocumentError",
    "UnsupportedFileError",
    "chunk_text",
    "database_url",
    "document_from_text",
    "embedded_status",
    "embedder_from_spec",
    "format_hits",
    "load_bytes",
    "load_path",
    "retrieval_tools",
    "start_embedded",
    "stop_embedded",
]
