"""Hostile servers and pages, through the real fetcher, worker processes and toolset.

Compression bombs (gzip of gzip, deflate, zstd, brotli), stacked, unknown and corrupt
encodings, and a page that keeps the HTML parsers busy for minutes: each ends in one clear
error, in bounded memory and time, and the run goes on (the next page opens).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import tracemalloc

import pytest
from browser_testkit import LocalServer, bomb
from harmonygraph.tools.base import ToolContext
from harmonygraph.tools.browser import (
    BrowserConfig,
    BrowserToolset,
    FetchError,
    FetchPolicy,
    SafeFetcher,
    page_from_fetch,
)
from harmonygraph.tools.browser.fetch import (
    SUPPORTED_ENCODINGS,
    ContentEncodingError,
    DecompressionBombError,
)
from harmonygraph.tools.browser.worker import ExtractionWorkers

MB = 1 << 20


def fetcher(**kw: object) -> SafeFetcher:
    policy = FetchPolicy(allow_hosts=("127.0.0.1",), total_timeout_s=20.0)
    for key, value in kw.items():
        setattr(policy, key, value)
    return SafeFetcher(policy)


def test_brotli_and_zstd_are_decoded() -> None:
    assert SUPPORTED_ENCODINGS == ("gzip", "deflate", "br", "zstd")


# ---- real compressed pages -------------------------------------------------------------


@pytest.mark.parametrize(
    "encodings",
    [["gzip"], ["deflate"], ["deflate-raw"], ["br"], ["zstd"], ["gzip", "br"], ["zstd", "gzip"]],
)
async def test_compressed_pages_read_like_plain_ones(
    server: LocalServer, encodings: list[str]
) -> None:
    plain = await fetcher().fetch(server.url("/links"))
    query = "&".join(f"e={e}" for e in encodings)
    encoded = await fetcher().fetch(server.url(f"/encoded?{query}"))
    assert encoded.body == plain.body
    assert not encoded.truncated
    assert page_from_fetch(encoded).text == page_from_fetch(plain).text


async def test_identity_is_no_encoding(server: LocalServer) -> None:
    result = await fetcher().fetch(server.url("/encoded-as?e=identity"))
    assert b"Reading list" in result.body


async def test_large_real_compressed_page_is_cut_at_the_decoded_cap(server: LocalServer) -> None:
    result = await fetcher(max_bytes=200_000).fetch(server.url("/big-gzip"))
    assert result.truncated
    assert len(result.body) == 200_000  # decoded bytes, not received ones
    page = page_from_fetch(result)
    assert "cut at 200,000 bytes" in page.notes[0]
    assert "Row 0:" in page.text


async def test_data_after_the_end_of_the_stream_is_not_the_page(server: LocalServer) -> None:
    plain = await fetcher().fetch(server.url("/links"))
    result = await fetcher().fetch(server.url("/gzip-then-garbage"))
    assert result.body == plain.body


# ---- bombs -----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["gzip-gzip", "deflate", "zstd", "br"])
async def test_compression_bombs_are_refused_in_bounded_memory(
    server: LocalServer, kind: str
) -> None:
    body, encoding = bomb(kind)  # built before measuring: the server's memory is not ours
    assert len(body) < 300_000  # deflate's best is about 1:1000; the others a few KB
    tracemalloc.start()
    try:
        with pytest.raises(DecompressionBombError) as info:
            await fetcher().fetch(server.url(f"/bomb/{kind}"))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    message = str(info.value)
    assert "compression bomb" in message and encoding in message
    assert "\n" not in message
    # The bomb expands to 256 MB; the default cap is 5 MB, and at most one 64 KiB step per
    # layer is in flight besides it.
    assert peak < 100 * MB, f"peak {peak / MB:.0f} MB"


@pytest.mark.parametrize("kind", ["gzip-gzip", "zstd"])
async def test_bomb_under_a_small_cap_is_still_bounded(server: LocalServer, kind: str) -> None:
    """With a cap so small that the ratio rule cannot tell, the page is cut, no more."""
    try:
        result = await fetcher(max_bytes=50_000, max_compression_ratio=1e9).fetch(
            server.url(f"/bomb/{kind}")
        )
    except DecompressionBombError:  # pragma: no cover - ratio 1e9 is never reached
        raise
    assert result.truncated
    assert len(result.body) == 50_000


@pytest.mark.parametrize(
    ("path", "words"),
    [
        ("/encoded?e=gzip&e=gzip&e=gzip", "compressed more than 2 times"),
        ("/encoded-as?e=compress", "Content-Encoding 'compress', which the browser does not"),
        ("/encoded-as?e=x-bomb", "it decodes gzip, deflate, br, zstd"),
        ("/encoded-as?e=gzip", "sent a corrupt gzip body"),
        ("/encoded-as?e=br", "sent a corrupt br body"),
        ("/encoded-as?e=zstd", "sent a corrupt zstd body"),
    ],
)
async def test_bad_encodings_are_clear_errors(server: LocalServer, path: str, words: str) -> None:
    with pytest.raises(ContentEncodingError) as info:
        await fetcher().fetch(server.url(path))
    assert words in str(info.value)
    assert "\n" not in str(info.value)


def toolset(server: LocalServer, **overrides: object) -> BrowserToolset:
    config = BrowserConfig(
        search_backend="searxng",
        searxng_url=server.url("/searx"),
        allow_hosts=["127.0.0.1"],
        total_timeout_s=20.0,
        **overrides,  # type: ignore[arg-type]
    )
    return BrowserToolset(config)


async def test_the_run_goes_on_after_a_bomb(server: LocalServer) -> None:
    browser = toolset(server)
    ctx = ToolContext(run_id="bomb")
    await browser.start(ctx)
    first = await browser.call("open", {"id": server.url("/links")}, ctx)
    assert not first.is_error
    for kind in ("gzip-gzip", "zstd", "br"):
        out = await browser.call("open", {"id": server.url(f"/bomb/{kind}")}, ctx)
        assert out.is_error and "compression bomb" in out.text
    out = await browser.call("open", {"id": server.url("/encoded?e=gzip&e=gzip&e=gzip&e=br")}, ctx)
    assert out.is_error and "compressed more than 2 times" in out.text
    after = await browser.call("open", {"id": server.url("/encoded?e=br")}, ctx)
    assert not after.is_error
    assert after.metadata["cursor"] == 1  # errors add no page; the history is intact
    assert browser.history(ctx).get(0).url == server.url("/links")


# ---- pages that keep the parsers busy ------------------------------------------------------


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (killed, not yet reaped by its parent) is gone as far as CPU goes.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def gone_within(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not alive(pid)


async def test_pathological_page_is_stopped_and_the_run_goes_on(server: LocalServer) -> None:
    workers = ExtractionWorkers(keep_idle=1)
    try:
        config = BrowserConfig(
            search_backend="searxng",
            searxng_url=server.url("/searx"),
            allow_hosts=["127.0.0.1"],
            total_timeout_s=20.0,
            extract_timeout_s=2.0,
        )
        browser = BrowserToolset(config, workers=workers)
        ctx = ToolContext(run_id="stuck")
        await browser.start(ctx)
        busy = workers.processes
        assert len(busy) == 1
        started = time.monotonic()
        out = await browser.call("open", {"id": server.url("/many-attributes?n=300000")}, ctx)
        elapsed = time.monotonic() - started
        assert out.is_error
        assert "took longer than 2 s and was stopped" in out.text, out.text
        assert elapsed < 15  # 2 s of extraction plus the download; unbounded before
        assert not alive(busy[0])  # the worker was killed, not abandoned
        after = await browser.call("open", {"id": server.url("/links")}, ctx)
        assert not after.is_error, after.text
        assert after.metadata["cursor"] == 0
        assert "【0†ACLU article on tracking】" in after.text
    finally:
        workers.close()


async def test_cancelled_open_kills_its_worker(server: LocalServer) -> None:
    """The agent loop's tool timeout cancels the call: the worker dies with it."""
    import asyncio

    workers = ExtractionWorkers(keep_idle=1)
    try:
        browser = BrowserToolset(
            BrowserConfig(allow_hosts=["127.0.0.1"], extract_timeout_s=300.0), workers=workers
        )
        ctx = ToolContext(run_id="cancel")
        await browser.start(ctx)
        pid = workers.processes[0]
        call = browser.call("open", {"id": server.url("/many-attributes?n=300000")}, ctx)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(call, 3.0)
        assert gone_within(pid, 5.0)
    finally:
        workers.close()


