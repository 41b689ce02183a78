"""Fusion: merging a text and a vector ranking into one (hybrid search)."""

from __future__ import annotations

from harmonygraph.tools.retrieval.records import SearchHit

__all__ = ["RRF_K", "fuse_convex", "fuse_rrf"]

# The RRF constant of Cormack et al.
RRF_K = 60


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
