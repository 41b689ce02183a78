"""The agent loop's own overhead per step, beside LangGraph's prebuilt ReAct agent and a
bare two-node `StateGraph`, with and without a checkpointer, OpenTelemetry off and on.

Every agent gets an equally instant fake model that calls `add(a, b)` N times and then
answers; the tool is instant too, so what is measured is the framework. Ours includes
rendering the harmony prompt (incrementally) and parsing the harmony completion every
step, which the ReAct agent does not do at all. Time per extra step is the slope between
N = 1 and N = 50 steps; a flat cost shows as equal slopes over both halves (1→25, 25→50).

All systems run in this one process, interleaved: each round runs every system at 1, 25
and 50 steps (the order rotating), and the figures are the median and range over rounds
of each round's slope, and of each round's ratio to its comparison row (ReAct with the
same saver for checkpointed runs, the bare graph for one-shot runs). Times are CPU time
of the process (all its threads), so that other work on the machine counts less; wall
time is kept in the JSON too.

    python bench/loop_bench.py            # prints a table, writes bench/results/loop.json
    BENCH_ROUNDS=15 python bench/loop_bench.py
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Annotated, Any, TypedDict

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TIKTOKEN_ENCODINGS_BASE", str(ROOT.parent / "shared" / "vocab"))

from harmonygraph import Agent, RunLimits  # noqa: E402
from harmonygraph.engine.checkpoint import memory_saver  # noqa: E402
from harmonygraph.harmony import ConversationRenderer, parse_completion_text  # noqa: E402
from harmonygraph.models.base import ModelRequest, ModelResponse, ResponseDone, Usage  # noqa: E402
from harmonygraph.tools import tool  # noqa: E402

CALL = (
    "<|channel|>analysis<|message|>Add the next pair.<|end|><|start|>assistant<|channel|>commentary "
    'to=functions.add <|constrain|>json<|message|>{{"a": {i}, "b": 1}}<|call|>'
)
FINAL = "<|channel|>analysis<|message|>Done.<|end|><|start|>assistant<|channel|>final<|message|>done<|return|>"


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


class InstantHarmonyModel:
    """Renders the real prompt and parses a real completion; no network, no sampling."""

    name = "instant"

    def __init__(self, calls: int) -> None:
        self.calls = calls
        self.step = 0
        self.renderer: ConversationRenderer | None = None

    async def complete(self, request: ModelRequest) -> ModelResponse:
        if self.renderer is None:
            self.renderer = ConversationRenderer(request.system, request.developer)
        prompt = self.renderer.render(request.messages)
        raw = CALL.format(i=self.step) if self.step < self.calls else FINAL
        self.step += 1
        parsed = parse_completion_text(raw)
        return ModelResponse(
            tuple(parsed.messages),
            Usage(prompt.length, 20),
            raw,
            prompt_sha256=prompt.sha256,
            prompt_tokens=prompt.length,
        )

    async def stream(self, request: ModelRequest):  # type: ignore[no-untyped-def]
        yield ResponseDone(await self.complete(request))

    async def aclose(self) -> None:
        return None


def _append_ints(left: list[int], right: list[int]) -> list[int]:
    return left + right


class BareState(TypedDict, total=False):
    messages: Annotated[list[int], _append_ints]
    steps: int


def rss_after_import() -> dict[str, float]:
    """Peak RSS (MB) of a fresh interpreter after importing what an agent needs, and after
    importing langgraph alone, for scale."""
    import subprocess

    # VmHWM, not ru_maxrss: the latter keeps the parent's peak across fork and exec.
    probe = (
        "{imports}\n"
        "print(next(int(line.split()[1]) for line in open('/proc/self/status') "
        "if line.startswith('VmHWM:')) / 1024)"
    )
    out = {}
    for label, imports in [
        (
            "harmonygraph (Agent, tool, the loop)",
            "from harmonygraph import Agent, tool\nimport harmonygraph.engine.loop",
        ),
        ("langgraph.graph alone", "import langgraph.graph"),
    ]:
        done = subprocess.run(
            [sys.executable, "-c", probe.format(imports=imports)],
            capture_output=True, text=True, check=True, cwd=ROOT,
        )  # fmt: skip
        out[label] = round(float(done.stdout.strip()), 1)
    return out




# -- the systems, each a factory of one timed run of N steps -----------------------------

Timed = tuple[float, float]  # (CPU s, wall s)


def _timed_async(make: Any) -> Timed:
    """CPU and wall time of `asyncio.run(make())`'s coroutine body, set-up excluded."""

    async def body() -> Timed:
        run = await make()
        c, w = time.process_time(), time.perf_counter()
        await run()
        return time.process_time() - c, time.perf_counter() - w

    return asyncio.run(body())


