"""Choosing LambdaMART's parameters by query-grouped cross-validation.

Hand-set parameters were tuned for no collection in particular; with about a hundred
training queries the model's size (leaves, trees, learning rate, the least rows per
leaf) decides whether it learns the features or memorises the training queries. Each
candidate setting is scored by the mean held-out nDCG@10 of an inner cross-validation
whose folds split *queries* (a query's candidates never straddle train and test); the
best one is returned. The grid is small on purpose: every setting costs ``folds`` fits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mmsearch.ranking.training import Judgments, QueryPool, cross_validate

# Sizes from small to large; feature_fraction < 1 decorrelates the trees a little.
PARAM_GRID: tuple[dict[str, Any], ...] = (
    {"num_leaves": 7, "learning_rate": 0.05, "n_estimators": 200, "min_child_samples": 20},
    {"num_leaves": 15, "learning_rate": 0.05, "n_estimators": 200, "min_child_samples": 20},
    {"num_leaves": 31, "learning_rate": 0.05, "n_estimators": 200, "min_child_samples": 50},
    {"num_leaves": 7, "learning_rate": 0.1, "n_estimators": 100, "min_child_samples": 50},
    {
        "num_leaves": 15,
        "learning_rate": 0.03,
        "n_estimators": 400,
        "min_child_samples": 20,
        "colsample_bytree": 0.8,
    },
    {"num_leaves": 3, "learning_rate": 0.1, "n_estimators": 300, "min_child_samples": 20},
)


@dataclass(frozen=True)
class ParamScore:
    params: dict[str, Any]
    ndcg10: float


def search_params(
    pools: list[QueryPool],
    judgments: Judgments,
    *,
    grid: Sequence[dict[str, Any]] = PARAM_GRID,
    folds: int = 3,
    seed: int = 29,
) -> tuple[dict[str, Any], list[ParamScore]]:
    """The grid entry with the best inner-CV nDCG@10 (the first on ties), and every score."""
    scores: list[ParamScore] = []
    for params in grid:
        reports = cross_validate(pools, judgments, folds=folds, seed=seed, params=params)
        value = float(np.mean([r.model_ndcg10 for r in reports])) if reports else float("nan")
        scores.append(ParamScore(dict(params), round(value, 4)))
    best = max(scores, key=lambda s: (s.ndcg10, -scores.index(s)))
    return best.params, scores


def feature_importance(booster: Any, names: list[str], top: int = 15) -> list[tuple[str, float]]:
    """The features with the most total split gain, as shares of the model's gain."""
    gains = np.asarray(booster.feature_importance(importance_type="gain"), dtype=np.float64)
    total = float(gains.sum()) or 1.0
    order = np.argsort(-gains)[:top]
    return [(names[i], round(float(gains[i]) / total, 4)) for i in order if gains[i] > 0]
