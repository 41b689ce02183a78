"""Pages for the extractor's article-or-whole-page decision, built from real pages.

Two kinds, both made from the mozilla/readability test pages (`../shared/corpora/readability/`)
so that the chrome and the prose are real:

* short articles: a real page with its article cut after its first few paragraphs, so that
  a correct article of 300–1,100 characters sits inside the page's full navigation, header,
  sidebars and footer (the case where a share threshold throws the article away). The
  reference is the page's own expected article cut at the same paragraph.
* listings: a news index, a search results page and a forum thread listing, each in the
  markup those sites use (header, navigation, repeated items with a linked title, teaser
  or snippet prose, metadata, pagination, footer), with teasers taken from the corpus's
  real article paragraphs. These have no article: the model needs every item's link.

Shared by `tests/browser/test_extract_fallback.py` and `bench/browser_bench.py`.
"""

from __future__ import annotations

import html as htmllib
import random
import re
from dataclasses import dataclass, field
from pathlib import Path

import lxml.etree
import lxml.html

READABILITY = Path(__file__).resolve().parents[3] / "shared" / "corpora" / "readability"
_WS = re.compile(r"\s+")


def norm(text: str) -> str:
    return _WS.sub(" ", text).strip()


@dataclass
class ShortArticle:
    name: str  # "<readability page>:<paragraphs kept>"
    html: str
    reference: str  # the expected article, cut at the same paragraph
    chars: int  # characters of the reference


@dataclass
class Listing:
    name: str
    html: str
    # (url, title) of every item the page lists: the model must be able to open each one.
    items: list[tuple[str, str]] = field(default_factory=list)


def _paragraph_texts(root: lxml.html.HtmlElement) -> list[str]:
    return [norm(p.text_content()) for p in root.iter("p")]


def _cut_after(node: lxml.etree._Element, top: lxml.etree._Element) -> None:
    """Remove everything after `node` inside `top`, in document order."""
    el = node
    while el is not top and el.getparent() is not None:
        parent = el.getparent()
        assert parent is not None
        for sibling in list(el.itersiblings()):
            parent.remove(sibling)
        el = parent


def _common_ancestor(nodes: list[lxml.etree._Element]) -> lxml.etree._Element:
    paths = [list(reversed([n, *n.iterancestors()])) for n in nodes]
    common = paths[0][0]
    for level in zip(*paths, strict=False):
        if all(x is level[0] for x in level):
            common = level[0]
        else:
            break
    return common


def short_articles(
    corpus: Path = READABILITY, *, low: int = 300, high: int = 1100
) -> list[ShortArticle]:
    """Every readability page whose article can be cut to `low`–`high` characters at a
    paragraph end, cut there (the largest such cut, and the smallest when it differs)."""
    out: list[ShortArticle] = []
    for page in sorted(p for p in corpus.iterdir() if (p / "source.html").is_file()):
        source_text = (page / "source.html").read_text(encoding="utf-8")
        expected = lxml.html.document_fromstring(
            (page / "expected.html").read_text(encoding="utf-8")
        )
        expected_paras = [p for p in expected.iter("p") if len(norm(p.text_content())) >= 40]
        wanted = {norm(p.text_content()) for p in expected_paras}
        source = lxml.html.document_fromstring(source_text)
        paras = [p for p in source.iter("p") if norm(p.text_content()) in wanted]
        if len(paras) < 2:
            continue
        container = _common_ancestor(paras)
        # The reference: the expected article up to the same paragraph.
        cuts: list[int] = []
        for k in range(1, len(paras) + 1):
            ref = _reference_up_to(expected, norm(paras[k - 1].text_content()))
            if ref is not None and low <= len(ref) <= high:
                cuts.append(k)
        for k in sorted({cuts[0], cuts[-1]}) if cuts else []:
            root = lxml.html.document_fromstring(source_text)
            kept = [p for p in root.iter("p") if norm(p.text_content()) in wanted]
            top = _common_ancestor(kept)
            _cut_after(kept[k - 1], top)
            ref = _reference_up_to(expected, norm(kept[k - 1].text_content()))
            assert ref is not None and container is not None
            out.append(
                ShortArticle(
                    name=f"{page.name}:{k}",
                    html=lxml.html.tostring(root, encoding="unicode"),
                    reference=ref,
                    chars=len(ref),
                )
            )
    return out


