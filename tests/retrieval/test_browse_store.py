"""The browser's local backend over the pgvector store: search, then open whole documents."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harmonygraph.tools import ToolContext
from harmonygraph.tools.browser import BrowserToolset
from harmonygraph.tools.browser.backends import LocalBackend
from harmonygraph.tools.retrieval.browse import StoreDocuments


async def test_browser_searches_and_opens_stored_documents(
    store: Any, collection_name: str, docs_dir: Path, tmp_path: Path
) -> None:
    await store.add_paths([docs_dir / "leave.md"], collection=collection_name)
    browser = BrowserToolset(backend=LocalBackend(StoreDocuments(store, collection_name)))
    ctx = ToolContext(run_id="r", artifacts_dir=tmp_path)
    await browser.start(ctx)
    try:
        search = browser.resolve("browser.search")
        opener = browser.resolve("browser.open")
        assert search is not None and opener is not None
        page = await search.invoke(
            search.validate(json.dumps({"query": "parental leave weeks"})), ctx
        )
        assert not page.is_error and "Leave policy" in page.text
        doc = await opener.invoke(opener.validate(json.dumps({"id": 0})), ctx)
        assert not doc.is_error, doc.text
        # The whole document, rebuilt from its overlapping chunks, with numbered lines.
        assert "twenty days of paid annual leave" in doc.text
        assert "sixteen weeks of parental leave" in doc.text
        assert "L1:" in doc.text
    finally:
        await browser.close(ctx)


async def test_document_text_rebuilds_the_original_from_overlapping_chunks(
    store: Any, collection_name: str
) -> None:
    words = " ".join(f"word{i}." for i in range(900))  # several chunks with overlap
    await store.add_text(words, collection=collection_name, source="doc://long", format="text")
    title, text = await store.document_text("doc://long", collection=collection_name)
    assert text == words and title
    assert await store.document_text("doc://missing", collection=collection_name) is None


def test_the_store_backend_is_chosen_by_configuration(
    collection_name: str, docs_dir: Path, pg_url: str, monkeypatch: Any
) -> None:
    """`harmonygraph browse` over a collection, with nothing but environment variables."""
    from harmonygraph.tools.browser.cli import app  # `harmonygraph browse`
    from harmonygraph.tools.retrieval import HashingEmbedder, SyncRetrievalStore
    from typer.testing import CliRunner

    with SyncRetrievalStore(pg_url, embedder=HashingEmbedder()) as store:
        store.add_paths([docs_dir / "leave.md"], collection=collection_name)
    monkeypatch.setenv("DATABASE_URL", pg_url)
    monkeypatch.setenv("HARMONYGRAPH_SEARCH_BACKEND", "local")
    monkeypatch.setenv("HARMONYGRAPH_LOCAL_COLLECTION", collection_name)
    runner = CliRunner()
    found = runner.invoke(app, ["search", "parental leave weeks", "--json"])
    assert found.exit_code == 0, found.output
    page = json.loads(found.output)
    assert "【0†Leave policy†local】" in page["text"]
    # `open` takes the doc:// URL the store gives the document's source.
    url = StoreDocuments.configured(collection_name).url_for(str(docs_dir / "leave.md"))
    opened = runner.invoke(app, ["open", url])
    assert opened.exit_code == 0, opened.output
    assert "sixteen weeks of parental leave" in opened.output

    monkeypatch.delenv("HARMONYGRAPH_LOCAL_COLLECTION")
    unset = runner.invoke(app, ["search", "leave"])
    assert unset.exit_code == 1 and "needs HARMONYGRAPH_LOCAL_COLLECTION" in unset.output
