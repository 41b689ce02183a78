"""The paths users take, past where `loop_bench` stops: a step through the real HTTP client,
many runs at once, memory after the first real step, the command's start-up, and the
streaming parser beside openai-harmony's.

- **HTTP step**: `HarmonyCompletionsModel.complete()` against `FakeOpenAIServer` running
  in its own process on loopback, with ~1k and ~100k tokens of history, interleaved over
  rounds: the client's CPU time (what the server does is not ours) and wall time per step,
  and what encoding the request body's prompt ids as JSON costs at 100k.
- **Concurrency**: N runs of an agent making 3 tool calls (4 model calls) each, against a
  server that takes 100 ms a call: wall time of N = 50 and N = 500 runs at once over one
  run's, and the number of failed runs.
- **Memory**: RSS of a fresh process after building an Agent with the real client, and
  after its first step (VmRSS; VmHWM for the peak), with where it went; the OpenAI
  Agents SDK's agent measured the same way on the same server.
- **Start-up**: `harmonygraph --help` wall time in a fresh process.
- **Streaming parse**: a 7k-token completion fed token by token to our `StreamParser`
  and to openai-harmony's `StreamableParser`, interleaved: tokens per second.

    python bench/real_path_bench.py            # writes bench/results/real_path.json
    BENCH_ROUNDS=9 python bench/real_path_bench.py
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TIKTOKEN_ENCODINGS_BASE", str(ROOT.parent / "shared" / "vocab"))

from harmonygraph.harmony import Message  # noqa: E402
from harmonygraph.harmony.prompt import DeveloperConfig, SystemConfig  # noqa: E402
from harmonygraph.models.base import ModelRequest  # noqa: E402

START = 200006  # <|start|>
SERVER = textwrap.dedent(
    """
    import sys, time
    from harmonygraph.tracing import FakeOpenAIServer
    START = 200006
    CALL = ("<|channel|>commentary to=functions.add <|constrain|>json<|message|>"
            '{{"a": {n}, "b": 2}}<|call|>')  # other arguments each round: no repeated call
    FINAL = "<|channel|>final<|message|>done<|return|>"

    def answer(body):
        prompt = body.get("prompt")
        if isinstance(prompt, list) and prompt and isinstance(prompt[0], int):
            # system, developer, user, the assistant's turn to come: 4 starts; 2 a round.
            rounds = (prompt.count(START) - 4) // 2
            return CALL.format(n=rounds) if rounds < int(sys.argv[2]) else FINAL
        return FINAL

    server = FakeOpenAIServer(answer, delay=float(sys.argv[1])).start()
    print(server.port, flush=True)
    sys.stdin.read()
    server.stop()
    """
)


class Server:
    """`FakeOpenAIServer` in its own process (its CPU is not the client's)."""

    def __init__(self, delay: float = 0.0, calls: int = 0) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SERVER, str(delay), str(calls)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT,
        )  # fmt: skip
        assert self.proc.stdout is not None
        self.base_url = f"http://127.0.0.1:{int(self.proc.stdout.readline())}/v1"

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=10)


def _stats(values: list[float], digits: int = 3) -> dict[str, float]:
    return {
        "median": round(statistics.median(values), digits),
        "min": round(min(values), digits),
        "max": round(max(values), digits),
    }


