"""The ASGI app: the Responses API under /v1 and the dashboard under /.

    app = create_app(ServeConfig(agents=[ServedAgent("helper", agent)], database_url=url))
    uvicorn.run(app)

Every /v1 request carries `Authorization: Bearer <key>` (keys from `harmonygraph serve keys
create`); bodies over `max_body_bytes` are refused before they are read whole.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from harmonygraph.serve.errors import (
    AuthenticationError,
    NotFoundError,
    PayloadTooLargeError,
    ServeError,
    ServerError,
)
from harmonygraph.serve.limits import KeyLimiter
from harmonygraph.serve.protocol import parse_request
from harmonygraph.serve.service import Prepared, ResponsesService, ServedAgent
from harmonygraph.serve.store import ApiKey, ServeStore, setup_lock
from starlette.exceptions import HTTPException as StarletteHTTPException

__all__ = ["ServeConfig", "create_app", "open_saver"]


@dataclass
class ServeConfig:
    agents: list[ServedAgent]
    database_url: str
    max_body_bytes: int = 1_000_000
    max_concurrent: int = 16  # per key, unless the key says otherwise
    per_minute: int = 600  # per key, unless the key says otherwise
    pool_size: int = 20
    reports_dir: Path = field(default_factory=lambda: Path(".harmonygraph") / "reports")
    # the model the dashboard's survey form runs the pipeline with (None: no form)
    survey_model: Any = None
    survey_options: dict[str, Any] = field(default_factory=dict)
    key_cache_s: float = 2.0
    # report folders made elsewhere (the demo's), listed on the reports page at start
    reports: list[tuple[str, Path]] = field(default_factory=list)


@asynccontextmanager
async def open_saver(url: str, *, pool_size: int = 20) -> AsyncIterator[Any]:
    """LangGraph's Postgres checkpointer on a connection pool (runs write concurrently).

    Its connections commit without waiting for the WAL flush (`synchronous_commit =
    off`): a run writes a checkpoint at each step, about ten commits a request, and
    waiting for the disk at each one capped the server at ~22 requests a second. The
    durability of a response is unchanged: it is answered only after the store's own
    commit of its outcome (`ServeStore.finish_response`, synchronous), and Postgres
    flushes the WAL in order, so that flush makes every checkpoint the run wrote before
    it durable too. A Postgres crash can lose only steps of runs still in progress,
    whose responses were never answered as done.
    """
    from harmonygraph.engine.checkpoint import serializer
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
    from psycopg.rows import dict_row
    from psycopg_pool import AsyncConnectionPool

    async def configure(conn: Any) -> None:
        await conn.execute("SET synchronous_commit = off")

    pool = AsyncConnectionPool(
        url, min_size=1, max_size=pool_size, open=False, configure=configure,
        kwargs={"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row},
    )  # fmt: skip
    await pool.open(wait=True)
    try:
        saver = AsyncPostgresSaver(pool, serde=serializer())
        async with pool.connection() as conn, setup_lock(conn, 7317002):
            await saver.setup()
        yield saver
    finally:
        await pool.close()


class App(FastAPI):
    """The FastAPI app with the server's parts on it (set in the lifespan)."""

    config: ServeConfig
    store: ServeStore
    service: ResponsesService
    limiter: KeyLimiter


