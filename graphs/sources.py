"""The sources a run saw, read from its trace, and the check of a section's citations.

Three kinds of source, as the tools report them:

- web: a `browser.*` result, `metadata` {cursor, url, title, kind, start, end, total_lines,
  lines}; cited as 【cursor†La-Lb】.
- document: a `functions.search_documents` result, `metadata["hits"]` (each with `id`
  `doc:<document>#<chunk>`, title, url, text); cited as [doc:<document>#<chunk>].
- data: a file the `python` tool saved (`artifacts`, and `metadata["files"]`), cited as
  [data:<file name>]; PNG files can also be a section's figures.

An invented citation (a cursor never shown, lines past the page's end, a chunk never
retrieved, a file never written) is an error the model is asked to fix.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from harmonygraph.graphs.report_models import Citation, Figure, FigureDraft, SectionDraft

__all__ = [
    "CITATION_MARKER",
    "DataSource",
    "DocumentSource",
    "SourceLedger",
    "WebSource",
    "check_draft",
]

WEB_MARKER = r"【(?P<cursor>\d+)†L(?P<start>\d+)(?:\s*-\s*L?(?P<end>\d+))?】"
DOC_MARKER = r"\[(?P<doc>doc:\d+#\d+)\]"
DATA_MARKER = r"\[data:(?P<data>[^\]\s]+)\]"
CITATION_MARKER = re.compile(f"{WEB_MARKER}|{DOC_MARKER}|{DATA_MARKER}")
# Things that look like citations but follow no format we can resolve: the model is told.
_LOOSE = re.compile(r"【[^】]*】|\[(?:doc|data|source|ref)[:#][^\]]*\]")


@dataclass(frozen=True, slots=True)
class WebSource:
    cursor: int
    url: str
    title: str
    kind: str
    total_lines: int
    lines: dict[int, str]


@dataclass(frozen=True, slots=True)
class DocumentSource:
    id: str
    title: str
    url: str
    text: str


@dataclass(frozen=True, slots=True)
class DataSource:
    name: str
    path: Path | None
    mime_type: str
    description: str = ""


@dataclass
class SourceLedger:
    """What a run (or several) saw; built from traces or given by an earlier step."""

    web: dict[int, WebSource] = field(default_factory=dict)
    documents: dict[str, DocumentSource] = field(default_factory=dict)
    data: dict[str, DataSource] = field(default_factory=dict)

    def merge(self, other: SourceLedger) -> SourceLedger:
        # Browser cursors are per run: a later run's cursor numbers replace earlier ones.
        return SourceLedger(
            web={**self.web, **other.web},
            documents={**self.documents, **other.documents},
            data={**self.data, **other.data},
        )

    def is_empty(self) -> bool:
        return not (self.web or self.documents or self.data)

    # -- building ------------------------------------------------------------------
    @classmethod
    def from_trace_records(cls, records: Iterable[dict[str, Any]]) -> SourceLedger:
        ledger = cls()
        for rec in records:
            if rec.get("type") == "tool_call" and not rec.get("is_error"):
                ledger.add_tool_result(
                    str(rec.get("recipient") or ""),
                    rec.get("metadata") or {},
                    rec.get("artifacts") or [],
                )
        return ledger

    def add_tool_result(
        self, recipient: str, metadata: dict[str, Any], artifacts: Iterable[dict[str, Any]]
    ) -> None:
        if recipient.startswith("browser.") and "cursor" in metadata:
            lines = {int(k): str(v) for k, v in (metadata.get("lines") or {}).items()}
            cursor = int(metadata["cursor"])
            self.web[cursor] = WebSource(
                cursor=cursor,
                url=str(metadata.get("url") or ""),
                title=str(metadata.get("title") or metadata.get("url") or ""),
                kind=str(metadata.get("kind") or "page"),
                total_lines=int(metadata.get("total_lines") or (max(lines) + 1 if lines else 0)),
                lines=lines,
            )
        for hit in metadata.get("hits") or []:
            if isinstance(hit, dict) and str(hit.get("id", "")).startswith("doc:"):
                self.documents[hit["id"]] = DocumentSource(
                    id=hit["id"],
                    title=str(hit.get("title") or hit["id"]),
                    url=str(hit.get("url") or ""),
                    text=str(hit.get("text") or ""),
                )
        for art in artifacts:
            path = Path(str(art.get("path", "")))
            # The model knows the file by its name under /mnt/data (the tool says
            # "[file saved: /mnt/data/x.png ...]"); the copy may carry a -2 suffix.
            source = str(art.get("source", ""))
            name = (
                PurePosixPath(source.split(":", 1)[1]).name
                if source.startswith("python:")
                else path.name
            )
            self.data[name] = DataSource(
                name, path, str(art.get("mime_type", "")), str(art.get("description", ""))
            )

    def add_data_file(
        self, path: Path, *, name: str | None = None, mime_type: str = "", description: str = ""
    ) -> None:
        self.data[name or path.name] = DataSource(name or path.name, path, mime_type, description)

    # -- describing ------------------------------------------------------------------
    def describe(self, limit: int = 40) -> str:
        """The sources as a list the model can cite from (used in prompts and feedback)."""
        out: list[str] = []
        for d in list(self.data.values())[:limit]:
            out.append(
                f"[data:{d.name}] {d.mime_type or 'file'}"
                + (f": {d.description}" if d.description else "")
            )
        for doc in list(self.documents.values())[:limit]:
            out.append(f"[{doc.id}] {doc.title}")
        for w in list(self.web.values())[:limit]:
            if w.kind != "search":
                out.append(f"【{w.cursor}†L0-L{max(w.total_lines - 1, 0)}】 {w.title} ({w.url})")
        return "\n".join(out) if out else "(none)"


# -- checking ------------------------------------------------------------------------------


@dataclass
class CheckResult:
    citations: list[Citation]
    figures: list[Figure]
    errors: list[str]


def _resolve(match: re.Match[str], ledger: SourceLedger) -> Citation | str:
    marker = match.group(0)
    if match["cursor"] is not None:
        cursor, start = int(match["cursor"]), int(match["start"])
        end = int(match["end"]) if match["end"] else start
        start, end = min(start, end), max(start, end)
        web = ledger.web.get(cursor)
        if web is None:
            seen = ", ".join(str(c) for c in sorted(ledger.web)) or "none"
            return f"{marker}: no page with cursor {cursor} was opened in this run (cursors seen: {seen})"
        if web.kind == "search":
            return (
                f"{marker}: cursor {cursor} is a list of search results; open the page and cite it"
            )
        if end >= web.total_lines:
            return f"{marker}: page {cursor} has lines L0-L{web.total_lines - 1} only"
        quote = " ".join(web.lines[n].strip() for n in range(start, end + 1) if n in web.lines)
        return Citation(
            marker=marker,
            kind="web",
            key=f"{web.url}#L{start}-L{end}",
            title=web.title,
            location=web.url,
            detail=f"lines {start}-{end}",
            quote=quote[:300],
        )
    if match["doc"] is not None:
        doc = ledger.documents.get(match["doc"])
        if doc is None:
            return f"{marker}: no passage {match['doc']} was retrieved in this run"
        return Citation(
            marker=marker,
            kind="document",
            key=doc.id,
            title=doc.title,
            location=_short_path(doc.url),
            detail=f"passage {doc.id.split('#', 1)[1]}",
            quote=_plain(doc.text)[:300],
        )
    name = PurePosixPath(match["data"]).name
    data = ledger.data.get(name)
    if data is None:
        files = ", ".join(sorted(ledger.data)) or "none"
        return f"{marker}: no file {name} was produced by the analysis (files: {files})"
    what = {"text/csv": "table", "image/png": "chart"}.get(data.mime_type, "file")
    return Citation(
        marker=marker,
        kind="data",
        key=f"data:{name}",
        title=f"Survey analysis, {what} {name}",
        location=name,
        detail="computed in the sandbox" if data.path else data.description,
    )


def _plain(text: str) -> str:
    """A passage as one line of prose: Markdown heading and emphasis marks dropped."""
    text = re.sub(r"(?m)^\s*#{1,6}\s*", "", text)
    return " ".join(text.replace("**", "").split())


def _short_path(location: str) -> str:
    """A local file shown relative to the working folder (absolute paths say nothing to readers)."""
    if "://" in location or not location.startswith("/"):
        return location
    try:
        return Path(location).relative_to(Path.cwd()).as_posix()
    except ValueError:
        return Path(location).name


def check_draft(
    draft: SectionDraft, ledger: SourceLedger, *, require_citation: bool = True
) -> CheckResult:
    """Resolve a draft's citations and figures; every problem comes back as a sentence."""
    errors: list[str] = []
    citations: list[Citation] = []
    for text in (draft.body,):
        for match in CITATION_MARKER.finditer(text):
            got = _resolve(match, ledger)
            if isinstance(got, str):
                errors.append(got)
            elif all(c.marker != got.marker for c in citations):
                citations.append(got)
        known = {m.group(0) for m in CITATION_MARKER.finditer(text)}
        for loose in _LOOSE.finditer(text):
            if loose.group(0) not in known:
                errors.append(
                    f"{loose.group(0)}: not a citation format; use 【cursor†La-Lb】, [doc:ID#CHUNK] or [data:FILE]"
                )
    figures: list[Figure] = []
    for fig in draft.figures:
        resolved = _figure(fig, ledger)
        if isinstance(resolved, str):
            errors.append(resolved)
        else:
            figures.append(resolved)
    if draft.supported and require_citation and not citations and not errors:
        errors.append(
            "the section cites no source: support its claims with citations to sources you saw, "
            "or set supported to false and give unsupported_reason"
        )
    return CheckResult(citations, figures, errors)


def _figure(fig: FigureDraft, ledger: SourceLedger) -> Figure | str:
    name = PurePosixPath(fig.file).name
    data = ledger.data.get(name)
    if data is None or data.path is None:
        images = (
            ", ".join(sorted(n for n, d in ledger.data.items() if d.mime_type.startswith("image/")))
            or "none"
        )
        return (
            f"figure {fig.file}: the python tool produced no such file (charts available: {images})"
        )
    if not data.mime_type.startswith("image/"):
        return f"figure {fig.file}: {data.mime_type or 'this file'} is not an image; figures must be PNG charts"
    return Figure(file=name, path=str(data.path), caption=fig.caption)
