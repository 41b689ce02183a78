"""Fixtures of the report tests: a real Postgres + pgvector and a real sandbox.

The embedded `pgserver` runs in a temporary folder (deleted at the end); set
HARMONYGRAPH_TEST_DATABASE_URL to use another server. The sandbox is the local backend
(a subprocess with the scientific stack), so the tests run without Docker.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from tests.ci import require


@pytest.fixture(scope="session")
def pg_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = os.environ.get("HARMONYGRAPH_TEST_DATABASE_URL")
    if url:
        yield url
        return
    require("psycopg")
    require("pgvector")
    pgserver = require("pgserver")
    base = tmp_path_factory.mktemp("pg", numbered=True)
    server = pgserver.get_server(base / "pgdata", cleanup_mode="delete")
    try:
        yield str(server.get_uri())
    finally:
        server.cleanup()


@pytest.fixture(scope="session")
def local_sandbox() -> Any:
    """The local sandbox backend; skips (fails under CI) without pandas and matplotlib."""
    require("pandas")
    require("matplotlib")
    from harmonygraph.sandbox import LocalSandbox, SandboxConfig

    return LocalSandbox(SandboxConfig(backend="local", pool_size=1))
