"""Search backends over real HTTP (SearxNG-shaped endpoint), ddgs failing offline, local docs."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from browser_testkit import LocalServer
from harmonygraph.tools.base import ToolContext
from harmonygraph.tools.browser import (
    BrowserConfig,
    BrowserToolset,
    DDGSBackend,
    FolderDocumentSearch,
    LocalBackend,
    RateLimitedError,
    SearchError,
    SearxNGBackend,
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_searxng_results(server: LocalServer) -> None:
    hits = await SearxNGBackend(server.url("/searx")).search("harmony", 1)
    assert len(hits) == 1
    assert hits[0].url == server.url("/pages/aclu/source.html")
    assert hits[0].snippet.startswith("Facebook collects data")


async def test_searxng_rate_limit_is_retried(server: LocalServer) -> None:
    before = server.hits["rl"]
    backend = SearxNGBackend(server.url("/searx"), retry_attempts=3, retry_backoff_s=0.01)
    hits = await backend.search("limited-once", 5)
    assert server.hits["rl"] == before + 1  # one 429, then the retry succeeded
    assert [h.title for h in hits] == [
        "Facebook Is Tracking Me Even Though I'm Not on Facebook",
        "Notes about limited-once",
    ]


async def test_searxng_rate_limit_gives_up_with_advice(server: LocalServer) -> None:
    backend = SearxNGBackend(server.url("/searx"), retry_attempts=2, retry_backoff_s=0.01)
    with pytest.raises(RateLimitedError, match=r"rate limiting us .* after 2 attempts; wait"):
        await backend.search("always-limited", 5)


async def test_searxng_that_is_not_searxng(server: LocalServer) -> None:
    with pytest.raises(SearchError, match="did not return JSON; is it a SearxNG instance"):
        await SearxNGBackend(server.url("/not-searx")).search("q", 3)


async def test_searxng_unreachable() -> None:
    backend = SearxNGBackend(f"http://127.0.0.1:{free_port()}", timeout_s=2)
    with pytest.raises(SearchError, match=r"is unreachable .* check HARMONYGRAPH_SEARXNG_URL"):
        await backend.search("q", 3)


async def test_ddgs_failure_is_clear_and_bounded(server: LocalServer) -> None:
    """No internet needed: ddgs goes through a proxy where nothing listens."""
    backend = DDGSBackend(
        proxy=f"http://127.0.0.1:{free_port()}", timeout_s=2, retry_backoff_s=0.01
    )
    with pytest.raises(
        SearchError, match=r"search backend ddgs \(DuckDuckGo\) failed .* check the network"
    ):
        await backend.search("gpt-oss harmony", 3)
    # Through the toolset it is one line for the model.
    browser = BrowserToolset(BrowserConfig(), backend=backend)
    out = await browser.call("search", {"query": "gpt-oss"}, ToolContext())
    assert out.is_error
    assert out.text.startswith(
        "search for `gpt-oss` failed: search backend ddgs (DuckDuckGo) failed"
    )
    assert "\n" not in out.text


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    (tmp_path / "guides").mkdir()
    (tmp_path / "guides" / "pgvector.md").write_text(
        "# Setting up pgvector\n\nInstall the extension and create an HNSW index.\n\n"
        "Vectors are compared with cosine distance.\n"
    )
    (tmp_path / "notes.txt").write_text("Meeting notes: the harmony format uses channels.\n")
    (tmp_path / "page.html").write_text(
        "<html><head><title>Sandbox design</title></head><body><article><p>"
        + "The sandbox runs Python in a container with no network. " * 5
        + "</p></article></body></html>"
    )
    (tmp_path / "image.png").write_bytes(b"\x89PNG not indexed")
    return tmp_path


async def test_folder_search_ranks_and_snippets(docs: Path) -> None:
    search = FolderDocumentSearch(docs)
    hits = await search.search("HNSW index pgvector", 3)
    assert hits[0].url == "doc://guides/pgvector.md"
    assert hits[0].title == "Setting up pgvector"
    assert "HNSW" in hits[0].text and hits[0].score > 0
    assert await search.search("zzzz", 3) == []
    html_hits = await search.search("sandbox container", 3)
    assert html_hits[0].title == "Sandbox design"


async def test_local_backend_search_and_open_documents(docs: Path) -> None:
    config = BrowserConfig(search_backend="local", local_search_dir=docs)
    browser = BrowserToolset(config)
    ctx = ToolContext()
    out = await browser.call("search", {"query": "harmony channels"}, ctx)
    assert "L0: 【0†notes†local】" in out.text
    opened = await browser.call("open", {"id": 0}, ctx)
    assert not opened.is_error, opened.text
    assert "L0: Meeting notes: the harmony format uses channels." in opened.text
    assert opened.metadata["url"] == "doc://notes.txt"
    html = await browser.call("open", {"id": "doc://page.html"}, ctx)
    assert html.text.startswith("[2] Sandbox design (doc://page.html)")
    as_file = await browser.call("open", {"id": (docs / "notes.txt").as_uri()}, ctx)
    assert "Meeting notes" in as_file.text
    # file:// outside the folder is not a document: open cannot read arbitrary files.
    outside = await browser.call("open", {"id": "file:///etc/passwd"}, ctx)
    assert outside.is_error and outside.text.startswith("refused: ")


async def test_local_backend_over_a_store_without_get() -> None:
    """A store with only `search` (the retrieval store's shape): open shows the hit's chunk."""

    class Hit:
        def __init__(self, title: str, url: str, text: str, score: float) -> None:
            self.title, self.url, self.text, self.score = title, url, text, score

    class Store:
        async def search(self, query: str, k: int) -> list[Hit]:
            return [Hit("Chunk A", "doc://db/1#0", f"About {query}: the chunk text.", 0.9)]

    browser = BrowserToolset(BrowserConfig(), backend=LocalBackend(Store()))
    ctx = ToolContext()
    out = await browser.call("search", {"query": "retrieval"}, ctx)
    assert "【0†Chunk A†local】" in out.text
    opened = await browser.call("open", {"id": 0}, ctx)
    assert "About retrieval: the chunk text." in opened.text


def test_config_from_env(tmp_path: Path) -> None:
    config = BrowserConfig.from_env(
        {
            "HARMONYGRAPH_SEARCH_BACKEND": "searxng",
            "HARMONYGRAPH_SEARXNG_URL": "http://localhost:8888",
            "HARMONYGRAPH_BROWSER_ALLOW_HOSTS": "127.0.0.1, intranet.local",
            "HARMONYGRAPH_VIEW_LINES": "40",
        }
    )
    assert config.search_backend == "searxng"
    assert isinstance(config.build_backend(), SearxNGBackend)
    assert config.allow_hosts == ["127.0.0.1", "intranet.local"]
    assert config.fetch_policy().host_allowed("INTRANET.local")
    assert config.view_lines == 40
    with pytest.raises(ValueError, match="needs HARMONYGRAPH_SEARXNG_URL"):
        BrowserConfig(search_backend="searxng").build_backend()
    with pytest.raises(
        ValueError, match=r"needs HARMONYGRAPH_LOCAL_COLLECTION .* or HARMONYGRAPH_LOCAL_SEARCH_DIR"
    ):
        BrowserConfig(search_backend="local").build_backend()
    with pytest.raises(ValueError, match="search_backend"):
        BrowserConfig.from_env({"HARMONYGRAPH_SEARCH_BACKEND": "bing"})


async def test_missing_backend_setting_is_a_tool_error() -> None:
    browser = BrowserToolset(BrowserConfig(search_backend="searxng"))
    out = await browser.call("search", {"query": "x"}, ToolContext())
    assert out.is_error and "needs HARMONYGRAPH_SEARXNG_URL" in out.text
