"""Citations `【{cursor}†L{start}-L{end}】` in a model's answer, resolved to sources."""

from __future__ import annotations

import re
from dataclasses import dataclass

from tools.browser.history import BrowserHistory
from tools.browser.page import strip_links

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
