"""Loaders and chunking: every format, and every kind of bad file, without a database."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from harmonygraph.tools.retrieval import (
    EmptyDocumentError,
    FileTooLargeError,
    UnreadableDocumentError,
    UnsupportedFileError,
    chunk_text,
    load_path,
)
from harmonygraph.tools.retrieval.chunking import count_tokens


def make_pdf(pages: list[str]) -> bytes:
    """A real, minimal PDF (one Helvetica text line per page) with a correct xref table."""
    objects: list[bytes] = []
    n = len(pages)
    kids = " ".join(f"{3 + 2 * i} 0 R" for i in range(n))
    objects.append(b"<< /Type /Catalog /Pages 2 0 R >>")
    objects.append(f"<< /Type /Pages /Kids [{kids}] /Count {n} >>".encode())
    font_id = 3 + 2 * n
    for i, text in enumerate(pages):
        content = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {4 + 2 * i} 0 R "
            f"/Resources << /Font << /F1 {font_id} 0 R >> >> >>".encode()
        )
        objects.append(b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream")
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for i, obj in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + obj + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


def test_markdown_keeps_front_matter_and_headings(docs_dir: Path) -> None:
    doc = load_path(docs_dir / "leave.md")
    assert doc.format == "markdown"
    assert doc.title == "Leave policy"
    assert doc.metadata["owner"] == "hr"
    assert "---" not in doc.text and doc.text.startswith("# Leave policy")


def test_html_drops_scripts_and_turns_headings_into_markdown(docs_dir: Path) -> None:
    doc = load_path(docs_dir / "servers.html")
    assert doc.title == "Server room"
    assert "secret" not in doc.text and "color" not in doc.text
    assert "# Server room" in doc.text and "## Access" in doc.text
    chunks = chunk_text(doc.text, max_tokens=20, overlap=0)
    assert [c.heading for c in chunks] == ["Server room", "Server room > Access"]


def test_csv_rows_become_paragraphs(docs_dir: Path) -> None:
    doc = load_path(docs_dir / "staff.csv")
    assert doc.text.split("\n\n") == [
        "name: Ada; role: engineer; city: London",
        "name: Grace; role: admiral; city: Arlington",
    ]
    assert doc.metadata["rows"] == 2


def test_json_is_flattened_with_paths(docs_dir: Path, tmp_path: Path) -> None:
    doc = load_path(docs_dir / "config.json")
    assert doc.title == "Deployment"
    assert "region: eu-west" in doc.text and "owners: ops, sre" in doc.text
    lines = tmp_path / "events.jsonl"
    lines.write_text('{"event": "deploy", "by": {"name": "ada"}}\n{"event": "rollback"}\n')
    assert load_path(lines).text == "event: deploy\nby.name: ada\n\nevent: rollback"


def test_pdf_text_and_pages(tmp_path: Path) -> None:
    path = tmp_path / "report.pdf"
    path.write_bytes(make_pdf(["Revenue grew strongly", "Costs fell sharply"]))
    doc = load_path(path)
    assert doc.format == "pdf" and doc.metadata["pages"] == 2
    assert "Revenue grew strongly" in doc.text and "Costs fell sharply" in doc.text
    assert doc.page_of(doc.text.index("Costs")) == 2
    assert doc.page_of(0) == 1


def test_empty_files_are_refused(tmp_path: Path) -> None:
    for name, data in [("empty.txt", b""), ("blank.md", b"  \n\n \t\n")]:
        (tmp_path / name).write_bytes(data)
        with pytest.raises(EmptyDocumentError, match="empty"):
            load_path(tmp_path / name)
    (tmp_path / "empty.json").write_text("[]")
    with pytest.raises(EmptyDocumentError, match="no text"):
        load_path(tmp_path / "empty.json")


def test_binary_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "image.txt"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 4)
    with pytest.raises(UnsupportedFileError, match="binary"):
        load_path(path)


def test_unreadable_pdf_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "broken.pdf"
    path.write_bytes(b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 9 0 R >> garbage" * 3)
    with pytest.raises(UnreadableDocumentError, match="not a readable PDF"):
        load_path(path)
    textless = tmp_path / "scan.pdf"
    textless.write_bytes(make_pdf([""]))
    with pytest.raises(EmptyDocumentError, match="OCR"):
        load_path(textless)


def test_invalid_json_names_the_position(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{"a": 1,,}')
    with pytest.raises(UnreadableDocumentError, match="line 1 column 9"):
        load_path(path)


def test_hundred_megabyte_file_is_refused_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "dump.txt"
    with path.open("wb") as f:  # sparse: 100 MB on paper, nothing on disk
        f.truncate(100 * 1024 * 1024)
    with pytest.raises(FileTooLargeError, match=r"104\.9 MB is over the 52 MB limit"):
        load_path(path)


def test_chunks_are_exact_spans_within_the_token_budget() -> None:
    paragraphs = [" ".join(f"word{p}_{i}" for i in range(30)) + "." for p in range(10)]
    text = "\n\n".join(paragraphs)
    chunks = chunk_text(text, max_tokens=70, overlap=10, headings=False)
    assert len(chunks) > 1
    for c in chunks:
        assert text[c.char_start : c.char_end] == c.text
        assert c.token_count <= 70 and count_tokens(c.text) == c.token_count
    # Consecutive chunks share exactly the overlap, and every token is covered.
    for a, b in itertools.pairwise(chunks):
        assert b.token_start == a.token_start + a.token_count - 10
    last = chunks[-1]
    assert last.token_start + last.token_count == count_tokens(text)


def test_long_paragraph_splits_at_sentence_ends() -> None:
    sentences = [f"Sentence {i} talks about topic {i} at some length here." for i in range(12)]
    text = " ".join(sentences)
    chunks = chunk_text(text, max_tokens=25, overlap=0, headings=False)
    assert all(c.text.endswith(".") for c in chunks)
    assert "".join(c.text for c in chunks).replace(" ", "") == text.replace(" ", "")


def test_chinese_and_japanese_count_by_character() -> None:
    """No spaces between words must not make a paragraph one token and a chunk unbounded."""
    text = "谷歌在2014年收购的人工智能公司开发出一款计算机。" * 40
    assert count_tokens("谷歌在2014年收购 hello, world") == 10
    chunks = chunk_text(text, max_tokens=50, overlap=0, headings=False)
    assert len(chunks) > 10 and all(c.token_count <= 50 for c in chunks)


def test_chunks_are_split_again_to_fit_an_embedders_window() -> None:
    """A tokenizer that counts more than our words (long compounds) gets chunks that fit."""
    from harmonygraph.tools.retrieval.chunking import fit_to_window

    words = [f"Donaudampfschifffahrtsgesellschaft{i}" for i in range(120)]
    text = "# Kapitel\n\n" + " ".join(words) + "."
    chunks = chunk_text(text, max_tokens=100, overlap=10)

    def subwords(s: str) -> int:  # as a subword tokenizer would: ~6 pieces a long word
        return sum(max(1, len(w) // 6) for w in s.split())

    assert any(subwords(c.text) > 120 for c in chunks)
    fitted = fit_to_window(chunks, limit=120, count=subwords, overlap=10)
    assert all(subwords(c.text) <= 120 for c in fitted)
    assert [c.index for c in fitted] == list(range(len(fitted)))
    for c in fitted:
        assert text[c.char_start : c.char_end] == c.text and c.heading == "Kapitel"
    assert " ".join(w for c in fitted for w in c.text.split()).count("Donau") >= 120

    # Subword-dense stretches late in a chunk (hex strings): split again until all fit.
    mixed = " ".join([f"word{i}" for i in range(150)] + [f"{i:080x}" for i in range(50)])

    def pieces(s: str) -> int:
        return sum(40 if len(w) > 20 else 1 for w in s.split())

    parts = fit_to_window(
        chunk_text(mixed, max_tokens=200, headings=False), limit=510, count=pieces
    )
    assert max(pieces(c.text) for c in parts) <= 510
    assert all(mixed[c.char_start : c.char_end] == c.text for c in parts)


def test_headings_start_chunks_and_stop_overlap() -> None:
    text = "# A\n\n" + "alpha " * 30 + "\n\n## B\n\n" + "beta " * 10 + "\n\n# C\n\ngamma"
    chunks = chunk_text(text, max_tokens=20, overlap=5)
    assert [c.heading for c in chunks] == ["A", "A", "A", "A > B", "C"]
    assert chunks[3].text.startswith("## B") and "alpha" not in chunks[3].text
    assert chunks[4].text == "# C\n\ngamma"


def _write_text(path: Path, paragraphs: int) -> int:
    words = "alpha beta gamma delta policy server budget leave revenue board".split()
    with path.open("w") as f:
        for i in range(paragraphs):
            heading = f"# Part {i}\n\n" if i % 500 == 0 else ""
            f.write(heading + " ".join(words[(i + k) % 10] for k in range(60)) + f" r{i}.\r\n\r\n")
    return path.stat().st_size


def _streamed_peak(path: Path) -> tuple[int, list[tuple[int, int, int, str | None]]]:
    import tracemalloc

    from harmonygraph.tools.retrieval.chunking import iter_chunks
    from harmonygraph.tools.retrieval.loaders import open_text_stream

    tracemalloc.start()
    try:
        stream = open_text_stream(path)
        kept: list[tuple[int, int, int, str | None]] = []
        for c in iter_chunks(stream.segments(), headings=True):
            kept.append((c.index, c.char_start, c.char_end, c.heading))
        return tracemalloc.get_traced_memory()[1], kept
    finally:
        tracemalloc.stop()


def test_streamed_reading_and_chunking_use_bounded_memory(tmp_path: Path) -> None:
    """Peak traced memory of reading and chunking a text file a segment at a time does
    not grow with the file: 4x the file, about the same peak (the whole-file path needs
    ~25 bytes per character). Chunk offsets are exact and the text equals a whole load."""
    small, big = tmp_path / "small.md", tmp_path / "big.md"
    small_size = _write_text(small, 2_500)
    big_size = _write_text(big, 10_000)
    assert big_size > 4 * small_size * 0.99
    small_peak, _ = _streamed_peak(small)
    big_peak, chunks = _streamed_peak(big)
    assert big_peak < small_peak * 1.5 + 1_000_000, (small_peak, big_peak)
    assert big_peak < 32_000_000  # whole-file chunking of this file takes ~100 MB
    text = load_path(big).text
    assert [c[0] for c in chunks] == list(range(len(chunks)))
    whole = chunk_text(text)
    assert abs(len(chunks) - len(whole)) <= len(whole) // 20 and chunks[-1][2] == len(text)
    assert text[chunks[-1][1] : chunks[-1][2]].endswith("r9999.")
    assert {c[3] for c in chunks} == {c.heading for c in whole}
