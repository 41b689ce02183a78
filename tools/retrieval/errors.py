"""Exceptions of the retrieval store; every message says what to do next."""

from __future__ import annotations

__all__ = [
    "DatabaseUnavailableError",
    "DimensionMismatchError",
    "DocumentError",
    "EmbedderMismatchError",
    "EmbeddingError",
    "EmptyDocumentError",
    "ExtensionUnavailableError",
    "FileTooLargeError",
    "InvalidFilterError",
    "RetrievalError",
    "UnknownCollectionError",
    "UnreadableDocumentError",
    "UnsupportedFileError",
]


class RetrievalError(Exception):
    """Base class of everything the retrieval package raises on purpose."""


class DatabaseUnavailableError(RetrievalError):
    """Postgres cannot be reached, or the connection was lost during an operation."""


class ExtensionUnavailableError(RetrievalError):
    """`CREATE EXTENSION vector` failed: pgvector is missing or not permitted."""


class UnknownCollectionError(RetrievalError):
    """A collection was named that does not exist."""


class DimensionMismatchError(RetrievalError):
    """Vectors of one dimension were offered to a collection that stores another."""


class EmbedderMismatchError(RetrievalError):
    """A collection's vectors come from one embedder and another one was offered."""


class EmbeddingError(RetrievalError):
    """The embedder failed or answered something unusable."""


class InvalidFilterError(RetrievalError):
    """A metadata filter that cannot be applied (wrong shape, not a JSON scalar)."""


class DocumentError(RetrievalError):
    """A file or text that cannot be ingested; `source` names it."""

    def __init__(self, message: str, source: str = "") -> None:
        super().__init__(message)
        self.source = source


class EmptyDocumentError(DocumentError):
    """The document holds no text (an empty file, a PDF of scanned images)."""


class UnsupportedFileError(DocumentError):
    """A binary file or a format no loader handles."""


class UnreadableDocumentError(DocumentError):
    """The file claims a format but does not parse as it (a corrupt PDF, bad JSON)."""


class FileTooLargeError(DocumentError):
    """The file is over the configured size limit."""
