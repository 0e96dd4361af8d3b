"""Fusion functions: ranked lists from several retrievers in, one score per item out.

Pure functions, picked by name, so experiments can compare them on equal terms.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from mmsearch.errors import QueryError

RankedLists = Mapping[str, Sequence[str]]
FusionFunction = Callable[..., dict[str, float]]


def reciprocal_rank_fusion(ranked: RankedLists, k: int = 60) -> dict[str, float]:
    """RRF (Cormack et al. 2009): sum of 1/(k + rank); scale-free, so BM25 and cosine mix fairly."""
    if k < 1:
        raise QueryError("The RRF constant k must be at least 1.")
    scores: dict[str, float] = {}
    for ids in ranked.values():
        for rank, item_id in enumerate(ids, start=1):
            scores[item_id] = scores.get(item_id, 0.0) + 1.0 / (k + rank)
    return scores


FUSIONS: dict[str, FusionFunction] = {"rrf": reciprocal_rank_fusion}


def fusion_by_name(name: str) -> FusionFunction:
    try:
        return FUSIONS[name]
    except KeyError:
        raise QueryError(
            f"Unknown fusion '{name}'; choose one of: {', '.join(sorted(FUSIONS))}."
        ) from None


def order_by_score(scores: Mapping[str, float]) -> list[str]:
    """Highest score first; ties broken by id so results are stable across runs."""
    return sorted(scores, key=lambda item_id: (-scores[item_id], item_id))
