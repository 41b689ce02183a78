"""Constrained decoding overhead: ms per token with and without the JSON-Schema grammar.

The tiny random gpt-oss of the tests (2 layers, width 64, the real 201,088-token
vocabulary) generates a final answer's body on the CPU, with the same forced prefix
(a reasoning message and the final channel's opening) and the same seeds, twice:

  (a) unconstrained: the body is free (random tokens until the token budget);
  (b) constrained: the body is generated under a nested JSON Schema (llguidance).

A timing processor placed last in the chain stamps every step, so a token's time is
forward pass + logits processors + sampling; only the body's tokens are counted. The
tiny model's forward pass is cheap, so the ratio here is an upper bound on what a real
gpt-oss (whose forward pass costs far more) would see. Also reported: building the
llguidance tokenizer for o200k_harmony (once per process) and compiling the schema
(once per schema, cached). Results: a table on stdout and
`bench/results/constrained.json`.

    TIKTOKEN_ENCODINGS_BASE=../shared/vocab python bench/constrained_bench.py
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Annotated, Any, Literal

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TIKTOKEN_ENCODINGS_BASE", str((ROOT / ".." / "shared" / "vocab").resolve()))

import torch  # noqa: E402
from harmonygraph.harmony.encoding import get_encoding  # noqa: E402
from harmonygraph.harmony.messages import Message  # noqa: E402
from harmonygraph.harmony.prompt import DeveloperConfig, ResponseFormat, SystemConfig  # noqa: E402
from harmonygraph.models.base import ModelRequest, ModelSettings  # noqa: E402
from harmonygraph.models.grammar import (  # noqa: E402
    HarmonyJsonSchemaProcessor,
    compile_json_schema,
    harmony_tokenizer,
    tokenizer_build_seconds,
)
from harmonygraph.models.transformers import TransformersModel  # noqa: E402
from pydantic import BaseModel, Field  # noqa: E402
from transformers import AutoModelForCausalLM, GptOssConfig  # noqa: E402

OPEN_FINAL = (
    "<|channel|>analysis<|message|>Answer with the record.<|end|>"
    "<|start|>assistant<|channel|>final<|message|>"
)


class Address(BaseModel):
    city: Annotated[str, Field(max_length=12)]
    zip_code: Annotated[str, Field(max_length=5)] | None = None


class Person(BaseModel):
    name: Annotated[str, Field(max_length=16)]
    age: Annotated[int, Field(ge=0, le=120)]
    role: Literal["admin", "user", "guest"]
    address: Address
    pets: Annotated[list[Address], Field(max_length=3)]
    verified: bool


class Prefix:
    """Forces the scripted prefix, then lets the model sample."""

    def __init__(self, tokens: list[int], prompt_length: int) -> None:
        self.tokens, self.prompt_length = tokens, prompt_length

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        pos = input_ids.shape[1] - self.prompt_length
        if pos >= len(self.tokens):
            return scores
        forced = torch.full_like(scores, float("-inf"))
        forced[:, self.tokens[pos]] = 0.0
        return forced


class Clock:
    """Stamps each step. Wherever it sits in the chain, the time between two stamps is
    one whole step: the other processors (the grammar too), sampling, the forward pass."""

    def __init__(self, prompt_length: int) -> None:
        self.prompt_length = prompt_length
        self.stamps: list[tuple[int, float]] = []

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        self.stamps.append((input_ids.shape[1] - self.prompt_length, time.perf_counter()))
        return scores

    def body_step_seconds(self, prefix: int) -> list[float]:
        """The duration of each step that sampled a body token (after the prefix)."""
        return [
            t1 - t0
            for (pos0, t0), (_pos1, t1) in zip(self.stamps, self.stamps[1:], strict=False)
            if pos0 >= prefix
        ]


def tiny_model() -> Any:
    config = GptOssConfig(
        vocab_size=201_088,
        hidden_size=64,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        num_local_experts=4,
        num_experts_per_tok=2,
        sliding_window=128,
        layer_types=["sliding_attention", "full_attention"],
        eos_token_id=[200002, 200012],
        pad_token_id=199999,
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    hf_model = tiny_model()
    prefix_ids = get_encoding().encode(OPEN_FINAL, allowed_special="all")
    fmt = ResponseFormat.from_type(Person)

    started = time.perf_counter()
    harmony_tokenizer()
    tokenizer_s = tokenizer_build_seconds() or (time.perf_counter() - started)
    compiled = compile_json_schema(fmt.schema)

    clocks: list[Clock] = []

    def processors(prompt: Any) -> list[Any]:
        clocks.append(Clock(len(prompt)))
        return [clocks[-1], Prefix(prefix_ids, len(prompt))]

    results: dict[str, dict[str, Any]] = {}
    for label, enforce in (("unconstrained", False), ("constrained", True)):
        model = TransformersModel(
            hf_model, enforce_output_schema=enforce, logits_processors=processors
        )
        steps: list[float] = []
        mask_s = 0.0
        masks = 0
        valid = 0
        for i in range(args.warmup + args.runs):
            request = ModelRequest(
                system=SystemConfig(current_date="2025-01-01", reasoning="low"),
                developer=DeveloperConfig(response_format=fmt),
                messages=(Message.user("Describe someone."),),
                settings=ModelSettings(max_tokens=len(prefix_ids) + args.body_tokens, seed=i),
            )
            response = await model.complete(request)
            if i < args.warmup:
                continue
            steps.extend(clocks[-1].body_step_seconds(len(prefix_ids)))
            grammar = next(
                (p for p in model.last_processors if isinstance(p, HarmonyJsonSchemaProcessor)),
                None,
            )
            if grammar is not None:
                mask_s += grammar.mask_seconds
                masks += grammar.constrained_tokens
                final = next(m for m in response.messages if m.channel == "final")
                Person.model_validate_json(final.content)  # raises if the grammar failed
                valid += 1
        results[label] = {
            "tokens": len(steps),
            "ms_per_token": 1000 * statistics.fmean(steps),
            "ms_per_token_median": 1000 * statistics.median(steps),
            "grammar_mask_ms_per_token": (1000 * mask_s / masks) if masks else None,
            "answers_valid": valid if enforce else None,
        }
    ratio = results["constrained"]["ms_per_token"] / results["unconstrained"]["ms_per_token"]
    return {
        "model": "tiny random gpt-oss (2 layers, hidden 64, 4 experts, vocab 201088, fp32)",
        "grammar_library": "llguidance",
        "threads": args.threads,
        "runs": args.runs,
        "tokenizer_build_s": tokenizer_s,
        "schema_compile_ms": 1000 * compiled.compile_s,
        "results": results,
        "overhead_ratio": ratio,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="generations per mode (seeds)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--body-tokens", type=int, default=96, help="token budget of the body")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "constrained.json"))
    args = parser.parse_args()
    report = asyncio.run(run(args))
    un, co = report["results"]["unconstrained"], report["results"]["constrained"]
    print(f"{'mode':<15} {'tokens':>7} {'ms/token':>9} {'median':>8} {'mask ms/token':>14}")
    for label, row in (("unconstrained", un), ("constrained", co)):
        mask = row["grammar_mask_ms_per_token"]
        print(
            f"{label:<15} {row['tokens']:>7} {row['ms_per_token']:>9.2f} "
            f"{row['ms_per_token_median']:>8.2f} {'-' if mask is None else f'{mask:.2f}':>14}"
        )
    print(
        f"overhead ratio (constrained / unconstrained ms per token): {report['overhead_ratio']:.2f}"
    )
    print(f"answers valid under the grammar: {co['answers_valid']}/{report['runs']}")
    print(
        f"llguidance tokenizer for o200k_harmony: {report['tokenizer_build_s']:.2f} s (once per process)"
    )
    print(f"schema compile: {report['schema_compile_ms']:.1f} ms (once per schema, cached)")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