def create_app(config: ServeConfig) -> App:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        a = app  # the App
        assert isinstance(a, App)
        async with ServeStore(config.database_url, max_size=config.pool_size) as store:
            async with open_saver(config.database_url, pool_size=config.pool_size) as saver:
                a.store = store
                a.service = ResponsesService({s.name: s for s in config.agents}, store, saver)
                from harmonygraph.serve.dashboard import add_finished_report

                for title, folder in config.reports:
                    await add_finished_report(store, title, folder)
                try:
                    yield
                finally:
                    for task in list(a.state.jobs.values()):
                        task.cancel()
                    for served in config.agents:
                        await served.agent.aclose()

    app = App(title="harmonygraph serve", lifespan=lifespan, docs_url=None, redoc_url=None,
              openapi_url=None)  # fmt: skip
    app.config = config
    app.limiter = KeyLimiter(max_concurrent=config.max_concurrent, per_minute=config.per_minute)
    app.state.jobs = {}
    key_cache: dict[str, tuple[float, ApiKey | None]] = {}

    async def authenticate(request: Request) -> ApiKey:
        header = request.headers.get("authorization", "")
        scheme, _, secret = header.partition(" ")
        if scheme.lower() != "bearer" or not secret.strip():
            raise AuthenticationError(
                "You didn't provide an API key. Send 'Authorization: Bearer YOUR_KEY' "
                "(keys: harmonygraph serve keys create)."
            )
        return await key_for(secret.strip())

    async def key_for(secret: str) -> ApiKey:
        now = time.monotonic()
        cached = key_cache.get(secret)
        if cached is not None and now - cached[0] < config.key_cache_s:
            key = cached[1]
        else:
            key = await app.store.key_by_secret(secret)
            key_cache[secret] = (now, key)
            if len(key_cache) > 10_000:
                key_cache.clear()
        if key is None:
            raise AuthenticationError("Incorrect API key provided (unknown or revoked).")
        return key

    app.state.key_for = key_for

    async def read_body(request: Request) -> bytes:
        limit = config.max_body_bytes
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise PayloadTooLargeError(
                f"The request body is {declared} bytes; the limit is {limit} bytes."
            )
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise PayloadTooLargeError(f"The request body is over the limit of {limit} bytes.")
            chunks.append(chunk)
        return b"".join(chunks)

    @app.exception_handler(ServeError)
    async def serve_error(request: Request, exc: ServeError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if not request.url.path.startswith("/v1"):
            from harmonygraph.serve.dashboard import error_page

            return error_page(request, exc.status_code, str(exc.detail))
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "invalid_request")
        body = ServeError(str(exc.detail), code=code).body()
        body["error"]["type"] = "invalid_request_error"
        return JSONResponse(body, status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        err = ServerError(
            f"The server had an error while processing your request ({type(exc).__name__})."
        )
        return JSONResponse(err.body(), status_code=500)

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {"ok": True, "agents": [s.name for s in config.agents]}

    @app.get("/v1/models")
    async def models(request: Request) -> dict[str, Any]:
        await authenticate(request)
        return {
            "object": "list",
            "data": [
                {"id": s.name, "object": "model", "created": 0, "owned_by": "harmonygraph"}
                for s in config.agents
            ],
        }

    @app.post("/v1/responses")
    async def create_response(request: Request) -> Response:
        key = await authenticate(request)
        req = parse_request(await read_body(request))
        slot = app.limiter.acquire(
            key.id, max_concurrent=key.max_concurrent, per_minute=key.per_minute
        )
        try:
            prepared = await app.service.prepare(req, key)
        except BaseException:
            slot.release()
            raise
        if not req.stream:
            try:
                return JSONResponse(await app.service.run(prepared))
            finally:
                slot.release()
        return StreamingResponse(
            _sse(request, app.service, prepared, slot.release),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    async def owned(request: Request, response_id: str) -> tuple[ApiKey, dict[str, Any]]:
        key = await authenticate(request)
        row = await app.store.get_response(response_id)
        if row is None or row["key_id"] != key.id or not row["stored"]:
            raise NotFoundError(f"Response with id '{response_id}' not found.", param="response_id")
        return key, row

    @app.get("/v1/responses/{response_id}")
    async def get_response(request: Request, response_id: str) -> dict[str, Any]:
        _, row = await owned(request, response_id)
        if row["response"] is None:  # in progress
            served = next(s for s in config.agents if s.name == row["agent"])
            return {"id": row["id"], "object": "response", "created_at": int(row["created_at"]),
                    "status": row["status"], "model": served.name, "output": []}  # fmt: skip
        return dict(row["response"])

    @app.get("/v1/responses/{response_id}/trace")
    async def get_trace(request: Request, response_id: str) -> Response:
        """The run's trace (JSON Lines), for `harmonygraph replay`; its reasoning masked
        unless the key may see reasoning."""
        from harmonygraph.serve.dashboard import trace_download

        key, _ = await owned(request, response_id)
        records = await app.store.get_trace(response_id)
        if records is None:
            raise NotFoundError(
                f"Response '{response_id}' has no recorded trace (it was cancelled or failed "
                "before its run ended, or was made with store: false).",
                param="response_id",
            )
        return trace_download(response_id, records, key)

    @app.delete("/v1/responses/{response_id}")
    async def delete_response(request: Request, response_id: str) -> dict[str, Any]:
        _, row = await owned(request, response_id)
        if row["status"] == "in_progress":
            from harmonygraph.serve.errors import InvalidRequestError

            raise InvalidRequestError(
                f"Response '{response_id}' is in progress; it can be deleted when it ends.",
                param="response_id",
            )
        await app.store.delete_response(response_id)
        await app.service.saver.adelete_thread(row["thread_id"])
        return {"id": response_id, "object": "response.deleted", "deleted": True}

    from harmonygraph.serve.dashboard import install

    install(app)
    return app


async def _sse(
    request: Request, service: ResponsesService, p: Prepared, release: Any
) -> AsyncIterator[bytes]:
    """The run's events as server-sent events. A client that goes away cancels the run
    (noticed at once, not only at the next write) and the response is recorded as cancelled."""
    queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()

    async def produce() -> None:
        try:
            async for event in service.stream(p):
                await queue.put(event)
        finally:
            queue.put_nowait(None)

    async def watch() -> None:
        while True:
            message = await request.receive()
            if message["type"] == "http.disconnect":
                producer.cancel()
                release()  # the key's slot is free as soon as its run is
                return

    producer = asyncio.create_task(produce())
    watcher = asyncio.create_task(watch())
    try:
        while (event := await queue.get()) is not None:
            yield f"event: {event['type']}\ndata: {json.dumps(event, ensure_ascii=False)}\n\n".encode()
        if producer.done() and not producer.cancelled() and producer.exception() is not None:
            exc = producer.exception()
            err = {"type": "error", "code": "server_error", "param": None,
                   "message": f"the run failed ({type(exc).__name__})"}  # fmt: skip
            yield f"event: error\ndata: {json.dumps(err)}\n\n".encode()
    finally:
        watcher.cancel()
        if not producer.done():
            producer.cancel()
        await asyncio.gather(producer, watcher, return_exceptions=True)
        release()
