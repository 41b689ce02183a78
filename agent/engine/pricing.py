"""Token usage and its estimated cost."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from harmonygraph.models.base import Usage

__all__ = ["DEFAULT_PRICES", "Price", "estimate_cost"]


@dataclass(frozen=True, slots=True)
class Price:
    """US dollars per 1,000 tokens."""

    input_per_1k: float
    output_per_1k: float


# Per-1K-token list prices of hosted gpt-oss endpoints (configurable; they change):
# gpt-oss-20b at $0.002 in / $0.004 out, gpt-oss-120b at twice that.
DEFAULT_PRICES: dict[str, Price] = {
    "gpt-oss-20b": Price(0.002, 0.004),
    "gpt-oss-120b": Price(0.004, 0.008),
}


def estimate_cost(
    model: str, usage: Usage, prices: Mapping[str, Price] | None = None
) -> float | None:
    """The estimated cost of `usage` on `model`, or None when no price is known.

    Matches by the model's last path part with any `:tag` dropped, so
    `openai/gpt-oss-20b` and Ollama's `gpt-oss:20b` both find `gpt-oss-20b`.
    """
    table = DEFAULT_PRICES if prices is None else prices
    key = model.rsplit("/", 1)[-1].lower()
    candidates = [key, key.replace(":", "-"), key.split(":", 1)[0]]
    for c in candidates:
        if c in table:
            p = table[c]
            return round(
                usage.input_tokens / 1000 * p.input_per_1k
                + usage.output_tokens / 1000 * p.output_per_1k,
                6,
            )
    return None
