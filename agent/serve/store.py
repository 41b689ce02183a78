"""What the server keeps in Postgres, beside LangGraph's checkpoints: API keys (hashed),
responses (one row a run, with its timeline for the dashboard), each run's trace (in the
trace format, for `harmonygraph replay`; a table of its own, read only when downloaded) and
survey jobs.

Conversations themselves live in the checkpointer's tables: a response's `thread_id` is
a LangGraph thread, and a follow-up (`previous_response_id`) starts a new thread from the
messages of that one, so any earlier response can be continued, by any replica, after
any restart.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

__all__ = ["ApiKey", "ServeStore", "hash_key", "new_key", "setup_lock"]


@asynccontextmanager
async def setup_lock(conn: Any, key: int, *, wait_s: float = 120.0) -> AsyncIterator[None]:
    """A session advisory lock on `conn` while tables are created, for servers starting
    together (`serve --workers N`, replicas).

    Taken by polling `pg_try_advisory_lock`, not by waiting in `pg_advisory_lock`: a
    session waiting inside a statement has a transaction open, and LangGraph's migrations
    build indexes CONCURRENTLY, which wait for every open transaction to end: the
    holder's index waited for the waiter, which waited for the holder.
    """
    deadline = time.monotonic() + wait_s
    while True:
        row = await (await conn.execute("SELECT pg_try_advisory_lock(%s) AS ok", (key,))).fetchone()
        if row is not None and (row["ok"] if isinstance(row, dict) else row[0]):
            break
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"another server held the setup lock {key} for {wait_s:g} s; is one stuck "
                "starting against this database?"
            )
        await asyncio.sleep(0.05)
    try:
        yield
    finally:
        await conn.execute("SELECT pg_advisory_unlock(%s)", (key,))


KEY_PREFIX = "hg-"

SCHEMA = """
CREATE TABLE IF NOT EXISTS hg_api_keys (
    id text PRIMARY KEY,
    name text NOT NULL,
    hint text NOT NULL,
    hash text NOT NULL UNIQUE,
    created_at double precision NOT NULL,
    revoked_at double precision,
    show_reasoning boolean NOT NULL DEFAULT false,
    max_concurrent integer,
    per_minute integer
);
CREATE TABLE IF NOT EXISTS hg_responses (
    id text PRIMARY KEY,
    key_id text NOT NULL,
    agent text NOT NULL,
    thread_id text NOT NULL,
    status text NOT NULL,
    stored boolean NOT NULL DEFAULT true,
    stream boolean NOT NULL DEFAULT false,
    previous_response_id text,
    created_at double precision NOT NULL,
    duration_s double precision,
    input_tokens integer NOT NULL DEFAULT 0,
    output_tokens integer NOT NULL DEFAULT 0,
    cost_usd double precision,
    input_preview text,
    request jsonb,
    response jsonb,
    timeline jsonb,
    error text
);
CREATE INDEX IF NOT EXISTS hg_responses_created ON hg_responses (created_at DESC);
CREATE TABLE IF NOT EXISTS hg_traces (
    response_id text PRIMARY KEY,
    records jsonb NOT NULL
);
CREATE TABLE IF NOT EXISTS hg_jobs (
    id text PRIMARY KEY,
    key_id text NOT NULL,
    title text NOT NULL,
    status text NOT NULL,
    created_at double precision NOT NULL,
    finished_at double precision,
    out_dir text NOT NULL,
    events jsonb NOT NULL DEFAULT '[]'::jsonb,
    files jsonb NOT NULL DEFAULT '{}'::jsonb,
    error text
);
"""


def hash_key(key: str) -> str:
    """What is kept of a key: its SHA-256 (keys are 256 random bits, so no salt is needed)."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


@dataclass(frozen=True)
class ApiKey:
    id: str
    name: str
    hint: str
    created_at: float
    revoked_at: float | None
    show_reasoning: bool
    max_concurrent: int | None
    per_minute: int | None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> ApiKey:
        return cls(
            row["id"], row["name"], row["hint"], row["created_at"], row["revoked_at"],
            row["show_reasoning"], row["max_concurrent"], row["per_minute"],
        )  # fmt: skip


