"""A fetched response read as a page: HTML, PDF or text, cut to the configured size."""

from __future__ import annotations

from harmonygraph.tools.browser.config import BrowserConfig
from harmonygraph.tools.browser.extract import extract_html, extract_pdf, extract_text
from harmonygraph.tools.browser.fetch import PDF_TYPES, FetchResult, decode_body
from harmonygraph.tools.browser.page import PageContents

__all__ = ["page_from_fetch"]


def page_from_fetch(result: FetchResult, config: BrowserConfig | None = None) -> PageContents:
    """A fetched response as a page: HTML, PDF or text, with notes on what was cut."""
    config = config or BrowserConfig()
    notes: list[str] = []
    if result.truncated:
        notes.append(f"(page cut at {result.body.__len__():,} bytes; the rest was not downloaded)")
    raw: str | None = None
    if result.content_type in PDF_TYPES:
        page = extract_pdf(result.body, result.url)
    else:
        raw = decode_body(result.body, result.charset, result.content_type)
        if "html" in result.content_type or "xml" in result.content_type:
            page = extract_html(raw, result.url)
        else:
            page = extract_text(raw, result.url)
    if len(page.text) > config.max_page_chars:
        page.text = page.text[: config.max_page_chars]
        notes.append(f"(text cut at {config.max_page_chars:,} characters)")
    page.notes = notes + page.notes
    page.raw = raw[: config.max_page_chars] if raw is not None else None
    page.wrap_width = config.wrap_width
    return page
