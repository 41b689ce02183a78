"""A fetcher that only talks to the public internet, in bounded time and memory.

Every hop (the first request and each redirect, followed by hand) is checked: the scheme
must be http or https, and every address the host name resolves to must be a public
(globally routable) one. The request is then sent to the checked address itself, with the
host name kept for the Host header and TLS, so a DNS answer cannot change between the
check and the connection (DNS rebinding). Hosts on the allow-list (`host` for every port,
`host:port` for one) skip the address check.

Bodies are read raw and decoded here, not by httpx: every decoder is fed so that each step
gives out at most 64 KiB, and the bytes each layer gives out are counted as they stream, so
the size cap holds for the decoded page and a compression bomb never reaches memory.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import zlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import IO, Any, Protocol, cast
from urllib.parse import urljoin

import httpx

__all__ = [
    "SUPPORTED_ENCODINGS",
    "BinaryContentError",
    "ContentEncodingError",
    "DecompressionBombError",
    "FetchError",
    "FetchPolicy",
    "FetchResult",
    "FetchTimeoutError",
    "HTTPStatusError",
    "Resolver",
    "SafeFetcher",
    "URLRefusedError",
    "decode_body",
    "system_resolver",
]

Resolver = Callable[[str, int], Awaitable[list[str]]]


class FetchError(Exception):
    """A page could not be fetched; the message is one line the model can act on."""


class URLRefusedError(FetchError):
    """The URL is not allowed: a scheme other than http(s) or a non-public address.

    `host` and `port` name what was refused when it was the address (for a hint such as
    the CLI's `--allow-host host:port`); None for a refused scheme or URL."""

    def __init__(self, message: str, host: str | None = None, port: int | None = None) -> None:
        super().__init__(message)
        self.host = host
        self.port = port


class FetchTimeoutError(FetchError):
    """The server was too slow."""


class HTTPStatusError(FetchError):
    """The server answered with a 4xx or 5xx status."""

    def __init__(self, message: str, status_code: int) -> None:
        super().__init__(message)
        self.status_code = status_code


class BinaryContentError(FetchError):
    """The response is an image, archive or other content with no text to show."""


class ContentEncodingError(FetchError):
    """The body's Content-Encoding is unknown, stacked too deep, or its data is corrupt."""


class DecompressionBombError(FetchError):
    """A compressed body expanded far more than real pages do: refused, not cut."""


try:  # optional decoders: an encoding whose module is missing is refused, not guessed
    import brotli as _brotli
except ImportError:  # pragma: no cover - brotli is in the browse extra
    _brotli = None
try:
    import zstandard as _zstandard
except ImportError:  # pragma: no cover - zstandard is in the browse extra
    _zstandard = None  # type: ignore[assignment]

#: Content-Encodings the fetcher decodes (and advertises in Accept-Encoding).
SUPPORTED_ENCODINGS: tuple[str, ...] = (
    "gzip",
    "deflate",
    *(("br",) if _brotli is not None else ()),
    *(("zstd",) if _zstandard is not None else ()),
)
_ALIASES = {"x-gzip": "gzip"}
_STEP = 64 * 1024  # the most one decoding step may give out
_RAW_SLICE = 4096  # received bytes are handed to the decoders this many at a time
_ZSTD_MAX_WINDOW = 8 * 1024 * 1024  # RFC 8878 §3.1.1.1.2: HTTP decoders may refuse more


def parse_allow_entry(entry: str) -> tuple[str, int | None]:
    """`host`, `host:port`, `[v6]` or `[v6]:port` as (host, port or None for every port).

    A bare IPv6 address (`::1`) is a host with every port; `ValueError` for a bad port."""
    text = entry.strip().lower()
    port: str | None = None
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"allowed host {entry!r} is not host, host:port or [ipv6]:port")
            port = rest[1:]
    elif text.count(":") == 1:
        host, port = text.split(":")
    else:
        host = text
    host = host.rstrip(".")
    if not host:
        raise ValueError(f"allowed host {entry!r} has no host name")
    if port is None:
        return host, None
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"allowed host {entry!r}: the port must be a number from 1 to 65535")
    return host, int(port)


# Content the browser can show; everything else is refused as binary.
TEXT_TYPES = ("text/", "application/xhtml", "application/xml", "application/json",
              "application/ld+json", "application/rss", "application/atom",
              "application/javascript")  # fmt: skip
PDF_TYPES = ("application/pdf", "application/x-pdf")