def ours(checkpointer: Any = None, thread: bool = False) -> Any:
    def once(steps: int) -> Timed:
        async def make() -> Any:
            saver = checkpointer() if callable(checkpointer) else checkpointer
            agent = Agent(
                InstantHarmonyModel(steps - 1),
                tools=[add],
                checkpointer=saver,
                limits=RunLimits(max_steps=steps + 1, max_tool_calls=steps + 1),
                current_date="2026-01-01",
            )

            async def run() -> None:
                result = await agent.arun("Add numbers.", thread_id="t" if thread else None)
                assert result.steps == steps, result.steps

            return run

        return _timed_async(make)

    return once


class OtelOn:
    """OpenTelemetry configured as in production: the SDK's provider and batch processor
    (exporting to memory here, so no network is timed), spans for every run and call."""

    def __init__(self) -> None:
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
            InMemorySpanExporter,
        )

        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(BatchSpanProcessor(self.exporter))

    def __call__(self, steps: int) -> Timed:
        from harmonygraph.tracing import otel

        otel.configure(self.provider)
        try:
            timed = ours()(steps)
            self.provider.force_flush()
            spans = len(self.exporter.get_finished_spans())
            assert spans == 1 + steps + (steps - 1), spans
            self.exporter.clear()
            return timed
        finally:
            otel.configure(None)


