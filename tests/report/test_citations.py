"""Citation checking: what resolves, and every way an invented citation is caught."""

from __future__ import annotations

from pathlib import Path

import pytest
from harmonygraph.graphs.report_models import FigureDraft, SectionDraft
from harmonygraph.graphs.sources import SourceLedger, check_draft


def ledger(tmp_path: Path) -> SourceLedger:
    led = SourceLedger()
    led.add_tool_result(
        "browser.search",
        {
            "cursor": 0,
            "url": "",
            "title": "Search results",
            "kind": "search",
            "start": 0,
            "end": 3,
            "total_lines": 4,
            "lines": {},
        },
        [],
    )
    led.add_tool_result(
        "browser.open",
        {
            "cursor": 1,
            "url": "https://example.org/nps",
            "title": "NPS primer",
            "kind": "page",
            "start": 0,
            "end": 2,
            "total_lines": 30,
            "lines": {"0": "NPS primer", "1": "Promoters score 9-10.", "2": "Detractors 0-6."},
        },
        [],
    )
    led.add_tool_result(
        "functions.search_documents",
        {
            "hits": [
                {
                    "id": "doc:7#2",
                    "title": "Likert guidance",
                    "url": "/srv/docs/likert.md",
                    "text": "## Compare\nUse ranks.",
                }
            ]
        },
        [],
    )
    png = tmp_path / "python" / "chart-2.png"
    png.parent.mkdir()
    png.write_bytes(b"png")
    led.add_tool_result(
        "python",
        {"files": ["chart.png", "t.csv"]},
        [
            {"path": str(png), "mime_type": "image/png", "source": "python:/mnt/data/chart.png"},
            {
                "path": str(tmp_path / "python" / "t.csv"),
                "mime_type": "text/csv",
                "source": "python:/mnt/data/t.csv",
            },
        ],
    )
    return led  # fmt: skip


def draft(body: str, figures: list[FigureDraft] | None = None) -> SectionDraft:
    return SectionDraft(title="A section", body=body, figures=figures or [])


def test_all_three_kinds_resolve(tmp_path: Path) -> None:
    check = check_draft(
        draft("Promoters 【1†L1-L2】, ranks [doc:7#2], table [data:t.csv], chart [data:/mnt/data/chart.png].",
              [FigureDraft(file="/mnt/data/chart.png", caption="The chart")]),
        ledger(tmp_path),
    )  # fmt: skip
    assert check.errors == []
    web, doc, table, chart = check.citations
    assert (web.kind, web.location, web.detail, web.quote) == (
        "web",
        "https://example.org/nps",
        "lines 1-2",
        "Promoters score 9-10. Detractors 0-6.",
    )
    assert (doc.kind, doc.key, doc.quote, doc.location) == (
        "document",
        "doc:7#2",
        "Compare Use ranks.",
        "likert.md",
    )
    assert (table.kind, table.location) == ("data", "t.csv")
    assert chart.key == "data:chart.png"
    (fig,) = check.figures
    assert fig.file == "chart.png" and fig.path.endswith("chart-2.png")  # the copy the tool kept


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (
            "Claim 【5†L1-L2】.",
            "【5†L1-L2】: no page with cursor 5 was opened in this run (cursors seen: 0, 1)",
        ),
        ("Claim 【1†L28-L40】.", "【1†L28-L40】: page 1 has lines L0-L29 only"),
        (
            "Claim 【0†L1-L2】.",
            "【0†L1-L2】: cursor 0 is a list of search results; open the page and cite it",
        ),
        ("Claim [doc:7#3].", "[doc:7#3]: no passage doc:7#3 was retrieved in this run"),
        (
            "Claim [data:made_up.csv].",
            "[data:made_up.csv]: no file made_up.csv was produced by the analysis",
        ),
        ("Claim [source: Gartner 2024].", "[source: Gartner 2024]: not a citation format"),
        ("A claim with no citation at all.", "the section cites no source"),
    ],
)
def test_invented_citations_are_errors(tmp_path: Path, body: str, error: str) -> None:
    check = check_draft(draft(body), ledger(tmp_path))
    assert len(check.errors) == 1 and check.errors[0].startswith(error), check.errors


def test_figures_must_be_images_the_tool_saved(tmp_path: Path) -> None:
    check = check_draft(
        draft("Table [data:t.csv].", [FigureDraft(file="t.csv", caption="Not a chart"),
                                      FigureDraft(file="other.png", caption="Never saved")]),
        ledger(tmp_path),
    )  # fmt: skip
    assert check.errors == [
        "figure t.csv: text/csv is not an image; figures must be PNG charts",
        "figure other.png: the python tool produced no such file (charts available: chart.png)",
    ]


def test_unsupported_draft_needs_no_citation(tmp_path: Path) -> None:
    d = SectionDraft(title="X section", body="", supported=False, unsupported_reason="no sources")
    assert check_draft(d, ledger(tmp_path)).errors == []