def _reference_up_to(expected: lxml.html.HtmlElement, last: str) -> str | None:
    copy = lxml.html.fromstring(lxml.html.tostring(expected, encoding="unicode"))
    matches = [p for p in copy.iter("p") if norm(p.text_content()) == last]
    if not matches:
        return None
    _cut_after(matches[0], copy)
    return norm(copy.text_content())


# --- listings --------------------------------------------------------------------------


def _sentences(corpus: Path, rnd: random.Random) -> list[str]:
    """Real prose to use as teasers and snippets: first sentences of article paragraphs."""
    out: list[str] = []
    for page in sorted(p for p in corpus.iterdir() if (p / "expected.html").is_file()):
        root = lxml.html.document_fromstring((page / "expected.html").read_text(encoding="utf-8"))
        for text in _paragraph_texts(root):
            if 80 <= len(text) and text.isascii():
                out.append(text)
    rnd.shuffle(out)
    return out


def _headline(sentence: str) -> str:
    words = re.findall(r"[A-Za-z][\w'-]*", sentence)[:9]
    return " ".join(w.capitalize() if i == 0 else w for i, w in enumerate(words))


def _slug(title: str) -> str:
    return re.sub(r"\W+", "-", title.lower()).strip("-")


def _teaser(sentence: str, limit: int) -> str:
    if len(sentence) <= limit:
        return sentence
    return sentence[:limit].rsplit(" ", 1)[0] + "…"


_SITE_HEADER = """<header class="site-header" role="banner">
 <div class="top-bar"><ul class="utility-nav">
  <li><a href="/subscribe">Subscribe</a></li><li><a href="/newsletters">Newsletters</a></li>
  <li><a href="/login">Sign in</a></li><li><a href="/help">Help</a></li></ul></div>
 <a class="logo" href="/"><img src="/logo.svg" alt="{site}"></a>
 <form class="search" action="/search"><input name="q" placeholder="Search"><button>Go</button></form>
 <nav class="primary-nav" aria-label="Sections"><ul>{sections}</ul></nav>
</header>"""

_SITE_FOOTER = """<footer class="site-footer" role="contentinfo">
 <div class="footer-columns">
  <div><h4>About</h4><ul><li><a href="/about">About us</a></li><li><a href="/careers">Careers</a></li>
   <li><a href="/contact">Contact</a></li><li><a href="/advertise">Advertise</a></li></ul></div>
  <div><h4>Follow</h4><ul><li><a href="https://twitter.com/x">Twitter</a></li>
   <li><a href="https://facebook.com/x">Facebook</a></li><li><a href="/rss">RSS</a></li></ul></div>
  <div><h4>Legal</h4><ul><li><a href="/terms">Terms of use</a></li><li><a href="/privacy">Privacy
   policy</a></li><li><a href="/cookies">Cookie settings</a></li></ul></div>
 </div>
 <p class="copyright">© 2024 {site}. All rights reserved. Use of this site constitutes acceptance
 of our User Agreement and Privacy Policy. The material on this site may not be reproduced,
 distributed, transmitted, cached or otherwise used, except with prior written permission.</p>
</footer>"""

_SECTIONS = ["World", "Politics", "Business", "Technology", "Science", "Health", "Sport",
             "Culture", "Opinion", "Travel"]  # fmt: skip


def _chrome(site: str, title: str, main: str, aside: str = "") -> str:
    sections = "".join(f'<li><a href="/section/{s.lower()}">{s}</a></li>' for s in _SECTIONS)
    return (
        f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{title} | {site}</title>"
        '<link rel="stylesheet" href="/main.css"><script>window.dataLayer=[];</script></head>'
        f'<body class="listing">{_SITE_HEADER.format(site=site, sections=sections)}'
        f'<div class="page-wrap"><main id="content" class="content">{main}</main>'
        f'<aside class="sidebar">{aside}</aside></div>'
        f"{_SITE_FOOTER.format(site=site)}</body></html>"
    )


