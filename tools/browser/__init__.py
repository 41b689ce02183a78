"""The harmony built-in `browser` tool: search, open and find over the web or local documents.

from harmonygraph.tools.browser import BrowserToolset, BrowserConfig
toolset = BrowserToolset(BrowserConfig.from_env())
"""

from harmonygraph.tools.browser.backends import (
    DDGSBackend,
    DocumentHit,
    DocumentSearch,
    DocumentStore,
    FolderDocumentSearch,
    LocalBackend,
    RateLimitedError,
    SearchBackend,
    SearchError,
    SearchHit,
    SearxNGBackend,
    StoredDocument,
)
from harmonygraph.tools.browser.citations import Reference, format_references, resolve_citations
from harmonygraph.tools.browser.config import BrowserConfig
from harmonygraph.tools.browser.extract import (
    ExtractionError,
    extract_html,
    extract_pdf,
    extract_text,
)
from harmonygraph.tools.browser.fetch import (
    BinaryContentError,
    FetchError,
    FetchPolicy,
    FetchResult,
    FetchTimeoutError,
    HTTPStatusError,
    SafeFetcher,
    URLRefusedError,
)
from harmonygraph.tools.browser.history import BrowserHistory, CursorError
from harmonygraph.tools.browser.page import Link, PageContents, render_view
from harmonygraph.tools.browser.reading import page_from_fetch
from harmonygraph.tools.browser.toolset import BrowserToolset

__all__ = [
    "BinaryContentError",
    "BrowserConfig",
    "BrowserHistory",
    "BrowserToolset",
    "CursorError",
    "DDGSBackend",
    "DocumentHit",
    "DocumentSearch",
    "DocumentStore",
    "ExtractionError",
    "FetchError",
    "FetchPolicy",
    "FetchResult",
    "FetchTimeoutError",
    "FolderDocumentSearch",
    "HTTPStatusError",
    "Link",
    "LocalBackend",
    "PageContents",
    "RateLimitedError",
    "Reference",
    "SafeFetcher",
    "SearchBackend",
    "SearchError",
    "SearchHit",
    "SearxNGBackend",
    "StoredDocument",
    "URLRefusedError",
    "extract_html",
    "extract_pdf",
    "extract_text",
    "format_references",
    "page_from_fetch",
    "render_view",
    "resolve_citations",
]
