"""The survey pipeline end to end: real preprocessing, Postgres, sandbox and rendering."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from harmonygraph.graphs.report import ReportEvent, SectionDone, StageDone
from harmonygraph.graphs.survey import PipelineError, run_survey_pipeline
from harmonygraph.tracing import ScriptedModel
from pypdf import PdfReader

from .scripts import SurveyScript
from .support import DEMO_DATA

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


async def _store(pg_url: str) -> Any:
    from harmonygraph.tools.retrieval import HashingEmbedder, RetrievalStore

    return await RetrievalStore(pg_url, embedder=HashingEmbedder()).open()


async def test_pipeline_writes_report_with_charts_and_references(
    tmp_path: Path, pg_url: str, local_sandbox: Any
) -> None:
    events: list[ReportEvent] = []
    script = SurveyScript()
    store = await _store(pg_url)
    try:
        result = await run_survey_pipeline(
            DEMO_DATA / "responses.csv", tmp_path / "out", model=ScriptedModel(script),
            sandbox=local_sandbox, store=store, progress=events.append, current_date="2026-03-02",
        )  # fmt: skip
    finally:
        await store.close()
    out = tmp_path / "out"
    for name in (
        "report.md",
        "report.html",
        "report.pdf",
        "data/preprocess.json",
        "data/responses_clean.csv",
    ):
        assert (out / name).is_file(), name
    assert result.path("pdf") == str(out / "report.pdf")
    assert result.preprocess is not None and result.preprocess.rows_kept == 320
    assert result.findings[0].startswith("Overall NPS is ")
    report = result.report
    assert report is not None and report.report is not None
    supported = [s for s in report.report.sections if s.supported]
    assert [s.title for s in supported] == ["Loyalty overview", "Drivers of loyalty"]
    kinds = {c.kind for s in supported for c in s.citations}
    assert kinds == {"data", "document"}
    unsupported = report.report.sections[2]
    assert not unsupported.supported and "benchmarks" in (unsupported.unsupported_reason or "")
    md = (out / "report.md").read_text()
    assert "Unsupported section." in md and "## References" in md and "(#ref-1)" in md
    assert len(list((out / "figures").glob("*.png"))) == 2
    pdf = PdfReader(out / "report.pdf")
    images = [img for page in pdf.pages for img in page.images]
    assert len(images) == 2
    text = "\n".join(page.extract_text() for page in pdf.pages)
    assert "References" in text and "Net Promoter Score" in text
    # Progress: every stage reported, each section's outcome too.
    done = [e.stage for e in events if isinstance(e, StageDone)]
    assert done == ["preprocess", "ingest", "analysis", "plan", "assemble", "render", "deliver"]
    assert [e.supported for e in events if isinstance(e, SectionDone)] == [True, True, False]
    t = result.timings
    assert t.model_calls == script.calls and t.tool_calls == 5  # 2 python, 3 searches
    assert t.total_s >= t.model_s + t.tools_s


async def test_one_row_survey_stops_with_a_clear_message_and_keeps_the_preprocessing(
    tmp_path: Path,
) -> None:
    src = tmp_path / "one.csv"
    lines = (DEMO_DATA / "responses.csv").read_text().splitlines()
    src.write_text("\n".join(lines[:2]) + "\n")
    with pytest.raises(PipelineError) as info:
        await run_survey_pipeline(
            src, tmp_path / "out", model=ScriptedModel([]), sandbox=None, store=None
        )
    message = str(info.value)
    assert "1 usable response(s) of 1" in message and "at least 10" in message
    assert (tmp_path / "out" / "data" / "preprocess.json").is_file()
    assert (
        info.value.partial.preprocess is not None and info.value.partial.preprocess.rows_kept == 1
    )


async def test_unwritable_output_folder_keeps_the_finished_report(
    tmp_path: Path, pg_url: str, local_sandbox: Any
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the output folder should be")
    store = await _store(pg_url)
    events: list[ReportEvent] = []
    try:
        with pytest.raises(PipelineError) as info:
            await run_survey_pipeline(
                DEMO_DATA / "responses.csv", blocker / "out", model=ScriptedModel(SurveyScript()),
                sandbox=local_sandbox, store=store, work_dir=tmp_path / "staging", progress=events.append,
            )  # fmt: skip
    finally:
        await store.close()
    message = str(info.value)
    assert "cannot write the report to" in message and str(tmp_path / "staging") in message
    assert (tmp_path / "staging" / "report.pdf").is_file()
    assert any("cannot be written" in getattr(e, "message", "") for e in events)
    shutil.rmtree(tmp_path / "staging")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "is empty; export the responses again"),
        ("id,score\n1,9\n", "lacks the column(s) submitted_at, region, plan, nps"),
    ],
)
async def test_bad_survey_files_stop_before_any_model_call(
    tmp_path: Path, content: str, message: str
) -> None:
    src = tmp_path / "export.csv"
    src.write_text(content)
    model = ScriptedModel([])
    with pytest.raises(PipelineError, match=re.escape(message)) as info:
        await run_survey_pipeline(src, tmp_path / "out", model=model, sandbox=None, store=None)
    assert model.requests == [] and info.value.partial.preprocess is None
