"""Documents to page text: HTML (main article, links kept as ids), PDF and plain text.

HTML goes through readability-lxml to find the article (chosen by measurement, see
`bench/browser_bench.py`), then through a small lxml renderer of our own that writes
links as `【{id}†{text}】` and keeps headings, lists, tables and preformatted text.
Pages with no article (search results, listings, home pages) fall back to the whole page.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from typing import Literal
from urllib.parse import urldefrag, urljoin, urlsplit

import lxml.etree
import lxml.html
from harmonygraph.tools.browser.article import (
    ArticleSignals,
    is_article,
    prose_of,
    readability_article,
)
from harmonygraph.tools.browser.page import Link, PageContents, strip_links

__all__ = [
    "ExtractionError",
    "LinkTable",
    "extract_html",
    "extract_html_with_signals",
    "extract_pdf",
    "extract_text",
    "html_to_text",
]

ExtractMode = Literal["auto", "article", "page"]


class ExtractionError(Exception):
    """The document could not be turned into text (a corrupt PDF, an empty file)."""


_SKIP = frozenset(
    {
        "script", "style", "noscript", "template", "svg", "head", "iframe", "object",
        "embed", "canvas", "button", "select", "option", "input", "textarea", "map", "audio",
        "video", "source", "track", "link", "meta", "title",
    }
)  # fmt: skip
_PARAGRAPH = frozenset(
    {
        "p", "div", "section", "article", "main", "header", "footer", "aside", "nav", "ul", "ol",
        "dl", "table", "blockquote", "pre", "figure", "figcaption", "form", "fieldset",
        "address", "details", "summary", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "body",
        "center", "caption",
    }
)  # fmt: skip
_LINE = frozenset({"li", "tr", "dt", "dd", "thead", "tbody", "tfoot", "legend", "option"})
_CELL = frozenset({"td", "th"})
_LINK_SCHEMES = frozenset({"http", "https", "doc", "file"})
_WS = re.compile(r"\s+")
_PRE = "\x01"  # marks preformatted lines so the final pass keeps their indentation
_XML_DECL = re.compile(r"^\s*<\?xml[^>]*\?>", re.IGNORECASE)


class LinkTable:
    """Link ids of one page, in order of first appearance; one id per distinct URL."""

    def __init__(self) -> None:
        self.links: dict[int, Link] = {}
        self._by_url: dict[str, int] = {}

    def add(self, url: str, text: str) -> int:
        if url in self._by_url:
            return self._by_url[url]
        link_id = len(self.links)
        self.links[link_id] = Link(url=url, text=text)
        self._by_url[url] = link_id
        return link_id


def _clean_link_text(text: str) -> str:
    # The markup's own delimiters inside link text would break the model's parsing.
    # Not shortened: link text is often part of a sentence, and cutting it loses content.
    return _WS.sub(" ", text).strip().replace("】", "]").replace("【", "[").replace("†", "+")


_ALT_WORDS = 5


def _short_alt(alt: str) -> str:
    words = _clean_link_text(alt).split(" ")
    return " ".join(words[:_ALT_WORDS]) + ("…" if len(words) > _ALT_WORDS else "")


class _Renderer:
    def __init__(self, base_url: str, links: LinkTable, page_url: str) -> None:
        self.base_url = base_url
        self.links = links
        self.page_url = urldefrag(page_url)[0]
        self.parts: list[str] = []
        self.text_targets: set[str] = set()  # targets of links with words, found first

    def text(self, s: str | None) -> None:
        if s:
            self.parts.append(_WS.sub(" ", s))

    def brk(self, blank: bool) -> None:
        self.parts.append("\n\n" if blank else "\n")

    def link_target(self, href: str | None) -> str | None:
        if not href:
            return None
        href = href.strip()
        try:
            absolute = urljoin(self.base_url, href)
            scheme = urlsplit(absolute).scheme.lower()
        except ValueError:
            return None
        if scheme not in _LINK_SCHEMES:
            return None  # javascript:, mailto:, data: are not pages the model can open
        target, fragment = urldefrag(absolute)
        if fragment and target == self.page_url:
            return None  # an anchor on this same page: nothing to open
        return absolute

    def walk(self, el: lxml.etree._Element) -> None:
        tag = el.tag if isinstance(el.tag, str) else None
        if tag is None or tag in _SKIP:  # comments, processing instructions, scripts
            self.text(el.tail)
            return
        tag = tag.lower()
        if tag == "br":
            self.brk(False)
            self.text(el.tail)
            return
        if tag == "a":
            target = self.link_target(el.get("href"))
            label = _clean_link_text(" ".join(_visible_text(el)))
            if target and not label:
                # A link that holds only an image: where the same page also links there
                # with words (a teaser's picture beside its headline) it adds nothing; else
                # its alt text names it, cut to a few words (alt text can be a paragraph,
                # and it is not text of the page).
                if target in self.text_targets:
                    self.text(el.tail)
                    return
                label = _short_alt(" ".join(i.get("alt", "") for i in el.iter("img")))
            if target and label:
                self.parts.append(f"【{self.links.add(target, label)}†{label}】")
                self.text(el.tail)
                return
        if tag == "pre":
            self.brk(True)
            body = "".join(_visible_text(el)).strip("\n")
            self.parts.append("\n".join(_PRE + line for line in body.split("\n")))
            self.brk(True)
            self.text(el.tail)
            return
        block = tag in _PARAGRAPH
        line = tag in _LINE
        if block or line:
            self.brk(block)
        if len(tag) == 2 and tag[0] == "h" and tag[1] in "123456":
            self.parts.append("#" * int(tag[1]) + " ")
        elif tag == "li":
            self.parts.append("* ")
        elif tag == "hr":
            self.parts.append("---")
        self.text(el.text)
        for child in el:
            self.walk(child)
        if tag in _CELL:
            self.parts.append(" | ")
        if block or line:
            self.brk(block)
        self.text(el.tail)

    def result(self) -> str:
        out: list[str] = []
        blank = True
        for raw in "".join(self.parts).split("\n"):
            if raw.startswith(_PRE):
                out.append(raw[1:].rstrip())
                blank = False
                continue
            line = _WS.sub(" ", raw).strip().removesuffix(" |").strip()
            if line in ("", "*", "|"):
                if not blank:
                    out.append("")
                blank = True
                continue
            out.append(line)
            blank = False
        return "\n".join(out).strip("\n")


def _visible_text(el: lxml.etree._Element) -> Iterator[str]:
    """Text of an element, skipping scripts and styles inside it."""
    if isinstance(el.tag, str) and el.tag.lower() not in _SKIP and el.text:
        yield el.text
    for child in el:
        if isinstance(child.tag, str) and child.tag.lower() not in _SKIP:
            yield from _visible_text(child)
        if child.tail:
            yield child.tail


def _parse(html: str) -> lxml.html.HtmlElement | None:
    # lxml refuses str input that still carries an XML encoding declaration.
    html = _XML_DECL.sub("", html, count=1)
    if not html.strip():
        return None
    try:
        return lxml.html.document_fromstring(html)
    except (lxml.etree.ParserError, ValueError):
        return None


def html_to_text(
    root: lxml.etree._Element, *, page_url: str, base_url: str | None = None
) -> tuple[str, dict[int, Link]]:
    """Render an element tree as text lines with link markup; returns text and links."""
    links = LinkTable()
    renderer = _Renderer(base_url or page_url, links, page_url)
    for a in root.iter("a"):
        if a.get("href") and any(t.strip() for t in _visible_text(a)):
            target = renderer.link_target(a.get("href"))
            if target:
                renderer.text_targets.add(target)
    renderer.walk(root)
    return renderer.result(), links.links


def _title_of(root: lxml.html.HtmlElement) -> str:
    for xpath in (
        "//meta[@property='og:title']/@content",
        "//title//text()",
        "//h1//text()",
    ):
        found = " ".join(str(t) for t in root.xpath(xpath)).strip()
        if found:
            return _WS.sub(" ", found)[:200]
    return ""


def _base_url(root: lxml.html.HtmlElement, url: str) -> str:
    base = root.xpath("//base/@href")
    return urljoin(url, str(base[0]).strip()) if base else url


# readability-lxml normalises whitespace with three regex passes over each candidate's
# whole text_content(), thousands of times a page: 40% of extraction time. This does
# the same per whitespace run (the only places those patterns match), leaving alone the
# single spaces none of them changes; it gives identical output (tests check it) and is
# about 9 times faster.
def extract_html(
    html: str,
    url: str,
    *,
    mode: ExtractMode = "auto",
    min_article_chars: int = 200,
) -> PageContents:
    """HTML as a page: the main article, or the whole page when there is no article.

    `auto` keeps readability's article unless it is shorter than `min_article_chars` or
    the page's structure says it is not an article (`article.ArticleSignals`: one item of
    a listing, a listing's items, mostly links, no paragraph of prose); then the whole
    page, whose links the model needs on listings and search results.
    """
    page, _ = extract_html_with_signals(html, url, mode=mode, min_article_chars=min_article_chars)
    return page


def extract_html_with_signals(
    html: str,
    url: str,
    *,
    mode: ExtractMode = "auto",
    min_article_chars: int = 200,
) -> tuple[PageContents, ArticleSignals | None]:
    """`extract_html`, and the signals the auto mode decided on (None when not asked)."""
    root = _parse(html)
    if root is None:
        page = PageContents(url=url, title=url, text="", kind="html", notes=["(empty page)"])
        return page, None
    title = _title_of(root) or url
    base = _base_url(root, url)
    signals: ArticleSignals | None = None
    if mode != "page":
        found = readability_article(html)
        article_root = _parse(found[0]) if found else None
        if found is not None and article_root is not None:
            text, links = html_to_text(article_root, page_url=url, base_url=base)
            prose, paragraphs, density = prose_of(text)
            signals = ArticleSignals(
                in_listing=found[1][0],
                holds_listing=found[1][1],
                chars=len(strip_links(text)),
                link_density=density,
                prose_chars=prose,
                prose_paragraphs=paragraphs,
            )
            if mode == "article" or (len(text) >= min_article_chars and is_article(signals)):
                page = PageContents(url=url, title=title, text=text, links=links, kind="html")
                return page, signals
    # No article (or article mode found nothing readable): the whole page beats nothing.
    body = root.find("body")
    text, links = html_to_text(body if body is not None else root, page_url=url, base_url=base)
    return PageContents(url=url, title=title, text=text, links=links, kind="html"), signals


def extract_pdf(data: bytes, url: str, *, max_pages: int = 300) -> PageContents:
    """Text of a PDF, page by page, with a `[page N]` line before each page."""
    import pypdf
    from pypdf.errors import PdfReadError

    try:
        reader = pypdf.PdfReader(io.BytesIO(data))
        title = ""
        if reader.metadata is not None and reader.metadata.title:
            title = str(reader.metadata.title)
        chunks: list[str] = []
        notes: list[str] = []
        for number, pdf_page in enumerate(reader.pages, start=1):
            if number > max_pages:
                notes.append(f"(only the first {max_pages} of {len(reader.pages)} PDF pages)")
                break
            chunks.append(f"[page {number}]\n{(pdf_page.extract_text() or '').strip()}")
    except (PdfReadError, ValueError, KeyError, TypeError, OSError) as exc:
        raise ExtractionError(f"the PDF could not be read ({exc})") from None
    name = urlsplit(url).path.rsplit("/", 1)[-1]
    return PageContents(
        url=url, title=title or name or url, text="\n\n".join(chunks), kind="pdf", notes=notes
    )


def extract_text(text: str, url: str, *, title: str | None = None) -> PageContents:
    """Plain text (and Markdown, JSON, CSV) shown as it is."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    name = urlsplit(url).path.rsplit("/", 1)[-1]
    return PageContents(url=url, title=title or name or url, text=text.strip("\n"), kind="text")
