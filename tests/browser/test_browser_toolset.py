"""The `browser` namespace end to end: the model's view, link ids, scrolling, find, citations."""

from __future__ import annotations

import json
import re

import pytest
from browser_testkit import PLAIN_TEXT, LocalServer
from harmonygraph.tools.base import ToolContext
from harmonygraph.tools.browser import (
    BrowserConfig,
    BrowserToolset,
    SearxNGBackend,
    format_references,
    resolve_citations,
)
from openai_harmony import ToolNamespaceConfig

LINE = re.compile(r"^L(\d+): ", re.M)


def shown_lines(text: str) -> list[int]:
    return [int(n) for n in LINE.findall(text)]


def test_namespace_is_the_harmony_browser(browser: BrowserToolset) -> None:
    assert browser.builtin is True
    assert browser.namespace == "browser"
    assert browser.namespace_config() == ToolNamespaceConfig.browser()
    assert browser.recipients() == ["browser.search", "browser.open", "browser.find"]
    open_tool = browser.resolve("browser.open")
    assert open_tool is not None and open_tool.name == "open"
    # The parameters the model sees are the ones it was trained on.
    spec = {t.name: t.parameters for t in ToolNamespaceConfig.browser().tools}
    assert open_tool.parameters == spec["open"]


async def test_open_shows_numbered_lines_of_the_article(
    browser: BrowserToolset, ctx: ToolContext, server: LocalServer
) -> None:
    url = server.url("/pages/aclu/source.html")
    out = await browser.call("open", {"id": url, "num_lines": 20}, ctx)
    assert not out.is_error, out.text
    header, scrollbar = out.text.split("\n")[:2]
    assert header == f"[0] Facebook Is Tracking Me Even Though I’m Not on Facebook ({url})"
    total = out.metadata["total_lines"]
    assert scrollbar == f"**viewing lines [0 - 19] of {total - 1}**"
    assert shown_lines(out.text) == list(range(20))
    assert "L0: I don't use Facebook." in out.text
    # Navigation and footer of the ACLU site are not part of the article.
    assert "Sign up for" not in out.text
    assert out.metadata["url"] == url
    assert out.metadata["cursor"] == 0
    assert out.metadata["lines"]["0"].startswith("I don't use Facebook.")


async def test_links_are_ids_and_open_by_id(
    browser: BrowserToolset, ctx: ToolContext, server: LocalServer
) -> None:
    out = await browser.call("open", {"id": server.url("/links")}, ctx)
    assert "【0†ACLU article on tracking】" in out.text
    assert "【1†the Wikipedia page】" in out.text
    # The same URL twice keeps one id; mail links and same-page anchors get none.
    assert "【0†the ACLU piece】" in out.text
    assert "mail link" in out.text and "†mail link】" not in out.text
    assert "†same-page anchor】" not in out.text

    opened = await browser.call("open", {"id": 1}, ctx)
    assert not opened.is_error, opened.text
    assert opened.text.startswith("[1] ")
    assert opened.metadata["url"] == server.url("/pages/wikipedia/source.html")

    # A link of an earlier page, by cursor; and a PDF behind a link.
    pdf = await browser.call("open", {"id": 3, "cursor": 0}, ctx)
    assert pdf.metadata["url"] == server.url("/doc.pdf")
    assert "L1: Harmony report page one says hello" in pdf.text
    assert pdf.metadata["kind"] == "pdf"


async def test_scrolling_does_not_refetch(
    browser: BrowserToolset, ctx: ToolContext, server: LocalServer
) -> None:
    await browser.call("open", {"id": server.url("/text"), "num_lines": 10}, ctx)
    fetched = server.hits["/text"]
    out = await browser.call("open", {"loc": 50, "num_lines": 5}, ctx)
    assert server.hits["/text"] == fetched
    assert out.text.startswith("[1] ")
    assert shown_lines(out.text) == [50, 51, 52, 53, 54]
    assert "L50: Note 50: the plain text line number 50." in out.text
    # Scrolling an older cursor works too; each display gets its own cursor.
    back = await browser.call("open", {"cursor": 0, "loc": 0, "num_lines": 2}, ctx)
    assert back.text.startswith("[2] ") and shown_lines(back.text) == [0, 1]


