"""Pages as the model sees them: numbered lines, link ids, a cursor per display.

The display follows the gpt-oss reference browser, the format the model was trained on:
a header `[{cursor}] {title} ({url})`, a scrollbar `**viewing lines [a - b] of N**`, then
lines prefixed `L{n}: ` with links written inline as `【{id}†{text}】`.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import unquote, urlsplit

__all__ = [
    "LINK_MARKUP",
    "Link",
    "PageContents",
    "PageView",
    "render_view",
    "strip_links",
    "wrap_lines",
]

PageKind = Literal["html", "pdf", "text", "search", "find", "document", "source"]

# A link as the model sees it: `【3†text】` or, on search pages, `【3†title†domain】`.
LINK_MARKUP = re.compile(r"【\d+†(?P<content>[^†】]*)(?:†[^†】]*)?】")
# Spaces inside link markup are swapped for this before wrapping so that a link is
# never cut across two lines (the model copies ids from whole links only).
_LINK_SPACE = "\u2060"


@dataclass(frozen=True, slots=True)
class Link:
    """Where a link id on a page leads: a URL, or a line of a page already in history."""

    url: str
    text: str = ""
    # Find-result links point into a page already open: no refetch, just scroll there.
    cursor: int | None = None
    loc: int | None = None
    snippet: str | None = None


@dataclass(slots=True)
class PageContents:
    """One fetched (or generated) page: its text with link markup, and its link table."""

    url: str
    title: str
    text: str
    links: dict[int, Link] = field(default_factory=dict)
    kind: PageKind = "html"
    # Lines of notes the model should see once, e.g. that the page was cut at the size cap.
    notes: list[str] = field(default_factory=list)
    raw: str | None = None  # the decoded source, kept (capped) for `view_source`
    wrap_width: int = 80
    _lines: list[str] | None = field(default=None, repr=False)

    @property
    def lines(self) -> list[str]:
        if self._lines is None:
            self._lines = wrap_lines(self.text, self.wrap_width)
        return self._lines


@dataclass(frozen=True, slots=True)
class PageView:
    """What one display showed: the text plus the facts reports need for citations."""

    text: str
    cursor: int
    start: int
    end: int  # inclusive; -1 when the page is empty
    total_lines: int


def wrap_lines(text: str, width: int = 80) -> list[str]:
    """Split text into display lines, wrapping long lines at word boundaries."""
    protected = LINK_MARKUP.sub(lambda m: m.group(0).replace(" ", _LINK_SPACE), text)
    out: list[str] = []
    for line in protected.split("\n"):
        if not line.strip():
            out.append("")
            continue
        pieces = textwrap.wrap(line, width=width, break_long_words=False, break_on_hyphens=False)
        out.extend(p.replace(_LINK_SPACE, " ") for p in pieces or [""])
    return out


def strip_links(text: str) -> str:
    """Link markup replaced by its text, for quoting and matching."""
    return LINK_MARKUP.sub(lambda m: m.group("content"), text)


def display_url(url: str, limit: int = 120) -> str:
    shown = unquote(url)
    return shown if len(shown) <= limit else shown[: limit - 1] + "…"


def domain_of(url: str) -> str:
    host = urlsplit(url).hostname or ""
    return host.removeprefix("www.")


def render_view(
    page: PageContents,
    cursor: int,
    *,
    loc: int = 0,
    num_lines: int = 60,
    max_chars: int = 6000,
) -> PageView:
    """The display of `num_lines` lines from `loc`, cut short to stay under `max_chars`.

    Raises `ValueError` with a message for the model when `loc` is past the end.
    """
    lines = page.lines
    total = len(lines)
    if total and loc >= total:
        raise ValueError(
            f"`loc` {loc} is past the end of the page (last line is L{total - 1}); "
            "scroll with a smaller `loc`"
        )
    header = f"[{cursor}] {page.title}"
    if page.url:
        header += f" ({display_url(page.url)})"
    body: list[str] = []
    used = 0
    end = loc
    while end < total and end - loc < num_lines:
        entry = f"L{end}: {lines[end]}"
        # Always show at least one line, even a very long one, so scrolling makes progress.
        if body and used + len(entry) + 1 > max_chars:
            break
        body.append(entry)
        used += len(entry) + 1
        end += 1
    last = end - 1
    scrollbar = f"**viewing lines [{loc} - {last}] of {total - 1}**" if total else "**empty page**"
    parts = [header, scrollbar, ""]
    parts.extend(page.notes)
    if page.notes:
        parts.append("")
    parts.extend(body)
    return PageView("\n".join(parts), cursor, loc, last, total)