SCRIPT = """
import asyncio, sys, time
from harmonygraph.tools.base import ToolContext
from harmonygraph.tools.browser import BrowserConfig, BrowserToolset

async def main():
    config = BrowserConfig(allow_hosts=["127.0.0.1"], extract_timeout_s={timeout})
    browser = BrowserToolset(config)
    ctx = ToolContext(run_id="exit")
    await browser.start(ctx)
    print("worker", *browser.workers.processes, flush=True)
    call = browser.call("open", {{"id": sys.argv[1]}}, ctx)
    try:
        out = await asyncio.wait_for(call, {cancel_after})
        print("result", out.text.replace("\\n", " "), flush=True)
    except TimeoutError:
        print("cancelled", flush=True)

asyncio.run(main())
"""


@pytest.mark.parametrize(
    ("timeout", "cancel_after", "expect"),
    [(2.0, 60, "took longer than 2 s and was stopped"), (300.0, 2, "cancelled")],
)
def test_process_exits_promptly_after_a_pathological_page(
    server: LocalServer, timeout: float, cancel_after: float, expect: str
) -> None:
    """Before, the abandoned extraction thread kept the interpreter alive for minutes."""
    script = SCRIPT.format(timeout=timeout, cancel_after=cancel_after)
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), server.url("/many-attributes?n=300000")],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    assert expect in done.stdout, done.stdout + done.stderr
    assert elapsed < 30, f"the process took {elapsed:.1f} s to exit"
    pid = int(done.stdout.split("worker", 1)[1].split()[0])
    assert not alive(pid)