async def test_view_is_sized_for_the_context(server: LocalServer, ctx: ToolContext) -> None:
    config = BrowserConfig(allow_hosts=["127.0.0.1"], view_lines=200, view_chars=1000)
    browser = BrowserToolset(config, backend=SearxNGBackend(server.url("/searx")))
    out = await browser.call("open", {"id": server.url("/pages/wikipedia/source.html")}, ctx)
    body = out.text.split("\n\n", 1)[1]
    assert len(body) <= 1000
    assert shown_lines(out.text)[0] == 0 and len(shown_lines(out.text)) > 5


async def test_find_lists_matches_with_line_numbers(
    browser: BrowserToolset, ctx: ToolContext, server: LocalServer
) -> None:
    await browser.call("open", {"id": server.url("/text")}, ctx)
    out = await browser.call("find", {"pattern": "NUMBER 7."}, ctx)  # case-insensitive
    assert not out.is_error
    assert out.text.startswith("[1] Find results for text: `NUMBER 7.` in `text`")
    assert "# 【0†match at L7】" in out.text
    assert "Note 7: the plain text line number 7." in out.text
    jump = await browser.call("open", {"id": 0}, ctx)  # a find result opens the page there
    assert shown_lines(jump.text)[0] == 7
    assert jump.metadata["url"] == server.url("/text")

    none = await browser.call("find", {"pattern": "zebra", "cursor": 0}, ctx)
    assert "No `find` results for pattern: `zebra`" in none.text


async def test_citations_resolve_to_url_and_lines(
    browser: BrowserToolset, ctx: ToolContext, server: LocalServer
) -> None:
    await browser.call("open", {"id": server.url("/links")}, ctx)
    await browser.call("open", {"id": server.url("/text")}, ctx)
    history = browser.history(ctx)
    answer = "Notes are numbered 【1†L9-L11】 and short 【1†L3】; a bad one 【7†L1】."
    refs = resolve_citations(answer, history)
    assert [r.marker for r in refs] == ["【1†L9-L11】", "【1†L3】", "【7†L1】"]
    first = refs[0]
    assert first.url == server.url("/text") and first.title == "text"
    assert first.lines == tuple(PLAIN_TEXT.split("\n")[9:12])
    assert refs[1].quote == "Note 3: the plain text line number 3."
    assert not refs[2].valid and refs[2].problem == "no such cursor"

    text, ordered = format_references(answer, history)
    assert text == "Notes are numbered [1] and short [2]; a bad one ."
    assert [r.start for r in ordered] == [9, 3, 1]

    # Citations on a page with links quote the link text, not the markup.
    link_ref = resolve_citations("【0†L2】", history)[0]
    assert "【" not in link_ref.quote and "ACLU article on tracking" in link_ref.quote


async def test_a_citation_of_find_results_resolves_to_the_page_they_excerpt(
    browser: BrowserToolset, ctx: ToolContext, server: LocalServer
) -> None:
    await browser.call("open", {"id": server.url("/text")}, ctx)
    found = await browser.call("find", {"pattern": "number 7."}, ctx)  # cursor 1
    assert "# 【0†match at L7】" in found.text
    # L1-L2 of the find page are the first two lines of the excerpt: page lines 7 and 8.
    (ref,) = resolve_citations("Seven 【1†L1-L2】.", browser.history(ctx))
    assert (ref.cursor, ref.start, ref.end, ref.url) == (0, 7, 8, server.url("/text"))
    assert ref.lines == tuple(PLAIN_TEXT.split("\n")[7:9])


def test_find_citations_count_blank_lines_of_the_excerpt() -> None:
    from harmonygraph.tools.browser.history import BrowserHistory
    from harmonygraph.tools.browser.page import Link, PageContents

    history = BrowserHistory()
    source = "alpha one\n\nbeta two\ngamma\ndelta three\nepsilon"
    history.add(PageContents(url="https://x.test/a", title="a", text=source, wrap_width=10_000))
    excerpt = "# 【0†match at L0】\nalpha one\n\nbeta two\ngamma"
    link = Link(url="https://x.test/a", text="match at L0", cursor=0, loc=0)
    history.add(
        PageContents(
            url="https://x.test/a", title="find", text=excerpt, links={0: link}, kind="find",
            wrap_width=10_000,
        )
    )  # fmt: skip
    (ref,) = resolve_citations("【1†L3】", history)  # find L3 shows source L2, "beta two"
    assert (ref.cursor, ref.start, ref.end, ref.quote) == (0, 2, 2, "beta two")