@dataclass(slots=True)
class FetchPolicy:
    """Limits and rules of the fetcher; the defaults suit a model's browsing."""

    # Hosts exempt from the public-address rule: `host` (every port) or `host:port`.
    allow_hosts: Sequence[str] = ()
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 10.0
    total_timeout_s: float = 20.0  # wall clock for the whole fetch, redirects included
    max_redirects: int = 5
    # The body is cut here, counted both as received and as decoded; the page says so.
    max_bytes: int = 5_000_000
    max_encodings: int = 2  # stacked Content-Encodings (`gzip, br`) decoded at most
    # A compressed body that has expanded more than this many times its received size by
    # the time it reaches max_bytes is a compression bomb: refused, not cut.
    max_compression_ratio: float = 100.0
    user_agent: str = "Mozilla/5.0 (compatible; harmonygraph-browser/0.1)"

    def host_allowed(self, host: str, port: int | None = None) -> bool:
        """Whether `host` (on `port`) is on the allow-list; a bad entry allows nothing."""
        host = host.lower().strip("[]").rstrip(".")
        for entry in self.allow_hosts:
            try:
                allowed_host, allowed_port = parse_allow_entry(entry)
            except ValueError:
                continue
            if allowed_host == host and (allowed_port is None or allowed_port == port):
                return True
        return False


@dataclass(slots=True)
class FetchResult:
    """A fetched response: final URL, status, content type and the (possibly cut) body."""

    url: str
    status_code: int
    content_type: str  # media type only, lower case: `text/html`
    charset: str | None  # as declared by the server
    body: bytes
    truncated: bool = False
    redirects: list[str] = field(default_factory=list)

    def text(self) -> str:
        return decode_body(self.body, self.charset, self.content_type)


