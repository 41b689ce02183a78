"""Where the server waits for the disk: the checkpointer's many commits a run do not, the
store's commit of a response's outcome does (and with it, the WAL being flushed in
order, every checkpoint the run wrote before it)."""

from __future__ import annotations

import asyncio


def test_checkpoints_commit_without_waiting_and_responses_with(pg_url):
    from harmonygraph.serve.app import open_saver
    from harmonygraph.serve.store import ServeStore

    async def settings() -> tuple[str, str]:
        async with (
            ServeStore(pg_url, max_size=2) as store,
            open_saver(pg_url, pool_size=2) as saver,
        ):
            async with saver.conn.connection() as conn:
                cur = await conn.execute("SHOW synchronous_commit")
                checkpoints = (await cur.fetchone())["synchronous_commit"]
            row = await store._one("SHOW synchronous_commit")
            assert row is not None
            return checkpoints, row["synchronous_commit"]

    checkpoints, responses = asyncio.run(settings())
    assert checkpoints == "off"
    assert responses == "on"


def test_servers_starting_together_on_a_new_database_all_start(pg_url):
    """`serve --workers N` (or replicas) set the tables up at once. Waiting for the setup
    lock inside `pg_advisory_lock` kept a transaction open, and LangGraph's migrations
    build indexes CONCURRENTLY, which wait for every open transaction: the workers
    deadlocked on a new database."""
    import psycopg
    from harmonygraph.serve.app import open_saver
    from harmonygraph.serve.store import ServeStore

    with psycopg.connect(pg_url, autocommit=True) as admin:
        admin.execute("DROP DATABASE IF EXISTS hg_workers_fresh")
        admin.execute("CREATE DATABASE hg_workers_fresh")
    base, _, query = pg_url.partition("?")
    url = base.rsplit("/", 1)[0] + "/hg_workers_fresh" + (f"?{query}" if query else "")

    async def one_server() -> bool:
        async with ServeStore(url, max_size=2), open_saver(url, pool_size=2) as saver:
            return saver is not None

    async def four() -> list[bool]:
        return await asyncio.wait_for(asyncio.gather(*(one_server() for _ in range(4))), 90)

    assert asyncio.run(four()) == [True] * 4
