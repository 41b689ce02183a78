"""A tiny randomly initialised gpt-oss, built once per session on the CPU.

The model tests need torch and transformers, the constrained ones llguidance too:
`pip install torch==2.13.0 transformers llguidance` (CPU torch), or the
`harmonygraph[transformers]` extra. Without them those tests are skipped, with the
reason; the two-phase HTTP tests (`test_two_phase.py`) need none of them.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

_VOCAB = Path(__file__).resolve().parents[3] / "shared" / "vocab"
if "TIKTOKEN_ENCODINGS_BASE" not in os.environ and _VOCAB.is_dir():
    os.environ["TIKTOKEN_ENCODINGS_BASE"] = str(_VOCAB)

from harmonygraph.harmony.encoding import get_encoding  # noqa: E402
from harmonygraph.models.transformers import TransformersModel  # noqa: E402

from tests.ci import require  # noqa: E402

VOCAB_SIZE = 201_088


def tiny_config() -> Any:
    """A few layers of gpt-oss at toy width with the real o200k_harmony vocabulary size.

    About 26M parameters, nearly all in the two 201088 x 64 embedding matrices; both
    attention kinds (sliding and full) and the mixture of experts are exercised.
    """
    from transformers import GptOssConfig

    return GptOssConfig(
        vocab_size=VOCAB_SIZE,
        hidden_size=64,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        num_local_experts=4,
        num_experts_per_tok=2,
        max_position_embeddings=131072,  # gpt-oss's: YaRN's factor 32 over 4096
        sliding_window=128,
        layer_types=["sliding_attention", "full_attention"],
        eos_token_id=[200002, 200012],
        pad_token_id=199999,
        bos_token_id=199998,
        tie_word_embeddings=False,
    )


@pytest.fixture(scope="session")
def tiny_hf_model() -> Any:
    torch = require("torch")
    require("transformers")
    from transformers import AutoModelForCausalLM

    # One thread: on a shared 2-core runner, OpenMP's spinning workers fight the other
    # processes and a 20-token generation goes from ~0.5 s to ~5 s.
    torch.set_num_threads(1)
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(tiny_config(), dtype=torch.float32).eval()


class ForceTokens:
    """A logits processor that allows only the next token of a script, then anything.

    It drives the real model code through a harmony completion chosen by the test: the
    forward pass, the cache and the sampler all run; only the choice is forced.
    """

    def __init__(self, tokens: Sequence[int], prompt_length: int) -> None:
        self.tokens = list(tokens)
        self.prompt_length = prompt_length

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        pos = input_ids.shape[1] - self.prompt_length
        if pos >= len(self.tokens):
            return scores
        forced = torch.full_like(scores, float("-inf"))
        forced[:, self.tokens[pos]] = 0.0
        return forced


class Script:
    """Harmony completions to force, one per model call, as `logits_processors` wants."""

    def __init__(self, *completions: str) -> None:
        enc = get_encoding()
        self.turns = [enc.encode(c, allowed_special="all") for c in completions]
        self.prompts: list[list[int]] = []

    def __call__(self, prompt: Sequence[int]) -> list[ForceTokens]:
        self.prompts.append(list(prompt))
        if not self.turns:
            raise AssertionError("the script has no completion left for this model call")
        return [ForceTokens(self.turns.pop(0), len(prompt))]


@pytest.fixture
def llguidance() -> Any:
    return require("llguidance")


@pytest.fixture
def tiny_model(tiny_hf_model: Any) -> TransformersModel:
    return TransformersModel(tiny_hf_model, name="tiny-gpt-oss")
