"""The fetcher's safety rules and its behaviour on bad servers, against a real local server."""

from __future__ import annotations

import socket

import harmonygraph.tools.browser.fetch as fetch_module
import pytest
from browser_testkit import FRENCH, RUSSIAN, LocalServer
from harmonygraph.tools.browser import (
    BinaryContentError,
    FetchError,
    FetchPolicy,
    FetchTimeoutError,
    HTTPStatusError,
    SafeFetcher,
    URLRefusedError,
    page_from_fetch,
)


def allowed(**kw: object) -> SafeFetcher:
    policy = FetchPolicy(
        allow_hosts=("127.0.0.1",),
        total_timeout_s=2.0,
        read_timeout_s=1.0,
        connect_timeout_s=1.0,
        max_bytes=200_000,
    )
    for key, value in kw.items():
        setattr(policy, key, value)
    return SafeFetcher(policy)


# ---- refused addresses and schemes ---------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("http://127.0.0.1/", "loopback"),
        ("http://127.1.2.3:8080/admin", "loopback"),
        ("http://[::1]/", "loopback"),
        ("http://[::ffff:127.0.0.1]/", "loopback"),
        ("http://0x7f000001/", "loopback"),  # 127.0.0.1 in hex, normalised by the URL parser
        ("http://10.0.0.5/", "private"),
        ("http://192.168.1.1/router", "private"),
        ("http://172.16.3.4/", "private"),
        ("http://169.254.169.254/latest/meta-data/", "link-local (cloud metadata)"),
        ("http://[fe80::1]/", "link-local"),
        ("http://100.64.0.1/", "non-public"),  # carrier-grade NAT
        ("http://0.0.0.0/", "unspecified"),
        ("http://localhost/", "resolves to a loopback"),
        # IPv6 forms that carry an IPv4 host, reached through a translating gateway.
        ("http://[::127.0.0.1]/", "loopback"),  # IPv4-compatible
        ("http://[64:ff9b::a9fe:a9fe]/", "link-local (cloud metadata)"),  # NAT64
        ("http://[2002:a00:5::]/", "private"),  # 6to4 of 10.0.0.5
        ("http://[fd12:3456::1]/", "private"),  # unique local
        ("http://[ff02::1]/", "non-public"),  # multicast
        ("http://240.0.0.1/", "private"),  # reserved (Python counts it as private)
    ],
)
async def test_non_public_addresses_are_refused(url: str, words: str) -> None:
    with pytest.raises(URLRefusedError) as info:
        await SafeFetcher().fetch(url)
    message = str(info.value)
    assert message.startswith("refused: ")
    assert words in message
    assert "\n" not in message


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "ftp://example.org/file",
        "gopher://example.org/",
        "data:text/html,<h1>hi</h1>",
        "javascript:alert(1)",
    ],
)
async def test_only_http_and_https_schemes(url: str) -> None:
    with pytest.raises(URLRefusedError, match="only http and https"):
        await SafeFetcher(FetchPolicy(allow_hosts=("127.0.0.1", "example.org"))).fetch(url)


async def test_allow_list_is_needed_for_the_local_server(server: LocalServer) -> None:
    with pytest.raises(URLRefusedError, match="loopback"):
        await SafeFetcher().fetch(server.url("/text"))
    result = await allowed().fetch(server.url("/text"))
    assert result.status_code == 200
    assert result.content_type == "text/plain"


async def test_dns_answer_with_private_address_is_refused(server: LocalServer) -> None:
    async def resolver(host: str, port: int) -> list[str]:
        return {"evil.example": ["10.1.2.3"], "mixed.example": ["93.184.216.34", "127.0.0.1"]}[host]

    fetcher = SafeFetcher(FetchPolicy(), resolver=resolver)
    with pytest.raises(URLRefusedError, match=r"evil\.example resolves to a private address"):
        await fetcher.fetch("https://evil.example/")
    # One bad address among good ones is enough to refuse: the connection could use any.
    with pytest.raises(URLRefusedError, match=r"loopback address 127\.0\.0\.1"):
        await fetcher.fetch("http://mixed.example/")


@pytest.mark.parametrize(
    ("target", "words"),
    [
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://localhost:{port}/text", "loopback"),
        ("http://[::1]:{port}/text", "loopback"),
        ("file:///etc/passwd", "only http and https"),
    ],
)
async def test_redirects_are_checked_at_every_hop(
    server: LocalServer, target: str, words: str
) -> None:
    port = server.base.rsplit(":", 1)[1]
    url = server.url("/redirect?to=" + target.format(port=port))
    with pytest.raises(URLRefusedError, match=words):
        await allowed().fetch(url)


async def test_redirect_within_allowed_host_is_followed(server: LocalServer) -> None:
    result = await allowed().fetch(server.url("/redirect?to=/text"))
    assert result.url == server.url("/text")
    assert result.redirects == [server.url("/text")]


async def test_redirect_loop_stops(server: LocalServer) -> None:
    with pytest.raises(FetchError, match="redirected more than 3 times"):
        await allowed(max_redirects=3).fetch(server.url("/redirect-loop"))


