"""Search backends: DuckDuckGo (through `ddgs`), SearxNG and a local document search.

A backend turns a query into `SearchHit`s. Failures come out as `SearchError` with a
message that says what to do; rate limits are retried with exponential backoff first.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar, runtime_checkable
from urllib.parse import quote, unquote, urlsplit

import httpx
from harmonygraph.concurrency import run_in_thread
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential

__all__ = [
    "DDGSBackend",
    "DocumentHit",
    "DocumentSearch",
    "DocumentStore",
    "FolderDocumentSearch",
    "LocalBackend",
    "RateLimitedError",
    "SearchBackend",
    "SearchError",
    "SearchHit",
    "SearxNGBackend",
    "StoredDocument",
]

T = TypeVar("T")


class SearchError(Exception):
    """A search failed; the message says which backend and what to do."""


class RateLimitedError(SearchError):
    """The search service said to slow down (HTTP 429 or the ddgs rate-limit error)."""


@dataclass(frozen=True, slots=True)
class SearchHit:
    title: str
    url: str
    snippet: str


@runtime_checkable
class SearchBackend(Protocol):
    """What the browser needs from a search service."""

    name: str

    async def search(self, query: str, topn: int) -> list[SearchHit]: ...


async def _with_backoff(
    name: str, attempts: int, backoff_s: float, call: Callable[[], Awaitable[T]]
) -> T:
    """Run `call`, retrying only rate-limit errors with exponential backoff."""
    try:
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(RateLimitedError),
            stop=stop_after_attempt(max(1, attempts)),
            wait=wait_exponential(multiplier=backoff_s, max=max(backoff_s, 30.0)),
            reraise=True,
        ):
            with attempt:
                return await call()
    except RateLimitedError as exc:
        raise RateLimitedError(
            f"search backend {name} is rate limiting us ({exc}) after {attempts} attempts; "
            "wait a minute or configure another backend"
        ) from None
    raise AssertionError("unreachable: tenacity either returns or raises")


class DDGSBackend:
    """DuckDuckGo through the `ddgs` package (no API key needed).

    `backend` is ddgs's engine list: `duckduckgo` (the default), another engine, a
    comma-separated list, or `auto` (ddgs picks among Brave, Bing, Google, Mojeek and
    more). Errors name the engines asked for, so a failure is never blamed on the wrong one.
    """

    name = "ddgs"

    def __init__(
        self,
        *,
        timeout_s: float = 10.0,
        proxy: str | None = None,
        region: str = "wt-wt",
        backend: str = "duckduckgo",
        retry_attempts: int = 3,
        retry_backoff_s: float = 1.0,
    ) -> None:
        self.timeout_s = timeout_s
        self.proxy = proxy
        self.region = region
        self.backend = backend
        self.retry_attempts = retry_attempts
        self.retry_backoff_s = retry_backoff_s

    @property
    def label(self) -> str:
        """What the messages call this backend: `ddgs (DuckDuckGo)`, `ddgs (engines auto)`."""
        if self.backend.strip().lower() == "duckduckgo":
            return "ddgs (DuckDuckGo)"
        return f"ddgs (engines {self.backend})"

    def _search_sync(self, query: str, topn: int) -> list[SearchHit]:
        from ddgs import DDGS
        from ddgs.exceptions import DDGSException, RatelimitException

        try:
            rows = DDGS(proxy=self.proxy, timeout=math.ceil(self.timeout_s)).text(
                query, region=self.region, max_results=topn, backend=self.backend
            )
        except RatelimitException as exc:
            raise RateLimitedError(str(exc)) from None
        except DDGSException as exc:
            raise SearchError(
                f"search backend {self.label} failed ({exc}); check the network or proxy, "
                "set HARMONYGRAPH_DDGS_ENGINES to other engines, or set "
                "HARMONYGRAPH_SEARCH_BACKEND=searxng or local"
            ) from None
        return [
            SearchHit(str(r.get("title", "")), str(r.get("href", "")), str(r.get("body", "")))
            for r in rows
            if r.get("href")
        ]

    async def search(self, query: str, topn: int) -> list[SearchHit]:
        async def once() -> list[SearchHit]:
            try:
                # ddgs is synchronous; a thread keeps the event loop free, and the outer
                # timeout bounds the call even if ddgs tries several engines in turn.
                async with asyncio.timeout(self.timeout_s * 2):
                    return await run_in_thread(self._search_sync, query, topn)
            except TimeoutError:
                raise SearchError(
                    f"search backend {self.label} did not answer in {self.timeout_s * 2:g} s; "
                    "check the network, or set HARMONYGRAPH_SEARCH_BACKEND=searxng or local"
                ) from None

        return await _with_backoff(self.label, self.retry_attempts, self.retry_backoff_s, once)


class SearxNGBackend:
    """A SearxNG instance's JSON API (`/search?format=json`; enable `json` in its settings)."""

    name = "searxng"

    def __init__(
        self,
        base_url: str,
        *,
        timeout_s: float = 10.0,
        retry_attempts: int = 3,
        retry_backoff_s: float = 1.0,
        categories: str = "general",
    ) -> None:
        if not base_url:
            raise ValueError("SearxNG needs a base URL: set HARMONYGRAPH_SEARXNG_URL")
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.retry_attempts = retry_attempts
        self.retry_backoff_s = retry_backoff_s
        self.categories = categories

    async def _once(self, query: str, topn: int) -> list[SearchHit]:
        url = f"{self.base_url}/search"
        params = {"q": query, "format": "json", "categories": self.categories}
        # The SearxNG instance is configured by the operator (often on localhost), so it
        # is not subject to the public-address rule that guards model-chosen URLs.
        try:
            async with httpx.AsyncClient(timeout=self.timeout_s, trust_env=False) as client:
                response = await client.get(url, params=params)
        except httpx.TimeoutException:
            raise SearchError(
                f"search backend searxng at {self.base_url} did not answer in {self.timeout_s:g} s"
            ) from None
        except httpx.HTTPError as exc:
            raise SearchError(
                f"search backend searxng at {self.base_url} is unreachable ({exc}); check "
                "HARMONYGRAPH_SEARXNG_URL"
            ) from None
        if response.status_code == 429:
            raise RateLimitedError("HTTP 429 Too Many Requests")
        if response.status_code == 403:
            raise SearchError(
                f"search backend searxng at {self.base_url} refused the JSON API (HTTP 403); "
                "add `json` to search.formats in its settings.yml"
            )
        if response.status_code >= 400:
            raise SearchError(
                f"search backend searxng at {self.base_url} answered HTTP {response.status_code}"
            )
        try:
            results = response.json().get("results", [])
        except (ValueError, AttributeError):
            raise SearchError(
                f"search backend searxng at {self.base_url} did not return JSON; is it a "
                "SearxNG instance?"
            ) from None
        hits = [
            SearchHit(str(r.get("title", "")), str(r["url"]), str(r.get("content") or ""))
            for r in results
            if isinstance(r, dict) and r.get("url")
        ]
        return hits[:topn]

    async def search(self, query: str, topn: int) -> list[SearchHit]:
        return await _with_backoff(
            self.name,
            self.retry_attempts,
            self.retry_backoff_s,
            lambda: self._once(query, topn),
        )