def _history(tokens: int) -> tuple[Message, ...]:
    """A conversation of about `tokens` tokens: tool calls and their results."""
    chunk = "The quarterly figures rose by four percent across the northern region. " * 20
    messages: list[Message] = [Message.user("Summarise the reports.")]
    per_round = 300  # about, for the chunk and the call around it
    for i in range(max(1, tokens // per_round)):
        messages.append(
            Message.assistant(
                json.dumps({"id": i}), channel="commentary", recipient="functions.read",
                content_type="<|constrain|>json",
            )
        )  # fmt: skip
        messages.append(Message.tool_result("functions.read", chunk))
    return tuple(messages)


# -- a step through the HTTP client ---------------------------------------------------


def http_step(rounds: int) -> dict[str, Any]:
    from harmonygraph.harmony.render import ConversationRenderer
    from harmonygraph.models import HarmonyCompletionsModel

    system = SystemConfig(current_date="2026-01-01", reasoning="low")
    developer = DeveloperConfig(instructions="Be brief.")
    sizes = {"1k": 1_000, "100k": 100_000}
    histories = {k: _history(n) for k, n in sizes.items()}
    lengths = {
        k: ConversationRenderer(system, developer).render(h).length for k, h in histories.items()
    }
    out: dict[str, Any] = {"prompt_tokens": lengths}
    with Server() as server:

        async def measure() -> dict[str, list[tuple[float, float]]]:
            model = HarmonyCompletionsModel("openai/gpt-oss-20b", base_url=server.base_url)
            samples: dict[str, list[tuple[float, float]]] = {k: [] for k in sizes}
            # Each size grows by one message a step, as a run does (the render is incremental).
            grown = {k: list(h) for k, h in histories.items()}
            for k in sizes:  # warm: the renderer has the history, the connection is open
                await model.complete(ModelRequest(system, developer, tuple(grown[k])))
            for r in range(rounds * 5):
                for k in sorted(sizes, reverse=r % 2 == 1):
                    grown[k].append(Message.user(f"And step {r}?"))
                    request = ModelRequest(system, developer, tuple(grown[k]))
                    c, w = time.process_time(), time.perf_counter()
                    response = await model.complete(request)
                    samples[k].append((time.process_time() - c, time.perf_counter() - w))
                    grown[k].append(response.messages[-1])
            await model.aclose()
            return samples

        samples = asyncio.run(measure())
    for k in sizes:
        out[f"client_cpu_ms_{k}"] = _stats([c * 1000 for c, _ in samples[k]])
        out[f"wall_ms_{k}"] = _stats([w * 1000 for _, w in samples[k]])
    ratios = [b[0] / a[0] for a, b in zip(samples["1k"], samples["100k"], strict=True)]
    out["cpu_ratio_100k_over_1k"] = _stats(ratios)
    ids = list(range(lengths["100k"]))
    json_ms = []
    for _ in range(20):
        t = time.perf_counter()
        json.dumps({"prompt": ids})
        json_ms.append((time.perf_counter() - t) * 1000)
    out["json_dumps_100k_ids_ms"] = _stats(json_ms)
    return out


# -- many runs at once ----------------------------------------------------------------

ADD_CALLS = 3


def concurrency(counts: tuple[int, ...], rounds: int) -> dict[str, Any]:
    from harmonygraph import Agent, RunLimits
    from harmonygraph.models import HarmonyCompletionsModel
    from harmonygraph.tools import tool

    @tool
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    out: dict[str, Any] = {"server_delay_s": 0.1, "model_calls_per_run": ADD_CALLS + 1}
    with Server(delay=0.1, calls=ADD_CALLS) as server:

        async def batch(n: int) -> tuple[float, float, int]:
            model = HarmonyCompletionsModel("openai/gpt-oss-20b", base_url=server.base_url)
            agent = Agent(
                model, tools=[add], checkpointer=None, current_date="2026-01-01",
                limits=RunLimits(max_steps=10),
            )  # fmt: skip

            async def one() -> bool:
                try:
                    result = await agent.arun("Add 1 and 2, three times.")
                    return result.output == "done" and result.tool_calls == ADD_CALLS
                except Exception:
                    return False

            c, w = time.process_time(), time.perf_counter()
            results = await asyncio.gather(*(one() for _ in range(n)))
            elapsed = time.perf_counter() - w, time.process_time() - c
            await agent.aclose()
            return elapsed[0], elapsed[1], results.count(False)

        samples: dict[int, list[tuple[float, float, int]]] = {n: [] for n in counts}
        asyncio.run(batch(1))  # warm
        for r in range(rounds):
            for n in counts if r % 2 == 0 else tuple(reversed(counts)):
                samples[n].append(asyncio.run(batch(n)))
    one = [s[0] for s in samples[1]]
    for n in counts:
        out[f"wall_s_{n}"] = _stats([s[0] for s in samples[n]])
        out[f"client_cpu_s_{n}"] = _stats([s[1] for s in samples[n]])
        out[f"errors_{n}"] = sum(s[2] for s in samples[n])
        if n != 1:
            out[f"ratio_{n}_over_1"] = _stats(
                [s[0] / o for s, o in zip(samples[n], one, strict=True)]
            )
    return out


# -- memory ----------------------------------------------------------------------------

# The start of each memory script: RSS and peak (VmRSS, VmHWM) in MB, at each stage.
_RSS = textwrap.dedent(
    """
    def rss():
        f = {l.split(':')[0]: int(l.split()[1]) / 1024 for l in open('/proc/self/status')
             if l.startswith(('VmRSS', 'VmHWM'))}
        return round(f['VmRSS'], 1), round(f['VmHWM'], 1)
    out = {'python': rss()}
    """
)

MEMORY = _RSS + textwrap.dedent(
    """
    import json, sys
    from harmonygraph import Agent
    from harmonygraph.models import HarmonyCompletionsModel
    from harmonygraph.tools import tool
    out['imports'] = rss()
    @tool
    def add(a: int, b: int) -> int:
        "Add."
        return a + b
    agent = Agent(HarmonyCompletionsModel('openai/gpt-oss-20b', base_url=sys.argv[1]),
                  tools=[add], checkpointer=None, current_date='2026-01-01')
    out['agent built'] = rss()
    from harmonygraph.harmony.encoding import get_encoding
    get_encoding()
    out['harmony vocabulary loaded'] = rss()
    agent.run('Add 1 and 2.')
    out['after the first step'] = rss()
    agent.run('Again.')
    out['after a second run'] = rss()
    print(json.dumps(out))
    """
)


# The OpenAI Agents SDK, measured the same way beside ours: its agent on the same fake
# server (its chat completions endpoint), a function tool, one run to the answer.
MEMORY_AGENTS_SDK = _RSS + textwrap.dedent(
    """
    import asyncio, json, sys
    import openai
    from agents import Agent, OpenAIChatCompletionsModel, Runner, function_tool
    from agents import set_tracing_disabled
    out['imports'] = rss()
    set_tracing_disabled(True)
    @function_tool
    def add(a: int, b: int) -> int:
        "Add."
        return a + b
    client = openai.AsyncOpenAI(base_url=sys.argv[1], api_key='x', max_retries=0)
    agent = Agent(name='a', tools=[add],
                  model=OpenAIChatCompletionsModel('openai/gpt-oss-20b', openai_client=client))
    out['agent built'] = rss()
    async def main():
        await Runner.run(agent, 'Add 1 and 2.')
        out['after the first step'] = rss()
        await Runner.run(agent, 'Again.')
        out['after a second run'] = rss()
    asyncio.run(main())
    print(json.dumps(out))
    """
)


def memory() -> dict[str, Any]:
    out: dict[str, Any] = {}
    with Server(calls=1) as server:
        for name, script in (("harmonygraph", MEMORY), ("openai_agents_sdk", MEMORY_AGENTS_SDK)):
            done = subprocess.run(
                [sys.executable, "-c", script, server.base_url],
                capture_output=True, text=True, cwd=ROOT, check=True,
            )  # fmt: skip
            stages = json.loads(done.stdout)
            out[name] = {k: {"rss_mb": v[0], "peak_mb": v[1]} for k, v in stages.items()}
    return out


# -- start-up --------------------------------------------------------------------------


def startup(rounds: int) -> dict[str, Any]:
    walls = []
    for _ in range(rounds):
        t = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "harmonygraph", "--help"],
            capture_output=True, check=True, cwd=ROOT,
        )  # fmt: skip
        walls.append(time.perf_counter() - t)
    bare = []
    for _ in range(rounds):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        bare.append(time.perf_counter() - t)
    return {"help_wall_s": _stats(walls), "python_alone_wall_s": _stats(bare)}


