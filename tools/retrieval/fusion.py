"""Fusion: merging a text and a vector ranking into one (hybrid search).

`auto` (the default) chooses per query, by its type. A query phrased as a question ("Which
U.S. state has been admitted latest?") is answered by the vector ranking alone: its words
are the question's, not the answer's, so BM25 (terms ORed) ranks whatever repeats `state`
or `admitted`, and fusing that in pulls good dense hits down. Every other query (keywords,
a title, a claim, a description) gets reciprocal rank fusion, which beats both rankers
there. Measured on three development sets in bench/retrieval_bench.py (README,
Benchmarks); it is a rule about query types, with no constant fitted to a set.
"""

from __future__ import annotations

import re

from harmonygraph.tools.retrieval.records import Fusion, SearchHit

__all__ = [
    "DEFAULT_FUSION",
    "FUSIONS",
    "RRF_K",
    "fuse_convex",
    "fuse_rrf",
    "is_question",
]

# The RRF constant of Cormack et al.
RRF_K = 60
FUSIONS: tuple[Fusion, ...] = ("auto", "rrf", "convex")
DEFAULT_FUSION: Fusion = "auto"

# An English question opens with a wh-word or an auxiliary verb ("Is", "Does", "Can").
_QUESTION_START = re.compile(
    r"^\W*(who|whom|whose|what|which|when|where|why|how|is|are|was|were|am|do|does|did"
    r"|can|could|should|would|will|shall|may|might|has|have|had)\b",
    re.IGNORECASE,
)


def is_question(query: str, *, english: bool = True) -> bool:
    """Whether `query` is phrased as a question: it ends with `?`, or (in English) opens
    with a wh-word or an auxiliary verb. Keywords, titles and claims are not questions."""
    text = query.strip()
    return text.endswith("?") or (english and _QUESTION_START.match(text) is not None)


def fuse_rrf(text_hits: list[SearchHit], vector_hits: list[SearchHit], k: int) -> list[SearchHit]:
    """Reciprocal rank fusion: score = sum over lists of 1 / (RRF_K + rank)."""
    fused: dict[str, SearchHit] = {}
    scores: dict[str, float] = {}
    for rank, hit in enumerate(vector_hits, 1):
        fused[hit.id] = hit.model_copy(update={"mode": "hybrid", "vector_rank": rank})
        scores[hit.id] = 1.0 / (RRF_K + rank)
    for rank, hit in enumerate(text_hits, 1):
        if hit.id in fused:
            fused[hit.id].text_rank = rank
        else:
            fused[hit.id] = hit.model_copy(update={"mode": "hybrid", "text_rank": rank})
        scores[hit.id] = scores.get(hit.id, 0.0) + 1.0 / (RRF_K + rank)
    order = sorted(scores, key=lambda h: (-scores[h], h))[:k]
    return [fused[h].model_copy(update={"score": scores[h]}) for h in order]


def fuse_convex(
    text_hits: list[SearchHit], vector_hits: list[SearchHit], k: int, alpha: float = 0.5
) -> list[SearchHit]:
    """alpha x text score + (1 - alpha) x vector score, each min-max normalised over its
    list; a chunk missing from a list gets 0 from it (Bruch et al., 2023)."""
    fused: dict[str, SearchHit] = {}
    scores: dict[str, float] = {}
    for weight, hits, rank_field in (
        (alpha, text_hits, "text_rank"),
        (1.0 - alpha, vector_hits, "vector_rank"),
    ):
        if not hits:
            continue
        low = min(h.score for h in hits)
        span = max(h.score for h in hits) - low
        for rank, hit in enumerate(hits, 1):
            if hit.id in fused:
                setattr(fused[hit.id], rank_field, rank)
            else:
                fused[hit.id] = hit.model_copy(update={"mode": "hybrid", rank_field: rank})
            norm = (hit.score - low) / span if span > 0 else 1.0
            scores[hit.id] = scores.get(hit.id, 0.0) + weight * norm
    order = sorted(scores, key=lambda h: (-scores[h], h))[:k]
    return [fused[h].model_copy(update={"score": scores[h]}) for h in order]
