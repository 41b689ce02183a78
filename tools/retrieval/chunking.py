"""Token-sized chunks that end at paragraph, sentence or heading boundaries.

"Tokens" here are words and punctuation marks (`\\w+|[^\\w\\s]`), and each Chinese or
Japanese character: a tokenizer-free count that runs anywhere and lands within ~30% of
BPE counts for English prose. A chunk is a contiguous span of the original text, so its
character offsets are exact and a citation can point back into the source.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace

__all__ = [
    "SEGMENT_CHARS",
    "Chunk",
    "chunk_text",
    "count_tokens",
    "fit_to_window",
    "iter_chunks",
    "segment_cut",
    "segments",
]

# Chinese and Japanese put no spaces between words, so there `\w+` would make a whole
# sentence (or paragraph) one "token" and a chunk could grow without bound: their
# characters count one by one, close to how subword tokenizers split them.
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff66-\uff9f"
_TOKEN = re.compile(rf"[{_CJK}]|(?:(?![{_CJK}])\w)+|[^\w\s]", re.UNICODE)
_BLOCK_SPLIT = re.compile(r"\n[ \t\r\f\v]*\n")
_HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.+?)[ \t#]*$")
_SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+")


@dataclass(frozen=True, slots=True)
class Chunk:
    index: int
    text: str
    char_start: int
    char_end: int
    token_start: int
    token_count: int
    heading: str | None = None


@dataclass(slots=True)
class _Unit:
    start: int  # token range [start, end)
    end: int
    heading: tuple[int, str] | None = None  # (level, text) when the unit is a heading line


def count_tokens(text: str) -> int:
    return sum(1 for _ in _TOKEN.finditer(text))


def _blocks(text: str, headings: bool) -> list[tuple[int, int, tuple[int, str] | None]]:
    """Paragraph spans, with heading lines split out as their own blocks."""
    out: list[tuple[int, int, tuple[int, str] | None]] = []
    pos = 0
    for match in [*_BLOCK_SPLIT.finditer(text), None]:
        end = match.start() if match else len(text)
        if headings:
            line_start = pos
            para_start = pos
            for line in text[pos:end].split("\n"):
                line_end = line_start + len(line)
                m = _HEADING.match(line)
                if m:
                    if para_start < line_start:
                        out.append((para_start, line_start, None))
                    out.append((line_start, line_end, (len(m.group(1)), m.group(2).strip())))
                    para_start = line_end + 1
                line_start = line_end + 1
            if para_start < end:
                out.append((para_start, end, None))
        else:
            out.append((pos, end, None))
        pos = match.end() if match else len(text)
    return out


def chunk_text(
    text: str, *, max_tokens: int = 200, overlap: int = 40, headings: bool = True
) -> list[Chunk]:
    """Split `text` into chunks of at most `max_tokens` tokens.

    Paragraphs are packed whole while they fit; a longer paragraph is split at sentence
    ends, and a longer sentence at token `max_tokens`. A heading always starts a new
    chunk and names the chunks under it. Consecutive chunks of one section share
    `overlap` tokens so that a passage cut at a boundary is still found whole; the
    overlap never reaches back across a heading.

    Working memory grows with the text (about 25 bytes per character); for long texts
    use `iter_chunks`, which works through them a segment at a time.
    """
    if max_tokens < 1:
        raise ValueError("max_tokens must be at least 1")
    if not 0 <= overlap < max_tokens:
        raise ValueError("overlap must be at least 0 and less than max_tokens")
    return _chunk(text, max_tokens, overlap, headings, [])[0]


# Segments of about this many characters are chunked one at a time by `iter_chunks`.
SEGMENT_CHARS = 128 * 1024


def segments(text: str, size: int = SEGMENT_CHARS) -> Iterator[str]:
    """`text` in consecutive pieces of about `size` characters, cut after a blank line
    (else after whitespace) so that no paragraph (or word) is split where avoidable."""
    pos = 0
    while len(text) - pos > size:
        cut = segment_cut(text, pos + size)
        yield text[pos:cut]
        pos = cut
    if pos < len(text):
        yield text[pos:]


def segment_cut(text: str, at: int, *, final: bool = True) -> int:
    """Where to cut `text` at or after `at`: after the first paragraph break, else after
    whitespace, else at `at` + `SEGMENT_CHARS`. With `final=False` (more text will come)
    a break that reaches the end of `text` is not trusted, and 0 means "read more"."""
    window = 4 * SEGMENT_CHARS
    for pattern in (_BLOCK_GAP, _SPACE_GAP):
        m = pattern.search(text, at, at + window)
        if m and (final or m.end() < len(text)):
            return m.end()
    if not final and len(text) < at + window:
        return 0
    return min(len(text), at + window)


_BLOCK_GAP = re.compile(r"\n[ \t\r\f\v]*\n\s*")
_SPACE_GAP = re.compile(r"\s+")


def iter_chunks(
    parts: Iterable[str], *, max_tokens: int = 200, overlap: int = 40, headings: bool = True
) -> Iterator[Chunk]:
    """`chunk_text` over a text given as consecutive `parts` (see `segments`), with
    memory bounded by the largest part: offsets, token positions, indexes and heading
    paths continue across parts; only the overlap does not reach back into the previous
    part."""
    if max_tokens < 1:
        raise ValueError("max_tokens must be at least 1")
    if not 0 <= overlap < max_tokens:
        raise ValueError("overlap must be at least 0 and less than max_tokens")
    heading_path: list[tuple[int, str]] = []
    char_base = token_base = index = 0
    for part in parts:
        chunks, heading_path, n_tokens = _chunk(part, max_tokens, overlap, headings, heading_path)
        for c in chunks:
            yield replace(
                c, index=index, char_start=c.char_start + char_base,
                char_end=c.char_end + char_base, token_start=c.token_start + token_base,
            )  # fmt: skip
            index += 1
        char_base += len(part)
        token_base += n_tokens


def _chunk(
    text: str,
    max_tokens: int,
    overlap: int,
    headings: bool,
    heading_path: list[tuple[int, str]],
) -> tuple[list[Chunk], list[tuple[int, str]], int]:
    """Chunks of `text`, the heading path at its end, and its token count."""
    spans = [(m.start(), m.end()) for m in _TOKEN.finditer(text)]
    if not spans:
        return [], heading_path, 0
    starts = [s for s, _ in spans]

    def token_range(a: int, b: int) -> tuple[int, int]:
        return bisect.bisect_left(starts, a), bisect.bisect_left(starts, b)

    units: list[_Unit] = []
    for a, b, heading in _blocks(text, headings):
        ta, tb = token_range(a, b)
        if ta == tb:
            continue
        if heading or tb - ta <= max_tokens:
            units.append(_Unit(ta, tb, heading))
            continue
        # Too long for one chunk: sentences, then fixed windows for run-on sentences.
        sent_start = a
        for m in [*_SENTENCE_END.finditer(text, a, b), None]:
            sent_end = m.start() if m else b
            sa, sb = token_range(sent_start, sent_end)
            for w in range(sa, sb, max_tokens):
                units.append(_Unit(w, min(w + max_tokens, sb)))
            sent_start = m.end() if m else b

    chunks: list[Chunk] = []
    heading_path = list(heading_path)
    section_start = 0  # first token of the current section; overlap stops there
    cur_start: int | None = None
    cur_end = 0
    cur_heading: str | None = None
    only_headings = False

    def flush() -> None:
        nonlocal cur_start
        if cur_start is None:
            return
        c0, c1 = spans[cur_start][0], spans[cur_end - 1][1]
        chunks.append(
            Chunk(len(chunks), text[c0:c1], c0, c1, cur_start, cur_end - cur_start, cur_heading)
        )
        cur_start = None

    for unit in units:
        if unit.heading is not None:
            level, _title = unit.heading
            heading_path = [h for h in heading_path if h[0] < level] + [unit.heading]
            label = " > ".join(h[1] for h in heading_path)
            if cur_start is not None and only_headings:
                # "# A" straight after "# B": one chunk holds both headings.
                cur_end, cur_heading = unit.end, label
                continue
            flush()
            cur_start, cur_end, cur_heading, only_headings = unit.start, unit.end, label, True
            section_start = unit.start
            continue
        if cur_start is None:
            cur_start, cur_end, only_headings = unit.start, unit.end, False
            cur_heading = " > ".join(h[1] for h in heading_path) or None
            continue
        if unit.end - cur_start <= max_tokens:
            cur_end, only_headings = unit.end, False
            continue
        prev_end = cur_end
        flush()
        room = max(0, min(overlap, max_tokens - (unit.end - unit.start)))
        start = max(prev_end - room, section_start, unit.start - room)
        # Overlap only when the previous chunk ends where this unit starts (not across
        # a gap left by a heading-only chunk) and never start before the section.
        start = min(start, unit.start)
        cur_start, cur_end, only_headings = start, unit.end, False
        cur_heading = " > ".join(h[1] for h in heading_path) or None
    flush()
    return chunks, heading_path, len(spans)


def fit_to_window(
    chunks: list[Chunk], *, limit: int, count: Callable[[str], int], overlap: int = 40
) -> list[Chunk]:
    """Chunks re-split where an embedder's own tokenizer counts more than `limit` tokens.

    Our word count runs ~30% under subword counts for English and more for German
    compounds or code; a chunk past the embedding model's input window would have its
    tail cut off silently. Such a chunk is split again, by the same rules, with a budget
    scaled by how far over it was; offsets stay exact and indexes are renumbered.
    """
    out: list[Chunk] = []
    for chunk in chunks:
        n = count(chunk.text)
        if n <= limit or chunk.token_count <= 1:
            out.append(chunk)
            continue
        budget = max(1, min(chunk.token_count - 1, int(chunk.token_count * limit / n * 0.9)))
        parts = chunk_text(
            chunk.text, max_tokens=budget, overlap=min(overlap, budget // 4), headings=False
        )
        # Subword-dense stretches (hex, code) can still be over: fit the parts in turn.
        for part in fit_to_window(parts, limit=limit, count=count, overlap=overlap):
            out.append(
                replace(
                    part,
                    char_start=chunk.char_start + part.char_start,
                    char_end=chunk.char_start + part.char_end,
                    token_start=chunk.token_start + part.token_start,
                    heading=chunk.heading,
                )
            )
    return [replace(c, index=i) for i, c in enumerate(out)]
