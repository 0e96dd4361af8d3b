"""Fusion functions: ranked lists from several retrievers in, one score per item out.

Pure functions, picked by name, so experiments can compare them on equal terms:

- ``rrf``: Reciprocal Rank Fusion, ``Σ w_s / (k + rank_s)``; scale-free, the default.
- ``weighted``: a convex combination of each retriever's raw scores after min-max or
  z-score normalisation *within that retriever's list* (BM25 and cosine live on
  different scales, so raw scores cannot be added directly).
- ``dbsf``: distribution-based score fusion (as in Qdrant): each list is mapped
  onto ``[mean - 3sd, mean + 3sd] → [0, 1]`` (clipped), then the lists are summed.

In every method an item a retriever did not return contributes 0 from that retriever.
Signals without an explicit weight get weight 1. Every method also reports, per item
and signal, the raw score, rank, normalised value, weight and contribution, which
is what explanations show: the fused score is exactly the sum of the contributions.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from mmsearch.errors import QueryError

Normalisation = Literal["minmax", "zscore"]


class Scored(Protocol):
    """Anything with an id and a higher-is-better score (``index.base.Match`` fits)."""

    @property
    def id(self) -> str: ...

    @property
    def score(self) -> float: ...


RankedEntry = str | Scored
RankedLists = Mapping[str, Sequence[RankedEntry]]


@dataclass(frozen=True)
class SignalContribution:
    """How one retriever's result for one item entered the fused score."""

    score: float  # the retriever's raw score (0.0 when only ids were given)
    rank: int
    normalised: float  # the per-method transform of score or rank
    weight: float
    contribution: float  # weight x normalised; the fused score sums these


Contributions = dict[str, dict[str, SignalContribution]]  # item id -> signal -> contribution


class FusionParams(BaseModel):
    """Typed knobs of the fusion methods; each method reads the ones it needs."""

    model_config = ConfigDict(frozen=True)

    k: int = Field(default=60, ge=1, description="RRF constant")
    weights: dict[str, float] | None = Field(
        default=None, description="per-signal weights; signals not named get 1.0"
    )
    normalisation: Normalisation = "minmax"


@dataclass(frozen=True)
class FusionResult:
    scores: dict[str, float]
    contributions: Contributions


def _entry(entry: RankedEntry) -> tuple[str, float]:
    if isinstance(entry, str):
        return entry, 0.0
    return entry.id, float(entry.score)


def _weight(weights: Mapping[str, float] | None, signal: str) -> float:
    if weights is None:
        return 1.0
    return float(weights.get(signal, 1.0))


def check_weights(weights: Mapping[str, float] | None, ranked: RankedLists | None = None) -> None:
    """Weights must be finite and >= 0, and the query's signals cannot all weigh 0.

    A signal with weight > 0 that happens to return nothing for one query is fine: the
    fused scores are then all 0 for that query, which is what the weights say.
    """
    if weights is None:
        return
    for signal, value in weights.items():
        if not math.isfinite(value) or value < 0:
            raise QueryError(f"The weight of '{signal}' must be a number >= 0, got {value}.")
    signals = list(ranked or {})
    if signals and all(_weight(weights, signal) == 0 for signal in signals):
        raise QueryError(
            f"Every signal of this query ({', '.join(sorted(signals))}) has weight 0; "
            "give at least one a weight above 0."
        )


def _collect(
    ranked: RankedLists,
    normalise: Callable[[list[float], list[int]], list[float]],
    weights: Mapping[str, float] | None,
) -> Contributions:
    out: Contributions = {}
    for signal, entries in ranked.items():
        pairs = [_entry(e) for e in entries]
        if not pairs:
            continue
        scores = [score for _, score in pairs]
        ranks = list(range(1, len(pairs) + 1))
        weight = _weight(weights, signal)
        for (item_id, score), rank, value in zip(
            pairs, ranks, normalise(scores, ranks), strict=True
        ):
            out.setdefault(item_id, {})[signal] = SignalContribution(
                score, rank, value, weight, weight * value
            )
    return out


def rrf_contributions(ranked: RankedLists, params: FusionParams) -> Contributions:
    """Weighted RRF: normalised = 1 / (k + rank)."""
    check_weights(params.weights, ranked)
    return _collect(ranked, lambda _s, ranks: [1.0 / (params.k + r) for r in ranks], params.weights)


def min_max(scores: Sequence[float]) -> list[float]:
    """Map onto [0, 1]; a list whose scores are all equal maps to 1.0 (all tie for best)."""
    low, high = min(scores), max(scores)
    if high - low <= 1e-12:
        return [1.0 for _ in scores]
    return [(s - low) / (high - low) for s in scores]


