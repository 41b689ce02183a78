"""The report graph: plan → sections → assemble → render → deliver, as a LangGraph StateGraph.

    START → plan → section ─┬─ more sections ─→ section
                            └─ done ──────────→ assemble → render → deliver → END

- plan: an agent run whose output is a validated `Outline`.
- section (once per planned section, in order): an agent run with the tools the section
  needs, output `SectionDraft`. Its citations are checked against the sources the run
  saw (its trace's tool results, plus the sources earlier steps handed over); an invented
  citation goes back to the model with the list of citable sources, up to
  `max_citation_retries` times. A section that still cannot be supported, or whose run
  fails, is kept as *unsupported* with the reason, and the report goes on.
- assemble: references numbered across the report; an agent run writes the `Synthesis`
  (summary and conclusions) citing those numbers as [ref:N].
- render: Markdown, HTML and PDF into a staging folder. deliver: to the destination.

Sections run one after another, never concurrently: a replayed or scripted model answers
in order, and the model server is one GPU anyway. Every step reports progress as a typed
`ReportEvent` through the `progress` callback.
"""

from __future__ import annotations

import inspect
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypedDict

from harmonygraph.concurrency import run_in_thread
from harmonygraph.engine import (
    Agent,
    AgentModelError,
    AgentRunError,
    OutputValidationError,
    RunDone,
    RunLimits,
    RunResult,
    ToolCallEvent,
    ToolResultEvent,
)
from harmonygraph.graphs.deliver import DeliveryError, Destination, deliver
from harmonygraph.graphs.render import RenderedReport, RenderError, render_report
from harmonygraph.graphs.report_models import (
    Citation,
    Need,
    Outline,
    Reference,
    Report,
    Section,
    SectionDraft,
    SectionPlan,
    Synthesis,
)
from harmonygraph.graphs.sources import CheckResult, SourceLedger, check_draft
from harmonygraph.harmony.messages import Message
from harmonygraph.models.base import Model
from harmonygraph.tools.base import Tool, Toolset
from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime

__all__ = [
    "ASSEMBLE_INSTRUCTIONS",
    "PLAN_INSTRUCTIONS",
    "SECTION_INSTRUCTIONS",
    "CheckedRun",
    "CitationsRejected",
    "ProgressCallback",
    "ReportError",
    "ReportEvent",
    "ReportResult",
    "ReportRuntime",
    "ReportWarning",
    "SectionDone",
    "SectionStarted",
    "StageDone",
    "StageStarted",
    "Timings",
    "ToolActivity",
    "build_report_graph",
    "emit_progress",
    "generate_report",
    "run_checked",
]

Stage = Literal[
    "preprocess", "ingest", "analysis", "plan", "sections", "assemble", "render", "deliver"
]

PLAN_INSTRUCTIONS = """You plan analytical reports. Propose a title and 2 to 6 sections that together answer the brief.
For each section give a title, its goal (the question it answers) and what it needs:
"data" (the analysis outputs and the python sandbox), "documents" (the organisation's guidance documents),
"web" (the public web). Ask only for sources the brief says are available."""

SECTION_INSTRUCTIONS = """You write one section of an analytical report, in Markdown, for a reader who will act on it.
Every factual claim and every number carries a citation to a source you saw in this conversation:
- a python output or file: [data:FILE] (FILE as saved under /mnt/data, e.g. [data:summary.csv]);
- a document passage from search_documents: its id, e.g. [doc:3#1];
- a web page you opened: 【cursor†Lstart-Lend】.
Numbers come from the analysis, never from memory. Do not invent sources.
Figures: list PNG charts the python tool saved (file name and a caption stating the finding).
If the sources do not support the section, answer with supported false, an empty body and unsupported_reason.
Do not repeat the section title as a heading in the body."""

ASSEMBLE_INSTRUCTIONS = """You write the executive summary and the conclusions of a report from its validated sections.
Use only what the sections say. Cite with the reference numbers given, as [ref:N]. Be concise: a summary of
3 to 5 sentences with the key numbers, and 2 to 5 conclusions, each an action tied to a finding."""


# -- events ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StageStarted:
    stage: Stage
    detail: str = ""


@dataclass(frozen=True, slots=True)
class StageDone:
    stage: Stage
    detail: str = ""
    duration_s: float = 0.0


