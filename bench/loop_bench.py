"""The agent loop's own overhead per step, beside LangGraph's prebuilt ReAct agent.

Both agents get an equally instant fake model that calls `add(a, b)` N times and then
answers; the tool is instant too, so what is measured is the framework. Ours includes
rendering the harmony prompt (incrementally) and parsing the harmony completion every
step, which the ReAct agent does not do at all. Time per extra step is the slope
between N = 1 and N = 50 steps; a flat cost shows as equal slopes over both halves.

    python bench/loop_bench.py            # prints a table, writes bench/results/loop.json
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


def time_ours(steps: int, repeats: int, checkpointer: Any) -> float:
    async def once() -> float:
        agent = Agent(
            InstantHarmonyModel(steps - 1),
            tools=[add],
            checkpointer=checkpointer,
            limits=RunLimits(max_steps=steps + 1, max_tool_calls=steps + 1),
            current_date="2026-01-01",
        )
        t = time.perf_counter()
        result = await agent.arun("Add numbers.")
        elapsed = time.perf_counter() - t
        assert result.steps == steps, result.steps
        return elapsed

    return _median(lambda: asyncio.run(once()), repeats)


def time_react(steps: int, repeats: int) -> float:
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

    def once() -> float:
        agent = create_react_agent(InstantChat(calls=steps - 1), [add_lc])
        t = time.perf_counter()
        agent.invoke({"messages": [("user", "Add numbers.")]}, {"recursion_limit": 500})
        return time.perf_counter() - t

    return _median(once, repeats)


def _append_ints(left: list[int], right: list[int]) -> list[int]:
    return left + right


class BareState(TypedDict, total=False):
    messages: Annotated[list[int], _append_ints]
    steps: int


def time_bare_langgraph(steps: int, repeats: int) -> float:
    """The floor: a two-node `StateGraph` (model, tools) whose nodes do nothing."""
    from langgraph.graph import END, START, StateGraph

    State = BareState

    async def model(state: State) -> dict[str, Any]:
        return {"messages": [1], "steps": state.get("steps", 0) + 1}

    async def tools(state: State) -> dict[str, Any]:
        return {"messages": [2]}

    graph = StateGraph(State)
    graph.add_node("model", model)
    graph.add_node("tools", tools)
    graph.add_edge(START, "model")
    graph.add_conditional_edges(
        "model", lambda s: "tools" if s["steps"] < steps else END, ["tools", END]
    )
    graph.add_edge("tools", "model")
    compiled = graph.compile()

    async def once() -> float:
        t = time.perf_counter()
        await compiled.ainvoke({"messages": [], "steps": 0}, {"recursion_limit": 10_000})
        return time.perf_counter() - t

    return _median(lambda: asyncio.run(once()), repeats)


def _median(fn: Any, repeats: int) -> float:
    fn()  # warm up imports and caches
    samples = []
    for _ in range(repeats):
        gc.collect()
        samples.append(fn())
    return statistics.median(samples)


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


def main() -> None:
    repeats = int(os.environ.get("BENCH_REPEATS", "7"))
    points = [1, 25, 50]
    rows = []
    for label, fn in [
        ("harmonygraph (no checkpointer)", lambda n: time_ours(n, repeats, None)),
        ("harmonygraph (in-memory checkpointer)", lambda n: time_ours(n, repeats, memory_saver())),
        ("langgraph.prebuilt.create_react_agent", lambda n: time_react(n, repeats)),
        (
            "bare LangGraph StateGraph, 2 empty nodes (floor)",
            lambda n: time_bare_langgraph(n, repeats),
        ),
    ]:
        t = {n: fn(n) for n in points}
        per_step = (t[50] - t[1]) / 49 * 1000
        first_half = (t[25] - t[1]) / 24 * 1000
        second_half = (t[50] - t[25]) / 25 * 1000
        rows.append(
            {
                "system": label,
                "ms_per_step": round(per_step, 3),
                "ms_per_step_1_25": round(first_half, 3),
                "ms_per_step_25_50": round(second_half, 3),
                "total_ms_50_steps": round(t[50] * 1000, 2),
            }
        )
    react = rows[2]["ms_per_step"]
    for r in rows:
        r["ratio_to_react"] = round(r["ms_per_step"] / react, 3)
    print(f"{'system':50} {'ms/step':>8} {'1→25':>7} {'25→50':>7} {'× react':>8}")
    for r in rows:
        print(
            f"{r['system']:50} {r['ms_per_step']:8.3f} {r['ms_per_step_1_25']:7.3f} "
            f"{r['ms_per_step_25_50']:7.3f} {r['ratio_to_react']:8.2f}"
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
                "repeats": repeats,
                "rows": rows,
                "rss_after_import_mb": rss,
            },
            indent=2,
        )
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
