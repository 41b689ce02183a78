"""Harmony encode/parse benchmark: per-step render cost as history grows, and parse throughput.

One agent step appends a tool call and its result to the conversation and renders the
prompt for the next completion. We time that step at ~1k, ~10k and ~100k tokens of
history with

  (a) our `ConversationRenderer` (incremental: only the new messages are tokenised), and
  (b) openai-harmony's `render_conversation_for_completion` (re-renders everything),

and the parse throughput of our `StreamParser` against openai-harmony's
`StreamableParser` on one long completion. Tool results are real article text from the
readability corpus. Results: a table on stdout and `bench/results/render.json`.

    TIKTOKEN_ENCODINGS_BASE=../shared/vocab python bench/render_bench.py
"""

from __future__ import annotations

import argparse
import gc
import html
import json
import os
import platform
import re
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TIKTOKEN_ENCODINGS_BASE", str((ROOT / ".." / "shared" / "vocab").resolve()))

import openai_harmony as oh  # noqa: E402
from harmonygraph.harmony import (  # noqa: E402
    ConversationRenderer,
    DeveloperConfig,
    Message,
    StreamParser,
    SystemConfig,
    builtin_namespaces,
    get_encoding,
    visible_history,
)
from harmonygraph.harmony.render import to_harmony  # noqa: E402
from openai_harmony import ToolDescription, ToolNamespaceConfig  # noqa: E402

READABILITY = ROOT / ".." / "shared" / "corpora" / "readability"
RESULTS = ROOT / "bench" / "results" / "render.json"
SIZES = (1_000, 10_000, 100_000)


# -- material -------------------------------------------------------------------------


def page_texts() -> list[str]:
    """Article text of the readability pages (tags stripped), as tool results."""
    texts = []
    for page in sorted(READABILITY.glob("*/expected.html")):
        raw = page.read_text(encoding="utf-8", errors="replace")
        raw = re.sub(r"(?is)<(script|style)\b.*?</\1>", " ", raw)
        text = html.unescape(re.sub(r"<[^>]+>", " ", raw))
        text = re.sub(r"[ \t]+", " ", re.sub(r"\s*\n\s*", "\n", text)).strip()
        if len(text) > 200:
            texts.append(text)
    if not texts:
        raise SystemExit(f"no readability pages under {READABILITY}")
    return texts


def configs() -> tuple[SystemConfig, DeveloperConfig]:
    fetch = ToolDescription.new(
        "fetch_page",
        "Fetch a web page and return its main text.",
        parameters={
            "type": "object",
            "properties": {
                "url": {"type": "string", "description": "Absolute URL"},
                "max_chars": {"type": "integer", "minimum": 1, "default": 8000},
            },
            "required": ["url"],
        },
    )
    note = ToolDescription.new(
        "save_note",
        "Save a note for the final report.",
        parameters={
            "type": "object",
            "properties": {"title": {"type": "string"}, "body": {"type": "string"}},
            "required": ["title", "body"],
        },
    )
    system = SystemConfig(
        current_date="2026-11-21", reasoning="high", builtin_tools=builtin_namespaces(["python"])
    )
    developer = DeveloperConfig(
        instructions="Research the user's question with the tools, then answer with sources.",
        tools=(ToolNamespaceConfig(name="functions", description=None, tools=[fetch, note]),),
    )
    return system, developer


