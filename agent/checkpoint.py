"""Checkpointers for agent runs: LangGraph's savers with our state types allowed.

LangGraph's serializer restores only the types it is told about; these are the types the
agent loop keeps in its state. Pass `serializer()` to any saver you build yourself.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

__all__ = ["STATE_TYPES", "memory_saver", "postgres_saver", "serializer", "sqlite_saver"]

STATE_TYPES: list[tuple[str, str]] = [
    ("harmonygraph.harmony.messages", "Message"),
    ("harmonygraph.harmony.messages", "Role"),
    ("harmonygraph.models.base", "Usage"),
]


def serializer() -> JsonPlusSerializer:
    return JsonPlusSerializer(allowed_msgpack_modules=STATE_TYPES)


def memory_saver() -> InMemorySaver:
    return InMemorySaver(serde=serializer())


@asynccontextmanager
async def sqlite_saver(path: str | Path) -> AsyncIterator[Any]:
    """An async SQLite saver (extra `checkpoint`): `async with sqlite_saver(p) as saver`."""
    try:
        from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
    except ImportError:
        raise ImportError(
            "SQLite checkpoints need langgraph-checkpoint-sqlite: pip install 'harmonygraph[checkpoint]'"
        ) from None
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    async with AsyncSqliteSaver.from_conn_string(str(path)) as saver:
        saver.serde = serializer()
        yield saver


@asynccontextmanager
async def postgres_saver(url: str) -> AsyncIterator[Any]:
    """An async Postgres saver (extra `checkpoint`): `async with postgres_saver(url) as saver`."""
    try:
        from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
    except ImportError:
        raise ImportError(
            "Postgres checkpoints need langgraph-checkpoint-postgres: pip install 'harmonygraph[checkpoint]'"
        ) from None
    async with AsyncPostgresSaver.from_conn_string(url) as saver:
        saver.serde = serializer()
        await saver.setup()
        yield saver