async def test_connection_goes_to_the_checked_address(
    server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The request is sent to the resolved, checked IP with the real Host header, so a
    second DNS answer (rebinding) cannot redirect it. Here 127.0.0.1 stands in for a
    public address: only the address predicate is swapped, the network path is real."""
    monkeypatch.setattr(fetch_module, "_is_public", lambda address: address == "127.0.0.1")
    port = int(server.base.rsplit(":", 1)[1])
    asked: list[tuple[str, int]] = []

    async def resolver(host: str, p: int) -> list[str]:
        asked.append((host, p))
        return ["127.0.0.1"]

    result = await SafeFetcher(FetchPolicy(), resolver=resolver).fetch(
        f"http://pinned.example:{port}/echo-host"
    )
    assert asked == [("pinned.example", port)]
    assert result.body == f"host=pinned.example:{port}".encode()


# ---- bad servers -----------------------------------------------------------------------


async def test_huge_page_is_cut_at_the_size_cap(server: LocalServer) -> None:
    result = await allowed(max_bytes=100_000).fetch(server.url("/huge"))
    assert result.truncated
    assert len(result.body) == 100_000
    page = page_from_fetch(result)
    assert page.notes and "cut at 100,000 bytes" in page.notes[0]
    assert "lots of words here" in page.text


async def test_slow_trickle_hits_the_total_time_limit(server: LocalServer) -> None:
    with pytest.raises(FetchTimeoutError, match="took longer than 1 s"):
        await allowed(total_timeout_s=1.0, read_timeout_s=5.0).fetch(server.url("/slow-trickle"))


async def test_server_that_never_answers_hits_the_read_timeout(server: LocalServer) -> None:
    with pytest.raises(FetchTimeoutError, match="did not answer in time"):
        await allowed(read_timeout_s=0.3, total_timeout_s=5.0).fetch(server.url("/slow-headers"))


@pytest.mark.parametrize("path", ["/image.png", "/binary-unlabelled"])
async def test_binary_content_is_refused(server: LocalServer, path: str) -> None:
    with pytest.raises(BinaryContentError, match="no text to show"):
        await allowed().fetch(server.url(path))


async def test_unlabelled_pdf_is_sniffed(server: LocalServer) -> None:
    result = await allowed().fetch(server.url("/pdf-unlabelled"))
    assert result.content_type == "application/pdf"
    assert "Harmony report page one" in page_from_fetch(result).text


@pytest.mark.parametrize(("code", "words"), [(404, "does not exist"), (500, "server failed")])
async def test_http_errors(server: LocalServer, code: int, words: str) -> None:
    with pytest.raises(HTTPStatusError, match=words) as info:
        await allowed().fetch(server.url(f"/status/{code}"))
    assert info.value.status_code == code
    assert f"HTTP {code}" in str(info.value)


async def test_connection_refused_is_a_clear_error() -> None:
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(FetchError, match="could not connect"):
        await allowed().fetch(f"http://127.0.0.1:{port}/")


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/utf8-labelled-latin1", "Le café crème et la brûlée"),  # UTF-8 bytes, label lies
        ("/latin1-labelled-utf8", "Le café crème et la brûlée"),  # Latin-1 bytes, label lies
        ("/meta-charset", "Привет, мир!"),  # no header charset, <meta> says windows-1251
    ],
)
async def test_charsets(server: LocalServer, path: str, expected: str) -> None:
    page = page_from_fetch(await allowed().fetch(server.url(path)))
    assert expected in page.text
    assert "\ufffd" not in page.text
    assert FRENCH.strip()[:20] in page.text or RUSSIAN.strip()[:20] in page.text


async def test_broken_html_still_gives_text(server: LocalServer) -> None:
    page = page_from_fetch(await allowed().fetch(server.url("/broken")))
    assert page.title == "Broken page"
    assert "cell one" in page.text
    assert "after the table" in page.text
    assert page.links[0].url == server.url("/pages/aclu/source.html")


# ---- the allow-list: a host, or one port of it --------------------------------------------


async def test_allow_host_with_port_opens_only_that_port(server: LocalServer) -> None:
    port = int(server.base.rsplit(":", 1)[1])
    result = await allowed(allow_hosts=(f"127.0.0.1:{port}",)).fetch(server.url("/text"))
    assert result.status_code == 200
    other = port + 1 if port < 65535 else port - 1
    with pytest.raises(URLRefusedError, match="loopback") as info:
        await allowed(allow_hosts=(f"127.0.0.1:{other}",)).fetch(server.url("/text"))
    assert (info.value.host, info.value.port) == ("127.0.0.1", port)
    # A redirect to another port of the allowed host is refused at that hop.
    hop = server.url(f"/redirect?to=http://127.0.0.1:{other}/admin")
    with pytest.raises(URLRefusedError, match="loopback"):
        await allowed(allow_hosts=(f"127.0.0.1:{port}",)).fetch(hop)


async def test_allow_host_without_port_opens_every_port(server: LocalServer) -> None:
    policy = FetchPolicy(allow_hosts=("127.0.0.1",))
    assert policy.host_allowed("127.0.0.1", 1) and policy.host_allowed("127.0.0.1", 65535)
    assert not policy.host_allowed("127.0.0.2", 80)


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ("localhost", ("localhost", None)),
        ("LocalHost.:8080", ("localhost", 8080)),
        ("::1", ("::1", None)),
        ("[::1]", ("::1", None)),
        ("[::1]:8443", ("::1", 8443)),
    ],
)
def test_allow_entries(entry: str, expected: tuple[str, int | None]) -> None:
    assert fetch_module.parse_allow_entry(entry) == expected
    host, port = expected
    assert FetchPolicy(allow_hosts=(entry,)).host_allowed(host, port or 1234)


@pytest.mark.parametrize("entry", ["127.0.0.1:http", "127.0.0.1:0", "127.0.0.1:70000", ":80"])
def test_bad_allow_entries_are_refused_in_the_config(entry: str) -> None:
    from harmonygraph.tools.browser import BrowserConfig

    with pytest.raises(ValueError, match="allowed host"):
        BrowserConfig(allow_hosts=[entry])
    assert not FetchPolicy(allow_hosts=(entry,)).host_allowed("127.0.0.1", 80)