@dataclass(frozen=True, slots=True)
class SectionStarted:
    index: int
    total: int
    title: str
    needs: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SectionDone:
    index: int
    total: int
    title: str
    supported: bool
    citations: int
    figures: int
    attempts: int
    reason: str = ""


@dataclass(frozen=True, slots=True)
class ToolActivity:
    """A tool call made by one of the report's agent runs (for the progress view)."""

    stage: Stage
    recipient: str
    status: str  # "called", then the call's status ("ok", "error", ...)
    duration_s: float = 0.0


@dataclass(frozen=True, slots=True)
class ReportWarning:
    stage: Stage
    message: str


ReportEvent = StageStarted | StageDone | SectionStarted | SectionDone | ToolActivity | ReportWarning
ProgressCallback = Callable[[ReportEvent], Awaitable[None] | None]


# -- configuration and results ---------------------------------------------------------------------


@dataclass
class Timings:
    """Where the time went: the model (its calls' latency), tools, and the rest (framework)."""

    model_s: float = 0.0
    tools_s: float = 0.0
    total_s: float = 0.0
    model_calls: int = 0
    tool_calls: int = 0

    @property
    def framework_s(self) -> float:
        return max(self.total_s - self.model_s - self.tools_s, 0.0)

    def add_run(self, result: RunResult[Any]) -> None:
        for step in result.step_usage:
            self.model_s += float(step.get("latency_s", 0.0))
            self.model_calls += 1
        for rec in result.trace.records:
            if rec.get("type") == "tool_call":
                self.tools_s += float(rec.get("duration_s", 0.0))
                self.tool_calls += 1


class ReportError(RuntimeError):
    """The report could not be finished; `partial` holds what was done (may be None)."""

    def __init__(self, message: str, partial: ReportResult | None = None) -> None:
        super().__init__(message)
        self.partial = partial


@dataclass
class ReportRuntime:
    """What the report graph needs that is not state: the model, tools, folders, callbacks.

    `tools` maps each need to the tools a section with that need gets. `prior_sources`
    are sources earlier steps saw (the analysis' files), citable by every section, and
    `context` is text every section reads (the analysis' findings).
    """

    model: Model
    brief: str
    work_dir: Path
    tools: Mapping[Need, Sequence[Tool | Toolset]] = field(default_factory=dict)
    destination: Destination | None = None
    prior_sources: SourceLedger = field(default_factory=SourceLedger)
    context: str = ""
    notes: list[str] = field(default_factory=list)
    reasoning: str = "medium"
    current_date: str | None = None
    max_citation_retries: int = 2
    limits: RunLimits = field(default_factory=lambda: RunLimits(max_steps=16, max_tool_calls=12))
    formats: tuple[Literal["md", "html", "pdf"], ...] = ("md", "html", "pdf")
    progress: ProgressCallback | None = None
    timings: Timings = field(default_factory=Timings)

    async def emit(self, event: ReportEvent) -> None:
        await emit_progress(self.progress, event)


async def emit_progress(progress: ProgressCallback | None, event: ReportEvent) -> None:
    """Hand `event` to a sync or async progress callback, if there is one."""
    if progress is not None:
        out = progress(event)
        if inspect.isawaitable(out):
            await out


@dataclass
class ReportResult:
    outline: Outline | None = None
    sections: list[Section] = field(default_factory=list)
    report: Report | None = None
    rendered: RenderedReport | None = None
    delivered: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    timings: Timings = field(default_factory=Timings)

    def path(self, suffix: str) -> str | None:
        """Where the delivered `report.<suffix>` is."""
        return next((p for p in self.delivered if p.endswith(f"report.{suffix}")), None)


class ReportState(TypedDict, total=False):
    outline: Outline
    index: int
    sections: list[Section]
    synthesis: Synthesis
    report: Report
    rendered: RenderedReport
    delivered: list[str]
    warnings: list[str]


# -- running one agent ---------------------------------------------------------------------


def _agent(
    rt: ReportRuntime,
    name: str,
    output_type: Any,
    instructions: str,
    tools: Sequence[Tool | Toolset] = (),
) -> Agent[Any]:
    return Agent(
        rt.model,
        list(tools),
        instructions=instructions,
        reasoning=rt.reasoning,
        output_type=output_type,
        name=name,
        current_date=rt.current_date,
        limits=rt.limits,
        checkpointer=None,
        artifacts_dir=rt.work_dir / "artifacts" / name,
    )


