"""Article or whole page: the `auto` mode's choice, from what the page's structure says.

readability-lxml finds the best block of a page. On an article page that block is the
article, however short; on a page with no article (a news index, search results, a forum
listing) it is one item of the listing, or the listing without its titles, and the model
needs the whole page and its links instead. A share of the page's text cannot tell these
apart: a short article in heavy chrome holds 4% of a news page's words, and a listing's
container can hold most of them. These signals can:

* **position**: the block is one member of a run of like siblings (same tag and class)
  that each carry a headline link of their own (a listing's items), or the block holds
  such a run that makes up most of its text (the listing's container).
* **link density**: link text over all text of the article as rendered.
* **paragraph structure**: the article has prose, paragraphs of sentences that are not
  link text, rather than lines of links and labels.

The position signals are read from readability's own tree at the moment it has chosen its
block (`get_article`), so no second parse and no matching of texts are needed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import lxml.etree
from harmonygraph.tools.browser.page import LINK_MARKUP

__all__ = ["ArticleSignals", "is_article", "prose_of", "readability_article"]

# An item of a listing: at least this many like siblings, this share of them with a
# headline link each, and (for a run inside the chosen block) this share of its text.
MIN_ITEMS = 3
ITEM_SHARE = 0.6
RUN_TEXT_SHARE = 0.5
# A listing's item is short: its title, a teaser, some metadata.
MAX_ITEM_CHARS = 700
# How far up from the chosen block to look for the run it belongs to.
MAX_LEVELS = 8
# A headline link: a link standing alone (no text of the sentence around it) with at
# least this many words and characters; navigation ("World", "Sign in") is shorter.
HEADLINE_WORDS = 3
HEADLINE_CHARS = 15
# Prose: a paragraph with this much text outside links, most of it not link text, and a
# sentence's end in it.
PROSE_CHARS = 80
PROSE_MAX_LINK_SHARE = 0.4
MIN_PROSE_CHARS = 150  # an article has at least one real paragraph
MAX_LINK_DENSITY = 0.5
_SENTENCE_END = re.compile(r"[.!?:;](?:[\"'”’»)\]]*)(?:\s|$)|[。！？；]")
# Chinese and Japanese say in one character what takes two or three in Latin scripts, and
# put no space after a sentence's end: each of their characters counts twice.
_CJK = re.compile("[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff66-\uff9f]")


@dataclass(frozen=True, slots=True)
class ArticleSignals:
    """What the auto mode knows about the block readability chose."""

    in_listing: bool  # the block is (inside) one item of a run of like items
    holds_listing: bool  # a run of like items makes up most of the block's text
    chars: int  # characters of the article as rendered, link markup stripped
    link_density: float  # share of those characters inside links
    prose_chars: int  # characters of prose paragraphs (outside links)
    prose_paragraphs: int

    def reason(self) -> str | None:
        """Why this is not an article, or None when it is one."""
        if self.in_listing:
            return "one item of a listing"
        if self.holds_listing:
            return "a listing's items"
        if self.link_density > MAX_LINK_DENSITY:
            return f"mostly links ({self.link_density:.0%})"
        if self.prose_chars < MIN_PROSE_CHARS:
            return "no paragraph of prose"
        return None


def is_article(signals: ArticleSignals) -> bool:
    return signals.reason() is None


def prose_of(text: str) -> tuple[int, int, float]:
    """(prose characters, prose paragraphs, link density) of rendered text with link markup."""
    total = linked = prose = paragraphs = 0
    for line in text.split("\n"):
        if not line.strip():
            continue
        in_links = sum(len(m.group("content")) for m in LINK_MARKUP.finditer(line))
        plain = LINK_MARKUP.sub(lambda m: m.group("content"), line)
        size = len(plain.strip())
        total += size
        linked += in_links
        outside = size - in_links + len(_CJK.findall(plain))
        if (
            outside >= PROSE_CHARS
            and in_links <= PROSE_MAX_LINK_SHARE * size
            and not line.startswith("#")
            and _SENTENCE_END.search(plain)
        ):
            prose += outside
            paragraphs += 1
    return prose, paragraphs, (linked / total if total else 0.0)


# --- position in the page --------------------------------------------------------------

_INLINE_TEXT_TAGS = frozenset({"a", "span", "b", "i", "em", "strong", "small", "time", "abbr"})


def _words(text: str | None) -> str:
    return " ".join(text.split()) if text else ""


def _headline_link(item: lxml.etree._Element) -> str | None:
    """The URL of the first headline link in `item`, if it has one."""
    for a in item.iter("a"):
        href = a.get("href")
        if not href or href.startswith(("#", "javascript:")):
            continue
        text = _words(a.text_content())
        if len(text) < HEADLINE_CHARS or len(text.split()) < HEADLINE_WORDS:
            continue
        if _words(a.tail):
            continue  # the sentence goes on after it: an inline link
        prev = a.getprevious()
        parent = a.getparent()
        before = prev.tail if prev is not None else parent.text if parent is not None else None
        if _words(before):
            continue  # text of the same line before it
        return href
    return None


def _signature(el: lxml.etree._Element) -> tuple[str, str]:
    classes = (el.get("class") or "").split()
    return str(el.tag), classes[0] if classes else ""


def _items_of_run(parent: lxml.etree._Element, sig: tuple[str, str]) -> list[Any] | None:
    """The like children of `parent` (signature `sig`) if they are a listing's items."""
    members = [c for c in parent if isinstance(c.tag, str) and _signature(c) == sig]
    if len(members) < MIN_ITEMS:
        return None
    urls = set()
    with_headline = 0
    for m in members:
        url = _headline_link(m)
        if url is not None:
            with_headline += 1
            urls.add(url)
    if with_headline < max(MIN_ITEMS, ITEM_SHARE * len(members)) or len(urls) < MIN_ITEMS:
        return None
    sizes = sorted(len(_words(m.text_content())) for m in members)
    if sizes[len(sizes) // 2] > MAX_ITEM_CHARS:
        return None  # long like blocks (full posts, chapters) are not a listing's items
    return members


def in_listing(block: lxml.etree._Element) -> bool:
    """Whether `block` is, or is inside, one item of a run of like items."""
    el = block
    for _ in range(MAX_LEVELS):
        parent = el.getparent()
        if parent is None or el.tag in ("body", "html"):
            return False
        if _items_of_run(parent, _signature(el)) is not None:
            return True
        el = parent
    return False


def holds_listing(block: lxml.etree._Element) -> bool:
    """Whether a run of like items makes up most of `block`'s text."""
    total = len(_words(block.text_content()))
    if not total:
        return False
    for parent in block.iter():
        if not isinstance(parent.tag, str) or len(parent) < MIN_ITEMS:
            continue
        seen: set[tuple[str, str]] = set()
        for child in parent:
            if not isinstance(child.tag, str):
                continue
            sig = _signature(child)
            if sig in seen:
                continue
            seen.add(sig)
            items = _items_of_run(parent, sig)
            if items is not None:
                held = sum(len(_words(m.text_content())) for m in items)
                if held >= RUN_TEXT_SHARE * total:
                    return True
        if _flat_items_text(parent) >= RUN_TEXT_SHARE * total:
            return True
    return False


_HEADINGS = frozenset({"h1", "h2", "h3", "h4", "h5", "h6"})


def _flat_items_text(parent: lxml.etree._Element) -> int:
    """Text of a flat listing in `parent`: headings that are each one headline link, each
    followed by its teaser until the next such heading (a blog's archive, `<h2><a>` then
    `<p>`s). Zero unless there are at least `MIN_ITEMS` of them to distinct pages."""
    heads = []
    urls = set()
    for c in parent:
        if c.tag not in _HEADINGS or (url := _headline_link(c)) is None:
            continue
        linked = sum(len(_words(a.text_content())) for a in c.iter("a"))
        if linked + 3 >= len(_words(c.text_content())):  # the heading is its link
            heads.append(c)
            urls.add(url)
    if len(heads) < MIN_ITEMS or len(urls) < MIN_ITEMS:
        return 0
    held = 0
    starts = set(heads)
    for head in heads:
        size = len(_words(head.text_content()))
        for sibling in head.itersiblings():
            if sibling in starts or sibling.tag == head.tag:
                break
            if isinstance(sibling.tag, str):
                size += len(_words(sibling.text_content()))
        held += min(size, MAX_ITEM_CHARS)
    return held


# --- readability, with the chosen block's position recorded ----------------------------

_document_class: type | None = None


def _document() -> type:
    """readability's Document, recording the position signals of the block it chooses."""
    global _document_class
    if _document_class is None:
        import readability

        class Document(readability.Document):
            listing: tuple[bool, bool] = (False, False)

            def get_article(
                self, candidates: Any, best_candidate: Any, html_partial: bool = False
            ) -> Any:
                elem = best_candidate["elem"]
                self.listing = (in_listing(elem), holds_listing(elem))
                return super().get_article(candidates, best_candidate, html_partial=html_partial)

        _document_class = Document
    return _document_class


_WHITESPACE_RUN = re.compile(r"\s{2,}|[^\S ]")
_TABS_OR_SPACES = re.compile(r"\t|[ \t]{2,}")


def _clean_run(match: re.Match[str]) -> str:
    run = match.group()
    if len(run) >= 255:  # readability: `\s{255,}` -> 255 spaces, first
        run = " " * 255
    if "\n" in run:  # then `\s*\n\s*` -> "\n"
        return "\n"
    return _TABS_OR_SPACES.sub(" ", run)  # then `\t|[ \t]{2,}` -> " "


def readability_clean(text: str) -> str:
    """`readability.readability.clean`, the same result, faster."""
    return _WHITESPACE_RUN.sub(_clean_run, text).strip()


def readability_article(html: str) -> tuple[str, tuple[bool, bool]] | None:
    """readability's article as HTML, and (in a listing, holds a listing) for its block."""
    import readability.readability as impl

    impl.clean = readability_clean  # its module-level helper, used by every scoring pass
    try:
        doc = _document()(html)
        summary = str(doc.summary(html_partial=True))
    except Exception:  # readability raises bare Unparseable and lxml errors on junk input
        return None
    return summary, doc.listing
