"""Fixtures of the batch tests: one embedded Postgres and one local Ray for the session.

Ray runs locally with two CPUs and no dashboard (`ray.init` takes ~10 s here, so the tests
share it); set HARMONYGRAPH_TEST_DATABASE_URL to use another Postgres. Without Ray or
pgserver installed the tests skip locally and fail under CI=true.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.ci import require


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    url = os.environ.get("HARMONYGRAPH_TEST_DATABASE_URL")
    if url:
        yield url
        return
    require("psycopg")
    pgserver = require("pgserver")
    base = Path(tempfile.mkdtemp(prefix="hg-pg-"))
    base.chmod(0o755)  # pgserver runs Postgres as its own user when we are root
    server = pgserver.get_server(base / "pgdata", cleanup_mode="delete")
    try:
        yield str(server.get_uri())
    finally:
        server.cleanup()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def ray_local() -> Iterator[Any]:
    ray = require("ray")
    from harmonygraph.batch.driver import init_ray

    init_ray(num_cpus=2)
    try:
        yield ray
    finally:
        ray.shutdown()