async def _run(
    rt: ReportRuntime,
    stage: Stage,
    agent: Agent[Any],
    input: str | None,
    history: Sequence[Message] = (),
) -> RunResult[Any]:
    """One agent run, its tool calls forwarded as progress; timings kept even on failure."""
    result: RunResult[Any] | None = None
    try:
        async for event in agent.astream(input, message_history=list(history)):
            if isinstance(event, ToolCallEvent):
                await rt.emit(ToolActivity(stage, event.recipient, "called"))
            elif isinstance(event, ToolResultEvent):
                await rt.emit(ToolActivity(stage, event.recipient, event.status, event.duration_s))
            elif isinstance(event, RunDone):
                result = event.result
    except AgentRunError as exc:
        rt.timings.add_run(exc.result)
        raise
    assert result is not None
    rt.timings.add_run(result)
    return result


# -- nodes -----------------------------------------------------------------------------------


def _available(rt: ReportRuntime) -> str:
    names = {
        "data": "data (analysis outputs, python sandbox)",
        "documents": "documents (search_documents)",
        "web": "web (browser)",
    }
    have = [
        names[n]
        for n in ("data", "documents", "web")
        if rt.tools.get(n) or (n == "data" and rt.prior_sources.data)
    ]
    return ", ".join(have) if have else "none: the report can only restate the brief"


async def plan_node(state: ReportState, runtime: Runtime[ReportRuntime]) -> dict[str, Any]:
    rt = runtime.context
    t0 = time.perf_counter()
    await rt.emit(StageStarted("plan"))
    prompt = f"Brief:\n{rt.brief}\n\nSources available: {_available(rt)}.\n\nPropose the outline."
    try:
        result = await _run(rt, "plan", _agent(rt, "plan", Outline, PLAN_INSTRUCTIONS), prompt)
    except AgentRunError as exc:
        raise ReportError(
            f"planning the report failed: {exc}. Check the model server (or the trace) and retry."
        ) from exc
    outline: Outline = result.output  # type: ignore[assignment]
    warnings = list(state.get("warnings", []))
    for s in outline.sections:
        missing = [
            n
            for n in s.needs
            if not rt.tools.get(n) and not (n == "data" and rt.prior_sources.data)
        ]
        if missing:
            warnings.append(
                f"section '{s.title}' asked for {', '.join(missing)}, which this run does not have"
            )
            await rt.emit(ReportWarning("plan", warnings[-1]))
    await rt.emit(
        StageDone(
            "plan", f"{len(outline.sections)} sections: {outline.title}", time.perf_counter() - t0
        )
    )
    return {"outline": outline, "index": 0, "sections": [], "warnings": warnings}


def _section_prompt(rt: ReportRuntime, outline: Outline, plan: SectionPlan, index: int) -> str:
    toc = "\n".join(f"{i + 1}. {s.title}" for i, s in enumerate(outline.sections))
    parts = [
        f'Write section {index + 1}, "{plan.title}", of the report "{outline.title}".',
        f"Goal: {plan.goal}",
        f"Outline:\n{toc}",
    ]
    if rt.context:
        parts.append(f"What the analysis found:\n{rt.context}")
    parts.append(f"Sources you can cite already:\n{rt.prior_sources.describe()}")
    tools = [n for n in plan.needs if rt.tools.get(n)]
    parts.append(f"Tools for this section: {', '.join(tools) if tools else 'none'}.")
    return "\n\n".join(parts)


def _feedback(errors: list[str], ledger: SourceLedger) -> str:
    listed = "\n".join(f"- {e}" for e in errors)
    return (
        "Your section cannot be accepted:\n" + listed + "\n\nSources you can cite (seen in this "
        "conversation):\n" + ledger.describe() + "\n\nFix the citations or remove the claims they "
        "support; if the sources do not support the section, set supported to false with "
        "unsupported_reason. Reply with only the corrected JSON object."
    )


@dataclass
class CheckedRun:
    """An agent run whose answer passed the citation check (or was declined, `check` None)."""

    result: RunResult[Any]
    ledger: SourceLedger
    check: CheckResult | None
    attempts: int


class CitationsRejected(RuntimeError):
    """The answer's citations still failed the check after every retry."""

    def __init__(self, errors: list[str], result: RunResult[Any], attempts: int) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors
        self.result = result
        self.attempts = attempts


