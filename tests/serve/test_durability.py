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