# ---- local search over the project's own documents -------------------------------------


@runtime_checkable
class DocumentHit(Protocol):
    """A hit of a document search (the retrieval store's results have the same fields)."""

    @property
    def title(self) -> str: ...
    @property
    def url(self) -> str: ...  # doc://... or file://...
    @property
    def text(self) -> str: ...
    @property
    def score(self) -> float: ...


@runtime_checkable
class DocumentSearch(Protocol):
    """Anything that answers a query with scored hits (a folder index, the pgvector store)."""

    async def search(self, query: str, k: int) -> Sequence[DocumentHit]: ...


@dataclass(frozen=True, slots=True)
class StoredDocument:
    """A whole document, for `open` on a local search result."""

    url: str
    title: str
    content: str
    media_type: str  # text/html, text/markdown or text/plain


@runtime_checkable
class DocumentStore(Protocol):
    """A document search that can also give back whole documents by URL."""

    async def get(self, url: str) -> StoredDocument | None: ...


@dataclass(frozen=True, slots=True)
class _Hit:
    title: str
    url: str
    text: str
    score: float


_WORD = re.compile(r"\w+", re.UNICODE)
_SUFFIXES = {".txt": "text/plain", ".md": "text/markdown", ".markdown": "text/markdown",
             ".html": "text/html", ".htm": "text/html", ".rst": "text/plain"}  # fmt: skip


@dataclass(slots=True)
class _Chunk:
    doc: int
    text: str
    terms: Counter[str]


