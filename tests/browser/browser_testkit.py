"""A real HTTP server on 127.0.0.1 for the browser tests (fixtures in conftest.py).

It serves the readability test pages and the bad cases the fetcher must survive (huge,
slow, binary, broken, mislabelled charsets, errors, redirects to private addresses), and
a SearxNG-shaped JSON endpoint. Tests reach it through the allow-list, as the issue asks.
"""

from __future__ import annotations

import functools
import json
import threading
import time
import zlib
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

# Resolved: shared/ may be a link, and served files are checked against the real folder.
READABILITY = (Path(__file__).resolve().parents[3] / "shared" / "corpora" / "readability").resolve()

LINKS_PAGE = """<!doctype html><html><head><title>Links index</title></head><body>
<h1>Reading list</h1>
<p>Start with the <a href="/pages/aclu/source.html">ACLU article on tracking</a>, then read
<a href="/pages/wikipedia/source.html">the Wikipedia page</a>. The
<a href="/text">plain text notes</a> and <a href="/doc.pdf">the PDF report</a> follow.
A <a href="mailto:someone@example.org">mail link</a> and a
<a href="#section">same-page anchor</a> are not pages.</p>
<p>Again: <a href="/pages/aclu/source.html">the ACLU piece</a>.</p>
</body></html>"""

LISTING_PAGE = (
    "<!doctype html><html><head><title>Results listing</title></head><body><ul>{}</ul>"
    "</body></html>"
).format(
    "".join(
        f'<li><a href="/item/{i}">Item number {i}</a> <span>{i} comments</span></li>'
        for i in range(60)
    )
)

BROKEN_HTML = (
    b"<html><head><title>Broken page</title><body><div><p>Unclosed paragraph <b>bold "
    b"<i>nested <a href='/pages/aclu/source.html'>a link<table><tr><td>cell one<td>cell two"
    b"</div></span><p>after the table \xff\xfe stray bytes</p></p></html></body><!-- unclosed"
)

FRENCH = "Le café crème et la brûlée: déjà vu à Noël, où l'été était chaud. " * 20
RUSSIAN = "Привет, мир! Это проверка кодировки страницы на русском языке. " * 20
PLAIN_TEXT = "\n".join(f"Note {i}: the plain text line number {i}." for i in range(120))


def make_pdf(pages: list[str]) -> bytes:
    """A small valid PDF with one line of Helvetica text per page."""
    objects: list[bytes] = []
    n_pages = len(pages)
    kids = " ".join(f"{3 + 2 * i} 0 R" for i in range(n_pages))
    objects.append(b"<< /Type /Catalog /Pages 2 0 R >>")
    objects.append(f"<< /Type /Pages /Kids [{kids}] /Count {n_pages} >>".encode())
    font_id = 3 + 2 * n_pages
    for i, text in enumerate(pages):
        content = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {4 + 2 * i} 0 R "
            f"/Resources << /Font << /F1 {font_id} 0 R >> >> >>".encode()
        )
        objects.append(
            f"<< /Length {len(content)} >>\nstream\n".encode() + content + b"\nendstream"
        )
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    for off in offsets:
        out += f"{off:010d} 00000 n \n".encode()
    out += (
        f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    )
    return bytes(out)


PDF = make_pdf(["Harmony report page one says hello", "The second page has the findings"])

# ---- Content-Encoding: real pages and bombs ---------------------------------------------

BOMB_MB = 256  # what each bomb expands to: fifty times the default 5 MB cap


def _zlib_stream(chunks: int, chunk: bytes, wbits: int) -> bytes:
    c = zlib.compressobj(9, zlib.DEFLATED, wbits)
    return b"".join(c.compress(chunk) for _ in range(chunks)) + c.flush()


def encode(body: bytes, encoding: str) -> bytes:
    """`body` in one Content-Encoding (`deflate-raw` is raw deflate, as some servers send)."""
    if encoding == "gzip":
        return _zlib_stream(1, body, 31)
    if encoding == "deflate":
        return _zlib_stream(1, body, 15)
    if encoding == "deflate-raw":
        return _zlib_stream(1, body, -15)
    if encoding == "br":
        import brotli

        return bytes(brotli.compress(body))
    if encoding == "zstd":
        import zstandard

        return zstandard.ZstdCompressor().compress(body)
    raise ValueError(encoding)