async def system_resolver(host: str, port: int) -> list[str]:
    """All addresses the system resolver gives for a host."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({str(info[4][0]) for info in infos})


_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")


def _addresses(address: str) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """The address and every IPv4 address that an IPv6 one carries inside it.

    ::ffff:127.0.0.1 (mapped), ::127.0.0.1 (compatible), 64:ff9b::7f00:1 (NAT64),
    2002:7f00:1:: (6to4) and Teredo all reach the IPv4 host they embed where a gateway
    translates them, so each is judged by that host as well.
    """
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    found: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = [ip]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            found.append(ip.ipv4_mapped)
        if ip.sixtofour is not None:
            found.append(ip.sixtofour)
        if ip.teredo is not None:
            found.extend(ip.teredo)
        if ip in _NAT64 or (ip in _IPV4_COMPATIBLE and int(ip) > 1):
            found.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return found


def _is_public(address: str) -> bool:
    # is_global is False for loopback, private, link-local (169.254.169.254, the cloud
    # metadata service), shared (100.64/10), reserved and documentation ranges.
    return all(ip.is_global and not ip.is_multicast for ip in _addresses(address))


def _kind(address: str) -> str:
    ips = _addresses(address)
    ip = next((a for a in reversed(ips) if not a.is_global or a.is_multicast), ips[0])
    if ip.is_unspecified:
        return "an unspecified"
    if ip.is_loopback:
        return "a loopback"
    if ip.is_link_local:
        return "a link-local (cloud metadata)"
    if ip.is_private:
        return "a private"
    return "a non-public"


class SafeFetcher:
    """Fetches http(s) URLs under a `FetchPolicy`; see the module docstring for the rules."""

    def __init__(self, policy: FetchPolicy | None = None, *, resolver: Resolver | None = None):
        self.policy = policy or FetchPolicy()
        self.resolver: Resolver = resolver or system_resolver

    async def fetch(self, url: str) -> FetchResult:
        """Fetch `url`, following redirects; raises a `FetchError` subclass on any failure."""
        try:
            async with asyncio.timeout(self.policy.total_timeout_s):
                return await self._fetch(url)
        except TimeoutError:
            raise FetchTimeoutError(
                f"fetching {url} took longer than {self.policy.total_timeout_s:g} s; "
                "the server is too slow, try another source"
            ) from None

    async def _fetch(self, url: str) -> FetchResult:
        p = self.policy
        timeout = httpx.Timeout(p.read_timeout_s, connect=p.connect_timeout_s)
        redirects: list[str] = []
        # trust_env=False: a proxy from the environment would bypass the address checks.
        async with httpx.AsyncClient(
            timeout=timeout, follow_redirects=False, trust_env=False
        ) as client:
            current = url
            for _ in range(p.max_redirects + 1):
                request = await self._pinned_request(client, current)
                try:
                    response = await client.send(request, stream=True)
                except httpx.TimeoutException:
                    raise FetchTimeoutError(
                        f"{current} did not answer in time; the server is too slow"
                    ) from None
                except httpx.HTTPError as exc:
                    raise FetchError(
                        f"could not connect to {current} ({type(exc).__name__}: {exc})"
                    ) from None
                async with _closing(response):
                    if response.is_redirect and "location" in response.headers:
                        target = urljoin(current, response.headers["location"])
                        redirects.append(target)
                        current = target
                        continue
                    return await self._read(response, current, redirects)
            raise FetchError(
                f"{url} redirected more than {p.max_redirects} times; open the final URL directly"
            )

    async def _pinned_request(self, client: httpx.AsyncClient, url: str) -> httpx.Request:
        """A request to a checked address of the URL's host, or `URLRefusedError`."""
        try:
            parts = httpx.URL(url)
        except (httpx.InvalidURL, ValueError):
            raise URLRefusedError(f"refused: {url!r} is not a valid URL") from None
        if parts.scheme not in ("http", "https"):
            raise URLRefusedError(
                f"refused: only http and https URLs can be opened, not {parts.scheme or 'none'}:"
            )
        host = parts.host
        if not host:
            raise URLRefusedError(f"refused: {url} has no host name")
        headers = {
            "User-Agent": self.policy.user_agent,
            "Accept": "*/*",
            "Accept-Encoding": ", ".join(SUPPORTED_ENCODINGS),
        }
        port = parts.port or (443 if parts.scheme == "https" else 80)
        if self.policy.host_allowed(host, port):
            return client.build_request("GET", parts, headers=headers)
        try:
            ipaddress.ip_address(host)
            addresses = [host]
        except ValueError:
            try:
                addresses = await self.resolver(host, port)
            except (OSError, UnicodeError) as exc:
                raise FetchError(f"could not resolve host {host} ({exc})") from None
        if not addresses:
            raise FetchError(f"could not resolve host {host}")
        bad = [a for a in addresses if not _is_public(a)]
        if bad:
            kind = _kind(bad[0])
            where = (
                f"is {kind} address" if bad[0] == host else f"resolves to {kind} address {bad[0]}"
            )
            raise URLRefusedError(
                f"refused: {host} {where}; only public internet hosts can be opened",
                host=host,
                port=port,
            )
        headers["Host"] = parts.netloc.decode("ascii")
        # Connect to the address we checked, not to a second DNS answer; TLS still
        # verifies the certificate for the real host name through `sni_hostname`.
        return client.build_request(
            "GET",
            parts.copy_with(host=addresses[0]),
            headers=headers,
            extensions={"sni_hostname": host} if parts.scheme == "https" else {},
        )

    async def _read(self, response: httpx.Response, url: str, redirects: list[str]) -> FetchResult:
        status = response.status_code
        if status >= 400:
            reason = response.reason_phrase or "error"
            hint = (
                "the page does not exist or is not public"
                if status < 500
                else "the server failed; try again later or another source"
            )
            raise HTTPStatusError(f"{url} answered HTTP {status} {reason}: {hint}", status)
        media_type, charset = _content_type(response.headers.get("content-type", ""))
        if media_type and not (media_type.startswith(TEXT_TYPES) or media_type in PDF_TYPES):
            raise BinaryContentError(
                f"{url} is {media_type}, which has no text to show; open an HTML, PDF or "
                "text page instead"
            )
        body, truncated = await self._read_body(response, url)
        if not media_type:
            sniffed = _sniff(body)
            if sniffed is None:
                raise BinaryContentError(f"{url} is binary content with no text to show")
            media_type = sniffed
        return FetchResult(
            url=url,
            status_code=status,
            content_type=media_type,
            charset=charset,
            body=body,
            truncated=truncated,
            redirects=redirects,
        )

    async def _read_body(self, response: httpx.Response, url: str) -> tuple[bytes, bool]:
        """The decoded body, cut at `max_bytes` (received or decoded), and whether it was cut.

        Raw bytes go through one bounded decoder per Content-Encoding; each layer's output
        is capped at `max_bytes` as it streams, so nothing past the cap is ever decoded."""
        p = self.policy
        encodings = _content_encodings(response, url, p.max_encodings)
        collected = _Collect()
        head = _decoder_chain(encodings, collected, p.max_bytes)
        received = 0
        truncated = False
        try:
            async for chunk in response.aiter_raw():
                if received + len(chunk) >= p.max_bytes:  # the rest never reaches memory
                    chunk = chunk[: p.max_bytes - received]
                    truncated = True
                # Fed in small slices, so that `received` is what the decoders have taken
                # when a layer fills up: the compression ratio is measured, not guessed.
                for start in range(0, len(chunk), _RAW_SLICE):
                    piece = chunk[start : start + _RAW_SLICE]
                    received += len(piece)
                    head.write(piece)
                if truncated:
                    break
        except _LayerFull as full:
            truncated = True
            if encodings and full.size > p.max_compression_ratio * max(received, 1):
                raise DecompressionBombError(
                    f"{url} is a compression bomb: {received:,} bytes received expanded past "
                    f"{full.size:,} bytes ({', '.join(encodings)}, over "
                    f"{p.max_compression_ratio:g} times); refused, try another source"
                ) from None
        except _StreamEnd:
            pass  # data after the end of a compressed stream is not part of the page
        except _CorruptData as exc:
            raise ContentEncodingError(
                f"{url} sent a corrupt {exc.encoding} body ({exc.detail}); try another source"
            ) from None
        except httpx.TimeoutException:
            raise FetchTimeoutError(
                f"{url} stopped sending the page; the server is too slow"
            ) from None
        except httpx.HTTPError as exc:
            raise FetchError(
                f"the connection to {url} broke while reading the page ({type(exc).__name__})"
            ) from None
        return b"".join(collected.chunks), truncated