async def test_search_with_searxng_then_open_a_result(
    browser: BrowserToolset, ctx: ToolContext, server: LocalServer
) -> None:
    out = await browser.call("search", {"query": "tracking", "topn": 5}, ctx)
    assert not out.is_error, out.text
    assert out.text.startswith("[0] Search results for `tracking` (searxng)")
    assert "【0†Facebook Is Tracking Me Even Though I'm Not on Facebook†127.0.0.1】" in out.text
    assert "Facebook collects data about people" in out.text
    assert "【1†Notes about tracking†127.0.0.1】" in out.text
    assert "without a URL" not in out.text
    opened = await browser.call("open", {"id": 0}, ctx)
    assert opened.metadata["url"] == server.url("/pages/aclu/source.html")
    assert opened.text.startswith("[1] Facebook Is Tracking Me")
    # Opening a result lands the view near the passage its snippet quoted.
    notes = await browser.call("open", {"id": 1, "cursor": 0, "num_lines": 5}, ctx)
    assert shown_lines(notes.text) == [48, 49, 50, 51, 52]


@pytest.mark.parametrize(
    ("call", "args", "words"),
    [
        ("open", {"id": "http://169.254.169.254/latest/meta-data/"}, "refused: "),
        ("open", {"id": "file:///etc/passwd"}, "refused: "),
        ("open", {"id": "{base}/status/404"}, "HTTP 404"),
        ("open", {"id": "{base}/status/503"}, "HTTP 503"),
        ("open", {"id": "{base}/image.png"}, "no text to show"),
        ("open", {"id": "{base}/slow-headers"}, "did not answer in time"),
        ("open", {"id": 3}, "no page is open yet"),
        ("open", {}, "no page is open yet"),
        ("find", {"pattern": "x"}, "no page is open yet"),
        ("search", {}, "missing required argument `query`"),
        ("open", {"id": [1, 2]}, "invalid arguments"),
    ],
)
async def test_errors_are_one_line_results(
    browser: BrowserToolset,
    ctx: ToolContext,
    server: LocalServer,
    call: str,
    args: dict[str, object],
    words: str,
) -> None:
    args = {k: v.format(base=server.base) if isinstance(v, str) else v for k, v in args.items()}
    out = await browser.call(call, json.dumps(args), ctx)
    assert out.is_error
    assert words in out.text
    assert "\n" not in out.text
    assert browser.history(ctx).pages == []  # a failed call adds no cursor


async def test_bad_cursor_link_and_loc(
    browser: BrowserToolset, ctx: ToolContext, server: LocalServer
) -> None:
    await browser.call("open", {"id": server.url("/links")}, ctx)
    bad_link = await browser.call("open", {"id": 42}, ctx)
    assert (
        bad_link.is_error and "link id 42 is not on page [0] (valid ids: 0 to 3)" in bad_link.text
    )
    bad_cursor = await browser.call("find", {"pattern": "a", "cursor": 9}, ctx)
    assert bad_cursor.is_error and "cursor 9 does not exist" in bad_cursor.text
    bad_loc = await browser.call("open", {"loc": 5000}, ctx)
    assert bad_loc.is_error and "past the end" in bad_loc.text
    assert len(browser.history(ctx).pages) == 1


async def test_view_source_and_huge_page_note(
    browser: BrowserToolset, ctx: ToolContext, server: LocalServer
) -> None:
    out = await browser.call("open", {"id": server.url("/links"), "view_source": True}, ctx)
    assert "<title>Links index</title>" in out.text
    huge = await browser.call("open", {"id": server.url("/huge"), "num_lines": 3}, ctx)
    assert not huge.is_error
    assert "(page cut at 200,000 bytes; the rest was not downloaded)" in huge.text


async def test_listing_page_falls_back_to_the_whole_page(
    browser: BrowserToolset, ctx: ToolContext, server: LocalServer
) -> None:
    out = await browser.call("open", {"id": server.url("/listing"), "num_lines": 200}, ctx)
    assert "【0†Item number 0】" in out.text
    assert "【59†Item number 59】" in out.text


async def test_start_and_close_reset_the_history(
    browser: BrowserToolset, server: LocalServer
) -> None:
    ctx = ToolContext()
    await browser.start(ctx)
    await browser.call("open", {"id": server.url("/text")}, ctx)
    assert len(browser.history(ctx).pages) == 1
    await browser.close(ctx)
    assert "browser" not in ctx.state
    await browser.start(ctx)
    assert browser.history(ctx).pages == []