def news_index(sentences: list[str], rnd: random.Random) -> Listing:
    items: list[tuple[str, str]] = []
    blocks = []
    for section in ("Top stories", "Technology", "Science", "Business"):
        cards = []
        for i in range(8):
            text = sentences.pop()
            title = htmllib.escape(_headline(text))
            url = f"https://news.example.com/2024/05/{_slug(_headline(text))}"
            items.append((url, _headline(text)))
            lead = i == 0 and section == "Top stories"
            cards.append(
                f'<article class="card{" card--lead" if lead else ""}">'
                f'<a class="card__image" href="{url}"><img src="/img/{i}.jpg" alt="{title}"></a>'
                f'<div class="card__body"><span class="kicker">{section}</span>'
                f'<h3 class="card__title"><a href="{url}">{title}</a></h3>'
                f'<p class="card__teaser">{htmllib.escape(_teaser(text, 260 if lead else 150))}</p>'
                f'<div class="card__meta"><span class="byline">By Staff Reporter</span> '
                f"<time>{rnd.randint(1, 23)} hours ago</time> "
                f'<a class="comments" href="{url}#comments">{rnd.randint(0, 400)} comments</a>'
                "</div></div></article>"
            )
        blocks.append(
            f'<section class="river"><h2 class="section-title">{section}</h2>'
            f'<div class="cards">{"".join(cards)}</div>'
            f'<a class="more" href="/section/{section.split()[0].lower()}">More {section}</a>'
            "</section>"
        )
    most_read = "".join(
        f'<li><span class="rank">{n}</span><a href="{u}">{htmllib.escape(t)}</a></li>'
        for n, (u, t) in enumerate(items[:10], start=1)
    )
    aside = f'<section class="most-read"><h2>Most read</h2><ol>{most_read}</ol></section>'
    html = _chrome("The Daily Example", "Home", "".join(blocks), aside)
    return Listing("news index", html, items)


def search_results(sentences: list[str], rnd: random.Random) -> Listing:
    items: list[tuple[str, str]] = []
    results = []
    hosts = ["en.wikipedia.org", "www.bbc.co.uk", "arstechnica.com", "www.nytimes.com",
             "lwn.net", "blog.mozilla.org", "www.theguardian.com", "stackoverflow.com"]  # fmt: skip
    for i in range(10):
        text = sentences.pop()
        title = _headline(text)
        host = hosts[i % len(hosts)]
        url = f"https://{host}/{_slug(title)}"
        items.append((url, title))
        snippet = _teaser(text, 230)
        results.append(
            '<div class="result"><div class="result__head">'
            f'<a class="result__url" href="{url}"><span class="host">{host}</span> › '
            f'<span class="path">{title.split()[0].lower()}</span></a>'
            f'<h3 class="result__title"><a href="{url}">{htmllib.escape(title)}</a></h3></div>'
            f'<div class="result__snippet"><span class="date">{rnd.randint(1, 28)} May 2024 — '
            f"</span>{htmllib.escape(snippet)}</div>"
            f'<div class="result__links"><a href="{url}/cache">Cached</a> · '
            f'<a href="/search?q=related:{host}">Similar</a></div></div>'
        )
    related = "".join(
        f'<li><a href="/search?q={w}">{w} {v}</a></li>'
        for w, v in [("open", "source"), ("browser", "engine"), ("privacy", "news"),
                     ("web", "standards"), ("rust", "language"), ("linux", "kernel")]
    )  # fmt: skip
    pages = "".join(f'<a href="/search?q=web&amp;p={n}">{n}</a>' for n in range(2, 11))
    main = (
        '<div class="search-tools"><a href="/search?q=web">All</a> <a href="/images?q=web">'
        'Images</a> <a href="/news?q=web">News</a> <a href="/videos?q=web">Videos</a></div>'
        '<p class="stats">About 1,240,000,000 results (0.41 seconds)</p>'
        f'<div id="results">{"".join(results)}</div>'
        f'<div class="related"><h2>Related searches</h2><ul>{related}</ul></div>'
        f'<nav class="pagination">{pages}<a href="/search?q=web&amp;p=2">Next</a></nav>'
    )
    html = _chrome("Example Search", "web - Search", main)
    return Listing("search results", html, items)


