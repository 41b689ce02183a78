"""Rendering: Markdown, self-contained HTML and a PDF with figures and numbered references."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from harmonygraph.graphs.render import RenderError, render_report
from harmonygraph.graphs.report import number_references
from harmonygraph.graphs.report_models import Citation, Figure, Report, Section
from PIL import Image, ImageDraw
from pypdf import PdfReader


def chart(path: Path, bars: list[int]) -> Path:
    img = Image.new("RGB", (700, 380), "white")
    draw = ImageDraw.Draw(img)
    for i, h in enumerate(bars):
        draw.rectangle([80 + i * 150, 340 - h * 3, 180 + i * 150, 340], fill=(76, 114, 176))
    img.save(path)
    return path


def make_report(tmp_path: Path, *, broken_chart: bool = False) -> Report:
    good = chart(tmp_path / "nps_by_plan.png", [20, 50, 70, 90])
    second = tmp_path / "drivers.png"
    if broken_chart:
        second.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    else:
        chart(second, [60, 30, 80])
    doc = Citation(
        marker="[doc:4#1]",
        kind="document",
        key="doc:4#1",
        title="NPS methodology",
        location="frameworks/nps.md",
        detail="passage 1",
        quote="Promoters answer 9 or 10.",
    )
    data = Citation(
        marker="[data:nps_summary.csv]",
        kind="data",
        key="data:nps_summary.csv",
        title="Survey analysis, table nps_summary.csv",
        location="nps_summary.csv",
    )
    web = Citation(
        marker="【3†L2-L4】",
        kind="web",
        key="https://example.org/nps#L2-L4",
        title="NPS primer",
        location="https://example.org/nps",
        detail="lines 2-4",
    )
    sections = [
        Section(id="loyalty", title="Loyalty", citations=[data, doc],
                body="NPS is +21 [data:nps_summary.csv] (promoters minus detractors [doc:4#1]).\n\n"
                     "# A heading the model wrote\n\n<script>alert(1)</script> NPS < 30 is common. "
                     "![tracker](https://evil.example/t.png)",
                figures=[Figure(file="nps_by_plan.png", path=str(good), caption="NPS by plan.")]),
        Section(id="drivers", title="Drivers", citations=[web, data],
                body="Support matters 【3†L2-L4】; see the table [data:nps_summary.csv].",
                figures=[Figure(file="drivers.png", path=str(second), caption="Drivers.")]),
        Section(id="bench", title="Benchmarks", body="", supported=False, unsupported_reason="no benchmark source"),
    ]  # fmt: skip
    return Report(title="Survey report", summary="Loyalty is moderate [ref:1]; see [ref:9].",
                  sections=sections, conclusions=["Act on support [ref:3]."],
                  references=number_references(sections), notes=["320 of 332 responses kept."])  # fmt: skip


def test_references_are_numbered_once_per_source_in_order(tmp_path: Path) -> None:
    refs = make_report(tmp_path).references
    assert [(r.number, r.key) for r in refs] == [
        (1, "data:nps_summary.csv"), (2, "doc:4#1"), (3, "https://example.org/nps#L2-L4"),
    ]  # fmt: skip


def test_markdown_html_and_pdf(tmp_path: Path) -> None:
    out = render_report(make_report(tmp_path), tmp_path / "out")
    assert out.warnings == []
    md = (tmp_path / "out" / "report.md").read_text()
    assert "NPS is +21 [\\[1\\]](#ref-1) (promoters minus detractors [\\[2\\]](#ref-2))" in md
    assert "Support matters [\\[3\\]](#ref-3); see the table [\\[1\\]](#ref-1)" in md
    assert "see ." in md  # [ref:9] does not exist: dropped, not rendered as a broken link
    assert "### A heading the model wrote" in md  # demoted under the section's `##`
    assert "![Figure 1: NPS by plan.](figures/fig01-nps_by_plan.png)" in md
    assert "> **Unsupported section.**" in md and "no benchmark source" in md
    assert '3. <a id="ref-3"></a>NPS primer — https://example.org/nps (lines 2-4)' in md
    html = (tmp_path / "out" / "report.html").read_text()
    assert html.count('src="data:image/png;base64,') == 2  # self-contained
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert html.count("<img") == 2  # only the two validated figures
    assert 'id="ref-2"' in html and 'href="#ref-2"' in html
    pdf = PdfReader(tmp_path / "out" / "report.pdf")
    assert 1 <= len(pdf.pages) <= 3
    assert sum(len(p.images) for p in pdf.pages) == 2
    text = "\n".join(p.extract_text() for p in pdf.pages)
    for expected in (
        "References",
        "NPS methodology",
        "https://example.org/nps",
        "Unsupported section.",
        "Figure 2. Drivers.",
        "320 of 332 responses kept.",
        "page 1 of",
    ):
        assert expected in text, expected
    resources: list[Any] = [p["/Resources"] for p in pdf.pages]
    fonts = {str(f["/BaseFont"]) for r in resources for f in r["/Font"].values()}
    assert any("DejaVu" in f or "Vera" in f for f in fonts), fonts  # a Unicode TTF is embedded


def test_a_chart_that_cannot_be_read_is_reported_and_the_report_still_renders(
    tmp_path: Path,
) -> None:
    out = render_report(make_report(tmp_path, broken_chart=True), tmp_path / "out")
    assert len(out.warnings) == 1 and "figure 2 (drivers.png)" in out.warnings[0]
    assert "not a readable image" in out.warnings[0]
    md = out.markdown.read_text() if out.markdown else ""
    assert "> **Figure 2 could not be shown** (the chart file is not a readable image" in md
    assert out.pdf is not None and sum(len(p.images) for p in PdfReader(out.pdf).pages) == 1


def test_unwritable_output_folder_is_a_render_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(RenderError, match="cannot write the report under"):
        render_report(make_report(tmp_path), blocker / "out")