@functools.cache
def bomb(kind: str) -> tuple[bytes, str]:
    """A few KB (zstd: 16 KB) that expand to BOMB_MB of zeros; (body, Content-Encoding)."""
    zeros = bytes(1 << 20)
    if kind == "gzip-gzip":  # gzip of a gzip: the inner layer is itself a 256 KB bomb
        return encode(_zlib_stream(BOMB_MB, zeros, 31), "gzip"), "gzip, gzip"
    if kind == "deflate":
        return _zlib_stream(BOMB_MB, zeros, 15), "deflate"
    if kind == "zstd":
        import zstandard

        z = zstandard.ZstdCompressor(level=3).compressobj()
        return b"".join(z.compress(zeros) for _ in range(BOMB_MB)) + z.flush(), "zstd"
    if kind == "br":
        import brotli

        c = brotli.Compressor(quality=5)
        return b"".join(c.process(zeros) for _ in range(BOMB_MB)) + c.finish(), "br"
    raise ValueError(kind)


@dataclass
class LocalServer:
    base: str
    hits: Counter[str] = field(default_factory=Counter)

    def url(self, path: str) -> str:
        return self.base + path


class _Handler(BaseHTTPRequestHandler):
    server_state: LocalServer  # set on the class by the fixture

    def log_message(self, format: str, *args: object) -> None:  # keep test output clean
        pass

    def _send(self, status: int, body: bytes, content_type: str | None, **headers: str) -> None:
        self.send_response(status)
        if content_type is not None:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in headers.items():
            self.send_header(key.replace("_", "-"), value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        path, query = parts.path, parse_qs(parts.query)
        self.server_state.hits[path] += 1
        try:
            self._route(path, query)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client stopped reading, which is what the size cap and timeouts do

    def _route(self, path: str, query: dict[str, list[str]]) -> None:
        html = "text/html; charset=utf-8"
        if path.startswith("/pages/"):
            file = READABILITY / path.removeprefix("/pages/")
            if file.is_file() and READABILITY in file.resolve().parents:
                self._send(200, file.read_bytes(), html)
            else:
                self._send(404, b"not found", "text/plain")
        elif path == "/links":
            self._send(200, LINKS_PAGE.encode(), html)
        elif path == "/listing":
            self._send(200, LISTING_PAGE.encode(), html)
        elif path == "/text":
            self._send(200, PLAIN_TEXT.encode(), "text/plain; charset=utf-8")
        elif path == "/doc.pdf":
            self._send(200, PDF, "application/pdf")
        elif path == "/corrupt.pdf":
            self._send(200, b"%PDF-1.4\n" + b"garbage " * 100, "application/pdf")
        elif path == "/pdf-unlabelled":
            self._send(200, PDF, None)
        elif path == "/broken":
            self._send(200, BROKEN_HTML, "text/html")
        elif path == "/huge":
            # Never ends: only the client's size cap stops it.
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(b"<html><body>")
            chunk = b"<p>" + b"lots of words here " * 50 + b"</p>\n"
            while True:
                self.wfile.write(chunk)
        elif path == "/slow-trickle":
            # Headers at once, then one byte a while: each read is quick, the whole is not.
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            for _ in range(600):
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(0.1)
        elif path == "/slow-headers":
            time.sleep(3)
            self._send(200, b"<p>too late</p>", html)
        elif path == "/image.png":
            self._send(200, b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8, "image/png")
        elif path == "/binary-unlabelled":
            self._send(200, b"\x00\x01\x02\x03" * 500, None)
        elif path == "/utf8-labelled-latin1":
            body = f"<html><head><title>Café</title></head><body><p>{FRENCH}</p></body></html>"
            self._send(200, body.encode("utf-8"), "text/html; charset=iso-8859-1")
        elif path == "/latin1-labelled-utf8":
            body = f"<html><head><title>Cafe</title></head><body><p>{FRENCH}</p></body></html>"
            self._send(200, body.encode("latin-1"), "text/html; charset=utf-8")
        elif path == "/meta-charset":
            body = (
                '<html><head><meta charset="windows-1251"><title>Русский</title></head>'
                f"<body><p>{RUSSIAN}</p></body></html>"
            )
            self._send(200, body.encode("cp1251"), "text/html")
        elif path.startswith("/status/"):
            code = int(path.rsplit("/", 1)[1])
            self._send(code, f"<h1>status {code}</h1>".encode(), html)
        elif path == "/redirect":
            self._send(302, b"", html, Location=query["to"][0])
        elif path == "/redirect-loop":
            self._send(302, b"", html, Location="/redirect-loop")
        elif path.startswith("/bomb/"):
            body, encoding = bomb(path.removeprefix("/bomb/"))
            self._send(200, body, html, Content_Encoding=encoding)
        elif path == "/encoded":
            # /encoded?e=gzip&e=br: the links page, encoded in that order (gzip first).
            body = LINKS_PAGE.encode()
            for encoding in query.get("e", []):
                body = encode(body, encoding)
            header = ", ".join(query.get("e", [])).replace("deflate-raw", "deflate")
            self._send(200, body, html, Content_Encoding=header)
        elif path == "/encoded-as":
            # A plain body labelled with whatever Content-Encoding the test asks for.
            self._send(200, LINKS_PAGE.encode(), html, Content_Encoding=query["e"][0])
        elif path == "/gzip-then-garbage":
            # A complete gzip stream, then junk: the page ends where the stream ends.
            body = encode(LINKS_PAGE.encode(), "gzip") + b"\x00junk" * 100
            self._send(200, body, html, Content_Encoding="gzip")
        elif path == "/big-gzip":
            # A real (not bomb-like) compressible page larger than the tests' 200 KB cap.
            rows = "".join(
                f"<p>Row {i}: {i * 7919 % 10007} apples, {i % 13} pears.</p>" for i in range(20000)
            )
            body = f"<html><body>{rows}</body></html>".encode()
            self._send(200, encode(body, "gzip"), html, Content_Encoding="gzip")
        elif path == "/many-attributes":
            # One <p> with n attributes: lxml and readability are quadratic in them.
            n = int(query.get("n", ["300000"])[0])
            attributes = " ".join(f"a{i}=1" for i in range(n))
            body = f"<html><body><p {attributes}>stuck</p></body></html>".encode()
            self._send(200, body, html)
        elif path == "/echo-host":
            self._send(200, f"host={self.headers.get('Host')}".encode(), "text/plain")
        elif path == "/searx/search":
            self._searx(query)
        elif path == "/not-searx/search":
            self._send(200, b"<html>this is not json</html>", html)
        else:
            self._send(404, b"no such test page", "text/plain")

    def _searx(self, query: dict[str, list[str]]) -> None:
        q = query.get("q", [""])[0]
        assert query.get("format") == ["json"], "the SearxNG backend must ask for JSON"
        if q == "always-limited" or (q == "limited-once" and self.server_state.hits["rl"] < 1):
            self.server_state.hits["rl"] += 1
            self._send(429, b"slow down", "text/plain")
            return
        base = self.server_state.base
        results = [
            {
                "url": f"{base}/pages/aclu/source.html",
                "title": "Facebook Is Tracking Me Even Though I'm Not on Facebook",
                "content": "Facebook collects data about people who have never even opted in.",
                "engine": "test",
            },
            {
                "url": f"{base}/text",
                "title": f"Notes about {q}",
                "content": "Note 50: the plain text line number 50.",
                "engine": "test",
            },
            {"title": "a result without a URL is skipped"},
        ]
        self._send(200, json.dumps({"query": q, "results": results}).encode(), "application/json")


def start_server() -> tuple[LocalServer, ThreadingHTTPServer]:
    class Handler(_Handler):  # a subclass per server, so each has its own state
        pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    state = LocalServer(base=f"http://127.0.0.1:{httpd.server_address[1]}")
    Handler.server_state = state
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return state, httpd
