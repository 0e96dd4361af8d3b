"""Metrics and significance tests over configuration runs, computed with ranx.

ranx is used rather than hand-written metrics so that the numbers match what the
IR community reports (same nDCG gain, same MAP definition) and the paired tests
come from a maintained implementation. Only queries that have judgments are
scored; judged queries a run did not answer score 0 (``make_comparable``).

ranx is imported through ``ranking.ranx_import``, which turns numba's compiler off.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

from mmsearch.errors import EvaluationError
from mmsearch.evaluation.judgments import Judgments
from mmsearch.evaluation.runner import ConfigRun
from mmsearch.ranking.ranx_import import import_ranx

METRICS = ("ndcg@10", "recall@10", "recall@100", "mrr@10", "map")
STAT_TESTS = {"student": "paired t-test", "fisher": "Fisher's randomisation test"}
MAX_P = 0.05


@dataclass
class Comparison:
    """One configuration against the baseline, per metric."""

    p_values: dict[str, float]
    significant: dict[str, bool]
    win_tie_loss: dict[str, dict[str, int]]


@dataclass
class Evaluation:
    """Mean metrics, per-query metrics and baseline comparisons of an experiment."""

    metrics: list[str]
    query_ids: list[str]
    means: dict[str, dict[str, float]]
    per_query: dict[str, dict[str, dict[str, float]]]
    baseline: str
    stat_test: str
    comparisons: dict[str, Comparison] = field(default_factory=dict)
    unjudged_queries: list[str] = field(default_factory=list)


def evaluate_runs(
    judgments: Judgments,
    runs: list[ConfigRun],
    *,
    metrics: tuple[str, ...] = METRICS,
    stat_test: str = "student",
) -> Evaluation:
    """Score every run on the judged queries and compare each one with the first run."""
    ranx = import_ranx()
    Qrels, Run, compare, evaluate = ranx.Qrels, ranx.Run, ranx.compare, ranx.evaluate

    if not runs:
        raise EvaluationError("There is no configuration to evaluate.")
    if stat_test not in STAT_TESTS:
        raise EvaluationError(
            f"Unknown significance test {stat_test!r}; choose one of: {', '.join(STAT_TESTS)}."
        )
    asked = list(runs[0].rankings)
    judged = [query_id for query_id in asked if query_id in judgments]
    if not judged:
        raise EvaluationError(
            "None of the queries has judgments; check that the query ids in the queries "
            "file match the first column of the judgments file."
        )
    qrels = Qrels({query_id: dict(judgments[query_id]) for query_id in judged})
    ranx_runs = []
    means: dict[str, dict[str, float]] = {}
    per_query: dict[str, dict[str, dict[str, float]]] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # numba's type-safety notes are not the user's concern
        for run in runs:
            scores = run.ranx_run()
            ranx_run = Run({query_id: scores.get(query_id, {}) for query_id in judged})
            ranx_run.name = run.config.name
            result = evaluate(qrels, ranx_run, list(metrics), make_comparable=True)
            means[run.config.name] = _as_floats(result, metrics)
            per_query[run.config.name] = {
                query_id: {
                    metric: float(ranx_run.scores[metric].get(query_id, 0.0)) for metric in metrics
                }
                for query_id in judged
            }
            ranx_runs.append(ranx_run)
        comparisons = (
            _compare(qrels, ranx_runs, metrics, stat_test, compare) if len(runs) > 1 else {}
        )
    return Evaluation(
        metrics=list(metrics),
        query_ids=judged,
        means=means,
        per_query=per_query,
        baseline=runs[0].config.name,
        stat_test=stat_test,
        comparisons=comparisons,
        unjudged_queries=[query_id for query_id in asked if query_id not in judgments],
    )


def _as_floats(result: Any, metrics: tuple[str, ...]) -> dict[str, float]:
    if not isinstance(result, dict):  # ranx returns a bare number for a single metric
        return {metrics[0]: float(result)}
    return {metric: float(result[metric]) for metric in metrics}


def _compare(
    qrels: Any, ranx_runs: list[Any], metrics: tuple[str, ...], stat_test: str, compare: Any
) -> dict[str, Comparison]:
    report = compare(
        qrels,
        ranx_runs,
        list(metrics),
        stat_test=stat_test,
        max_p=MAX_P,
        make_comparable=True,
        random_seed=42,
        rounding_digits=6,
    ).to_dict()
    baseline = ranx_runs[0].name
    comparisons = {}
    for run in ranx_runs[1:]:
        p_values = {m: float(report[baseline]["comparisons"][run.name][m]) for m in metrics}
        comparisons[run.name] = Comparison(
            p_values=p_values,
            significant={m: p_values[m] < MAX_P for m in metrics},
            win_tie_loss={m: dict(report[run.name]["win_tie_loss"][baseline][m]) for m in metrics},
        )
    return comparisons