class Material:
    def __init__(self) -> None:
        self.pages = page_texts()
        self.k = 0

    def page(self, max_chars: int) -> str:
        text = self.pages[self.k % len(self.pages)]
        self.k += 1
        return text[:max_chars]

    def step(self, i: int, max_chars: int = 1500) -> tuple[Message, Message]:
        """One tool call and its (real-text) result; each step's messages differ."""
        call = Message.assistant(
            json.dumps({"url": f"https://example.org/articles/{i}", "max_chars": max_chars}),
            channel="commentary",
            recipient="functions.fetch_page",
            content_type="<|constrain|>json",
        )
        # The id keeps every result distinct, so no step is served from a token cache.
        result = f"[page {i}] https://example.org/articles/{i}\n{self.page(max_chars)}"
        return call, Message.tool_result("functions.fetch_page", result)

    def turn(self, t: int, max_chars: int) -> list[Message]:
        """A finished user turn: question, reasoning, three tool calls, preamble, final."""
        msgs = [Message.user(f"Question {t}: summarise what these articles say and compare them.")]
        for j in range(3):
            msgs.append(
                Message.assistant(
                    f"Turn {t}, step {j}: I should read another source before answering; "
                    "the previous page covered background only.",
                    channel="analysis",
                )
            )
            msgs.extend(self.step(t * 10 + j, max_chars))
        msgs.append(Message.assistant("Collecting the findings now.", channel="commentary"))
        msgs.append(Message.assistant(self.page(max_chars // 3), channel="final"))
        return msgs


def conversation(target: int, renderer: ConversationRenderer, mat: Material) -> list[Message]:
    """Finished tool-using turns of about `target` tokens in all, then a new question."""
    max_chars = 300 if target <= 2_000 else 1500
    msgs: list[Message] = []
    t = 0
    while True:
        turn = mat.turn(t, max_chars)
        if renderer.render([*msgs, *turn]).length > target:
            break
        msgs.extend(turn)
        t += 1
    question = Message.user(f"Question {t}: what is new in the last article?")
    while renderer.render([*msgs, question]).length < target * 0.95:
        msgs.append(Message.user("And in the next one?"))
        msgs.append(Message.assistant(mat.page(200), channel="final"))
    return [*msgs, question]


# -- timing ---------------------------------------------------------------------------


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter_ns()
    fn()
    return (time.perf_counter_ns() - t0) / 1e6


class SizeCase:
    """A history of about `target` tokens, and one agent step on top of it, timed both ways."""

    def __init__(self, target: int, mat: Material) -> None:
        system, developer = configs()
        self.enc = get_encoding()
        self.target = target
        self.base = conversation(target, ConversationRenderer(system, developer), mat)
        # (a) ours holds the history, as it does between agent steps.
        self.ours = ConversationRenderer(system, developer)
        self.history_tokens = self.ours.render(self.base).length
        # (b) openai-harmony re-renders the whole visible history. Messages are converted
        # once (untimed); a step builds the Conversation and renders it.
        sys_msg = oh.Message.from_role_and_content(
            oh.Role.SYSTEM,
            oh.SystemContent.new()
            .with_model_identity(system.identity)
            .with_knowledge_cutoff(system.knowledge_cutoff)
            .with_reasoning_effort(oh.ReasoningEffort.HIGH)
            .with_conversation_start_date(system.current_date or "")
            .with_tools(ToolNamespaceConfig.python()),
        )
        dev_msg = oh.Message.from_role_and_content(
            oh.Role.DEVELOPER,
            oh.DeveloperContent.new()
            .with_instructions(developer.instructions or "")
            .with_tools(developer.tools[0]),
        )
        self.cfg = oh.RenderConversationConfig(auto_drop_analysis=False)
        self.converted = [sys_msg, dev_msg, *(to_harmony(m) for m in visible_history(self.base))]
        self.times: dict[str, list[float]] = {
            k: [] for k in ("ours", "ours_cached", "ours_tokens", "theirs", "theirs_render")
        }
        self.prompt_len = self.theirs_len = 0

    def ours_step(self, call: Message, result: Message) -> None:
        ours, msgs = self.ours, [*self.base, call, result]
        ours.render(self.base)  # back to the history (untimed)
        gc.disable()
        self.times["ours"].append(timed(lambda: ours.render(msgs)))
        gc.enable()
        prompt = ours.render(msgs)
        self.prompt_len = prompt.length
        self.times["ours_tokens"].append(timed(lambda: prompt.tokens))
        # The same step again, its two messages now in the token cache: what is left is
        # the renderer's own bookkeeping, the only part that could grow with history.
        ours.render(self.base)
        gc.disable()
        self.times["ours_cached"].append(timed(lambda: ours.render(msgs)))
        gc.enable()

    def theirs_step(self, call: Message, result: Message) -> None:
        enc, cfg = self.enc, self.cfg
        msgs = [*self.converted, to_harmony(call), to_harmony(result)]
        convo = oh.Conversation.from_messages(msgs)
        gc.disable()
        self.times["theirs"].append(
            timed(
                lambda: enc.render_conversation_for_completion(
                    oh.Conversation.from_messages(msgs), oh.Role.ASSISTANT, cfg
                )
            )
        )
        self.times["theirs_render"].append(
            timed(lambda: enc.render_conversation_for_completion(convo, oh.Role.ASSISTANT, cfg))
        )
        gc.enable()
        self.theirs_len = len(enc.render_conversation_for_completion(convo, oh.Role.ASSISTANT, cfg))

    def result(self) -> dict[str, Any]:
        med = {k: statistics.median(v) for k, v in self.times.items()}
        return {
            "target_tokens": self.target,
            "history_tokens": self.history_tokens,
            "history_messages": len(self.base),
            "prompt_tokens_after_step": self.prompt_len,
            "openai_harmony_prompt_tokens": self.theirs_len,
            "steps_timed": len(self.times["ours"]),
            "ours_step_ms_median": med["ours"],
            "ours_step_ms_p90": _p90(self.times["ours"]),
            "ours_bookkeeping_ms_median": med["ours_cached"],
            "ours_tokens_list_ms_median": med["ours_tokens"],
            "openai_harmony_step_ms_median": med["theirs"],
            "openai_harmony_step_ms_p90": _p90(self.times["theirs"]),
            "openai_harmony_render_only_ms_median": med["theirs_render"],
        }


def _p90(xs: list[float]) -> float:
    return sorted(xs)[min(len(xs) - 1, int(0.9 * len(xs)))]


def bench_parse(mat: Material, repeats: int) -> dict[str, Any]:
    """Parse throughput on one long completion (reasoning, preamble, call), token by token."""
    enc = get_encoding()
    parts = []
    for _ in range(12):
        parts.append(f"<|channel|>analysis<|message|>{mat.page(3000)}<|end|><|start|>assistant")
    parts.append(
        "<|channel|>commentary<|message|>Fetching the last source.<|end|><|start|>assistant"
    )
    parts.append(
        '<|channel|>commentary to=functions.fetch_page <|constrain|>json<|message|>{"url": "x"}<|call|>'
    )
    text = "".join(parts)
    tokens = enc.encode(text, allowed_special="all")

    def ours_stream() -> None:
        p = StreamParser()
        for t in tokens:
            p.feed_tokens((t,))
        p.finish()

    def ours_whole() -> None:
        p = StreamParser()
        p.feed_tokens(tokens)
        p.finish()

    def theirs_stream() -> None:
        p = oh.StreamableParser(enc, oh.Role.ASSISTANT)
        for t in tokens:
            p.process(t)
        p.process_eos()

    def theirs_whole() -> None:
        enc.parse_messages_from_completion_tokens(tokens, oh.Role.ASSISTANT)

    # Same messages from both parsers (ours keeps the final call; the check is cheap).
    ours_msgs = StreamParser()
    ours_msgs.feed_tokens(tokens)
    n_ours = len(ours_msgs.finish().messages)
    n_theirs = len(enc.parse_messages_from_completion_tokens(tokens, oh.Role.ASSISTANT))
    out: dict[str, Any] = {"completion_tokens": len(tokens), "messages": [n_ours, n_theirs]}
    for name, fn in (
        ("ours_stream_token_by_token", ours_stream),
        ("ours_whole", ours_whole),
        ("openai_harmony_stream_token_by_token", theirs_stream),
        ("openai_harmony_whole", theirs_whole),
    ):
        ms = statistics.median(timed(fn) for _ in range(repeats))
        out[f"{name}_ms"] = ms
        out[f"{name}_tokens_per_s"] = len(tokens) / (ms / 1000)
    return out


# -- report ---------------------------------------------------------------------------


def print_table(sizes: list[dict[str, Any]], parse: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title="One agent step (append a tool call + its result, render), median of steps")
    for head in (
        "history tokens",
        "msgs",
        "ours ms/step",
        "ours: list of ids ms",
        "openai-harmony ms/step",
        "(render only) ms",
        "ours faster",
    ):
        table.add_column(head, justify="right")
    for s in sizes:
        table.add_row(
            f"{s['history_tokens']:,}",
            str(s["history_messages"]),
            f"{s['ours_step_ms_median']:.3f}",
            f"{s['ours_tokens_list_ms_median']:.3f}",
            f"{s['openai_harmony_step_ms_median']:.2f}",
            f"{s['openai_harmony_render_only_ms_median']:.2f}",
            f"{s['openai_harmony_step_ms_median'] / s['ours_step_ms_median']:.0f}x",
        )
    console.print(table)
    first, last = sizes[0], sizes[-1]
    growth = last["ours_step_ms_median"] / first["ours_step_ms_median"]
    console.print(
        f"ours per-step cost {first['history_tokens']:,} -> {last['history_tokens']:,} tokens: "
        f"{growth:.2f}x (goal <= 1.2x); bookkeeping alone {first['ours_bookkeeping_ms_median']:.3f}"
        f" -> {last['ours_bookkeeping_ms_median']:.3f} ms"
    )
    table = Table(title=f"Parse throughput, one {parse['completion_tokens']:,}-token completion")
    for head in ("parser", "streamed token by token, tok/s", "whole, tok/s"):
        table.add_column(head, justify="right")
    for name, key in (("ours (StreamParser)", "ours"), ("openai-harmony", "openai_harmony")):
        table.add_row(
            name,
            f"{parse[f'{key}_stream_token_by_token_tokens_per_s']:,.0f}",
            f"{parse[f'{key}_whole_tokens_per_s']:,.0f}",
        )
    console.print(table)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=40, help="agent steps timed per size")
    ap.add_argument("--repeats", type=int, default=7, help="parse runs (median)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()

    mat = Material()
    get_encoding()
    # The same steps (same text, distinct from all history) at every size; sizes are
    # interleaved step by step so that machine noise falls on all of them alike.
    step_msgs = [Material().step(100_000 + i) for i in range(args.steps)]
    cases = [SizeCase(n, mat) for n in SIZES]
    for case in cases:  # warm-up, untimed
        case.ours_step(*mat.step(99_999))
        case.theirs_step(*mat.step(99_998))
        case.times = {k: [] for k in case.times}
    for call, result in step_msgs:
        for case in cases:
            case.ours_step(call, result)
            case.theirs_step(call, result)
    sizes = [case.result() for case in cases]
    parse = bench_parse(mat, args.repeats)
    growth = sizes[-1]["ours_step_ms_median"] / sizes[0]["ours_step_ms_median"]
    report = {
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
        },
        "openai_harmony": getattr(oh, "__version__", None) or _version("openai-harmony"),
        "step": "append one tool call + its result, render the prompt for completion",
        "sizes": sizes,
        "ours_step_growth_first_to_last": growth,
        "goal_growth_at_most": 1.2,
        "parse": parse,
    }
    print_table(sizes, parse)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")


def _version(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


if __name__ == "__main__":
    main()
