"""The report graph driven by scripted gpt-oss turns, with the real browser over local documents."""

from __future__ import annotations

import json
from pathlib import Path

from harmonygraph.graphs.deliver import FolderDestination
from harmonygraph.graphs.report import ReportEvent, ReportRuntime, SectionDone, generate_report
from harmonygraph.harmony.messages import Role
from harmonygraph.tools.browser import BrowserToolset, FolderDocumentSearch, LocalBackend
from harmonygraph.tracing import ScriptedModel
from pypdf import PdfReader

from .scripts import analysis, final
from .support import DEMO_DATA


def browser_call(thought: str, name: str, args: dict[str, object]) -> str:
    return (
        analysis(thought)
        + f"<|channel|>analysis to=browser.{name} code<|message|>{json.dumps(args)}<|call|>"
    )


OUTLINE = {
    "title": "How to read a Net Promoter Score",
    "sections": [
        {
            "title": "Computing NPS",
            "goal": "Explain how the score is computed from the answers.",
            "needs": ["web"],
        },
        {
            "title": "Benchmarks by industry",
            "goal": "Give published NPS benchmarks per industry.",
            "needs": ["web"],
        },
    ],
}


def script() -> list[str]:
    return [
        final("Two sections: the method, then benchmarks.", OUTLINE),
        browser_call("Search the documents for how NPS is computed.", "search",
                     {"query": "promoters detractors score computed", "topn": 3}),
        browser_call("The NPS methodology page is result 0; open it.", "open", {"id": 0}),
        # An invented citation: cursor 7 was never shown. It must come back as an error.
        final("Write the section.", {"title": "Computing NPS",
                                     "body": "NPS is promoters minus detractors 【7†L1-L3】.", "figures": []}),
        final("Cursor 7 does not exist; the page is cursor 1. Fix the citation.",
              {"title": "Computing NPS",
               "body": "NPS is the share of promoters minus the share of detractors 【1†L0-L12】.",
               "figures": []}),
        final("The documents have no industry benchmarks; no web here.",
              {"title": "Benchmarks by industry", "body": "", "supported": False,
               "unsupported_reason": "the sources seen give no industry benchmark figures"}),
        # A conclusion without its reference goes back to the model too.
        final("Summarise.", {"summary": "NPS subtracts the detractor share from the promoter share [ref:1].",
                             "conclusions": ["Report NPS with its sample size."]}),
        final("Cite the conclusion.", {"summary": "NPS subtracts the detractor share from the promoter share [ref:1].",
                                       "conclusions": ["Report NPS with its sample size [ref:1]."]}),
    ]  # fmt: skip


async def test_report_graph_end_to_end_with_citation_feedback(tmp_path: Path) -> None:
    model = ScriptedModel(script())
    browser = BrowserToolset(backend=LocalBackend(FolderDocumentSearch(DEMO_DATA / "frameworks")))
    events: list[ReportEvent] = []
    rt = ReportRuntime(
        model=model, brief="Explain NPS to new analysts.", work_dir=tmp_path / "work",
        tools={"web": [browser]}, destination=FolderDestination(tmp_path / "out"),
        progress=events.append, current_date="2026-03-02",
    )  # fmt: skip
    result = await generate_report(rt)

    assert model.remaining == 0
    # The invented citation went back to the model, naming the cursors that exist.
    feedback = [m.content for r in model.requests for m in r.messages if m.role == Role.USER]
    assert any(
        "【7†L1-L3】: no page with cursor 7" in f and "cursors seen: 0, 1" in f for f in feedback
    )
    assert any(
        'must cite its reference ([ref:1]); these do not: "Report NPS with its sample size."' in f
        for f in feedback
    )
    report = result.report
    assert report is not None
    assert report.conclusions == ["Report NPS with its sample size [ref:1]."]
    method, bench = report.sections
    assert method.supported and method.attempts == 2
    (citation,) = method.citations
    assert citation.kind == "web" and citation.location == "doc://nps-methodology.md"
    assert "Net Promoter Score" in citation.title and citation.quote
    assert (
        not bench.supported
        and bench.unsupported_reason == "the sources seen give no industry benchmark figures"
    )
    assert [r.location for r in report.references] == ["doc://nps-methodology.md"]
    assert [e.attempts for e in events if isinstance(e, SectionDone)] == [2, 1]
    md = (tmp_path / "out" / "report.md").read_text()
    assert "promoters minus the share of detractors [\\[1\\]](#ref-1)" in md
    assert '1. <a id="ref-1"></a>Net Promoter Score' in md
    text = "".join(p.extract_text() for p in PdfReader(tmp_path / "out" / "report.pdf").pages)
    assert "Unsupported section." in text and "doc://nps-methodology.md" in text


async def test_section_whose_citations_never_resolve_is_marked_unsupported(tmp_path: Path) -> None:
    outline = {"title": "A report", "sections": [
        {"title": "Claims", "goal": "Make claims that need sources.", "needs": ["documents"]},
        {"title": "More claims", "goal": "More claims that need sources.", "needs": ["documents"]},
    ]}  # fmt: skip
    invented = {"title": "Claims", "body": "Revenue grew 40% [doc:12#3].", "figures": []}
    model = ScriptedModel([
        final("Plan.", outline),
        final("Write.", invented), final("Retry.", invented), final("Retry again.", invented),
        final("Write.", {"title": "More claims", "body": "Nothing cited here.", "figures": []}),
        final("Still nothing.", {"title": "More claims", "body": "Nothing cited.", "figures": []}),
        final("Give up.", {"title": "More claims", "body": "", "supported": False,
                           "unsupported_reason": "no documents were available"}),
    ])  # fmt: skip
    rt = ReportRuntime(
        model=model, brief="A brief.", work_dir=tmp_path / "w", max_citation_retries=2
    )
    result = await generate_report(rt)
    claims, more = result.sections
    assert not claims.supported and claims.attempts == 3
    assert "[doc:12#3]: no passage doc:12#3 was retrieved" in (claims.unsupported_reason or "")
    assert not more.supported and more.unsupported_reason == "no documents were available"
    assert result.report is not None and "no section could be supported" in result.report.summary
    assert (
        result.rendered is not None
        and result.rendered.pdf is not None
        and result.rendered.pdf.is_file()
    )
    assert result.delivered == [str(p) for p in result.rendered.files]
