"""Extraction: the readability pages served over HTTP, and the renderer's details."""

from __future__ import annotations

import json
import re
from collections import Counter

import lxml.html
import pytest
from browser_testkit import READABILITY, LocalServer
from harmonygraph.tools.base import ToolContext
from harmonygraph.tools.browser import (
    BrowserToolset,
    ExtractionError,
    extract_html,
    extract_pdf,
    extract_text,
)
from harmonygraph.tools.browser.page import strip_links, wrap_lines

WORD = re.compile(r"\w+")


def f1(got: str, want: str) -> tuple[float, float, float]:
    g = Counter(w.lower() for w in WORD.findall(got))
    w = Counter(w.lower() for w in WORD.findall(want))
    overlap = sum((g & w).values())
    p, r = overlap / max(1, sum(g.values())), overlap / max(1, sum(w.values()))
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


async def test_readability_pages_over_http(browser: BrowserToolset, server: LocalServer) -> None:
    """All 32 pages through the real fetch + extract path: close to the expected articles."""
    pages = sorted(p for p in READABILITY.iterdir() if (p / "source.html").is_file())
    assert len(pages) >= 30
    scores = []
    ctx = ToolContext()
    for page_dir in pages:
        url = server.url(f"/pages/{page_dir.name}/source.html")
        out = await browser.call("open", {"id": url}, ctx)
        assert not out.is_error, f"{page_dir.name}: {out.text}"
        page = browser.history(ctx).get()
        assert page.title and page.text, page_dir.name
        expected = " ".join(
            lxml.html.document_fromstring((page_dir / "expected.html").read_text()).itertext()
        )
        scores.append(f1(strip_links(page.text), expected))
        # Every link id on the page resolves to an absolute URL.
        for link_id, link in page.links.items():
            assert f"【{link_id}†" in page.text
            assert link.url.startswith(("http://", "https://")), link.url
    mean_precision = sum(s[0] for s in scores) / len(scores)
    mean_f1 = sum(s[2] for s in scores) / len(scores)
    assert mean_precision >= 0.93
    assert mean_f1 >= 0.90


def test_article_title_and_links_of_a_known_page() -> None:
    source = (READABILITY / "wikipedia" / "source.html").read_text()
    meta = json.loads((READABILITY / "wikipedia" / "expected-metadata.json").read_text())
    page = extract_html(source, "https://en.wikipedia.org/wiki/Mozilla")
    assert meta["title"] in page.title
    assert page.links[0].url.startswith("https://en.wikipedia.org/")
    assert len(page.links) > 50
    # Links are written inline with their ids, in order of first appearance.
    first = re.search(r"【(\d+)†([^】]+)】", page.text)
    assert first is not None and first.group(1) == "0"
    assert page.links[0].text == first.group(2)


def test_renderer_structure() -> None:
    html = """<html><head><base href="https://example.org/docs/"><title>T</title></head><body>
    <h2>Section   title</h2><p>Para with <a href="page2.html">relative link</a> and
    <a href="javascript:void(0)">script link</a> and <a href="https://x.org/a#frag">frag</a>.</p>
    <ul><li>one</li><li>two <b>bold</b></li></ul>
    <table><tr><th>h1</th><th>h2</th></tr><tr><td>a</td><td>b</td></tr></table>
    <pre>  indented
    code</pre><script>var hidden = 1;</script><style>.x{}</style></body></html>"""
    page = extract_html(html, "https://example.org/docs/index.html", mode="page")
    lines = page.text.split("\n")
    assert "## Section title" in lines
    assert page.links[0].url == "https://example.org/docs/page2.html"
    assert "【0†relative link】" in page.text
    assert "script link" in page.text and "†script link】" not in page.text
    assert page.links[1].url == "https://x.org/a#frag"
    assert "* one" in lines and "* two bold" in lines
    assert "h1 | h2" in lines and "a | b" in lines
    assert "  indented" in lines
    assert "hidden" not in page.text and ".x{}" not in page.text


@pytest.mark.parametrize(
    "html",
    ["", "   ", "<html></html>", '<?xml version="1.0" encoding="utf-8"?><html><p>x</p></html>'],
)
def test_degenerate_html_does_not_crash(html: str) -> None:
    page = extract_html(html, "https://example.org/")
    assert page.url == "https://example.org/"
    assert page.title


def test_markup_characters_in_link_text_are_neutralised() -> None:
    page = extract_html(
        '<p><a href="/x">evil 【9†fake】 text</a></p>', "https://e.org/", mode="page"
    )
    assert page.text == "【0†evil [9+fake] text】"


def test_wrap_keeps_links_whole() -> None:
    text = "word " * 14 + "【12†a link with several words in it】 tail"
    lines = wrap_lines(text, 80)
    assert any("【12†a link with several words in it】" in line for line in lines)


def test_pdf_and_text() -> None:
    from browser_testkit import PDF

    pdf = extract_pdf(PDF, "https://example.org/files/report.pdf")
    assert pdf.title == "report.pdf"
    assert pdf.text.split("\n")[:2] == ["[page 1]", "Harmony report page one says hello"]
    with pytest.raises(ExtractionError, match="could not be read"):
        extract_pdf(b"%PDF-1.4\nnot really", "https://example.org/x.pdf")
    text = extract_text("a\r\nb\rc\n", "https://example.org/notes.txt")
    assert text.text == "a\nb\nc" and text.title == "notes.txt"


async def test_corrupt_pdf_is_a_tool_error(
    browser: BrowserToolset, ctx: ToolContext, server: LocalServer
) -> None:
    out = await browser.call("open", {"id": server.url("/corrupt.pdf")}, ctx)
    assert out.is_error and "the PDF could not be read" in out.text


def _library_clean(text: str) -> str:
    """readability-lxml's own `clean`, as its source writes it."""
    text = re.sub(r"\s{255,}", " " * 255, text)
    text = re.sub(r"\s*\n\s*", "\n", text)
    text = re.sub(r"\t|[ \t]{2,}", " ", text)
    return text.strip()


def test_the_faster_readability_clean_gives_the_same_text() -> None:
    """The per-run rewrite must not change a single extraction: same output, every input."""
    import random

    from harmonygraph.tools.browser.article import readability_clean

    texts = []
    for page in sorted(READABILITY.iterdir()):
        source = page / "source.html"
        if source.exists():
            root = lxml.html.document_fromstring(source.read_text(errors="replace"))
            texts += [el.text_content() or "" for el in root.iter() if isinstance(el.tag, str)]
    assert len(texts) > 10_000
    pieces = [" ", "\t", "\n", "\r", "\xa0", "\u2003", "\u3000", "\x0b", "a", "b"]
    rnd = random.Random(7)
    texts += ["".join(rnd.choice(pieces) for _ in range(rnd.randint(0, 14))) for _ in range(20_000)]
    texts += ["a" + " " * 300 + "b", "a" + " " * 200 + "\n" + " " * 100 + "b", "\t" * 260]
    assert [readability_clean(t) for t in texts] == [_library_clean(t) for t in texts]