def forum_listing(sentences: list[str], rnd: random.Random) -> Listing:
    items: list[tuple[str, str]] = []
    rows = []
    for i in range(25):
        text = sentences.pop()
        title = _headline(text) + "?" * (i % 3 == 0)
        url = f"https://forum.example.org/t/{_slug(title)}/{9000 + i}"
        items.append((url, title))
        excerpt = _teaser(text, 180) if i % 2 == 0 else ""
        rows.append(
            f'<tr class="topic-list-item"><td class="main-link">'
            f'<a class="title" href="{url}">{htmllib.escape(title)}</a>'
            f'<div class="topic-excerpt">{htmllib.escape(excerpt)}</div>'
            f'<span class="category"><a href="/c/general">General</a></span></td>'
            f'<td class="posters"><a href="/u/user{i}"><img alt="user{i}" src="/a/{i}.png"></a></td>'
            f'<td class="num replies">{rnd.randint(0, 90)}</td>'
            f'<td class="num views">{rnd.randint(10, 9000)}</td>'
            f'<td class="activity">{rnd.randint(1, 30)}d</td></tr>'
        )
    main = (
        '<div class="list-controls"><a href="/latest">Latest</a> <a href="/top">Top</a> '
        '<a href="/categories">Categories</a> <a href="/new-topic">New topic</a></div>'
        '<table class="topic-list"><thead><tr><th>Topic</th><th></th><th>Replies</th>'
        f"<th>Views</th><th>Activity</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
        '<div class="more-topics">There are more topics. Browse all categories or '
        '<a href="/latest">view latest topics</a>.</div>'
    )
    html = _chrome("Example Community", "Latest topics", main)
    return Listing("forum listing", html, items)


def blog_archive(sentences: list[str], rnd: random.Random) -> Listing:
    """A blog's archive in the flat markup of many themes: `<h2><a>` then the excerpt's
    paragraphs as siblings, no element around each post."""
    items: list[tuple[str, str]] = []
    parts = ['<h1 class="archive-title">Archive: May 2024</h1>']
    for _ in range(12):
        text = sentences.pop()
        title = _headline(text)
        url = f"https://blog.example.net/2024/05/{_slug(title)}/"
        items.append((url, title))
        parts.append(
            f'<h2 class="entry-title"><a href="{url}" rel="bookmark">{htmllib.escape(title)}</a>'
            f'</h2><p class="entry-meta">Posted on <time>May {rnd.randint(1, 31)}, 2024</time>'
            f' by <a href="/author/sam">Sam</a></p><p>{htmllib.escape(_teaser(text, 320))}</p>'
            f'<p><a class="more-link" href="{url}#more">Continue reading</a></p>'
        )
    parts.append('<div class="nav-links"><a href="/2024/04/">Older posts</a></div>')
    aside = (
        '<section class="widget"><h2>Categories</h2><ul>'
        + "".join(f'<li><a href="/category/{c}">{c}</a></li>' for c in _SECTIONS[:6])
        + "</ul></section>"
    )
    return Listing("blog archive", _chrome("Sam's Notes", "May 2024", "".join(parts), aside), items)


def listings(corpus: Path = READABILITY, seed: int = 16) -> list[Listing]:
    rnd = random.Random(seed)
    sentences = _sentences(corpus, rnd)
    return [
        news_index(sentences, rnd),
        search_results(sentences, rnd),
        forum_listing(sentences, rnd),
        blog_archive(sentences, rnd),
    ]