async def run_checked(
    rt: ReportRuntime,
    stage: Stage,
    agent: Agent[Any],
    prompt: str,
    *,
    ledger: SourceLedger,
    draft_of: Callable[[Any], SectionDraft | None],
    feedback: Callable[[list[str], SourceLedger], str],
) -> CheckedRun:
    """Run `agent`, check its answer's citations against the sources it saw, and send the
    problems back (`feedback`) up to `rt.max_citation_retries` times.

    `draft_of` turns the validated output into the draft to check, or None when the answer
    declines (a section the sources do not support): that ends the loop unchecked. Agent
    errors propagate; `CitationsRejected` when the retries are spent.
    """
    history: list[Message] = []
    next_prompt: str | None = prompt
    errors: list[str] = []
    attempts = rt.max_citation_retries + 1
    for attempt in range(1, attempts + 1):
        result = await _run(rt, stage, agent, next_prompt, history)
        ledger = ledger.merge(SourceLedger.from_trace_records(result.trace.records))
        draft = draft_of(result.output)
        if draft is None:
            return CheckedRun(result, ledger, None, attempt)
        check = check_draft(draft, ledger)
        if not check.errors:
            return CheckedRun(result, ledger, check, attempt)
        errors = check.errors
        history = [*result.messages, Message.user(feedback(errors, ledger))]
        next_prompt = None
    raise CitationsRejected(errors, result, attempts)


async def write_section(rt: ReportRuntime, outline: Outline, index: int) -> Section:
    """One section: the agent run, then the citation check and its retries."""
    plan = outline.sections[index]
    tools: list[Tool | Toolset] = []
    for need in dict.fromkeys(plan.needs):
        tools.extend(rt.tools.get(need, ()))
    agent = _agent(
        rt, f"section-{index + 1}-{plan.id}", SectionDraft, SECTION_INSTRUCTIONS, _dedupe(tools)
    )
    try:
        done = await run_checked(
            rt, "sections", agent, _section_prompt(rt, outline, plan, index),
            ledger=rt.prior_sources,
            draft_of=lambda draft: draft if draft.supported else None,
            feedback=_feedback,
        )  # fmt: skip
    except CitationsRejected as exc:
        reason = "its citations could not be verified against the sources seen: "
        return _unsupported(plan, index, reason + str(exc)[:500], exc.attempts)
    except OutputValidationError as exc:
        reason = f"the answer never matched the section format ({'; '.join(exc.errors)[:300]})"
        return _unsupported(plan, index, reason, 1)
    except AgentModelError as exc:
        return _unsupported(plan, index, f"the model could not be called ({exc})", 1)
    except AgentRunError as exc:
        return _unsupported(plan, index, f"the run stopped before an answer ({exc})", 1)
    draft: SectionDraft = done.result.output  # type: ignore[assignment]
    if done.check is None:
        reason = draft.unsupported_reason or "the model found no sources for it"
        return _unsupported(plan, index, reason, done.attempts)
    return Section(
        id=plan.id,
        title=plan.title,
        body=draft.body.strip(),
        citations=done.check.citations,
        figures=done.check.figures,
        needs=list(plan.needs),
        attempts=done.attempts,
    )


def _dedupe(items: list[Tool | Toolset]) -> list[Tool | Toolset]:
    seen: set[int] = set()
    out = []
    for item in items:
        if id(item) not in seen:
            seen.add(id(item))
            out.append(item)
    return out


def _unsupported(plan: SectionPlan, index: int, reason: str, attempts: int) -> Section:
    return Section(
        id=plan.id,
        title=plan.title,
        body="",
        supported=False,
        unsupported_reason=reason,
        needs=list(plan.needs),
        attempts=attempts,
    )


async def section_node(state: ReportState, runtime: Runtime[ReportRuntime]) -> dict[str, Any]:
    rt = runtime.context
    outline = state["outline"]
    index = state.get("index", 0)
    total = len(outline.sections)
    plan = outline.sections[index]
    if index == 0:
        await rt.emit(StageStarted("sections", f"{total} sections"))
    await rt.emit(SectionStarted(index + 1, total, plan.title, tuple(plan.needs)))
    section = await write_section(rt, outline, index)
    await rt.emit(
        SectionDone(
            index + 1,
            total,
            section.title,
            section.supported,
            len(section.citations),
            len(section.figures),
            section.attempts,
            section.unsupported_reason or "",
        )
    )
    warnings = list(state.get("warnings", []))
    if not section.supported:
        warnings.append(f"section '{section.title}' is unsupported: {section.unsupported_reason}")
    return {
        "sections": [*state.get("sections", []), section],
        "index": index + 1,
        "warnings": warnings,
    }