class ServeStore:
    """The server's tables on one connection pool."""

    def __init__(self, url: str, *, max_size: int = 20) -> None:
        self.url = url
        self.pool = AsyncConnectionPool(
            url, min_size=1, max_size=max_size, open=False,
            kwargs={"autocommit": True, "row_factory": dict_row},
        )  # fmt: skip

    async def open(self) -> ServeStore:
        await self.pool.open(wait=True)
        async with self.pool.connection() as conn, setup_lock(conn, 7317001):
            await conn.execute(SCHEMA)
        return self

    async def close(self) -> None:
        await self.pool.close()

    async def __aenter__(self) -> ServeStore:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _one(self, sql: str, *args: Any) -> dict[str, Any] | None:
        async with self.pool.connection() as conn:
            cur = await conn.execute(sql, args)
            return await cur.fetchone()  # type: ignore[return-value]

    async def _all(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        async with self.pool.connection() as conn:
            cur = await conn.execute(sql, args)
            return list(await cur.fetchall())  # type: ignore[arg-type]

    async def _exec(self, sql: str, *args: Any) -> int:
        async with self.pool.connection() as conn:
            cur = await conn.execute(sql, args)
            return cur.rowcount

    # -- keys ---------------------------------------------------------------------------
    async def create_key(
        self,
        name: str,
        *,
        show_reasoning: bool = False,
        max_concurrent: int | None = None,
        per_minute: int | None = None,
    ) -> tuple[ApiKey, str]:
        """A new key: the record, and the key itself (shown once, never stored)."""
        key = new_key()
        row = await self._one(
            "INSERT INTO hg_api_keys (id, name, hint, hash, created_at, show_reasoning, "
            "max_concurrent, per_minute) VALUES (%s,%s,%s,%s,%s,%s,%s,%s) RETURNING *",
            "key_" + secrets.token_hex(6), name, key[:6] + "…" + key[-4:], hash_key(key),
            time.time(), show_reasoning, max_concurrent, per_minute,
        )  # fmt: skip
        assert row is not None
        return ApiKey.from_row(row), key

    async def list_keys(self) -> list[ApiKey]:
        rows = await self._all("SELECT * FROM hg_api_keys ORDER BY created_at")
        return [ApiKey.from_row(r) for r in rows]

    async def revoke_key(self, key_id: str) -> bool:
        n = await self._exec(
            "UPDATE hg_api_keys SET revoked_at = %s WHERE (id = %s OR name = %s) "
            "AND revoked_at IS NULL",
            time.time(), key_id, key_id,
        )  # fmt: skip
        return n > 0

    async def key_by_secret(self, key: str) -> ApiKey | None:
        row = await self._one(
            "SELECT * FROM hg_api_keys WHERE hash = %s AND revoked_at IS NULL", hash_key(key)
        )
        return ApiKey.from_row(row) if row else None

    # -- responses ---------------------------------------------------------------------
    async def start_response(
        self,
        *,
        response_id: str,
        key_id: str,
        agent: str,
        thread_id: str,
        stored: bool,
        stream: bool,
        previous_response_id: str | None,
        created_at: float,
        input_preview: str,
        request: dict[str, Any],
    ) -> None:
        await self._exec(
            "INSERT INTO hg_responses (id, key_id, agent, thread_id, status, stored, stream, "
            "previous_response_id, created_at, input_preview, request) "
            "VALUES (%s,%s,%s,%s,'in_progress',%s,%s,%s,%s,%s,%s)",
            response_id, key_id, agent, thread_id, stored, stream, previous_response_id,
            created_at, input_preview[:300], Jsonb(request),
        )  # fmt: skip

    async def finish_response(
        self,
        response_id: str,
        *,
        status: str,
        duration_s: float,
        input_tokens: int,
        output_tokens: int,
        cost_usd: float | None,
        response: dict[str, Any] | None,
        timeline: list[dict[str, Any]] | None,
        error: str | None,
        trace: list[dict[str, Any]] | None = None,
    ) -> None:
        """The run's outcome; with `trace` (its records), the trace too, in the same statement."""
        keep = "" if trace is None else (
            "WITH kept AS (INSERT INTO hg_traces (response_id, records) VALUES (%s, %s) "
            "ON CONFLICT (response_id) DO UPDATE SET records = EXCLUDED.records) "
        )  # fmt: skip
        await self._exec(
            keep + "UPDATE hg_responses SET status=%s, duration_s=%s, input_tokens=%s, "
            "output_tokens=%s, cost_usd=%s, response=%s, timeline=%s, error=%s WHERE id=%s",
            *(() if trace is None else (response_id, Jsonb(_jsonable(trace)))),
            status, duration_s, input_tokens, output_tokens, cost_usd,
            Jsonb(response) if response is not None else None,
            Jsonb(_jsonable(timeline)) if timeline is not None else None, error, response_id,
        )  # fmt: skip

    async def has_trace(self, response_id: str) -> bool:
        row = await self._one("SELECT 1 AS one FROM hg_traces WHERE response_id = %s", response_id)
        return row is not None

    async def get_trace(self, response_id: str) -> list[dict[str, Any]] | None:
        """A run's trace records, or None where none was kept."""
        row = await self._one("SELECT records FROM hg_traces WHERE response_id = %s", response_id)
        return list(row["records"]) if row else None

    async def get_response(self, response_id: str) -> dict[str, Any] | None:
        return await self._one("SELECT * FROM hg_responses WHERE id = %s", response_id)

    async def delete_response(self, response_id: str) -> None:
        await self._exec(
            "WITH gone AS (DELETE FROM hg_traces WHERE response_id = %s) "
            "UPDATE hg_responses SET stored = false, response = NULL, request = NULL, "
            "timeline = NULL WHERE id = %s",
            response_id, response_id,
        )  # fmt: skip

    async def list_responses(
        self,
        *,
        key_id: str | None = None,
        status: str | None = None,
        agent: str | None = None,
        search: str | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        where, args = ["true"], []
        if key_id:
            where.append("key_id = %s")
            args.append(key_id)
        if status:
            where.append("status = %s")
            args.append(status)
        if agent:
            where.append("agent = %s")
            args.append(agent)
        if search:
            where.append("(input_preview ILIKE %s OR id ILIKE %s)")
            args += [f"%{search}%", f"%{search}%"]
        return await self._all(
            "SELECT id, key_id, agent, status, stored, stream, created_at, duration_s, "
            "input_tokens, output_tokens, cost_usd, input_preview, error FROM hg_responses "
            f"WHERE {' AND '.join(where)} ORDER BY created_at DESC LIMIT %s",
            *args, limit,
        )  # fmt: skip

    async def agents_seen(self) -> list[str]:
        rows = await self._all("SELECT DISTINCT agent FROM hg_responses ORDER BY agent")
        return [r["agent"] for r in rows]

    # -- survey jobs -----------------------------------------------------------------------
    async def create_job(self, job_id: str, key_id: str, title: str, out_dir: str) -> None:
        await self._exec(
            "INSERT INTO hg_jobs (id, key_id, title, status, created_at, out_dir) "
            "VALUES (%s,%s,%s,'running',%s,%s)",
            job_id, key_id, title, time.time(), out_dir,
        )  # fmt: skip

    async def job_event(self, job_id: str, event: dict[str, Any]) -> None:
        await self._exec(
            "UPDATE hg_jobs SET events = events || %s WHERE id = %s", Jsonb([event]), job_id
        )

    async def finish_job(
        self, job_id: str, *, status: str, files: dict[str, str], error: str | None
    ) -> None:
        await self._exec(
            "UPDATE hg_jobs SET status=%s, finished_at=%s, files=%s, error=%s WHERE id=%s",
            status, time.time(), Jsonb(files), error, job_id,
        )  # fmt: skip

    async def get_job(self, job_id: str) -> dict[str, Any] | None:
        return await self._one("SELECT * FROM hg_jobs WHERE id = %s", job_id)

    async def list_jobs(self) -> list[dict[str, Any]]:
        return await self._all("SELECT * FROM hg_jobs ORDER BY created_at DESC LIMIT 100")


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))