# ---- bounded decoding ----------------------------------------------------------------------


class _Writer(Protocol):
    def write(self, data: bytes) -> Any: ...


class _LayerFull(Exception):
    """A layer gave out `max_bytes`: stop decoding."""

    def __init__(self, size: int) -> None:
        self.size = size


class _StreamEnd(Exception):
    """Data arrived after the end of a compressed stream: the page is complete."""


class _CorruptData(Exception):
    def __init__(self, encoding: str, detail: str) -> None:
        self.encoding = encoding
        self.detail = detail


class _Collect:
    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.chunks.append(bytes(data))


class _Capped:
    """Passes bytes on until `limit` of them have passed, then raises `_LayerFull`."""

    def __init__(self, target: _Writer, limit: int) -> None:
        self.target = target
        self.limit = limit
        self.size = 0

    def write(self, data: bytes) -> int:
        room = self.limit - self.size
        if len(data) >= room:
            self.target.write(data[:room])
            self.size = self.limit
            raise _LayerFull(self.size)
        self.target.write(data)
        self.size += len(data)
        return len(data)


class _ZlibDecoder:
    """gzip or deflate (zlib-wrapped, or raw as some servers send it), 64 KiB a step."""

    def __init__(self, encoding: str, out: _Writer) -> None:
        self.encoding = encoding
        self.out = out
        self.first = True
        wbits = zlib.MAX_WBITS | 16 if encoding == "gzip" else zlib.MAX_WBITS
        self.d = zlib.decompressobj(wbits)

    def write(self, data: bytes) -> None:
        if self.d.eof:
            if data:
                raise _StreamEnd
            return
        first, self.first = self.first, False
        try:
            buf = data
            while True:
                chunk = self.d.decompress(buf, _STEP)
                if chunk:
                    self.out.write(chunk)
                if self.d.eof:
                    if self.d.unused_data:
                        raise _StreamEnd
                    return
                buf = self.d.unconsumed_tail
                if not buf and len(chunk) < _STEP:
                    return
        except zlib.error as exc:
            if first and self.encoding == "deflate":
                self.d = zlib.decompressobj(-zlib.MAX_WBITS)  # raw deflate, no zlib header
                self.write(data)
                return
            raise _CorruptData(self.encoding, str(exc)) from None


class _BrotliDecoder:
    def __init__(self, out: _Writer) -> None:
        assert _brotli is not None
        self.out = out
        self.d = _brotli.Decompressor()

    def write(self, data: bytes) -> None:
        assert _brotli is not None
        if self.d.is_finished():
            if data:
                raise _StreamEnd
            return
        try:
            self.out.write(self.d.process(data, output_buffer_limit=_STEP))
            while not self.d.can_accept_more_data():
                self.out.write(self.d.process(b"", output_buffer_limit=_STEP))
        except _brotli.error as exc:
            raise _CorruptData("br", str(exc) or "invalid data") from None


