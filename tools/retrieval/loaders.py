"""Files to text: plain text, Markdown, HTML, PDF, CSV and JSON.

Each loader keeps the structure the chunker needs: paragraphs separated by blank lines
and headings as Markdown `#` lines (HTML headings are rewritten that way). Every failure
is a `DocumentError` subclass naming the file and what to do.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import json
import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from harmonygraph.tools.retrieval.chunking import SEGMENT_CHARS, segment_cut
from harmonygraph.tools.retrieval.errors import (
    EmptyDocumentError,
    FileTooLargeError,
    UnreadableDocumentError,
    UnsupportedFileError,
)

__all__ = [
    "DEFAULT_MAX_BYTES",
    "FORMATS",
    "MAX_JSON_DEPTH",
    "STREAM_BYTES",
    "LoadedDocument",
    "TextStream",
    "detect_format",
    "document_from_text",
    "load_bytes",
    "load_path",
    "open_file",
    "open_text_stream",
]

# 50 MB: larger files are nearly always dumps or archives, and would hold one ingest
# transaction open for minutes. Raise it with HARMONYGRAPH_MAX_FILE_MB or max_bytes.
DEFAULT_MAX_BYTES = int(float(os.environ.get("HARMONYGRAPH_MAX_FILE_MB", "50")) * 1024 * 1024)

# Text and Markdown files over this size are read, chunked and stored a segment at a
# time (`open_text_stream`), so memory stays bounded whatever their size.
STREAM_BYTES = 2 * 1024 * 1024
# JSON nested deeper than this is refused (a document has a handful of levels; deep
# nesting is a parser-stack attack).
MAX_JSON_DEPTH = 100
_READ_BLOCK = 1024 * 1024

FORMATS: dict[str, str] = {
    ".txt": "text", ".text": "text", ".log": "text", ".rst": "text",
    ".md": "markdown", ".markdown": "markdown", ".mdx": "markdown",
    ".html": "html", ".htm": "html", ".xhtml": "html",
    ".pdf": "pdf",
    ".csv": "csv", ".tsv": "csv",
    ".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl",
}  # fmt: skip


@dataclass(slots=True)
class LoadedDocument:
    source: str  # a URI: file path, `doc://...`
    title: str
    text: str
    format: str
    content_hash: str  # sha256 of the raw bytes: the idempotency key
    metadata: dict[str, Any] = field(default_factory=dict)
    page_starts: list[int] | None = None  # PDF: character offset where each page begins

    def page_of(self, char_offset: int) -> int | None:
        if not self.page_starts:
            return None
        page = 0
        for i, start in enumerate(self.page_starts):
            if start <= char_offset:
                page = i
        return page + 1


def detect_format(path: Path, head: bytes) -> str:
    fmt = FORMATS.get(path.suffix.lower())
    if fmt:
        return fmt
    if head.startswith(b"%PDF-"):
        return "pdf"
    return "text"


def _looks_binary(data: bytes) -> bool:
    head = data[:8192]
    if b"\x00" in head:
        return True
    # Control characters other than whitespace are rare in text of any encoding.
    controls = sum(1 for b in head if b < 32 and b not in (9, 10, 12, 13, 27))
    return controls > len(head) * 0.05


def _decode(data: bytes, source: str) -> str:
    if _looks_binary(data):
        raise UnsupportedFileError(
            f"{source}: looks binary (NUL or control bytes), not text; convert it to text, "
            "Markdown, HTML, PDF, CSV or JSON first",
            source,
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    try:
        from charset_normalizer import from_bytes

        best = from_bytes(data).best()
        if best is not None:
            return str(best)
    except ImportError:
        pass
    # Latin-1 decodes anything; the binary test above already refused non-text.
    return data.decode("latin-1")


def _clean(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def _title_from(text: str, fallback: str) -> str:
    for line in text.splitlines():
        m = re.match(r"^ {0,3}#{1,6}\s+(.+?)\s*#*$", line)
        if m:
            return m.group(1)[:200]
    return fallback


def _markdown(text: str) -> tuple[str, dict[str, Any]]:
    """Split off YAML front matter; its scalar fields become document metadata."""
    meta: dict[str, Any] = {}
    m = re.match(r"^---\n(.*?)\n---\n", text, re.DOTALL)
    if m:
        try:
            from harmonygraph.safe_yaml import load_yaml

            # No aliases, bounded values and nesting: front matter is data from the file.
            data = load_yaml(m.group(1))
        except Exception:  # broken or refused front matter is kept as text, not lost
            data = None
        if isinstance(data, dict):
            meta = {str(k): v for k, v in data.items() if isinstance(v, str | int | float | bool)}
            text = text[m.end() :]
    return text, meta


_BLOCK_TAGS = {
    "p", "div", "section", "article", "main", "aside", "header", "footer", "li", "ul", "ol",
    "table", "tr", "blockquote", "pre", "figure", "figcaption", "dl", "dt", "dd", "form",
    "br", "hr", "nav", "address", "details", "summary",
}  # fmt: skip
_DROP_TAGS = {"script", "style", "noscript", "template", "svg", "head", "iframe", "canvas"}


def _html(data: bytes, source: str) -> tuple[str, str | None]:
    import lxml.html
    from lxml import etree

    try:
        root = lxml.html.document_fromstring(data)
    except (etree.ParserError, ValueError) as exc:
        raise UnreadableDocumentError(f"{source}: not parseable as HTML ({exc})", source) from exc
    title_el = root.find(".//title")
    title = (title_el.text_content().strip() or None) if title_el is not None else None
    parts: list[str] = []

    def walk(el: Any) -> None:
        tag = el.tag if isinstance(el.tag, str) else ""
        if tag in _DROP_TAGS:
            if el.tail:
                parts.append(el.tail)
            return
        if re.fullmatch(r"h[1-6]", tag):
            heading = " ".join(el.text_content().split())
            if heading:
                parts.append(f"\n\n{'#' * int(tag[1])} {heading}\n\n")
        else:
            if tag in _BLOCK_TAGS:
                parts.append("\n\n")
            if el.text:
                parts.append(el.text)
            for child in el:
                walk(child)
            if tag in _BLOCK_TAGS:
                parts.append("\n\n")
        if el.tail:
            parts.append(el.tail)

    walk(root)
    paragraphs = [" ".join(p.split()) for p in re.split(r"\n\s*\n", "".join(parts))]
    return "\n\n".join(p for p in paragraphs if p), title


def _pdf(data: bytes, source: str) -> tuple[str, list[int], dict[str, Any]]:
    try:
        from pypdf import PdfReader
        from pypdf.errors import PdfReadError
    except ImportError as exc:
        raise UnsupportedFileError(
            f"{source}: reading PDF needs pypdf (pip install 'harmonygraph[retrieval]')", source
        ) from exc
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise UnreadableDocumentError(
                f"{source}: the PDF is encrypted with a password; decrypt it first", source
            )
        pages = [page.extract_text() or "" for page in reader.pages]
        info = reader.metadata
        title = str(info.title) if info and info.title else None
    except UnreadableDocumentError:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError, AttributeError, OSError) as exc:
        raise UnreadableDocumentError(
            f"{source}: not a readable PDF ({type(exc).__name__}: {exc}); "
            "the file is damaged or not a PDF",
            source,
        ) from exc
    text_parts: list[str] = []
    starts: list[int] = []
    pos = 0
    for page in pages:
        cleaned = _clean(page)
        starts.append(pos)
        text_parts.append(cleaned)
        pos += len(cleaned) + 2
    meta: dict[str, Any] = {"pages": len(pages)}
    if title:
        meta["pdf_title"] = title
    return "\n\n".join(text_parts), starts, meta


def _csv(text: str, source: str) -> tuple[str, dict[str, Any]]:
    sample = text[:8192]
    try:
        dialect: Any = csv.Sniffer().sniff(sample, delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel
    try:
        rows = [r for r in csv.reader(io.StringIO(text), dialect) if any(c.strip() for c in r)]
    except csv.Error as exc:
        raise UnreadableDocumentError(
            f"{source}: not a readable table ({exc}); if it is not really a table, give it "
            "a .txt extension to index it as text",
            source,
        ) from None
    if not rows:
        return "", {}
    # csv.Sniffer.has_header misjudges all-text tables; a first row of distinct,
    # non-empty, non-numeric cells is a header in practice.
    first = [c.strip() for c in rows[0]]
    has_header = (
        len(rows) > 1
        and len(set(first)) == len(first)
        and all(c and not re.fullmatch(r"[-+]?[\d.,]+%?", c) for c in first)
    )
    header = rows[0] if has_header else [f"column {i + 1}" for i in range(len(rows[0]))]
    body = rows[1:] if has_header else rows
    # One paragraph per row, "column: value" so that each value keeps its meaning.
    paragraphs = []
    for row in body:
        cells = [
            f"{header[i] if i < len(header) else f'column {i + 1}'}: {v.strip()}"
            for i, v in enumerate(row)
            if v.strip()
        ]
        paragraphs.append("; ".join(cells))
    return "\n\n".join(paragraphs), {"rows": len(body), "columns": header}


def _flatten(value: Any, prefix: str = "") -> list[str]:
    if isinstance(value, dict):
        lines = []
        for k, v in value.items():
            lines += _flatten(v, f"{prefix}.{k}" if prefix else str(k))
        return lines
    if isinstance(value, list):
        if all(not isinstance(v, dict | list) for v in value):
            return [f"{prefix}: {', '.join(str(v) for v in value)}"] if value else []
        lines = []
        for i, v in enumerate(value):
            lines += _flatten(v, f"{prefix}[{i}]")
        return lines
    if value is None:
        return []
    return [f"{prefix}: {value}" if prefix else str(value)]


def _depth_over(value: Any, limit: int) -> bool:
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)
    return False


def _json(text: str, source: str, lines: bool) -> tuple[str, str | None]:
    try:
        if lines:
            records = [json.loads(line) for line in text.splitlines() if line.strip()]
            value: Any = records
        else:
            value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UnreadableDocumentError(
            f"{source}: invalid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})", source
        ) from exc
    except RecursionError:
        raise UnreadableDocumentError(
            f"{source}: JSON nested too deeply to parse (over {MAX_JSON_DEPTH} levels); "
            "flatten it, or give it a .txt extension to index it as text",
            source,
        ) from None
    except ValueError as exc:  # an integer past Python's digit limit, and the like
        raise UnreadableDocumentError(
            f"{source}: unusable JSON ({str(exc)[:160]})", source
        ) from None
    if _depth_over(value, MAX_JSON_DEPTH):
        raise UnreadableDocumentError(
            f"{source}: JSON nested more than {MAX_JSON_DEPTH} levels deep; flatten it, or "
            "give it a .txt extension to index it as text",
            source,
        )
    title = None
    if isinstance(value, dict):
        for key in ("title", "name"):
            if isinstance(value.get(key), str):
                title = value[key]
                break
        items = list(value.items())
        paragraphs = ["\n".join(_flatten(v, str(k))) for k, v in items]
    elif isinstance(value, list):
        # A list of records: one paragraph each, so records are not cut in half.
        paragraphs = ["\n".join(_flatten(v)) for v in value]
    else:
        paragraphs = _flatten(value)
    return "\n\n".join(p for p in paragraphs if p.strip()), title


def load_bytes(
    data: bytes,
    *,
    source: str,
    format: str = "text",
    title: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> LoadedDocument:
    """Turn raw bytes of a known format into text; raise a `DocumentError` if unusable."""
    digest = hashlib.sha256(data).hexdigest()
    meta: dict[str, Any] = {}
    page_starts = None
    found_title: str | None = None
    if not data.strip():
        raise EmptyDocumentError(f"{source}: the file is empty; nothing to index", source)
    if format == "pdf":
        text, page_starts, meta = _pdf(data, source)
        found_title = meta.pop("pdf_title", None)
        if not text.strip():
            raise EmptyDocumentError(
                f"{source}: the PDF has no extractable text (scanned images?); "
                "run OCR (e.g. ocrmypdf) and index the result",
                source,
            )
    else:
        raw = _decode(data, source)
        try:
            if format == "html":
                text, found_title = _html(data, source)
            elif format == "markdown":
                text, meta = _markdown(_clean(raw))
                found_title = (
                    str(meta["title"]) if "title" in meta else _title_from(text, "") or None
                )
            elif format == "csv":
                text, meta = _csv(raw, source)
            elif format in ("json", "jsonl"):
                text, found_title = _json(raw, source, lines=format == "jsonl")
            elif format == "text":
                text = raw
            else:
                raise UnsupportedFileError(f"{source}: unknown format {format!r}", source)
        except RecursionError:
            raise UnreadableDocumentError(
                f"{source}: nested too deeply to read as {format}; give it a .txt extension "
                "to index it as text",
                source,
            ) from None
        text = _clean(text)
    if not text.strip():
        raise EmptyDocumentError(f"{source}: no text found in the {format} file", source)
    fallback = Path(source).name if "://" not in source else source
    return LoadedDocument(
        source=source,
        title=(title or found_title or fallback).strip()[:300],
        text=text,
        format=format,
        content_hash=digest,
        metadata={**meta, **(metadata or {})},
        page_starts=page_starts,
    )


def open_file(path: Path, *, follow_links: bool = True) -> tuple[IO[bytes], int]:
    """A regular file opened for reading, and its size; a `DocumentError` otherwise.

    The file is opened first and checked after (on the open descriptor), so it cannot be
    swapped between the check and the read. `follow_links=False` refuses a symbolic link
    in the last component (`O_NOFOLLOW`); FIFOs and devices never block or get read.
    """
    source = str(path)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)
    if not follow_links:
        flags |= getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if not follow_links and path.is_symlink():
            raise UnsupportedFileError(
                f"{source}: a symbolic link; links are not followed unless asked "
                "(--follow-links, or name the target itself)",
                source,
            ) from None
        raise UnreadableDocumentError(f"{source}: cannot read ({exc.strerror})", source) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UnsupportedFileError(f"{source}: not a regular file", source)
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb"), info.st_size
    except BaseException:
        os.close(fd)
        raise


def _check_size(source: str, size: int, max_bytes: int) -> None:
    if size > max_bytes:
        raise FileTooLargeError(
            f"{source}: {size / 1e6:.1f} MB is over the {max_bytes / 1e6:.0f} MB limit; split the "
            "file or raise HARMONYGRAPH_MAX_FILE_MB",
            source,
        )


def load_path(
    path: str | Path,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    metadata: dict[str, Any] | None = None,
    follow_links: bool = True,
) -> LoadedDocument:
    """Read one file whole, refusing before reading it when it is over `max_bytes`.

    For text and Markdown over `STREAM_BYTES`, `open_text_stream` keeps memory bounded.
    """
    p = Path(path).expanduser()
    source = str(p.resolve()) if follow_links else str(p.parent.resolve() / p.name)
    f, size = open_file(p, follow_links=follow_links)
    with f:
        _check_size(source, size, max_bytes)
        try:
            data = f.read(max_bytes + 1)
        except OSError as exc:
            raise UnreadableDocumentError(
                f"{source}: cannot read ({exc.strerror})", source
            ) from exc
    _check_size(source, len(data), max_bytes)  # grew since the check
    fmt = detect_format(p, data[:8])
    meta = {"filename": p.name, "bytes": len(data), **(metadata or {})}
    return load_bytes(data, source=source, format=fmt, metadata=meta)


@dataclass
class TextStream:
    """A text or Markdown file read a segment at a time (see `open_text_stream`).

    `segments()` yields the cleaned text in pieces of about `SEGMENT_CHARS` that end
    after a paragraph break; `chars`, `title` and `metadata` are final once it is spent.
    It raises `UnreadableDocumentError` if the file changed since it was opened.
    """

    path: Path
    source: str
    format: str
    size: int
    content_hash: str
    encoding: str
    follow_links: bool
    title: str
    metadata: dict[str, Any]
    chars: int = 0
    _title_found: bool = False

    def document(self) -> LoadedDocument:
        """The document's record (its text is not held: it is in the chunks)."""
        return LoadedDocument(
            source=self.source, title=self.title[:300], text="", format=self.format,
            content_hash=self.content_hash, metadata=self.metadata,
        )  # fmt: skip

    def segments(self) -> Iterator[str]:
        self.chars = 0
        decoder = codecs.getincrementaldecoder(self.encoding)(errors="replace")
        digest = hashlib.sha256()
        buf = ""
        started = pending_cr = False
        f, _ = open_file(self.path, follow_links=self.follow_links)
        with f:
            while True:
                block = f.read(_READ_BLOCK)
                final = not block
                digest.update(block)
                text = ("\r" if pending_cr else "") + decoder.decode(block, final=final)
                pending_cr = not final and text.endswith("\r")
                if pending_cr:
                    text = text[:-1]
                buf += text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
                if not started:
                    buf = buf.lstrip()
                    if not buf or (self.format == "markdown" and not final and len(buf) < 65536):
                        if final:
                            break
                        continue  # front matter needs the file's start in one piece
                while buf:
                    if len(buf) > SEGMENT_CHARS:
                        cut = segment_cut(buf, SEGMENT_CHARS, final=final)
                    else:
                        cut = len(buf) if final else 0
                    if not cut:
                        break
                    piece, buf = buf[:cut], buf[cut:]
                    if final and not buf:
                        piece = piece.rstrip()
                    piece = re.sub(r"\n{3,}", "\n\n", piece)
                    if not started:
                        started = True
                        piece = self._first(piece)
                    if not self._title_found and self.format == "markdown":
                        if found := _title_from(piece, ""):
                            self.title, self._title_found = found, True
                    if piece:
                        self.chars += len(piece)
                        yield piece
                if final:
                    break
        if digest.hexdigest() != self.content_hash:
            raise UnreadableDocumentError(
                f"{self.source}: the file changed while it was being indexed; index it again",
                self.source,
            )

    def _first(self, piece: str) -> str:
        if self.format != "markdown":
            return piece
        piece, meta = _markdown(piece)
        self.metadata = {**meta, **self.metadata}
        if "title" in meta:
            self.title, self._title_found = str(meta["title"]), True
        return piece.lstrip()


