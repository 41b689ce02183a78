"""The survey pipeline: export in, report out.

    preprocess → ingest frameworks → analysis (model + python sandbox) → report graph → deliver

- preprocess (`graphs.survey_data`): decode, clean, deduplicate, normalise, redact; the
  cleaned CSV and the preprocessing report are written to the output folder first, so a
  later failure never loses them.
- ingest: the framework documents go into the retrieval store (collection
  `survey-frameworks`, hashing embedder: no model download), for `search_documents`.
- analysis: an agent run with the `python` tool over the cleaned data (uploaded to
  /mnt/data/responses.csv in every sandbox session); it answers with an
  `AnalysisSummary` whose findings cite the files it saved ([data:FILE]), checked like a
  section's citations.
- report: the report graph, with the analysis' files as citable sources and its
  findings as context; sections get python (data) and search_documents (documents).
- deliver: the output folder, or S3.

Every failure becomes a `PipelineError` with a message that says what to do and
`partial` holding what was done.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from harmonygraph.concurrency import run_in_thread
from harmonygraph.engine import Agent, AgentRunError
from harmonygraph.graphs.deliver import (
    DeliveryError,
    Destination,
    FolderDestination,
    check_folder,
    deliver,
)
from harmonygraph.graphs.prestart import SurveyResources
from harmonygraph.graphs.render import warm_pdf
from harmonygraph.graphs.report import (
    CitationsRejected,
    ProgressCallback,
    ReportError,
    ReportResult,
    ReportRuntime,
    ReportWarning,
    StageDone,
    StageStarted,
    Timings,
    emit_progress,
    generate_report,
    run_checked,
)
from harmonygraph.graphs.report_models import FigureDraft, Need, SectionDraft
from harmonygraph.graphs.sources import SourceLedger
from harmonygraph.graphs.survey_data import (
    InsufficientResponsesError,
    PreprocessReport,
    SurveyData,
    SurveyError,
    load_survey,
)
from harmonygraph.models.base import Model
from harmonygraph.tools.base import Tool, ToolContext, ToolOutput, Toolset
from harmonygraph.tools.python import STATE_KEY as PYTHON_STATE
from harmonygraph.tools.python import PythonToolset
from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "ANALYSIS_INSTRUCTIONS",
    "DATA_FILE",
    "FRAMEWORKS_COLLECTION",
    "AnalysisSummary",
    "PipelineError",
    "PipelineResult",
    "SurveyPythonToolset",
    "run_survey_pipeline",
]

log = logging.getLogger(__name__)

# The demo's survey export, recorded trace and framework documents ship as package data.
DEMO_DATA = Path(str(resources.files("harmonygraph.graphs").joinpath("survey_demo")))
FRAMEWORKS_COLLECTION = "survey-frameworks"
DATA_FILE = "responses.csv"  # the cleaned data, as the model sees it under /mnt/data

ANALYSIS_INSTRUCTIONS = """You are a survey analyst. The cleaned survey responses are in /mnt/data/responses.csv
(columns: response_id, submitted_at, region, plan, tenure_months, nps, satisfaction, ease_of_use,
support_quality, value_for_money (Likert 1-5), comment, nps_category). Use the python tool to compute the
statistics (NPS overall and by segment, Likert item means and top-two-box shares, differences between
promoters and detractors) and to save tables (CSV) and charts (PNG, matplotlib) under /mnt/data.
Answer with findings: each one sentence with its numbers and the file it comes from as [data:FILE].
List the charts you saved with a caption stating the finding."""


class AnalysisSummary(BaseModel):
    """The analysis' answer: findings citing the files it saved, and its charts."""

    model_config = ConfigDict(extra="forbid")

    findings: list[str] = Field(min_length=1, max_length=12)
    charts: list[FigureDraft] = Field(default_factory=list)


