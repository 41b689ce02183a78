"""Per-run page history: every display gets a cursor, and citations name cursors."""

from __future__ import annotations

from dataclasses import dataclass, field

from harmonygraph.tools.browser.page import PageContents

__all__ = ["BrowserHistory", "CursorError"]


class CursorError(LookupError):
    """A cursor the model named does not exist."""


@dataclass(slots=True)
class BrowserHistory:
    """Cursor `n` is the n-th display of the run; scrolling adds a cursor for the same page."""

    pages: list[PageContents] = field(default_factory=list)

    @property
    def current_cursor(self) -> int:
        return len(self.pages) - 1

    def add(self, page: PageContents) -> int:
        self.pages.append(page)
        return len(self.pages) - 1

    def get(self, cursor: int = -1) -> PageContents:
        if not self.pages:
            raise CursorError("no page is open yet; use `search` or `open` with a URL first")
        if cursor < 0:
            return self.pages[-1]
        if cursor >= len(self.pages):
            raise CursorError(
                f"cursor {cursor} does not exist; valid cursors are 0 to {len(self.pages) - 1}"
            )
        return self.pages[cursor]

    def find_url(self, url: str) -> PageContents | None:
        """The most recent fetched page for `url` (search and find pages excluded)."""
        for page in reversed(self.pages):
            if page.url == url and page.kind not in ("search", "find"):
                return page
        return None

    def clear(self) -> None:
        self.pages.clear()