def open_text_stream(
    path: str | Path,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    metadata: dict[str, Any] | None = None,
    follow_links: bool = True,
) -> TextStream:
    """A large text or Markdown file as a `TextStream`: one pass here hashes it, refuses
    binary content and picks the encoding (UTF-8, else detected from its start); the
    text is then produced a segment at a time, in bounded memory."""
    p = Path(path).expanduser()
    source = str(p.resolve()) if follow_links else str(p.parent.resolve() / p.name)
    f, size = open_file(p, follow_links=follow_links)
    digest = hashlib.sha256()
    utf8 = codecs.getincrementaldecoder("utf-8-sig")()
    is_utf8 = True
    head = b""
    with f:
        _check_size(source, size, max_bytes)
        read = 0
        while block := f.read(_READ_BLOCK):
            if not head:
                head = block
                if _looks_binary(head):
                    raise UnsupportedFileError(
                        f"{source}: looks binary (NUL or control bytes), not text; convert it "
                        "to text, Markdown, HTML, PDF, CSV or JSON first",
                        source,
                    )
            read += len(block)
            _check_size(source, read, max_bytes)
            digest.update(block)
            if is_utf8:
                try:
                    utf8.decode(block)
                except UnicodeDecodeError:
                    is_utf8 = False
    if not head.strip():
        raise EmptyDocumentError(f"{source}: the file is empty; nothing to index", source)
    encoding = "utf-8-sig"
    if not is_utf8:
        encoding = "latin-1"
        try:
            from charset_normalizer import from_bytes

            best = from_bytes(head).best()
            if best is not None:
                encoding = best.encoding
        except ImportError:
            pass
    fmt = detect_format(p, head[:8])
    if fmt not in ("text", "markdown"):
        raise UnsupportedFileError(f"{source}: only text and Markdown are streamed", source)
    return TextStream(
        path=p, source=source, format=fmt, size=read, content_hash=digest.hexdigest(),
        encoding=encoding, follow_links=follow_links, title=p.name,
        metadata={"filename": p.name, "bytes": read, **(metadata or {})},
    )  # fmt: skip


def document_from_text(
    text: str,
    *,
    source: str | None = None,
    title: str | None = None,
    format: str = "text",
    metadata: dict[str, Any] | None = None,
) -> LoadedDocument:
    data = text.encode("utf-8")
    src = source or f"doc://{hashlib.sha256(data).hexdigest()[:16]}"
    return load_bytes(data, source=src, format=format, title=title, metadata=metadata)
