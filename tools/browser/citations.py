"""Citations `【{cursor}†L{start}-L{end}】` in a model's answer, resolved to sources."""

from __future__ import annotations

import re
from dataclasses import dataclass

from harmonygraph.tools.browser.history import BrowserHistory
from harmonygraph.tools.browser.page import PageContents, strip_links

__all__ = ["CITATION", "Reference", "format_references", "resolve_citations"]

CITATION = re.compile(r"【(?P<cursor>\d+)†L(?P<start>\d+)(?:\s*-\s*L?(?P<end>\d+))?】")


@dataclass(frozen=True, slots=True)
class Reference:
    """One citation: where it points and the lines it quotes (link markup removed)."""

    marker: str  # the citation as written, e.g. 【6†L9-L11】
    cursor: int
    start: int
    end: int
    url: str
    title: str
    lines: tuple[str, ...]
    valid: bool = True
    problem: str = ""

    @property
    def quote(self) -> str:
        return " ".join(line.strip() for line in self.lines if line.strip())


def resolve_citations(
    text: str, history: BrowserHistory, *, max_lines: int = 20
) -> list[Reference]:
    """Every citation in `text`, in order; unresolvable ones come back with `valid=False`."""
    refs: list[Reference] = []
    for match in CITATION.finditer(text):
        cursor = int(match["cursor"])
        start = int(match["start"])
        end = int(match["end"]) if match["end"] else start
        if end < start:
            start, end = end, start
        marker = match.group(0)
        if cursor >= len(history.pages):
            refs.append(Reference(marker, cursor, start, end, "", "", (), False, "no such cursor"))
            continue
        page = history.pages[cursor]
        if page.kind == "find":
            # The find page shows excerpts of another page; a citation of it means those
            # lines of that page, so it resolves there (its URL, its line numbers).
            mapped = _through_find(page, start, end)
            if mapped is not None and mapped[0] < len(history.pages):
                cursor, start, end = mapped
                page = history.pages[cursor]
        lines = page.lines
        if start >= len(lines):
            refs.append(
                Reference(
                    marker,
                    cursor,
                    start,
                    end,
                    page.url,
                    page.title,
                    (),
                    False,
                    f"page has only {len(lines)} lines",
                )
            )
            continue
        last = min(end, len(lines) - 1, start + max_lines - 1)
        quoted = tuple(strip_links(line) for line in lines[start : last + 1])
        refs.append(Reference(marker, cursor, start, end, page.url, page.title, quoted))
    return refs


_FIND_HEADER = re.compile(r"^# 【(?P<n>\d+)†match at L(?P<line>\d+)】$")


def _through_find(page: PageContents, start: int, end: int) -> tuple[int, int, int] | None:
    """(source cursor, first line, last line) that lines `start`..`end` of a find-results
    page show; None when they show none."""
    shown: list[tuple[int, int]] = []  # (source cursor, source line) of cited lines
    cursor = line = None
    for j, text in enumerate(page.lines[: end + 1]):
        header = _FIND_HEADER.match(text)
        if header:
            link = page.links.get(int(header["n"]))
            cursor, line = (link.cursor, int(header["line"])) if link else (None, None)
            at = line
        elif cursor is None or line is None:
            continue
        else:
            # Blank lines are source lines too (the separator after a block is harmless:
            # the next header resets the count), but they quote nothing.
            at, line = line, line + 1
            if not text.strip():
                continue
        if j >= start and cursor is not None and at is not None:
            shown.append((cursor, at))
    if not shown:
        return None
    source = shown[0][0]
    lines = [n for c, n in shown if c == source]
    return source, min(lines), max(lines)


def format_references(text: str, history: BrowserHistory) -> tuple[str, list[Reference]]:
    """Citations replaced by footnote numbers `[1]`, and the references in footnote order.

    The same source and lines cited twice share a number; invalid citations are removed
    from the text (and kept, marked invalid, in the list for the report to flag).
    """
    refs = resolve_citations(text, history)
    numbers: dict[tuple[str, int, int], int] = {}
    ordered: list[Reference] = []
    by_marker: dict[str, str] = {}
    for ref in refs:
        if not ref.valid:
            by_marker[ref.marker] = ""
            ordered.append(ref)
            continue
        key = (ref.url, ref.start, ref.end)
        if key not in numbers:
            numbers[key] = len(numbers) + 1
            ordered.append(ref)
        by_marker[ref.marker] = f"[{numbers[key]}]"
    return CITATION.sub(lambda m: by_marker.get(m.group(0), ""), text), ordered
