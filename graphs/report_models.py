"""The report's typed data: what the model proposes and answers, and what gets rendered.

The model produces an `Outline` (plan), a `SectionDraft` per section and a `Synthesis`
(summary and conclusions). Citations in a draft are markers in its Markdown body; the
program resolves them against the sources the run saw and turns the draft into a
`Section` whose `citations` say where every claim comes from. `Report` is what the
renderer reads.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = [
    "Citation",
    "Figure",
    "FigureDraft",
    "Need",
    "Outline",
    "Reference",
    "Report",
    "Section",
    "SectionDraft",
    "SectionPlan",
    "SourceKind",
    "Synthesis",
]

# What a section needs to be written: the web (browser), the document store
# (search_documents) or the data (the python sandbox and the analysis' outputs).
Need = Literal["web", "documents", "data"]
SourceKind = Literal["web", "document", "data"]

_SLUG = re.compile(r"[^a-z0-9]+")


def slugify(text: str) -> str:
    return _SLUG.sub("-", text.lower()).strip("-")[:60] or "section"


class _Strict(BaseModel):
    # The model's JSON must not carry keys we would silently drop.
    model_config = ConfigDict(extra="forbid")


class SectionPlan(_Strict):
    """One planned section: what it must establish and with which sources."""

    title: str = Field(min_length=3, max_length=120)
    goal: str = Field(min_length=10, max_length=600, description="what the section must establish")
    needs: list[Need] = Field(min_length=1, description="the sources the section needs")

    @property
    def id(self) -> str:
        return slugify(self.title)


class Outline(_Strict):
    """The plan of a report: a title and between two and eight sections."""

    title: str = Field(min_length=3, max_length=160)
    sections: list[SectionPlan] = Field(min_length=2, max_length=8)

    @field_validator("sections")
    @classmethod
    def _distinct(cls, sections: list[SectionPlan]) -> list[SectionPlan]:
        ids = [s.id for s in sections]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"section titles must differ; repeated: {', '.join(dupes)}")
        return sections


class FigureDraft(_Strict):
    """A chart the section shows: a PNG the python tool wrote under /mnt/data."""

    file: str = Field(
        min_length=1, description="file name the python tool saved, e.g. nps_by_plan.png"
    )
    caption: str = Field(min_length=3, max_length=300)


class SectionDraft(_Strict):
    """A section as the model writes it.

    `body` is Markdown; every factual claim carries a citation marker: 【cursor†La-Lb】 for a
    browser page, [doc:ID#CHUNK] for a document passage, [data:FILE] for an analysis output.
    When the sources do not support the section, set `supported` to false and say why.
    """

    title: str = Field(min_length=3, max_length=120)
    body: str = Field(description="Markdown with citation markers")
    figures: list[FigureDraft] = Field(default_factory=list)
    supported: bool = True
    unsupported_reason: str | None = None


class Synthesis(_Strict):
    """The summary and conclusions drawn from the validated sections."""

    summary: str = Field(
        min_length=20, description="Markdown; may reuse the sections' citation markers"
    )
    conclusions: list[str] = Field(min_length=1, max_length=10)


class Citation(BaseModel):
    """A marker resolved to a source the run saw."""

    marker: str
    kind: SourceKind
    key: str = Field(description="identifies the source across sections (URL+lines, doc id, file)")
    title: str
    location: str = Field(description="URL, document source path, or artifact file name")
    detail: str = ""
    quote: str = ""


class Figure(BaseModel):
    """A chart resolved to the PNG file the sandbox produced."""

    number: int = 0
    file: str
    path: str = Field(description="where the PNG is on disk")
    caption: str


class Section(BaseModel):
    """A validated section. `supported` false: the report shows it as unsupported."""

    id: str
    title: str
    body: str
    citations: list[Citation] = Field(default_factory=list)
    figures: list[Figure] = Field(default_factory=list)
    supported: bool = True
    unsupported_reason: str | None = None
    needs: list[Need] = Field(default_factory=list)
    attempts: int = 1


class Reference(BaseModel):
    """One entry of the numbered reference list."""

    number: int
    key: str
    kind: SourceKind
    title: str
    location: str
    detail: str = ""
    quote: str = ""


class Report(BaseModel):
    title: str
    summary: str
    sections: list[Section]
    conclusions: list[str]
    references: list[Reference] = Field(default_factory=list)
    generated_at: dt.datetime = Field(default_factory=lambda: dt.datetime.now(dt.UTC))
    notes: list[str] = Field(default_factory=list, description="data-quality and process notes")
    appendix_title: str = "Data quality"