def route_after_section(state: ReportState) -> str:
    return "section" if state.get("index", 0) < len(state["outline"].sections) else "assemble"


def number_references(sections: Sequence[Section]) -> list[Reference]:
    """One number per distinct source, in order of first citation."""
    refs: dict[str, Reference] = {}
    for s in sections:
        for c in _in_text_order(s):
            if c.key not in refs:
                refs[c.key] = Reference(
                    number=len(refs) + 1,
                    key=c.key,
                    kind=c.kind,
                    title=c.title,
                    location=c.location,
                    detail=c.detail,
                    quote=c.quote,
                )
    return list(refs.values())


def _in_text_order(section: Section) -> list[Citation]:
    return sorted(section.citations, key=lambda c: (section.body.find(c.marker), c.marker))


_REF = re.compile(r"\[ref:(\d+)\]")


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")


def _synthesis_problems(candidate: Synthesis, known: set[int]) -> list[str]:
    """What is wrong with a summary's citations, as feedback the model can act on.

    Every reference must exist; every conclusion cites the finding it follows from; and
    every summary sentence that states a number cites where the number comes from.
    """
    problems = []
    texts = (candidate.summary, *candidate.conclusions)
    bad = sorted({int(n) for t in texts for n in _REF.findall(t) if int(n) not in known})
    allowed = ", ".join(f"[ref:{n}]" for n in sorted(known)) or "nothing"
    if bad:
        problems.append(
            f"These references do not exist: {', '.join(f'[ref:{n}]' for n in bad)}. "
            f"Cite only {allowed}"
        )
    uncited = [
        s
        for s in _SENTENCE_END.split(candidate.summary)
        if re.search(r"\d", _REF.sub("", s)) and not _REF.search(s)
    ]
    uncited += [c for c in candidate.conclusions if not _REF.search(c)]
    if uncited:
        problems.append(
            "Each conclusion, and each summary sentence with a number, must cite its reference "
            f"({allowed}); these do not: " + " | ".join(f'"{u.strip()}"' for u in uncited[:6])
        )
    return problems


def _numbered_text(section: Section, refs: Sequence[Reference]) -> str:
    by_key = {r.key: r.number for r in refs}
    body = section.body
    for c in section.citations:
        if c.key in by_key:
            body = body.replace(c.marker, f"[ref:{by_key[c.key]}]")
    return body


async def assemble_node(state: ReportState, runtime: Runtime[ReportRuntime]) -> dict[str, Any]:
    rt = runtime.context
    t0 = time.perf_counter()
    await rt.emit(StageStarted("assemble"))
    outline = state["outline"]
    sections = state.get("sections", [])
    refs = number_references(sections)
    warnings = list(state.get("warnings", []))
    supported = [s for s in sections if s.supported]
    blocks = []
    for i, s in enumerate(sections, 1):
        text = _numbered_text(s, refs) if s.supported else f"(unsupported: {s.unsupported_reason})"
        blocks.append(f"## {i}. {s.title}\n{text}")
    ref_list = "\n".join(f"[ref:{r.number}] {r.title}" for r in refs) or "(none)"
    prompt = (
        f'Report: "{outline.title}"\n\n'
        + "\n\n".join(blocks)
        + f"\n\nReferences:\n{ref_list}\n\nWrite the summary and the conclusions."
    )
    synthesis: Synthesis | None = None
    if supported:
        agent = _agent(rt, "assemble", Synthesis, ASSEMBLE_INSTRUCTIONS)
        history: list[Message] = []
        next_prompt: str | None = prompt
        for _ in range(rt.max_citation_retries + 1):
            try:
                result = await _run(rt, "assemble", agent, next_prompt, history)
            except AgentRunError as exc:
                warnings.append(f"the summary could not be written: {exc}")
                break
            candidate: Synthesis = result.output  # type: ignore[assignment]
            problems = _synthesis_problems(candidate, {r.number for r in refs})
            if not problems:
                synthesis = candidate
                break
            history = [
                *result.messages,
                Message.user("; ".join(problems) + ". Reply with only the corrected JSON object."),
            ]
            next_prompt = None
        else:
            warnings.append(
                "the summary cited references that do not exist, or left claims uncited, even "
                "after correction; it was left out"
            )
    else:
        warnings.append("no section could be supported by sources, so no summary was written")
    if synthesis is None:
        synthesis = Synthesis(
            summary="No summary: "
            + (warnings[-1] if warnings else "it could not be written")
            + ".",
            conclusions=[
                "Review the unsupported sections and the sources available, then run the report again."
            ],
        )
    report = Report(
        title=outline.title,
        summary=synthesis.summary,
        sections=list(sections),
        conclusions=synthesis.conclusions,
        references=refs,
        notes=list(rt.notes),
    )
    for w in warnings[len(state.get("warnings", [])) :]:
        await rt.emit(ReportWarning("assemble", w))
    await rt.emit(StageDone("assemble", f"{len(refs)} references", time.perf_counter() - t0))
    return {"synthesis": synthesis, "report": report, "warnings": warnings}