class PipelineError(RuntimeError):
    """The pipeline stopped; the message says why and what to do, `partial` what was kept."""

    def __init__(self, message: str, partial: PipelineResult) -> None:
        super().__init__(message)
        self.partial = partial


@dataclass
class PipelineResult:
    out_dir: Path
    work_dir: Path
    preprocess: PreprocessReport | None = None
    findings: list[str] = field(default_factory=list)
    report: ReportResult | None = None
    delivered: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # files written before a failure
    warnings: list[str] = field(default_factory=list)
    sandbox: str = ""
    documents: int = 0
    timings: Timings = field(default_factory=Timings)

    def path(self, suffix: str) -> str | None:
        """Where the delivered `report.<suffix>` is (md, html, pdf)."""
        return next((p for p in self.delivered if p.endswith(f"report.{suffix}")), None)


class SurveyPythonToolset(PythonToolset):
    """The python tool with the survey's files uploaded into each session it starts.

    The session starts at the run's first python call, not when the run starts: a
    section that only cites the analysis' files never pays for a kernel.
    """

    def __init__(self, files: dict[str, bytes], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.files = files

    async def start(self, ctx: ToolContext) -> None:
        """Deferred to the first call (see `run`)."""

    async def run(self, code: str, ctx: ToolContext) -> ToolOutput:
        if PYTHON_STATE not in ctx.state:
            await super().start(ctx)
            await self._upload(ctx)
        return await super().run(code, ctx)

    async def _upload(self, ctx: ToolContext) -> None:
        state = ctx.state.get(PYTHON_STATE)
        session = getattr(state, "session", None)
        if session is None:
            return  # the tool reports why it is unavailable on each call
        for name, data in self.files.items():
            await session.write_file(name, data)
            # Inputs are not outputs: mark them as already copied out, so that an
            # execution does not hand the data file back as an artifact.
            saved = getattr(state, "saved", None)
            if isinstance(saved, dict):
                saved[name] = hashlib.sha256(data).hexdigest()


def _brief(data: SurveyData, docs: bool) -> str:
    r = data.report
    plans = sorted({x.plan for x in data.responses})
    regions = sorted({x.region for x in data.responses})
    return (
        f"A report on a customer survey: {r.rows_kept} usable responses (of {r.rows_read} received) from "
        f"{Path(r.source).name}. Segments: plan ({', '.join(plans)}), region ({', '.join(regions)}), tenure in "
        "months. Questions: how loyal customers are (NPS), which experience items (satisfaction, ease of use, "
        "support quality, value for money; Likert 1-5) go with loyalty, how segments differ, and what to do "
        "next. The analysis outputs are citable as data"
        + (", and the organisation's survey guidance documents are searchable." if docs else ".")
    )


async def _analyse(
    rt: ReportRuntime, python: Toolset, ledger: SourceLedger
) -> tuple[AnalysisSummary, SourceLedger]:
    """The analysis run, its findings' citations checked like a section's."""
    agent: Agent[AnalysisSummary] = Agent(
        rt.model, [python], instructions=ANALYSIS_INSTRUCTIONS, reasoning=rt.reasoning,
        output_type=AnalysisSummary, name="analysis", current_date=rt.current_date,
        checkpointer=None, artifacts_dir=rt.work_dir / "artifacts" / "analysis",
    )  # fmt: skip
    prompt = (
        "Analyse the survey in /mnt/data/responses.csv: overall NPS with its promoter/passive/detractor "
        "shares, NPS by plan and by region, and how the four Likert items differ between promoters and "
        "detractors. Save the tables and charts you need for the report."
    )
    try:
        done = await run_checked(
            rt, "analysis", agent, prompt, ledger=ledger, draft_of=_findings_draft,
            feedback=_findings_feedback,
        )  # fmt: skip
    except CitationsRejected as exc:
        raise AgentRunError(
            "the analysis' findings cite files it never saved: " + str(exc), exc.result
        ) from None
    summary: AnalysisSummary = done.result.output  # type: ignore[assignment]
    return summary, done.ledger


def _findings_draft(summary: AnalysisSummary) -> SectionDraft:
    return SectionDraft(title="Analysis", body="\n".join(summary.findings), figures=summary.charts)


def _findings_feedback(errors: list[str], ledger: SourceLedger) -> str:
    return (
        "Your findings cannot be accepted:\n" + "\n".join(f"- {e}" for e in errors)
        + f"\n\nFiles you saved:\n{ledger.describe()}\n\nCite only those files. "
        "Reply with only the corrected JSON object."
    )


async def _open_store(
    store: Any, frameworks: Path | None, warnings: list[str], resources: SurveyResources
) -> tuple[Any, int, bool]:
    """The store with the frameworks ingested, how many documents, and whether we own it."""
    if store is None or frameworks is None:
        return None, 0, False
    owned = False
    try:
        from harmonygraph.tools.retrieval import HashingEmbedder, RetrievalError, RetrievalStore
    except ImportError as exc:
        warnings.append(f"documents unavailable: the retrieval extra is not installed ({exc})")
        return None, 0, False
    try:
        if store in ("embedded", "demo"):
            # Started in the background since the run began (see `SurveyResources`): the
            # demo's own embedded database, stopped when the process exits, or the shared one.
            url = await resources.database_url()
            store = await RetrievalStore(url=url, embedder=HashingEmbedder()).open()
            owned = True
        results = []
        # Sources named relative to the folder (frameworks/<file>), not by absolute path:
        # the model reads them in every search result, so they must not depend on where
        # the checkout is (a recorded trace replays the same text anywhere).
        for path in await run_in_thread(lambda: sorted(frameworks.glob("*.md"))):
            text = await run_in_thread(path.read_text, encoding="utf-8")
            results.append(await store.add_text(
                text, collection=FRAMEWORKS_COLLECTION, source=f"{frameworks.name}/{path.name}",
                format="markdown",
            ))  # fmt: skip
    except (RetrievalError, OSError) as exc:
        warnings.append(
            f"documents unavailable: {exc}. Sections will not cite the framework documents."
        )
        if owned:
            await store.close()
        return None, 0, False
    bad = [r for r in results if r.status == "error"]
    for r in bad:
        warnings.append(f"framework document {r.source} was not ingested: {r.error}")
    return store, len(results) - len(bad), owned


async def run_survey_pipeline(
    input_path: str | Path,
    out_dir: str | Path,
    *,
    model: Model,
    sandbox: Any = "auto",
    store: Any = "embedded",
    frameworks: str | Path | None = DEMO_DATA / "frameworks",
    destination: Destination | None = None,
    browser: Toolset | None = None,
    progress: ProgressCallback | None = None,
    reasoning: str = "medium",
    current_date: str | None = None,
    min_responses: int = 10,
    work_dir: str | Path | None = None,
    max_citation_retries: int = 2,
    resources: SurveyResources | None = None,
) -> PipelineResult:
    """Run the survey pipeline end to end; returns where everything went.

    `sandbox`: "auto" (Docker if it answers, else the local sandbox, said in a warning: see
    `harmonygraph.sandbox.choose_sandbox`), a `Sandbox`,
    or None (no python: data sections cite the preprocessing output only). `store`:
    "embedded" (the embedded Postgres), an open `RetrievalStore`, or None (no documents).
    The report is rendered in `work_dir` (a fresh temporary folder by default) and then
    delivered to `destination` (default: the folder `out_dir`).

    The sandbox's warm kernel and the database start in the background once the survey
    has been read, while the documents are ingested; `resources` (a `SurveyResources` of
    the same `sandbox` and `store`, already started) gives them a head start from earlier
    still, as `harmonygraph demo` does before its imports. The run takes them over.
    """
    if resources is None:
        resources = SurveyResources(sandbox, store)  # started once the survey is read
    elif resources.sandbox_spec != sandbox or resources.store_spec != store:
        raise ValueError("`resources` must be started with the run's `sandbox` and `store`")
    try:
        return await _run_pipeline(
            input_path, out_dir, model=model, sandbox=sandbox, store=store, frameworks=frameworks,
            destination=destination, browser=browser, progress=progress, reasoning=reasoning,
            current_date=current_date, min_responses=min_responses, work_dir=work_dir,
            max_citation_retries=max_citation_retries, resources=resources,
        )  # fmt: skip
    finally:
        await resources.aclose()  # a warm kernel the run stopped before taking


async def _run_pipeline(
    input_path: str | Path,
    out_dir: str | Path,
    *,
    model: Model,
    sandbox: Any,
    store: Any,
    frameworks: str | Path | None,
    destination: Destination | None,
    browser: Toolset | None,
    progress: ProgressCallback | None,
    reasoning: str,
    current_date: str | None,
    min_responses: int,
    work_dir: str | Path | None,
    max_citation_retries: int,
    resources: SurveyResources,
) -> PipelineResult:
    started = time.perf_counter()
    out, work = await run_in_thread(_prepare_dirs, out_dir, work_dir)
    dest = destination or FolderDestination(out)
    result = PipelineResult(out_dir=out, work_dir=work)
    problem = check_folder(out) if isinstance(dest, FolderDestination) else None
    if problem:
        result.warnings.append(
            f"the output folder cannot be written ({problem}); the report will stay in {work}"
        )
        await emit_progress(progress, ReportWarning("preprocess", result.warnings[-1]))

    # -- preprocess ------------------------------------------------------------------
    t0 = time.perf_counter()
    await emit_progress(progress, StageStarted("preprocess", str(input_path)))
    try:
        data = await run_in_thread(load_survey, input_path, min_responses=min_responses)
    except InsufficientResponsesError as exc:
        result.preprocess = exc.data.report
        result.kept = await _keep_preprocess(exc.data, work, dest, result)
        raise PipelineError(f"{exc}. Kept: {', '.join(result.kept)}", result) from exc
    except SurveyError as exc:
        raise PipelineError(str(exc), result) from exc
    result.preprocess = data.report
    result.kept = await _keep_preprocess(data, work, dest, result)
    await emit_progress(progress, StageDone("preprocess", f"{data.report.rows_kept} of {data.report.rows_read} rows kept",
                                    time.perf_counter() - t0))  # fmt: skip
    csv_bytes = data.to_csv().encode()
    ledger = SourceLedger()
    ledger.add_data_file(work / "data" / "responses_clean.csv", name=DATA_FILE, mime_type="text/csv",
                         description="Cleaned survey responses")  # fmt: skip

    # -- ingest, sandbox ---------------------------------------------------------------
    # The sandbox's warm kernel and the database start now (unless a caller started them
    # earlier still): the kernel warms while the documents are ingested.
    resources.start()
    t0 = time.perf_counter()
    await emit_progress(progress, StageStarted("ingest", str(frameworks or "")))
    before = len(result.warnings)
    store_obj, result.documents, owns_store = await _open_store(
        store, Path(frameworks) if frameworks else None, result.warnings, resources
    )
    for w in result.warnings[before:]:
        await emit_progress(progress, ReportWarning("ingest", w))
    await emit_progress(
        progress, StageDone("ingest", f"{result.documents} documents", time.perf_counter() - t0)
    )
    python: SurveyPythonToolset | None = None
    chosen = await resources.sandbox()
    if chosen is not None:
        result.sandbox = chosen.description
        if chosen.fallback_reason is not None:
            result.warnings.append(f"using the {result.sandbox}")
            await emit_progress(progress, ReportWarning("analysis", result.warnings[-1]))
        python = SurveyPythonToolset(
            {DATA_FILE: csv_bytes}, sandbox=chosen.sandbox, pool=chosen.pool
        )

    tools: dict[Need, Sequence[Tool | Toolset]] = {}
    if python is not None:
        tools["data"] = [python]
    if store_obj is not None:
        from harmonygraph.tools.retrieval import RetrievalToolset

        tools["documents"] = [RetrievalToolset(store_obj, collection=FRAMEWORKS_COLLECTION)]
    if browser is not None:
        tools["web"] = [browser]

    warming: asyncio.Future[None] | None = None
    try:
        # -- analysis ----------------------------------------------------------------------
        runtime = ReportRuntime(
            model=model, brief=_brief(data, store_obj is not None), work_dir=work, tools=tools, destination=dest,
            prior_sources=ledger, notes=data.report.notes(), reasoning=reasoning, current_date=current_date,
            max_citation_retries=max_citation_retries, progress=progress, timings=result.timings,
        )  # fmt: skip
        # -- analysis ----------------------------------------------------------------------
        if python is not None:
            t0 = time.perf_counter()
            if "pdf" in runtime.formats:
                # The analysis mostly waits on the sandbox: the PDF renderer's one-time
                # start-up (its import, the fonts) is done meanwhile, off the critical path.
                warming = asyncio.ensure_future(run_in_thread(warm_pdf))
            await emit_progress(progress, StageStarted("analysis", result.sandbox))
            try:
                summary, runtime.prior_sources = await _analyse(runtime, python, ledger)
            except AgentRunError as exc:
                raise PipelineError(
                    f"the analysis failed: {exc}. Kept: {', '.join(result.kept)}", result
                ) from exc
            result.findings = summary.findings
            runtime.context = "\n".join(f"- {f}" for f in summary.findings)
            await emit_progress(
                progress,
                StageDone(
                    "analysis", f"{len(summary.findings)} findings", time.perf_counter() - t0
                ),
            )

        # -- report ----------------------------------------------------------------------
        try:
            result.report = await generate_report(runtime)
        except ReportError as exc:
            result.report = exc.partial
            cause = exc.__cause__
            if isinstance(cause, DeliveryError):
                result.kept = [
                    str(p)
                    for p in (
                        exc.partial.rendered.files if exc.partial and exc.partial.rendered else []
                    )
                ]
            raise PipelineError(str(exc), result) from exc
        result.delivered = result.report.delivered
        result.warnings.extend(result.report.warnings)
    finally:
        if warming is not None:
            await warming  # never raises; a failed warm-up is redone by the render
        if python is not None:
            await python.aclose()
        if owns_store and store_obj is not None:
            await store_obj.close()
        result.timings.total_s = time.perf_counter() - started
    return result


def _write_preprocess(data: SurveyData, data_dir: Path) -> list[Path]:
    data_dir.mkdir(parents=True, exist_ok=True)
    files = [data_dir / "responses_clean.csv", data_dir / "preprocess.json"]
    files[0].write_text(data.to_csv(), encoding="utf-8")
    files[1].write_text(json.dumps(data.report.model_dump(mode="json"), indent=2), encoding="utf-8")
    return files


def _prepare_dirs(out_dir: str | Path, work_dir: str | Path | None) -> tuple[Path, Path]:
    """The output folder (not created yet) and the staging folder (created)."""
    out = Path(out_dir).expanduser()
    work = Path(work_dir) if work_dir else Path(tempfile.mkdtemp(prefix="harmonygraph-report-"))
    work.mkdir(parents=True, exist_ok=True)
    return out, work


async def _keep_preprocess(
    data: SurveyData, work: Path, dest: Destination, result: PipelineResult
) -> list[str]:
    """Write the cleaned data and the preprocessing report, and deliver them at once."""
    files = await run_in_thread(_write_preprocess, data, work / "data")
    try:
        return await deliver(files, work, dest)
    except DeliveryError as exc:
        result.warnings.append(str(exc))
        return [str(f) for f in files]
