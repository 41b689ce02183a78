"""Fixtures of the browser tests: the local HTTP server, a config allow-listing it, a toolset."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from browser_testkit import READABILITY, LocalServer, start_server
from harmonygraph.tools.base import ToolContext
from harmonygraph.tools.browser import BrowserConfig, BrowserToolset, SearxNGBackend


@pytest.fixture(scope="session")
def server() -> Iterator[LocalServer]:
    if not READABILITY.is_dir():
        pytest.skip(f"the readability corpus is not beside the checkout ({READABILITY})")
    state, httpd = start_server()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def config(server: LocalServer) -> BrowserConfig:
    """Config allowing only the test server, with small limits so bad cases end quickly."""
    return BrowserConfig(
        search_backend="searxng",
        searxng_url=server.url("/searx"),
        allow_hosts=["127.0.0.1"],
        max_bytes=200_000,
        total_timeout_s=2.0,
        read_timeout_s=1.0,
        connect_timeout_s=1.0,
        retry_attempts=3,
        retry_backoff_s=0.01,
    )


@pytest.fixture
def browser(config: BrowserConfig) -> BrowserToolset:
    return BrowserToolset(
        config,
        backend=SearxNGBackend(
            str(config.searxng_url), retry_attempts=3, retry_backoff_s=0.01, timeout_s=2
        ),
    )


@pytest.fixture
async def ctx(browser: BrowserToolset) -> ToolContext:
    context = ToolContext(run_id="test")
    await browser.start(context)
    return context