class FolderDocumentSearch:
    """BM25 over the text, Markdown and HTML files of a folder: search with no database.

    Documents are split into paragraphs-sized chunks; URLs are `doc://{relative path}`.
    The folder is read once, on first use.
    """

    def __init__(self, root: Path | str, *, chunk_chars: int = 1200) -> None:
        self.root = Path(root).resolve()
        self.chunk_chars = chunk_chars
        self._docs: list[StoredDocument] = []
        self._chunks: list[_Chunk] = []
        self._df: Counter[str] = Counter()
        self._loaded = False

    def _load(self) -> None:
        if self._loaded:
            return
        if not self.root.is_dir():
            raise SearchError(
                f"local search folder {self.root} does not exist; set "
                "HARMONYGRAPH_LOCAL_SEARCH_DIR to a folder of .txt/.md/.html files"
            )
        from harmonygraph.tools.browser.extract import extract_html

        for path in sorted(self.root.rglob("*")):
            media_type = _SUFFIXES.get(path.suffix.lower())
            if media_type is None or not path.is_file():
                continue
            raw = path.read_text(encoding="utf-8", errors="replace")
            rel = path.relative_to(self.root).as_posix()
            url = "doc://" + quote(rel)
            if media_type == "text/html":
                page = extract_html(raw, url)
                title, plain = page.title, page.text
            else:
                title = _first_heading(raw) or path.stem
                plain = raw
            doc_id = len(self._docs)
            self._docs.append(StoredDocument(url, title, raw, media_type))
            for piece in _chunks(plain, self.chunk_chars):
                terms = Counter(w.lower() for w in _WORD.findall(piece))
                self._chunks.append(_Chunk(doc_id, piece, terms))
                self._df.update(terms.keys())
        self._loaded = True

    async def search(self, query: str, k: int) -> list[DocumentHit]:
        await run_in_thread(self._load)
        q = [w.lower() for w in _WORD.findall(query)]
        n = len(self._chunks)
        if not n or not q:
            return []
        avg = sum(sum(c.terms.values()) for c in self._chunks) / n
        scored: list[tuple[float, int]] = []
        for i, chunk in enumerate(self._chunks):
            length = sum(chunk.terms.values())
            score = 0.0
            for term in q:
                tf = chunk.terms.get(term, 0)
                if not tf:
                    continue
                idf = math.log(1 + (n - self._df[term] + 0.5) / (self._df[term] + 0.5))
                score += idf * tf * 2.2 / (tf + 1.2 * (0.25 + 0.75 * length / avg))
            if score > 0:
                scored.append((score, i))
        scored.sort(reverse=True)
        hits: list[DocumentHit] = []
        seen: set[int] = set()
        for score, i in scored:
            chunk = self._chunks[i]
            if chunk.doc in seen:  # one hit per document: the best chunk
                continue
            seen.add(chunk.doc)
            doc = self._docs[chunk.doc]
            hits.append(_Hit(doc.title, doc.url, chunk.text, round(score, 4)))
            if len(hits) >= k:
                break
        return hits

    async def get(self, url: str) -> StoredDocument | None:
        await run_in_thread(self._load)
        if urlsplit(url).scheme == "file":
            doc_url = self._doc_url_for_file(url)
            if doc_url is None:
                return None
            url = doc_url
        for doc in self._docs:
            if doc.url == url:
                return doc
        return None

    def _doc_url_for_file(self, url: str) -> str | None:
        # Only files inside the folder: `open` must not become a way to read any file.
        try:
            path = Path(unquote(urlsplit(url).path)).resolve()
            return "doc://" + quote(path.relative_to(self.root).as_posix())
        except (ValueError, OSError):
            return None


def _first_heading(text: str) -> str | None:
    for line in text.splitlines()[:20]:
        if line.startswith("#"):
            return line.lstrip("#").strip() or None
    return None


def _chunks(text: str, size: int) -> list[str]:
    out: list[str] = []
    current = ""
    for para in re.split(r"\n\s*\n", text):
        para = para.strip()
        if not para:
            continue
        if current and len(current) + len(para) > size:
            out.append(current)
            current = ""
        current = f"{current}\n\n{para}" if current else para
    if current:
        out.append(current)
    return out


class LocalBackend:
    """Search over a `DocumentSearch` (a folder, or the project's pgvector store)."""

    name = "local"

    def __init__(self, documents: DocumentSearch) -> None:
        self.documents = documents
        # Hits seen in searches, so `open` can show at least the chunk when the store
        # cannot return whole documents.
        self._seen: dict[str, DocumentHit] = {}

    async def search(self, query: str, topn: int) -> list[SearchHit]:
        try:
            hits = await self.documents.search(query, topn)
        except SearchError:
            raise
        except Exception as exc:  # a store's own errors (database down) become one line
            raise SearchError(
                f"local document search failed ({type(exc).__name__}: {exc})"
            ) from None
        out = []
        for hit in hits:
            self._seen[hit.url] = hit
            out.append(SearchHit(hit.title, hit.url, hit.text))
        return out

    async def aclose(self) -> None:
        """Close the document store's connections, where it keeps any."""
        close = getattr(self.documents, "aclose", None)
        if close is not None:
            await close()

    async def get(self, url: str) -> StoredDocument | None:
        """The whole document when the store has it, else the chunk seen in a search."""
        if isinstance(self.documents, DocumentStore):
            doc = await self.documents.get(url)
            if doc is not None:
                return doc
        hit = self._seen.get(url)
        if hit is not None:
            return StoredDocument(hit.url, hit.title, hit.text, "text/plain")
        return None