def test_worker_stops_itself_when_its_parent_is_killed(server: LocalServer) -> None:
    """SIGKILL of the parent mid-page: the worker's own CPU limit ends the page."""
    script = SCRIPT.format(timeout=3.0, cancel_after=60)
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script), server.url("/many-attributes?n=300000")],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        pid = int(line.split()[1])
        time.sleep(1.5)  # the page is downloaded and the worker is parsing it
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert gone_within(pid, 20.0), "the orphaned worker is still burning a core"
    finally:
        proc.kill()
        proc.wait()


async def test_local_documents_are_extracted_in_the_worker_too(tmp_path: object) -> None:
    from pathlib import Path

    from harmonygraph.tools.browser import FolderDocumentSearch, LocalBackend

    folder = Path(str(tmp_path))
    (folder / "ok.html").write_text("<html><body><h1>Fine</h1><p>harmony notes</p></body></html>")
    workers = ExtractionWorkers(keep_idle=1)
    try:
        browser = BrowserToolset(
            BrowserConfig(search_backend="local", extract_timeout_s=5.0),
            backend=LocalBackend(FolderDocumentSearch(folder)),
            workers=workers,
        )
        ctx = ToolContext(run_id="docs")
        await browser.start(ctx)
        out = await browser.call("open", {"id": "doc://ok.html"}, ctx)
        assert not out.is_error, out.text
        assert "# Fine" in out.text and "harmony notes" in out.text
    finally:
        workers.close()


def test_fetch_error_classes() -> None:
    assert issubclass(ContentEncodingError, FetchError)
    assert issubclass(DecompressionBombError, FetchError)