def z_score(scores: Sequence[float]) -> list[float]:
    """Standard score (population sd); a list with sd = 0 maps to 0.0."""
    mean = sum(scores) / len(scores)
    sigma = math.sqrt(sum((s - mean) ** 2 for s in scores) / len(scores))
    if sigma <= 1e-12:
        return [0.0 for _ in scores]
    return [(s - mean) / sigma for s in scores]


def three_sigma(scores: Sequence[float]) -> list[float]:
    """DBSF's normalisation: [mean - 3sd, mean + 3sd] → [0, 1], clipped; sd = 0 maps to 0.5."""
    mean = sum(scores) / len(scores)
    sigma = math.sqrt(sum((s - mean) ** 2 for s in scores) / len(scores))
    if sigma <= 1e-12:
        return [0.5 for _ in scores]
    low = mean - 3 * sigma
    return [min(1.0, max(0.0, (s - low) / (6 * sigma))) for s in scores]


def _convex(ranked: RankedLists, weights: Mapping[str, float] | None) -> dict[str, float]:
    """Weights of the signals that answered, scaled to sum to 1 (fused scores in [0, 1])."""
    check_weights(weights, ranked)
    raw = {signal: _weight(weights, signal) for signal, entries in ranked.items() if entries}
    total = sum(raw.values())
    return {signal: (value / total if total > 0 else 0.0) for signal, value in raw.items()}


def weighted_contributions(ranked: RankedLists, params: FusionParams) -> Contributions:
    """Convex combination of per-list normalised raw scores."""
    norm = min_max if params.normalisation == "minmax" else z_score
    return _collect(ranked, lambda scores, _r: norm(scores), _convex(ranked, params.weights))


def dbsf_contributions(ranked: RankedLists, params: FusionParams) -> Contributions:
    """Sum of (weighted) 3sd-normalised scores."""
    check_weights(params.weights, ranked)
    return _collect(ranked, lambda scores, _r: three_sigma(scores), params.weights)


ContributionFunction = Callable[[RankedLists, FusionParams], Contributions]
_CONTRIBUTIONS: dict[str, ContributionFunction] = {
    "rrf": rrf_contributions,
    "weighted": weighted_contributions,
    "dbsf": dbsf_contributions,
}


def _sum(contributions: Contributions) -> dict[str, float]:
    return {item: sum(c.contribution for c in by.values()) for item, by in contributions.items()}


def reciprocal_rank_fusion(
    ranked: RankedLists, k: int = 60, weights: Mapping[str, float] | None = None
) -> dict[str, float]:
    """RRF (Cormack et al. 2009): sum of w/(k + rank); scale-free, so BM25 and cosine mix fairly."""
    if k < 1:
        raise QueryError("The RRF constant k must be at least 1.")
    return _sum(rrf_contributions(ranked, FusionParams(k=k, weights=_dict(weights))))


def weighted_score_fusion(
    ranked: RankedLists,
    weights: Mapping[str, float] | None = None,
    normalisation: Normalisation = "minmax",
) -> dict[str, float]:
    """Convex combination of min-max or z-score normalised raw scores."""
    params = FusionParams(weights=_dict(weights), normalisation=normalisation)
    return _sum(weighted_contributions(ranked, params))


def distribution_based_score_fusion(
    ranked: RankedLists, weights: Mapping[str, float] | None = None
) -> dict[str, float]:
    """DBSF: sum of mean ± 3sd normalised scores."""
    return _sum(dbsf_contributions(ranked, FusionParams(weights=_dict(weights))))


def _dict(weights: Mapping[str, float] | None) -> dict[str, float] | None:
    return None if weights is None else dict(weights)


FusionFunction = Callable[..., dict[str, float]]
FUSIONS: dict[str, FusionFunction] = {
    "rrf": reciprocal_rank_fusion,
    "weighted": weighted_score_fusion,
    "dbsf": distribution_based_score_fusion,
}


def fusion_by_name(name: str) -> FusionFunction:
    if name not in FUSIONS:
        raise QueryError(f"Unknown fusion '{name}'; choose one of: {', '.join(sorted(FUSIONS))}.")
    return FUSIONS[name]


def fuse(name: str, ranked: RankedLists, params: FusionParams) -> FusionResult:
    """The one entry point search uses: scores plus the per-signal breakdown behind them."""
    fusion_by_name(name)  # same error for an unknown name
    contributions = _CONTRIBUTIONS[name](ranked, params)
    return FusionResult(_sum(contributions), contributions)


def order_by_score(scores: Mapping[str, float]) -> list[str]:
    """Highest score first; ties broken by id so results are stable across runs."""
    return sorted(scores, key=lambda item_id: (-scores[item_id], item_id))
