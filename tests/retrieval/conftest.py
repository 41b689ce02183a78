"""Fixtures of the retrieval tests: one real Postgres + pgvector for the session.

The embedded `pgserver` runs in a temporary folder (deleted at the end); set
HARMONYGRAPH_TEST_DATABASE_URL to test against another server instead. Without the
`retrieval` extra installed the tests skip locally, but fail under CI=true, where a
skip would hide that nothing was tested.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
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
    # A short path readable by the `pgserver` system user (pgserver runs Postgres as
    # that user when tests run as root); the Unix socket lives in the data folder and
    # socket paths are limited to 108 bytes.
    base = Path(tempfile.mkdtemp(prefix="hg-pg-"))
    base.chmod(0o755)
    server = pgserver.get_server(base / "pgdata", cleanup_mode="delete")
    try:
        yield str(server.get_uri())
    finally:
        server.cleanup()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def collection_name() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def store(pg_url: str) -> AsyncIterator[Any]:
    from harmonygraph.tools.retrieval import HashingEmbedder, RetrievalStore

    async with RetrievalStore(pg_url, embedder=HashingEmbedder(), write_batch=50) as s:
        yield s


@pytest.fixture
def docs_dir(tmp_path: Path) -> Path:
    """A small folder of real-looking documents in every supported format."""
    d = tmp_path / "docs"
    d.mkdir()
    (d / "leave.md").write_text(
        "---\ntitle: Leave policy\nowner: hr\n---\n# Leave policy\n\n"
        "Employees receive twenty days of paid annual leave.\n\n"
        "## Parental leave\n\nParents may take sixteen weeks of parental leave at full pay.\n"
    )
    (d / "servers.html").write_text(
        "<html><head><title>Server room</title><style>p{color:red}</style>"
        "<script>var secret = 'do not index';</script></head><body>"
        "<h1>Server room</h1><p>The server room is cooled to eighteen degrees.</p>"
        "<h2>Access</h2><p>Access requires a badge issued by facilities.</p></body></html>"
    )
    (d / "notes.txt").write_text(
        "Quarterly revenue grew by twelve percent.\n\nThe board approved the budget."
    )
    (d / "staff.csv").write_text("name,role,city\nAda,engineer,London\nGrace,admiral,Arlington\n")
    (d / "config.json").write_text(
        '{"title": "Deployment", "region": "eu-west", "replicas": 3, "owners": ["ops", "sre"]}'
    )
    return d