async def render_node(state: ReportState, runtime: Runtime[ReportRuntime]) -> dict[str, Any]:
    rt = runtime.context
    t0 = time.perf_counter()
    await rt.emit(StageStarted("render", ", ".join(rt.formats)))
    try:
        rendered = await run_in_thread(
            render_report, state["report"], rt.work_dir, formats=rt.formats
        )
    except RenderError as exc:
        partial = ReportResult(
            outline=state["outline"],
            sections=state.get("sections", []),
            report=state["report"],
            warnings=state.get("warnings", []),
            timings=rt.timings,
        )
        partial.rendered = RenderedReport(figures=list(exc.written))
        raise ReportError(f"{exc}; the files written so far are in {rt.work_dir}", partial) from exc
    for w in rendered.warnings:
        await rt.emit(ReportWarning("render", w))
    await rt.emit(
        StageDone("render", ", ".join(p.name for p in rendered.files[:3]), time.perf_counter() - t0)
    )
    return {"rendered": rendered, "warnings": [*state.get("warnings", []), *rendered.warnings]}


async def deliver_node(state: ReportState, runtime: Runtime[ReportRuntime]) -> dict[str, Any]:
    rt = runtime.context
    rendered = state["rendered"]
    if rt.destination is None:
        return {"delivered": [str(p) for p in rendered.files]}
    t0 = time.perf_counter()
    await rt.emit(StageStarted("deliver", rt.destination.describe()))
    try:
        delivered = await deliver(rendered.files, rt.work_dir, rt.destination)
    except DeliveryError as exc:
        partial = ReportResult(
            outline=state["outline"],
            sections=state.get("sections", []),
            report=state["report"],
            rendered=rendered,
            warnings=state.get("warnings", []),
            timings=rt.timings,
        )
        raise ReportError(str(exc), partial) from exc
    await rt.emit(StageDone("deliver", rt.destination.describe(), time.perf_counter() - t0))
    return {"delivered": delivered}


def build_report_graph() -> StateGraph[ReportState, ReportRuntime, ReportState, ReportState]:
    """The report graph, uncompiled; run it with a `ReportRuntime` in the config."""
    graph = StateGraph(ReportState, context_schema=ReportRuntime)
    graph.add_node("plan", plan_node)
    graph.add_node("section", section_node)
    graph.add_node("assemble", assemble_node)
    graph.add_node("render", render_node)
    graph.add_node("deliver", deliver_node)
    graph.add_edge(START, "plan")
    graph.add_edge("plan", "section")
    graph.add_conditional_edges("section", route_after_section, ["section", "assemble"])
    graph.add_edge("assemble", "render")
    graph.add_edge("render", "deliver")
    graph.add_edge("deliver", END)
    return graph


async def generate_report(runtime: ReportRuntime) -> ReportResult:
    """Run the report graph to the end. Raises `ReportError` (with `partial`) on failure."""
    t0 = time.perf_counter()
    graph = build_report_graph().compile()
    config: RunnableConfig = {
        "configurable": {"thread_id": uuid.uuid4().hex[:12]},
        "recursion_limit": 64,
    }
    state: dict[str, Any] = {}
    try:
        async for chunk in graph.astream(
            {"warnings": []}, config, stream_mode="values", context=runtime
        ):
            state = chunk
    finally:
        runtime.timings.total_s += time.perf_counter() - t0
    return ReportResult(
        outline=state.get("outline"),
        sections=state.get("sections", []),
        report=state.get("report"),
        rendered=state.get("rendered"),
        delivered=state.get("delivered", []),
        warnings=state.get("warnings", []),
        timings=runtime.timings,
    )
