"""The harmony `browser` namespace: `search`, `open` and `find`, as gpt-oss was trained on."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

import pydantic
from harmonygraph.schema_errors import validation_problems
from harmonygraph.tools.base import (
    ArgumentError,
    Tool,
    ToolContext,
    ToolOutput,
    Toolset,
    parse_json_arguments,
)
from harmonygraph.tools.browser.backends import (
    DocumentStore,
    SearchBackend,
    SearchError,
    StoredDocument,
)
from harmonygraph.tools.browser.config import BrowserConfig
from harmonygraph.tools.browser.extract import (
    ExtractionError,
    extract_text,
)
from harmonygraph.tools.browser.fetch import (
    FetchError,
    SafeFetcher,
    URLRefusedError,
)
from harmonygraph.tools.browser.history import BrowserHistory, CursorError
from harmonygraph.tools.browser.page import Link, PageContents, domain_of, render_view, strip_links
from harmonygraph.tools.browser.worker import ExtractionWorkers, default_workers
from openai_harmony import ToolNamespaceConfig

__all__ = ["BrowserToolset", "FindArgs", "OpenArgs", "SearchArgs"]

STATE_KEY = "browser"


class _Args(pydantic.BaseModel):
    # gpt-oss sometimes adds keys of its own (`top_n`); ignoring them beats failing the call.
    model_config = pydantic.ConfigDict(extra="ignore")


class SearchArgs(_Args):
    query: str = pydantic.Field(min_length=1)
    topn: int = 10
    source: str | None = None


class OpenArgs(_Args):
    id: int | str = -1
    cursor: int = -1
    loc: int = -1
    num_lines: int = -1
    view_source: bool = False
    source: str | None = None


class FindArgs(_Args):
    pattern: str = pydantic.Field(min_length=1)
    cursor: int = -1


class _BrowserTool(Tool):
    def __init__(
        self, toolset: BrowserToolset, name: str, args_model: type[_Args], timeout: float
    ) -> None:
        spec = next(t for t in ToolNamespaceConfig.browser().tools if t.name == name)
        super().__init__(name, spec.description, spec.parameters, timeout=timeout)
        self.toolset = toolset
        self.args_model = args_model

    def validate(self, raw: str) -> _Args:
        data = parse_json_arguments(raw)
        if not isinstance(data, dict):
            raise ArgumentError(f"arguments must be a JSON object, got {type(data).__name__}")
        try:
            return self.args_model.model_validate(data)
        except pydantic.ValidationError as exc:
            raise ArgumentError("; ".join(validation_problems(exc))) from None

    async def invoke(self, args: Any, ctx: ToolContext) -> ToolOutput:
        if isinstance(args, dict):
            args = self.args_model.model_validate(args)
        handler = getattr(self.toolset, self.name)
        result: ToolOutput = await handler(args, ctx)
        return result


class BrowserToolset(Toolset):
    """`browser.search`, `browser.open`, `browser.find` with per-run page history.

    The history lives in `ctx.state["browser"]` so one toolset can serve several runs;
    `start` and `close` reset it. Every failure is a one-line error result, never raised.
    """

    builtin = True

    def __init__(
        self,
        config: BrowserConfig | None = None,
        *,
        backend: SearchBackend | None = None,
        fetcher: SafeFetcher | None = None,
        workers: ExtractionWorkers | None = None,
    ) -> None:
        super().__init__(namespace="browser")
        self.config = config or BrowserConfig.from_env()
        self._backend = backend
        self.fetcher = fetcher or SafeFetcher(self.config.fetch_policy())
        if workers is None:
            shared = default_workers()
            same = shared.memory_mb == self.config.extract_memory_mb
            workers = shared if same else ExtractionWorkers(memory_mb=self.config.extract_memory_mb)
        # Pages become text in worker processes killed at `extract_timeout_s`.
        self.workers = workers
        fetch_budget = self.config.total_timeout_s + self.config.extract_timeout_s + 5
        search_budget = self.config.search_timeout_s * 2 * self.config.retry_attempts + 30
        self.add(_BrowserTool(self, "search", SearchArgs, search_budget))
        self.add(_BrowserTool(self, "open", OpenArgs, fetch_budget))
        self.add(_BrowserTool(self, "find", FindArgs, 30))

    # ---- plumbing ------------------------------------------------------------------------

    @property
    def backend(self) -> SearchBackend:
        """The search backend, built from the config on first use (so a missing setting
        only matters to runs that search)."""
        if self._backend is None:
            self._backend = self.config.build_backend()
        return self._backend

    def namespace_config(self) -> ToolNamespaceConfig:
        return ToolNamespaceConfig.browser()

    @staticmethod
    def history(ctx: ToolContext) -> BrowserHistory:
        history = ctx.state.get(STATE_KEY)
        if not isinstance(history, BrowserHistory):
            history = BrowserHistory()
            ctx.state[STATE_KEY] = history
        return history

    async def start(self, ctx: ToolContext) -> None:
        ctx.state[STATE_KEY] = BrowserHistory()
        self.workers.prewarm()  # the worker loads its parsers while the first page downloads

    async def close(self, ctx: ToolContext) -> None:
        ctx.state.pop(STATE_KEY, None)

    async def aclose(self) -> None:
        close = getattr(self._backend, "aclose", None)  # only one that was built
        if close is not None:
            await close()

    async def call(
        self, name: str, arguments: str | dict[str, Any], ctx: ToolContext
    ) -> ToolOutput:
        """Validate and run one tool as the agent loop would (used by the CLI and tests)."""
        tool = self.tools[name]
        raw = arguments if isinstance(arguments, str) else json.dumps(arguments)
        try:
            args = tool.validate(raw)
        except ArgumentError as exc:
            return ToolOutput.error(f"invalid arguments for browser.{name}: {exc}")
        return await tool.invoke(args, ctx)

    def _show(
        self, history: BrowserHistory, page: PageContents, loc: int, num_lines: int
    ) -> ToolOutput:
        cursor = len(history.pages)
        lines = num_lines if num_lines > 0 else self.config.view_lines
        try:
            view = render_view(
                page, cursor, loc=max(loc, 0), num_lines=lines, max_chars=self.config.view_chars
            )
        except ValueError as exc:
            return ToolOutput.error(str(exc))
        history.add(page)
        shown = page.lines[view.start : view.end + 1]
        return ToolOutput(
            text=view.text,
            metadata={
                "cursor": cursor,
                "url": page.url,
                "title": page.title,
                "kind": page.kind,
                "start": view.start,
                "end": view.end,
                "total_lines": view.total_lines,
                "lines": {str(view.start + i): strip_links(line) for i, line in enumerate(shown)},
            },
        )

    # ---- search ------------------------------------------------------------------------

    async def search(self, args: SearchArgs, ctx: ToolContext) -> ToolOutput:
        history = self.history(ctx)
        topn = max(1, min(args.topn, self.config.max_search_results))
        try:
            backend = self.backend
            hits = await backend.search(args.query, topn)
        except (SearchError, ValueError) as exc:
            return ToolOutput.error(f"search for `{args.query}` failed: {exc}")
        links: dict[int, Link] = {}
        blocks: list[str] = []
        for i, hit in enumerate(hits[:topn]):
            title = _markup_safe(hit.title) or hit.url
            # doc:// and file:// hits come from the local store: their "host" is a path part.
            remote = urlsplit(hit.url).scheme in ("http", "https")
            domain = domain_of(hit.url) if remote else "local"
            snippet = " ".join(hit.snippet.split())
            if len(snippet) > 400:
                snippet = snippet[:399] + "…"
            links[i] = Link(url=hit.url, text=title, snippet=hit.snippet)
            blocks.append(
                f"【{i}†{title}†{domain}】\n{snippet}" if snippet else f"【{i}†{title}†{domain}】"
            )
        text = "\n\n".join(blocks) if blocks else f"No results for `{args.query}`."
        page = PageContents(
            url="",
            title=f"Search results for `{args.query}` ({backend.name})",
            text=text,
            links=links,
            kind="search",
            wrap_width=self.config.wrap_width,
        )
        return self._show(history, page, 0, -1)

    # ---- open --------------------------------------------------------------------------

    async def open(self, args: OpenArgs, ctx: ToolContext) -> ToolOutput:
        history = self.history(ctx)
        target = args.id
        if isinstance(target, str) and target.strip().lstrip("-").isdigit():
            target = int(target)  # "3" is a link id, not a URL
        loc = args.loc
        try:
            if isinstance(target, str):
                page = await self._load(target.strip())
            elif target >= 0:
                current = history.get(args.cursor)
                shown_cursor = args.cursor if args.cursor >= 0 else history.current_cursor
                link = current.links.get(target)
                if link is None:
                    have = f"0 to {len(current.links) - 1}" if current.links else "none"
                    return ToolOutput.error(
                        f"link id {target} is not on page [{shown_cursor}]"
                        f" (valid ids: {have}); open a URL with `id` as a string"
                    )
                if link.cursor is not None:  # a find result: jump into the page already open
                    page = history.get(link.cursor)
                    if loc < 0 and link.loc is not None:
                        loc = link.loc
                else:
                    page = history.find_url(link.url) or await self._load(link.url)
                    if loc < 0 and link.snippet:
                        loc = _locate(page, link.snippet)
            else:
                page = history.get(args.cursor)  # scroll: same page, new cursor, no refetch
        except CursorError as exc:
            return ToolOutput.error(str(exc))
        except URLRefusedError as exc:
            if exc.host is None:
                return ToolOutput.error(str(exc))
            # For the operator (the CLI prints an --allow-host hint), not for the model.
            host = f"[{exc.host}]" if ":" in exc.host else exc.host
            return ToolOutput.error(str(exc), refused_host=f"{host}:{exc.port}")
        except (FetchError, ExtractionError, SearchError) as exc:
            return ToolOutput.error(str(exc))
        except Exception as exc:  # a parser bug on some odd page must not end the run
            return ToolOutput.error(
                f"could not read {target!r} ({type(exc).__name__}: {exc}); try another page"
            )
        if args.view_source:
            if page.raw is None:
                return ToolOutput.error(f"there is no source to view for {page.url or page.title}")
            page = PageContents(
                url=page.url,
                title=f"Source of {page.title}",
                text=page.raw,
                kind="source",
                wrap_width=self.config.wrap_width,
            )
        if loc >= 0 and page.lines and loc >= len(page.lines):
            return ToolOutput.error(
                f"`loc` {loc} is past the end of the page (last line is L{len(page.lines) - 1})"
            )
        return self._show(history, page, loc, args.num_lines)

    async def _load(self, url: str) -> PageContents:
        scheme = urlsplit(url).scheme.lower()
        if scheme in ("doc", "file"):
            return await self._load_document(url)
        result = await self.fetcher.fetch(url)
        return await self.workers.page_from_fetch(
            result,
            max_page_chars=self.config.max_page_chars,
            wrap_width=self.config.wrap_width,
            timeout_s=self.config.extract_timeout_s,
        )

    async def _load_document(self, url: str) -> PageContents:
        backend = self._backend
        if backend is None and self.config.search_backend == "local":
            backend = self.backend
        doc: StoredDocument | None = None
        if isinstance(backend, DocumentStore):
            doc = await backend.get(url)
        if doc is None:
            raise FetchError(
                f"refused: {url} is not a document of the local search backend; only "
                "http and https URLs and local search results can be opened"
            )
        if doc.media_type == "text/html":
            page = await self.workers.extract_html(
                doc.content, doc.url, timeout_s=self.config.extract_timeout_s
            )
            page.kind = "document"
            page.title = doc.title or page.title
        else:
            page = extract_text(doc.content, doc.url, title=doc.title)
            page.kind = "document"
        page.raw = doc.content
        page.wrap_width = self.config.wrap_width
        return page

    # ---- find --------------------------------------------------------------------------

    async def find(self, args: FindArgs, ctx: ToolContext) -> ToolOutput:
        history = self.history(ctx)
        try:
            page = history.get(args.cursor)
        except CursorError as exc:
            return ToolOutput.error(str(exc))
        source_cursor = args.cursor if args.cursor >= 0 else history.current_cursor
        pattern = args.pattern.lower()
        lines = [strip_links(line) for line in page.lines]
        blocks: list[str] = []
        links: dict[int, Link] = {}
        i = 0
        while i < len(lines) and len(blocks) < 50:
            if pattern not in lines[i].lower():
                i += 1
                continue
            n = len(blocks)
            links[n] = Link(url=page.url, text=f"match at L{i}", cursor=source_cursor, loc=i)
            snippet = "\n".join(lines[i : i + 4])
            blocks.append(f"# 【{n}†match at L{i}】\n{snippet}")
            i += 4  # the next match is searched after the lines this one shows
        text = "\n\n".join(blocks) if blocks else f"No `find` results for pattern: `{args.pattern}`"
        result = PageContents(
            url=page.url,
            title=f"Find results for text: `{args.pattern}` in `{page.title}`",
            text=text,
            links=links,
            kind="find",
            wrap_width=10_000,  # snippet lines are page lines already: keep them whole
        )
        return self._show(history, result, 0, -1)


def _markup_safe(text: str) -> str:
    return " ".join(text.split()).replace("】", "]").replace("【", "[").replace("†", "+")


def _locate(page: PageContents, snippet: str) -> int:
    """The line where a search snippet's first words appear, so `open` lands on them."""
    words = [w for w in snippet.split() if len(w) > 2][:6]
    if len(words) < 3:
        return -1
    needle = " ".join(words[:3]).lower()
    for n, line in enumerate(page.lines):
        if needle in strip_links(line).lower():
            return max(0, n - 2)
    return -1