# -- streaming parse -------------------------------------------------------------------


def streaming_parse(rounds: int) -> dict[str, Any]:
    import openai_harmony as oh
    from harmonygraph.harmony.encoding import get_encoding
    from harmonygraph.harmony.parser import StreamParser

    enc = get_encoding()
    body = "Let me think about the figures in the report carefully. " * 120
    text = (
        f"<|channel|>analysis<|message|>{body}<|end|>"
        f"<|start|>assistant<|channel|>commentary to=functions.add <|constrain|>json"
        f'<|message|>{{"a": 1, "b": 2}}<|call|>'
    )
    tokens = enc.encode(text, allowed_special="all")
    reps = 5
    theirs_enc = enc

    def ours() -> float:
        t = time.process_time()
        for _ in range(reps):
            p = StreamParser()
            for tok in tokens:
                p.feed_tokens((tok,))
            p.finish()
        return len(tokens) * reps / (time.process_time() - t)

    def theirs() -> float:
        t = time.process_time()
        for _ in range(reps):
            p = oh.StreamableParser(theirs_enc, oh.Role.ASSISTANT)
            for tok in tokens:
                p.process(tok)
            p.process_eos()
        return len(tokens) * reps / (time.process_time() - t)

    ours(), theirs()
    a: list[float] = []
    b: list[float] = []
    for r in range(rounds):
        for fn, store in ((ours, a), (theirs, b)) if r % 2 == 0 else ((theirs, b), (ours, a)):
            store.append(fn())
    return {
        "tokens": len(tokens),
        "ours_m_tokens_s": _stats([x / 1e6 for x in a]),
        "openai_harmony_m_tokens_s": _stats([x / 1e6 for x in b]),
        "ratio": _stats([x / y for x, y in zip(a, b, strict=True)]),
    }


def main() -> None:
    rounds = int(os.environ.get("BENCH_ROUNDS", "5"))
    which = sys.argv[1:] or ["parse", "startup", "memory", "http", "concurrency"]
    results: dict[str, Any] = {}
    out = ROOT / "bench" / "results" / "real_path.json"
    if out.exists():
        results = json.loads(out.read_text())
    for name in which:
        if name == "parse":
            results["streaming_parse"] = streaming_parse(rounds)
        elif name == "startup":
            results["startup"] = startup(rounds)
        elif name == "memory":
            results["memory"] = memory()
        elif name == "http":
            results["http_step"] = http_step(rounds)
        elif name == "concurrency":
            counts = tuple(int(n) for n in os.environ.get("BENCH_CONCURRENCY", "1,50,500").split(","))
            results["concurrency"] = concurrency(counts, max(2, rounds // 2))
        print(json.dumps({name: results.get(_KEYS[name])}, indent=1))
    results["machine"] = {"cpus": os.cpu_count(), "rounds": rounds}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"wrote {out}")


_KEYS = {
    "parse": "streaming_parse",
    "startup": "startup",
    "memory": "memory",
    "http": "http_step",
    "concurrency": "concurrency",
}

if __name__ == "__main__":
    main()
