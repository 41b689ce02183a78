"""Ingest: files, folders, texts and documents in; chunked, embedded and written.

Ingestion is idempotent by source and content hash: a file seen before with the same
bytes is skipped, a changed one has its chunks replaced, and every batch of documents
is written in one transaction, so a failure (a lost connection, a crash) leaves each
document either fully stored or not at all. Text or Markdown files over `stream_bytes`
are streamed: chunked, embedded and written a batch at a time in one transaction.
"""

from __future__ import annotations

import inspect
import json
import os
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
from harmonygraph.concurrency import run_in_thread
from harmonygraph.tools.retrieval.base import is_connection_error
from harmonygraph.tools.retrieval.catalog import CollectionCatalog
from harmonygraph.tools.retrieval.chunking import Chunk, fit_to_window, iter_chunks, segments
from harmonygraph.tools.retrieval.embeddings import Embedder, check_embeddings, windowed
from harmonygraph.tools.retrieval.errors import (
    DatabaseUnavailableError,
    DocumentError,
    RetrievalError,
)
from harmonygraph.tools.retrieval.loaders import (
    FORMATS,
    LoadedDocument,
    TextStream,
    detect_format,
    document_from_text,
    load_path,
    open_text_stream,
)
from harmonygraph.tools.retrieval.records import (
    Collection,
    IngestProgress,
    IngestResult,
    ProgressCallback,
)
from harmonygraph.tools.retrieval.schema import collection_index_sql

__all__ = ["Ingest"]


def _progress(source: str, state: dict[str, Any], total: int, phase: str) -> IngestProgress:
    return IngestProgress(
        source, int(state["chunks"]), int(state["done"]), total, phase=phase,
        chunks_embedded=int(state.get("embedded", 0)),
        embed_seconds=float(state.get("embed_s", 0.0)),
    )  # fmt: skip


@dataclass(slots=True)
class _Pending:
    doc: LoadedDocument
    chunks: list[Chunk]
    vectors: np.ndarray | None = None


def _expand_paths(
    paths: list[str | Path], follow_links: bool = False
) -> tuple[list[tuple[Path, bool]], list[IngestResult]]:
    """The files to index, each with whether a link may be followed to open it, and a
    `skipped` result for each symbolic link found inside a folder.

    A path given by the caller is theirs: it is opened even if it is a link. Inside a
    folder, links (to files or folders) are not followed unless `follow_links`: a link
    can point anywhere (`/etc/shadow`), and what it points to would become searchable.
    """
    files: list[tuple[Path, bool]] = []
    skipped: list[IngestResult] = []
    for raw in paths:
        root = Path(raw).expanduser()
        if not root.is_dir():
            files.append((root, True))
            continue
        seen = {root.resolve()}
        found: list[tuple[Path, bool]] = []
        for folder, dirs, names in os.walk(root, followlinks=follow_links):
            here = Path(folder)
            if follow_links:  # a link loop would walk forever: each real folder once
                keep = []
                for d in sorted(dirs):
                    real = (here / d).resolve()
                    if real not in seen:
                        seen.add(real)
                        keep.append(d)
                dirs[:] = keep
            else:
                for d in dirs:
                    if (here / d).is_symlink():
                        skipped.append(_link_skipped(here / d))
                dirs.sort()
            for name in names:
                f = here / name
                if f.is_symlink() and not follow_links:
                    if f.suffix.lower() in FORMATS or not f.suffix:
                        skipped.append(_link_skipped(f))
                    continue
                if f.suffix.lower() in FORMATS:
                    found.append((f, follow_links))
        files += sorted(found)
    return files, skipped


def _link_skipped(link: Path) -> IngestResult:
    try:
        target = os.readlink(link)
    except OSError:
        target = "?"
    return IngestResult(
        source=str(link.parent.resolve() / link.name), status="skipped",
        error=f"a symbolic link (to {target}); links inside a folder are not followed: "
        "pass --follow-links (follow_links=True), or name the target itself",
        error_type="SymbolicLinkSkipped",
    )  # fmt: skip


def _failed(source: str, exc: BaseException) -> IngestResult:
    """An `error` result: the file was skipped, and why."""
    message = str(exc) if isinstance(exc, DocumentError) else (
        f"{source}: could not be read ({type(exc).__name__}: {str(exc)[:200]}); skipped"
    )  # fmt: skip
    return IngestResult(source=source, status="error", error=message, error_type=type(exc).__name__)


