"""`harmonygraph db ...` and `harmonygraph index ...`.

The lead mounts `db_app` and `index_app` on the main command. Imports of psycopg,
pgserver and torch happen inside the commands so that `--help` stays fast.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer
from harmonygraph.concurrency import run_sync

__all__ = ["db_app", "index_app"]

db_app = typer.Typer(
    rich_markup_mode=None,
    help="The embedded Postgres (PostgreSQL 16 + pgvector) in $HARMONYGRAPH_HOME/pgdata.",
    no_args_is_help=True,
)
index_app = typer.Typer(
    rich_markup_mode=None, help="Index documents and search them.", no_args_is_help=True
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]


def _fail(message: str, as_json: bool, code: int = 1) -> None:
    if as_json:
        typer.echo(json.dumps({"error": message}))
    else:
        typer.secho(f"error: {message}", err=True, fg="red")
    raise typer.Exit(code)


@db_app.command("start")
def db_start(as_json: JsonOpt = False) -> None:
    """Start the embedded Postgres (a no-op when it runs) and create the schema."""
    from harmonygraph.tools.retrieval.db import embedded_pgdata, embedded_status, start_embedded
    from harmonygraph.tools.retrieval.errors import RetrievalError
    from harmonygraph.tools.retrieval.store import RetrievalStore

    try:
        url = start_embedded()

        async def schema() -> None:
            async with RetrievalStore(url):
                pass

        run_sync(schema())
    except RetrievalError as exc:
        _fail(str(exc), as_json)
    status = embedded_status()
    out = {**status.to_dict(), "pgdata": str(embedded_pgdata())}
    out["embedding_service"] = _start_embedding_service()
    if as_json:
        typer.echo(json.dumps(out))
        return
    typer.echo(f"embedded Postgres running (pid {status.pid}) in {status.pgdata}\nURL: {url}")
    typer.echo(f"embedding service: {out['embedding_service']}")
    if os.environ.get("DATABASE_URL"):
        typer.echo("note: DATABASE_URL is set, so harmonygraph uses that server, not this one")


def _start_embedding_service() -> str:
    """Keep MiniLM loaded for later commands (embed_service.py); never fails `db start`."""
    from harmonygraph.tools.retrieval.embed_service import service_enabled, start_service
    from harmonygraph.tools.retrieval.embeddings import local_runtime
    from harmonygraph.tools.retrieval.errors import RetrievalError

    try:
        if not service_enabled() or local_runtime() != "onnx":
            return "off (HARMONYGRAPH_EMBED_SERVICE=0 or the torch runtime)"
        status = start_service()
    except RetrievalError as exc:
        return f"not started: {exc}"
    return f"running (pid {status['pid']}), MiniLM loaded, {status['socket']}"


@db_app.command("status")
def db_status(as_json: JsonOpt = False) -> None:
    """Whether the embedded Postgres runs, where, and which database is in use."""
    from harmonygraph.tools.retrieval.db import embedded_status

    status = embedded_status()
    out: dict[str, Any] = status.to_dict()
    out["database_url_set"] = bool(os.environ.get("DATABASE_URL"))
    if as_json:
        typer.echo(json.dumps(out))
        return
    state = f"running (pid {status.pid})" if status.running else "stopped"
    typer.echo(f"embedded Postgres: {state}\ndata folder: {status.pgdata}")
    if status.url:
        typer.echo(f"URL: {status.url}")
    if out["database_url_set"]:
        typer.echo("DATABASE_URL is set: harmonygraph uses that server")


@db_app.command("stop")
def db_stop(as_json: JsonOpt = False) -> None:
    """Stop the embedded Postgres; its data stays in the data folder."""
    from harmonygraph.tools.retrieval.db import embedded_status, stop_embedded
    from harmonygraph.tools.retrieval.embed_service import stop_service

    stop_service()
    stopped = stop_embedded()
    if as_json:
        typer.echo(json.dumps({"stopped": stopped, "pgdata": embedded_status().pgdata}))
    else:
        typer.echo("stopped" if stopped else "the embedded Postgres was not running")


def _store(embedder: str | None) -> Any:
    from harmonygraph.settings import settings
    from harmonygraph.tools.retrieval.db import embedded_status
    from harmonygraph.tools.retrieval.embeddings import embedder_from_spec
    from harmonygraph.tools.retrieval.store import RetrievalStore

    if not settings().database_url and not embedded_status().running:
        # The embedded server starts on demand; say so, as it keeps running after the
        # command (until `db stop`), which a user who stopped it would not expect.
        typer.echo(
            "note: starting the embedded Postgres (not running); `harmonygraph db stop` "
            "stops it again",
            err=True,
        )
    return RetrievalStore(embedder=embedder_from_spec(embedder) if embedder else None)


@index_app.command("add")
def index_add(
    paths: Annotated[list[Path], typer.Argument(help="Files or folders (searched recursively).")],
    collection: Annotated[str, typer.Option("--collection", "-c")] = "default",
    embedder: Annotated[
        str | None,
        typer.Option(
            help="hashing[:DIM], minilm, st:MODEL or openai:MODEL@URL; a new "
            "collection records it, an existing one must match."
        ),
    ] = None,
    bulk: Annotated[
        bool,
        typer.Option(
            "--bulk", help="Build the vector index once at the end (faster for large loads)."
        ),
    ] = False,
    follow_links: Annotated[
        bool,
        typer.Option(
            "--follow-links",
            help="Follow symbolic links found inside folders (by default they are skipped: "
            "a link can point anywhere on the machine).",
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Index files: text, Markdown, HTML, PDF, CSV, JSON. Unchanged files are skipped.

    A file that cannot be read is skipped with the reason and the others go on (exit
    status 1 if any was); links inside folders are skipped unless --follow-links.
    """
    from harmonygraph.tools.retrieval.errors import RetrievalError
    from harmonygraph.tools.retrieval.store import IngestProgress, IngestResult
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    async def run() -> list[IngestResult]:
        # One line: the phase (reading, chunking, loading the model, embedding at a rate,
        # writing), files done of all, chunks written, the file at hand.
        progress = Progress(
            TextColumn("[bold]{task.fields[phase]:<17}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("files  {task.fields[chunks]} chunks{task.fields[rate]}  {task.fields[source]}"),
            disable=as_json, transient=False,
        )  # fmt: skip
        with progress:
            task = progress.add_task(
                "index", total=None, chunks=0, rate="", phase="listing files", source=""
            )
            written = {"before": 0, "last": 0}

            def on_progress(p: IngestProgress) -> None:
                name = Path(p.source).name if "://" not in p.source else p.source
                # chunks_written counts per group of files; keep a running total.
                # (reading and chunking events carry no count)
                if p.phase not in ("reading", "chunking"):
                    if p.chunks_written < written["last"]:
                        written["before"] += written["last"]
                    written["last"] = p.chunks_written
                rate = (
                    f"  embedding {p.chunks_embedded / p.embed_seconds:.0f} chunks/s"
                    if p.embed_seconds > 0 and p.phase in ("embedding", "writing")
                    else ""
                )
                progress.update(
                    task, total=p.documents_total, completed=p.documents_done,
                    chunks=written["before"] + written["last"], rate=rate,
                    phase=p.phase, source=name[-40:],
                )  # fmt: skip

            async with _store(embedder) as store:
                done = await store.add_paths(
                    paths, collection=collection, progress=on_progress, defer_index=bulk,
                    follow_links=follow_links,
                )  # fmt: skip
            progress.update(task, phase="done", completed=len(done), total=len(done), source="")
            return done

    try:
        results = run_sync(run())
    except (RetrievalError, ValueError) as exc:
        _fail(str(exc), as_json)
    counts: dict[str, int] = {}
    for r in results:
        counts[r.status] = counts.get(r.status, 0) + 1
    if as_json:
        skipped = [
            {"source": r.source, "reason": r.error, "kind": r.error_type}
            for r in results
            if r.status in ("error", "skipped")
        ]
        typer.echo(
            json.dumps(
                {
                    "results": [r.model_dump() for r in results],
                    "counts": counts,
                    "skipped": skipped,
                }
            )
        )
    else:
        for r in results:
            if r.status in ("error", "skipped"):
                # The reason names the file already when the loader wrote it.
                reason = r.error or ""
                line = reason if reason.startswith(r.source) else f"{r.source}: {reason}"
                typer.secho(f"skipped {line}", err=True, fg="yellow")
        summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no files"
        chunks = sum(r.chunks for r in results)
        typer.echo(f"{summary}; {chunks} chunks written to collection {collection!r}")
    if counts.get("error"):
        raise typer.Exit(1)


@index_app.command("search")
def index_search(
    query: str,
    k: Annotated[int, typer.Option("--k", "-k", min=1, max=1000)] = 5,
    mode: Annotated[str, typer.Option(help="vector, text or hybrid")] = "hybrid",
    fusion: Annotated[
        str,
        typer.Option(
            help="hybrid mode's merge: auto (questions by vector, others by rrf), rrf (rank "
            "fusion) or convex (scores)"
        ),
    ] = "auto",
    collection: Annotated[str, typer.Option("--collection", "-c")] = "default",
    filter: Annotated[
        list[str] | None,
        typer.Option("--filter", "-f", help="KEY=VALUE on document metadata; repeatable"),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Search a collection; prints hits with their citation ids."""
    from harmonygraph.tools.retrieval.errors import RetrievalError
    from harmonygraph.tools.retrieval.tool import format_hits

    if mode not in ("vector", "text", "hybrid"):
        _fail(f"unknown mode {mode!r}: use vector, text or hybrid", as_json, 2)
    if fusion not in ("auto", "rrf", "convex"):
        _fail(f"unknown fusion {fusion!r}: use auto, rrf or convex", as_json, 2)
    filters: dict[str, Any] = {}
    for item in filter or []:
        key, eq, value = item.partition("=")
        if not eq or not key:
            _fail(f"--filter {item!r}: write KEY=VALUE", as_json, 2)
        filters.setdefault(key, []).append(value)

    async def run() -> Any:
        async with _store(None) as store:
            return await store.search(
                query,
                collection=collection,
                k=k,
                mode=mode,
                filters=filters or None,
                fusion=fusion,
            )

    try:
        hits = run_sync(run())
    except (RetrievalError, ValueError) as exc:
        _fail(str(exc), as_json)
    if as_json:
        typer.echo(json.dumps([h.model_dump() for h in hits], ensure_ascii=False))
    else:
        typer.echo(format_hits(query, hits))


@index_app.command("collections")
def index_collections(as_json: JsonOpt = False) -> None:
    """List collections with their embedder and sizes."""
    from harmonygraph.tools.retrieval.errors import RetrievalError

    async def run() -> Any:
        async with _store(None) as store:
            return await store.list_collections()

    try:
        colls = run_sync(run())
    except RetrievalError as exc:
        _fail(str(exc), as_json)
    if as_json:
        typer.echo(json.dumps([c.model_dump() for c in colls]))
        return
    for c in colls:
        typer.echo(
            f"{c.name}: {c.documents} documents, {c.chunks} chunks, {c.embedder} ({c.dimension}-d)"
        )