class _ZstdDecoder:
    """zstd through a stream writer that hands on 64 KiB at a time (several frames are fine)."""

    def __init__(self, out: _Writer) -> None:
        assert _zstandard is not None
        self.writer = _zstandard.ZstdDecompressor(max_window_size=_ZSTD_MAX_WINDOW).stream_writer(
            cast(IO[bytes], out), write_size=_STEP, write_return_read=True, closefd=False
        )

    def write(self, data: bytes) -> None:
        assert _zstandard is not None
        try:
            self.writer.write(data)
        except _zstandard.ZstdError as exc:
            raise _CorruptData("zstd", str(exc)) from None


def _decoder_chain(encodings: list[str], collected: _Collect, limit: int) -> _Writer:
    """The writer raw bytes go into: one decoder per encoding, each output capped."""
    head: _Writer = _Capped(collected, limit)
    for n, encoding in enumerate(encodings):  # the first listed was applied first: decoded last
        out = _Capped(head, limit) if n else head
        if encoding in ("gzip", "deflate"):
            head = _ZlibDecoder(encoding, out)
        elif encoding == "br":
            head = _BrotliDecoder(out)
        else:
            head = _ZstdDecoder(out)
    return head


def _content_encodings(response: httpx.Response, url: str, max_encodings: int) -> list[str]:
    """The body's encodings in the order they were applied; `ContentEncodingError` if one
    is unknown or there are more than `max_encodings` (identity is no encoding)."""
    found: list[str] = []
    for value in response.headers.get_list("content-encoding", split_commas=True):
        name = _ALIASES.get(value.strip().lower(), value.strip().lower())
        if name in ("", "identity"):
            continue
        if name not in SUPPORTED_ENCODINGS:
            raise ContentEncodingError(
                f"{url} is sent with Content-Encoding {value.strip()[:40]!r}, which the browser "
                f"does not decode (it decodes {', '.join(SUPPORTED_ENCODINGS)}); try another "
                "source"
            )
        found.append(name)
        if len(found) > max_encodings:
            raise ContentEncodingError(
                f"{url} is compressed more than {max_encodings} times over (Content-Encoding "
                f"{', '.join(found)}, ...); refused, try another source"
            )
    return found


class _closing:
    """Closes a streamed response even when we stop reading early."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response

    async def __aenter__(self) -> httpx.Response:
        return self.response

    async def __aexit__(self, *exc: object) -> None:
        await self.response.aclose()


def _content_type(header: str) -> tuple[str, str | None]:
    media_type, _, params = header.partition(";")
    charset = None
    for param in params.split(";"):
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset" and value.strip():
            charset = value.strip().strip("\"'").lower()
    return media_type.strip().lower(), charset


def _sniff(body: bytes) -> str | None:
    head = body[:1024]
    if head.startswith(b"%PDF-"):
        return "application/pdf"
    if b"\x00" in head:
        return None
    lowered = head.lstrip().lower()
    if lowered.startswith((b"<!doctype html", b"<html")) or b"<body" in lowered:
        return "text/html"
    return "text/plain"


def decode_body(body: bytes, declared: str | None, content_type: str = "text/html") -> str:
    """Bytes to text, trusting evidence over labels.

    Valid UTF-8 with non-ASCII bytes is almost never an accident, so it wins over a
    declared legacy charset (a common server misconfiguration). Otherwise the declared
    charset (header, then `<meta>`) is used if it decodes cleanly, then charset-normalizer's
    guess, then UTF-8 with replacement characters: decoding never fails.
    """
    try:
        return body.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    candidates = [declared]
    if "html" in content_type or "xml" in content_type:
        candidates.append(_meta_charset(body))
    for charset in candidates:
        if not charset:
            continue
        try:
            return body.decode(charset)
        except (UnicodeDecodeError, LookupError):
            continue
    from charset_normalizer import from_bytes

    matches = list(from_bytes(body[:200_000]))
    if matches:
        best = min(matches, key=lambda m: m.chaos)
        # windows-1252 is the web's default legacy encoding (WHATWG); on short Western
        # text the guesses are close, and a Baltic or Central European code page that
        # scores a hair better is usually the wrong answer.
        western = next((m for m in matches if m.encoding == "cp1252"), None)
        if western is not None and western.chaos <= best.chaos + 0.1:
            best = western
        try:
            return body.decode(best.encoding)
        except (UnicodeDecodeError, LookupError):
            pass
    return body.decode("utf-8", errors="replace")


def _meta_charset(body: bytes) -> str | None:
    import re

    match = re.search(rb"""<meta[^>]+charset\s*=\s*["']?([A-Za-z0-9_.:-]+)""", body[:4096], re.I)
    return match.group(1).decode("ascii").lower() if match else None