def react(saver: Any = None) -> Any:
    from langchain_core.language_models.chat_models import BaseChatModel
    from langchain_core.messages import AIMessage
    from langchain_core.outputs import ChatGeneration, ChatResult
    from langchain_core.tools import tool as lc_tool
    from langgraph.prebuilt import create_react_agent

    @lc_tool
    def add_lc(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    class InstantChat(BaseChatModel):
        calls: int = 0
        step: int = 0

        @property
        def _llm_type(self) -> str:
            return "instant"

        def bind_tools(self, tools: Any, **kwargs: Any) -> InstantChat:
            return self

        def _generate(
            self, messages: Any, stop: Any = None, run_manager: Any = None, **kwargs: Any
        ) -> ChatResult:
            if self.step < self.calls:
                msg = AIMessage(
                    content="",
                    tool_calls=[
                        {"name": "add_lc", "args": {"a": self.step, "b": 1}, "id": f"c{self.step}"}
                    ],
                )
            else:
                msg = AIMessage(content="done")
            self.step += 1
            return ChatResult(generations=[ChatGeneration(message=msg)])

    def once(steps: int) -> Timed:
        async def make() -> Any:
            agent = create_react_agent(
                InstantChat(calls=steps - 1), [add_lc], checkpointer=saver() if saver else None
            )
            config = {"recursion_limit": 500, "configurable": {"thread_id": "t"}}

            async def run() -> None:
                out = await agent.ainvoke({"messages": [("user", "Add numbers.")]}, config)
                assert len(out["messages"]) == 2 * steps, len(out["messages"])

            return run

        return _timed_async(make)

    return once


def bare(steps: int) -> Timed:
    """The floor: a two-node `StateGraph` (model, tools) whose nodes do nothing."""
    from langgraph.graph import END, START, StateGraph

    async def make() -> Any:
        async def model(state: BareState) -> dict[str, Any]:
            return {"messages": [1], "steps": state.get("steps", 0) + 1}

        async def tools(state: BareState) -> dict[str, Any]:
            return {"messages": [2]}

        graph = StateGraph(BareState)
        graph.add_node("model", model)
        graph.add_node("tools", tools)
        graph.add_edge(START, "model")
        graph.add_conditional_edges(
            "model", lambda s: "tools" if s["steps"] < steps else END, ["tools", END]
        )
        graph.add_edge("tools", "model")
        compiled = graph.compile()

        async def run() -> None:
            await compiled.ainvoke({"messages": [], "steps": 0}, {"recursion_limit": 10_000})

        return run

    return _timed_async(make)


def stock_serializer_saver() -> Any:
    """Our state on LangGraph's own serializer (what `serializer()` replaced), for scale."""
    from harmonygraph.engine.checkpoint import STATE_TYPES
    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

    return InMemorySaver(serde=JsonPlusSerializer(allowed_msgpack_modules=STATE_TYPES))


def systems() -> list[tuple[str, str | None, Any]]:
    """(label, the label it is compared with, runner). One-shot rows compare with the bare
    graph; checkpointed rows with ReAct on the same kind of saver."""
    from langgraph.checkpoint.memory import InMemorySaver

    rows: list[tuple[str, str | None, Any]] = [
        ("harmonygraph, one-shot (no checkpointer)", BARE, ours()),
        ("harmonygraph, one-shot, OpenTelemetry spans on", BARE, None),
        ("harmonygraph, thread on InMemorySaver", REACT_SAVER, ours(memory_saver, thread=True)),
        (
            "harmonygraph, thread on InMemorySaver, LangGraph's stock serializer",
            REACT_SAVER,
            ours(stock_serializer_saver, thread=True),
        ),
        (REACT_SAVER, None, react(InMemorySaver)),
        ("langgraph.prebuilt.create_react_agent, no saver", BARE, react()),
        (BARE, None, bare),
    ]
    try:
        rows[1] = (rows[1][0], BARE, OtelOn())
    except ImportError:  # the `opentelemetry` extra is not installed
        del rows[1]
    return rows


BARE = "bare LangGraph StateGraph, 2 empty nodes (floor)"
REACT_SAVER = "langgraph.prebuilt.create_react_agent, InMemorySaver"
POINTS = (1, 25, 50)


def _stats(values: list[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(values), 3),
        "min": round(min(values), 3),
        "max": round(max(values), 3),
    }


def main() -> None:
    rounds = int(os.environ.get("BENCH_ROUNDS", "9"))
    table = systems()
    for _label, _, fn in table:  # warm up imports and caches
        for n in POINTS:
            fn(n)
    samples: dict[str, list[dict[int, Timed]]] = {label: [] for label, _, _ in table}
    for r in range(rounds):
        order = table[r % len(table) :] + table[: r % len(table)]
        for label, _, fn in order:
            gc.collect()
            samples[label].append({n: fn(n) for n in POINTS})
        print(f"round {r + 1}/{rounds}", file=sys.stderr)

    def slopes(label: str, kind: int, a: int, b: int) -> list[float]:
        return [(s[b][kind] - s[a][kind]) / (b - a) * 1000 for s in samples[label]]

    rows = []
    for label, versus, _ in table:
        per_step = slopes(label, 0, 1, 50)
        row: dict[str, Any] = {
            "system": label,
            "cpu_ms_per_step": _stats(per_step),
            "cpu_ms_per_step_1_25": _stats(slopes(label, 0, 1, 25)),
            "cpu_ms_per_step_25_50": _stats(slopes(label, 0, 25, 50)),
            "wall_ms_per_step": _stats(slopes(label, 1, 1, 50)),
            "cpu_ms_50_steps": _stats([s[50][0] * 1000 for s in samples[label]]),
        }
        if versus is not None:
            theirs = slopes(versus, 0, 1, 50)
            row["versus"] = versus
            row["ratio"] = _stats([a / b for a, b in zip(per_step, theirs, strict=True)])
        rows.append(row)

    def cell(st: dict[str, float]) -> str:
        return f"{st['median']:.2f} ({st['min']:.2f}–{st['max']:.2f})"

    print(f"{'system':70} {'CPU ms/step':>20} {'1→25':>6} {'25→50':>6}  ratio")
    for row in rows:
        ratio = f"{cell(row['ratio'])} × {row['versus'][:28]}" if "ratio" in row else ""
        print(
            f"{row['system']:70} {cell(row['cpu_ms_per_step']):>20} "
            f"{row['cpu_ms_per_step_1_25']['median']:6.2f} "
            f"{row['cpu_ms_per_step_25_50']['median']:6.2f}  {ratio}"
        )
    rss = rss_after_import()
    for label, mb in rss.items():
        print(f"RSS after import, {label}: {mb} MB")
    out = ROOT / "bench" / "results" / "loop.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
                "rounds": rounds,
                "unit": "ms per extra step: median (min–max) over interleaved rounds",
                "rows": rows,
                "rss_after_import_mb": rss,
            },
            indent=2,
        )
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