class Ingest(CollectionCatalog):
    """Adding and removing documents; `RetrievalStore` is this plus `Search`."""

    async def add_paths(
        self,
        paths: Iterable[str | Path],
        *,
        collection: str = "default",
        metadata: dict[str, Any] | None = None,
        progress: ProgressCallback | None = None,
        defer_index: bool = False,
        follow_links: bool = False,
    ) -> list[IngestResult]:
        """Index files and folders (recursively, known extensions only).

        A file that cannot be loaded gets an `error` result saying why, and the others go
        on. Symbolic links inside a folder get a `skipped` result unless `follow_links`.
        Files are read a few at a time (about `group_chars` characters), and text or
        Markdown over `STREAM_BYTES` a segment at a time, so memory stays bounded.
        """
        if defer_index:
            coll = await self._collection(collection, create=True)
            async with self._connection() as conn:
                await conn.execute(
                    f"DROP INDEX CONCURRENTLY IF EXISTS rag_chunks_hnsw_{int(coll.id)}"
                )
            try:
                return await self.add_paths(
                    paths, collection=collection, metadata=metadata, progress=progress,
                    follow_links=follow_links,
                )  # fmt: skip
            finally:
                await self.rebuild_index(collection)
        files, skipped = await run_in_thread(_expand_paths, list(paths), follow_links)
        results: dict[int, IngestResult] = {}
        total = len(files)
        done = 0
        group: list[tuple[int, LoadedDocument]] = []
        group_chars = 0

        def shifted(before: int) -> ProgressCallback | None:
            if progress is None:
                return None
            report = progress

            def inner(p: IngestProgress) -> Awaitable[None] | None:
                return report(replace(p, documents_done=before + p.documents_done,
                                      documents_total=total))  # fmt: skip

            return inner

        async def flush() -> None:
            nonlocal group, group_chars, done
            if not group:
                return
            written = await self.add_documents(
                [d for _, d in group], collection=collection, progress=shifted(done)
            )
            for (i, _), res in zip(group, written, strict=True):
                results[i] = res
            done += len(group)
            group, group_chars = [], 0

        for i, (f, follow) in enumerate(files):
            if progress is not None:
                out = progress(IngestProgress(str(f), 0, done, total, phase="reading"))
                if inspect.isawaitable(out):
                    await out
            try:
                if await run_in_thread(self._streams, f, follow):
                    stream = await run_in_thread(
                        open_text_stream, f, max_bytes=self.max_bytes, metadata=metadata,
                        follow_links=follow,
                    )  # fmt: skip
                    results[i] = await self._add_stream(
                        stream, collection=collection, progress=shifted(done), total=total
                    )
                    done += 1
                    continue
                doc = await run_in_thread(
                    load_path, f, max_bytes=self.max_bytes, metadata=metadata,
                    follow_links=follow,
                )  # fmt: skip
            except DocumentError as exc:
                results[i] = _failed(exc.source or str(f), exc)
                done += 1
                continue
            except RetrievalError:
                raise  # the database or the embedder: the whole call fails
            except Exception as exc:  # one odd file must not stop the others
                results[i] = _failed(str(f), exc)
                done += 1
                continue
            group.append((i, doc))
            group_chars += len(doc.text)
            if group_chars >= self.group_chars:
                await flush()
        await flush()
        return [results[i] for i in sorted(results)] + skipped

    def _streams(self, path: Path, follow: bool) -> bool:
        """Whether `path` is text or Markdown over `stream_bytes` (read as a stream)."""
        try:
            info = path.stat() if follow else path.lstat()
        except OSError:
            return False
        fmt = FORMATS.get(path.suffix.lower()) or detect_format(path, b"")
        return fmt in ("text", "markdown") and info.st_size > self.stream_bytes

    async def _add_stream(
        self,
        stream: TextStream,
        *,
        collection: str,
        progress: ProgressCallback | None = None,
        total: int = 1,
    ) -> IngestResult:
        """Store one large text file read a segment at a time, in one transaction: its
        chunks are embedded and written `embed_batch` at a time, so memory stays bounded
        by the segment and batch sizes, never the file's size."""
        coll = await self._collection(collection, create=True)
        emb = await self.embedder_for(coll)
        window = await self._window(emb)
        fitted_to = windowed(emb)
        source = stream.source
        state = {"chunks": 0, "done": 0}

        async def report(src: str, phase: str = "writing") -> None:
            if progress is not None:
                out = progress(_progress(src, state, total, phase))
                if inspect.isawaitable(out):
                    await out

        chunks = iter_chunks(
            stream.segments(), max_tokens=self.chunk_tokens, overlap=self.chunk_overlap,
            headings=stream.format == "markdown",
        )  # fmt: skip

        def next_batch(start: int) -> list[Chunk]:
            batch: list[Chunk] = []
            for c in chunks:
                batch.append(c)
                if len(batch) >= self.embed_batch:
                    break
            if window is not None and fitted_to is not None and batch:
                fitted = fit_to_window(
                    batch, limit=window, count=fitted_to.count_input_tokens,
                    overlap=self.chunk_overlap,
                )  # fmt: skip
                batch = [replace(c, index=start + k) for k, c in enumerate(fitted)]
            return batch

        try:
            async with self._connection() as conn, conn.transaction():
                await conn.execute(
                    "SELECT pg_advisory_xact_lock(hashtextextended(%s, %s))", (source, coll.id)
                )
                cur = await conn.execute(
                    "SELECT id, content_hash FROM rag_documents"
                    " WHERE collection_id = %s AND source = %s",
                    (coll.id, source),
                )
                prior = await cur.fetchone()
                if prior is not None and prior[1] == stream.content_hash:
                    return IngestResult(source=source, status="unchanged", document_id=prior[0])
                doc = stream.document()
                if prior is not None:
                    doc_id = prior[0]
                    cur = await conn.execute(
                        "WITH gone AS (DELETE FROM rag_chunks WHERE document_id = %s"
                        " RETURNING lexeme_count) SELECT count(*), coalesce(sum(lexeme_count), 0)"
                        " FROM gone",
                        (doc_id,),
                    )
                    gone = await cur.fetchone()
                else:
                    cur = await conn.execute(
                        "INSERT INTO rag_documents (collection_id, source, title, format,"
                        " content_hash, metadata, n_chars, n_chunks)"
                        " VALUES (%s, %s, %s, %s, %s, '{}'::jsonb, 0, 0) RETURNING id",
                        (coll.id, source, doc.title, doc.format, stream.content_hash),
                    )
                    doc_id = (await cur.fetchone())[0]
                    gone = (0, 0)
                n = 0
                while batch := await run_in_thread(next_batch, n):
                    pending = _Pending(doc, batch)
                    await self._embed([(0, pending)], emb, coll, state, report)
                    await self._write_chunks(conn, coll, [(doc_id, pending)], state, report)
                    n += len(batch)
                await conn.execute(
                    "INSERT INTO rag_postings (collection_id, lexeme, chunk_id, document_id, tf, dl)"
                    " SELECT c.collection_id, u.lexeme, c.id, c.document_id,"
                    " coalesce(array_length(u.positions, 1), 1), c.lexeme_count"
                    " FROM rag_chunks c CROSS JOIN LATERAL unnest(c.tsv) u"
                    " WHERE c.document_id = %s",
                    (doc_id,),
                )
                cur = await conn.execute(
                    "SELECT count(*), coalesce(sum(lexeme_count), 0) FROM rag_chunks"
                    " WHERE document_id = %s",
                    (doc_id,),
                )
                added = await cur.fetchone()
                await conn.execute(
                    "UPDATE rag_collections SET n_chunks = n_chunks + %s,"
                    " total_lexemes = total_lexemes + %s WHERE id = %s",
                    (added[0] - gone[0], added[1] - gone[1], coll.id),
                )
                doc = stream.document()  # title and metadata are final now
                await conn.execute(
                    "UPDATE rag_documents SET title = %s, format = %s, content_hash = %s,"
                    " metadata = %s::jsonb, n_chars = %s, n_chunks = %s, updated_at = now()"
                    " WHERE id = %s",
                    (doc.title, doc.format, doc.content_hash,
                     json.dumps(doc.metadata, default=str), stream.chars, n, doc_id),
                )  # fmt: skip
        except DocumentError as exc:  # the file changed or could not be decoded: rolled back
            return _failed(source, exc)
        except Exception as exc:
            if is_connection_error(exc):
                raise DatabaseUnavailableError(
                    f"lost the database connection while writing {source}: {str(exc).strip()}. "
                    "The transaction was rolled back, so it is not stored; run the ingest again"
                ) from exc
            raise
        self._collections.pop(coll.name, None)
        state["done"] = 1
        await report(source)
        status: Literal["added", "replaced"] = "replaced" if prior is not None else "added"
        return IngestResult(source=source, status=status, document_id=doc_id, chunks=n)

    async def _window(self, emb: Embedder) -> int | None:
        """The embedder's input window in its own tokens, when it knows one."""
        local = windowed(emb)
        if local is None:
            return None
        # Off the loop: reading the property may load the model.
        return await run_in_thread(lambda: int(local.max_input_tokens))

    async def add_text(
        self,
        text: str,
        *,
        collection: str = "default",
        source: str | None = None,
        title: str | None = None,
        format: str = "text",
        metadata: dict[str, Any] | None = None,
    ) -> IngestResult:
        doc = document_from_text(text, source=source, title=title, format=format, metadata=metadata)
        return (await self.add_documents([doc], collection=collection))[0]

    async def add_documents(
        self,
        documents: Sequence[LoadedDocument],
        *,
        collection: str = "default",
        progress: ProgressCallback | None = None,
        defer_index: bool = False,
    ) -> list[IngestResult]:
        """Chunk, embed and store documents; one result per document, in order.

        `defer_index`: for bulk loads, drop the collection's HNSW index first and build
        it once at the end (several times faster than growing it row by row); searches
        meanwhile scan exactly, so they stay correct, only slower.
        """
        coll = await self._collection(collection, create=True)
        emb = await self.embedder_for(coll)
        if defer_index:
            async with self._connection() as conn:
                # CONCURRENTLY: a plain DROP INDEX would lock all of rag_chunks.
                await conn.execute(
                    f"DROP INDEX CONCURRENTLY IF EXISTS rag_chunks_hnsw_{int(coll.id)}"
                )
            try:
                return await self.add_documents(documents, collection=collection, progress=progress)
            finally:
                await self.rebuild_index(collection)
        results: list[IngestResult | None] = [None] * len(documents)
        # An embedder that knows its input window (a local model) gets chunks that fit it.
        window = await self._window(emb)
        fitted_to = windowed(emb)
        existing = await self._existing(coll, [d.source for d in documents])
        last = {doc.source: i for i, doc in enumerate(documents)}
        todo: list[tuple[int, _Pending]] = []
        for i, doc in enumerate(documents):
            prior = existing.get(doc.source)
            if last[doc.source] != i:
                # One source twice in one call: the last version wins, as if the calls
                # had been made one after the other.
                results[i] = IngestResult(
                    source=doc.source, status="unchanged", document_id=prior[0] if prior else None,
                    error="superseded by a later version of the same source in this call",
                )  # fmt: skip
                continue
            if prior is not None and prior[1] == doc.content_hash:
                results[i] = IngestResult(
                    source=doc.source, status="unchanged", document_id=prior[0]
                )
                continue
            if progress is not None:
                out = progress(IngestProgress(doc.source, 0, i, len(documents), phase="chunking"))
                if inspect.isawaitable(out):
                    await out
            chunks = list(
                iter_chunks(
                    segments(doc.text),
                    max_tokens=self.chunk_tokens,
                    overlap=self.chunk_overlap,
                    headings=doc.format in ("markdown", "html"),
                )
            )
            if window is not None and fitted_to is not None:  # its tokenizer has the last word
                chunks = fit_to_window(
                    chunks,
                    limit=window,
                    count=fitted_to.count_input_tokens,
                    overlap=self.chunk_overlap,
                )
            todo.append((i, _Pending(doc, chunks)))

        state = {"chunks": 0, "done": len(documents) - len(todo)}

        async def report(source: str, phase: str = "writing") -> None:
            if progress is not None:
                out = progress(_progress(source, state, len(documents), phase))
                if inspect.isawaitable(out):
                    await out

        # Group documents into batches of about `embed_batch` chunks: one embedding call
        # and one transaction per batch.
        batch: list[tuple[int, _Pending]] = []
        size = 0
        for item in [*todo, None]:
            if item is not None:
                batch.append(item)
                size += len(item[1].chunks)
                if size < self.embed_batch:
                    continue
            if not batch:
                continue
            await self._embed(batch, emb, coll, state, report)
            for i, res in await self._write(coll, batch, state, report):
                results[i] = res
            batch, size = [], 0
        return [r for r in results if r is not None]

    async def _existing(self, coll: Collection, sources: list[str]) -> dict[str, tuple[int, str]]:
        out: dict[str, tuple[int, str]] = {}
        async with self._connection() as conn:
            for start in range(0, len(sources), 5000):
                cur = await conn.execute(
                    "SELECT source, id, content_hash FROM rag_documents"
                    " WHERE collection_id = %s AND source = ANY(%s::text[])",
                    (coll.id, sources[start : start + 5000]),
                )
                for source, doc_id, digest in await cur.fetchall():
                    out[source] = (doc_id, digest)
        return out

    async def _embed(
        self,
        batch: list[tuple[int, _Pending]],
        emb: Embedder,
        coll: Collection,
        state: dict[str, Any] | None = None,
        report: Callable[[str, str], Awaitable[None]] | None = None,
    ) -> None:
        texts = [c.text for _, p in batch for c in p.chunks]
        vectors: list[np.ndarray] = []
        source = batch[-1][1].doc.source if batch else ""
        # A local model loads on first use; that is a phase of its own (seconds), not
        # part of the embedding rate.
        if texts and getattr(emb, "loaded", True) is False and hasattr(emb, "load"):
            if report is not None:
                await report(source, "loading the model")
            await run_in_thread(emb.load)
        for start in range(0, len(texts), self.embed_batch):
            part = texts[start : start + self.embed_batch]
            if report is not None:
                await report(source, "embedding")
            began = time.perf_counter()
            matrix = np.asarray(await emb.embed(part), dtype=np.float32)
            if state is not None:
                state["embedded"] = state.get("embedded", 0) + len(part)
                state["embed_s"] = state.get("embed_s", 0.0) + time.perf_counter() - began
            vectors.append(
                check_embeddings(matrix, len(part), coll.dimension, f"embedder {emb.spec}")
            )
        all_vectors = (
            np.concatenate(vectors) if vectors else np.zeros((0, coll.dimension), np.float32)
        )
        offset = 0
        for _, p in batch:
            p.vectors = all_vectors[offset : offset + len(p.chunks)]
            offset += len(p.chunks)

    async def _write(
        self,
        coll: Collection,
        batch: list[tuple[int, _Pending]],
        state: dict[str, int],
        report: Callable[[str], Awaitable[None]],
    ) -> list[tuple[int, IngestResult]]:
        """Write one batch in one transaction: all of it is stored, or none of it."""
        out: list[tuple[int, IngestResult]] = []
        sources = sorted({p.doc.source for _, p in batch})
        chunks_before = state["chunks"]
        try:
            async with self._connection() as conn, conn.transaction():
                # Lock the sources (in a fixed order, against deadlocks) so that two
                # processes indexing one file cannot both insert it.
                await conn.execute(
                    "SELECT pg_advisory_xact_lock(hashtextextended(s, %s))"
                    " FROM unnest(%s::text[]) AS s ORDER BY s",
                    (coll.id, sources),
                )
                cur = await conn.execute(
                    "SELECT source, id, content_hash FROM rag_documents"
                    " WHERE collection_id = %s AND source = ANY(%s::text[])",
                    (coll.id, sources),
                )
                current = {r[0]: (r[1], r[2]) for r in await cur.fetchall()}
                new: list[tuple[int, _Pending]] = []
                replaced: list[tuple[int, _Pending, int]] = []
                for i, p in batch:
                    prior = current.get(p.doc.source)
                    if prior is None:
                        new.append((i, p))
                    elif prior[1] == p.doc.content_hash:
                        # Another process stored these bytes while we embedded them.
                        out.append((i, IngestResult(source=p.doc.source, status="unchanged",
                                                    document_id=prior[0])))  # fmt: skip
                    else:
                        replaced.append((i, p, prior[0]))
                cur = await conn.execute(
                    "WITH gone AS (DELETE FROM rag_chunks WHERE document_id = ANY(%s::bigint[])"
                    " RETURNING lexeme_count) SELECT count(*), coalesce(sum(lexeme_count), 0)"
                    " FROM gone",
                    ([doc_id for _, _, doc_id in replaced],),
                )
                gone = await cur.fetchone()

                def columns(items: Sequence[_Pending]) -> tuple[Any, ...]:
                    return (
                        [p.doc.title for p in items], [p.doc.format for p in items],
                        [p.doc.content_hash for p in items],
                        [json.dumps(p.doc.metadata, default=str) for p in items],
                        [len(p.doc.text) for p in items], [len(p.chunks) for p in items],
                    )  # fmt: skip

                if replaced:
                    await conn.execute(
                        "UPDATE rag_documents d SET title = u.title, format = u.format,"
                        " content_hash = u.hash, metadata = u.meta::jsonb, n_chars = u.n_chars,"
                        " n_chunks = u.n_chunks, updated_at = now()"
                        " FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::text[], %s::text[],"
                        " %s::int[], %s::int[]) AS u(id, title, format, hash, meta, n_chars, n_chunks)"
                        " WHERE d.id = u.id",
                        (
                            [doc_id for _, _, doc_id in replaced],
                            *columns([p for _, p, _ in replaced]),
                        ),
                    )
                ids: dict[str, int] = {}
                if new:
                    cur = await conn.execute(
                        "INSERT INTO rag_documents (collection_id, source, title, format,"
                        " content_hash, metadata, n_chars, n_chunks)"
                        " SELECT %s, u.source, u.title, u.format, u.hash, u.meta::jsonb, u.n_chars,"
                        " u.n_chunks FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[],"
                        " %s::text[], %s::int[], %s::int[])"
                        " AS u(source, title, format, hash, meta, n_chars, n_chunks)"
                        " RETURNING source, id",
                        (coll.id, [p.doc.source for _, p in new], *columns([p for _, p in new])),
                    )
                    ids = {r[0]: r[1] for r in await cur.fetchall()}
                written: list[tuple[int, _Pending]] = []
                for i, p, doc_id in replaced:
                    ids[p.doc.source] = doc_id
                    out.append((i, IngestResult(source=p.doc.source, status="replaced",
                                                document_id=doc_id, chunks=len(p.chunks))))  # fmt: skip
                    written.append((doc_id, p))
                for i, p in new:
                    doc_id = ids[p.doc.source]
                    out.append((i, IngestResult(source=p.doc.source, status="added",
                                                document_id=doc_id, chunks=len(p.chunks))))  # fmt: skip
                    written.append((doc_id, p))
                await self._write_chunks(conn, coll, written, state, report)
                written_ids = [doc_id for doc_id, _ in written]
                await conn.execute(
                    "INSERT INTO rag_postings (collection_id, lexeme, chunk_id, document_id, tf, dl)"
                    " SELECT c.collection_id, u.lexeme, c.id, c.document_id,"
                    " coalesce(array_length(u.positions, 1), 1), c.lexeme_count"
                    " FROM rag_chunks c CROSS JOIN LATERAL unnest(c.tsv) u"
                    " WHERE c.document_id = ANY(%s::bigint[])",
                    (written_ids,),
                )
                cur = await conn.execute(
                    "SELECT count(*), coalesce(sum(lexeme_count), 0) FROM rag_chunks"
                    " WHERE document_id = ANY(%s::bigint[])",
                    (written_ids,),
                )
                added = await cur.fetchone()
                await conn.execute(
                    "UPDATE rag_collections SET n_chunks = n_chunks + %s,"
                    " total_lexemes = total_lexemes + %s WHERE id = %s",
                    (added[0] - gone[0], added[1] - gone[1], coll.id),
                )
        except Exception as exc:
            state["chunks"] = chunks_before
            if is_connection_error(exc):
                names = ", ".join(s for s in sources[:3]) + (" ..." if len(sources) > 3 else "")
                raise DatabaseUnavailableError(
                    f"lost the database connection while writing {len(batch)} document(s) "
                    f"({names}): {str(exc).strip()}. The transaction was rolled back, so none "
                    "of them is stored; run the ingest again (stored files are skipped)"
                ) from exc
            raise
        self._collections.pop(coll.name, None)
        state["done"] += len(batch)
        await report(batch[-1][1].doc.source)
        out.sort(key=lambda item: item[0])
        return out

    async def _write_chunks(
        self,
        conn: Any,
        coll: Collection,
        written: list[tuple[int, _Pending]],
        state: dict[str, int],
        report: Callable[[str], Awaitable[None]],
    ) -> None:
        rows: list[tuple[Any, ...]] = []
        for doc_id, p in written:
            assert p.vectors is not None
            for c, vector in zip(p.chunks, p.vectors, strict=True):
                page = p.doc.page_of(c.char_start)
                meta = json.dumps({"page": page} if page is not None else {})
                rows.append((doc_id, c.index, c.text, c.char_start, c.char_end, c.token_start,
                             c.token_count, c.heading, meta, vector, p.doc.source))  # fmt: skip
        for start in range(0, len(rows), self.write_batch):
            part = rows[start : start + self.write_batch]
            cols = list(zip(*part, strict=True))
            # One statement per slice, arrays unnested server-side. The tsvector is
            # computed once per row and its length in lexeme occurrences (BM25's
            # document length) read from it.
            await conn.execute(
                "INSERT INTO rag_chunks (document_id, collection_id, chunk_index, text,"
                " char_start, char_end, token_start, token_count, heading, metadata,"
                " embedding, tsv, lexeme_count)"
                " SELECT u.doc, %s, u.idx, u.text, u.c0, u.c1, u.t0, u.tn, u.heading,"
                " u.meta::jsonb, u.emb, v.tsv, coalesce((SELECT"
                " sum(coalesce(array_length(l.positions, 1), 1)) FROM unnest(v.tsv) l), 0)"
                " FROM unnest(%s::bigint[], %s::int[], %s::text[], %s::int[], %s::int[],"
                " %s::int[], %s::int[], %s::text[], %s::text[], %s::vector[])"
                " AS u(doc, idx, text, c0, c1, t0, tn, heading, meta, emb)"
                " CROSS JOIN LATERAL (SELECT to_tsvector(%s::regconfig, u.text) AS tsv) v",
                (coll.id, *[list(c) for c in cols[:10]], coll.text_config),
            )
            state["chunks"] += len(part)
            await report(part[-1][10])

    async def rebuild_index(
        self, collection: str = "default", *, maintenance_work_mem: str = "1GB"
    ) -> None:
        """(Re)build the collection's HNSW index without blocking reads or writes.

        A larger `maintenance_work_mem` keeps the graph in memory while it is built
        (pgvector warns and slows down several times when it does not fit).
        """
        coll = await self._collection(collection, create=False)
        cid = int(coll.id)
        async with self._connection() as conn:
            await conn.execute(
                "SELECT set_config('maintenance_work_mem', %s, false)", (maintenance_work_mem,)
            )
            try:
                await conn.execute(f"DROP INDEX CONCURRENTLY IF EXISTS rag_chunks_hnsw_{cid}")
                sql = collection_index_sql(cid, coll.dimension)
                await conn.execute(sql.replace("CREATE INDEX", "CREATE INDEX CONCURRENTLY", 1))
            finally:
                await conn.execute("RESET maintenance_work_mem")
            # Fresh statistics: right after a bulk load the planner still thinks the
            # collection is tiny and would sort a sequential scan instead of using HNSW.
            await conn.execute("ANALYZE rag_chunks, rag_documents")

    async def delete_document(self, document_id: int) -> bool:
        async with self._connection() as conn, conn.transaction():
            cur = await conn.execute(
                "WITH gone AS (DELETE FROM rag_chunks WHERE document_id = %s"
                " RETURNING collection_id, lexeme_count)"
                " SELECT collection_id, count(*), coalesce(sum(lexeme_count), 0) FROM gone"
                " GROUP BY collection_id",
                (document_id,),
            )
            row = await cur.fetchone()
            if row is not None:
                await conn.execute(
                    "UPDATE rag_collections SET n_chunks = n_chunks - %s,"
                    " total_lexemes = total_lexemes - %s WHERE id = %s",
                    (row[1], row[2], row[0]),
                )
            cur = await conn.execute("DELETE FROM rag_documents WHERE id = %s", (document_id,))
            deleted = bool(cur.rowcount)
        self._collections.clear()
        return deleted
