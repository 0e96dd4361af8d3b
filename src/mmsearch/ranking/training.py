"""Training the reranker: query-grouped CV and a final fit over candidate pools.

Every training query's candidates (all planned retrievers to depth ``candidates``,
rules off, exactly as at query time) become rows of features, labelled with their
judged grade (0 when unjudged). Collecting those pools means running real searches,
which is orchestration and lives in ``search/training.py``; this module only sees the
pools, so ``ranking/`` never imports the search layer. Cross-validation splits
*queries* into folds (a query's candidates never straddle train and test), and
reports nDCG@10 of plain RRF and of the model on each held-out fold with ranx, on the
same candidate pools. The saved model is then fitted on all queries.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mmsearch.manifest import BuildManifest
from mmsearch.ranking.model import RankerMeta, RankerModel, encoder_signature, fit_lambdamart
from mmsearch.ranking.ranx_import import import_ranx

Judgments = dict[str, dict[str, int]]


@dataclass
class QueryPool:
    """One query's candidates, their features and labels, and the RRF order as baseline."""

    qid: str
    ids: list[str]
    x: np.ndarray
    labels: np.ndarray
    rrf: dict[str, float]


@dataclass
class FoldReport:
    fold: int
    queries: int
    rrf_ndcg10: float
    model_ndcg10: float


@dataclass
class TrainingReport:
    folds: list[FoldReport] = field(default_factory=list)
    queries: int = 0
    rows: int = 0
    skipped: list[str] = field(default_factory=list)

    def mean(self, key: str) -> float:
        values = [getattr(f, key) for f in self.folds]
        return float(np.mean(values)) if values else float("nan")


def query_folds(qids: list[str], folds: int, seed: int = 13) -> list[list[str]]:
    """Shuffle query ids (seeded) and deal them into ``folds`` groups of near-equal size."""
    order = list(qids)
    np.random.default_rng(seed).shuffle(order)
    return [order[i::folds] for i in range(folds)]


def ndcg_at_10(runs: dict[str, dict[str, float]], judgments: Judgments) -> float:
    """Mean nDCG@10 (ranx) over the judged queries of ``runs``."""
    ranx = import_ranx()
    Qrels, Run, evaluate = ranx.Qrels, ranx.Run, ranx.evaluate

    judged = {q: {i: int(g) for i, g in judgments[q].items()} for q in runs if judgments.get(q)}
    if not judged:
        return float("nan")
    run = {q: (runs[q] or {"__none__": 0.0}) for q in judged}
    score = evaluate(Qrels(judged), Run(run), "ndcg@10")
    assert not isinstance(score, dict)  # one metric asked for: one number back
    return float(score)


def _stack(pools: list[QueryPool]) -> tuple[np.ndarray, np.ndarray, list[int]]:
    return (
        np.vstack([p.x for p in pools]),
        np.concatenate([p.labels for p in pools]),
        [len(p.ids) for p in pools],
    )


def _model_run(booster: Any, pools: list[QueryPool]) -> dict[str, dict[str, float]]:
    return {
        p.qid: dict(zip(p.ids, np.asarray(booster.predict(p.x), float).tolist(), strict=True))
        for p in pools
    }


def cross_validate(
    pools: list[QueryPool],
    judgments: Judgments,
    *,
    folds: int,
    seed: int = 13,
    params: dict[str, Any] | None = None,
) -> list[FoldReport]:
    by_id = {p.qid: p for p in pools}
    reports = []
    for number, held_out in enumerate(query_folds(list(by_id), folds, seed), start=1):
        test = [by_id[q] for q in held_out]
        train = [p for p in pools if p.qid not in set(held_out)]
        if not test or not train:
            continue
        x, y, groups = _stack(train)
        booster = fit_lambdamart(x, y, groups, params)
        rrf = {p.qid: p.rrf for p in test}
        reports.append(
            FoldReport(
                number,
                len(test),
                round(ndcg_at_10(rrf, judgments), 4),
                round(ndcg_at_10(_model_run(booster, test), judgments), 4),
            )
        )
    return reports


def training_hash(pools: list[QueryPool], features: list[str], build_id: str) -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps({"features": features, "build": build_id}).encode())
    for pool in sorted(pools, key=lambda p: p.qid):
        digest.update(pool.qid.encode())
        digest.update(json.dumps(pool.ids).encode())
        digest.update(pool.labels.tobytes())
        digest.update(np.nan_to_num(pool.x, nan=-1e300).tobytes())
    return digest.hexdigest()


def fit_ranker(
    pools: list[QueryPool],
    judgments: Judgments,
    *,
    features: list[str],
    manifest: BuildManifest,
    collection: str,
    folds: int = 5,
    seed: int = 13,
    params: dict[str, Any] | None = None,
    source: str = "qrels",
    skipped: Iterable[str] = (),
) -> tuple[RankerModel, TrainingReport]:
    """Cross-validate (when ``folds`` >= 2), then fit on every pool; returns model + report.

    ``features`` are the names of the pools' columns and ``manifest`` the build they were
    collected from: the saved model records both, so that it is refused on a build whose
    features or encoders differ.
    """
    build_id = manifest.build_id
    report = TrainingReport(queries=len(pools), skipped=list(skipped))
    if folds >= 2 and len(pools) >= folds:
        report.folds = cross_validate(pools, judgments, folds=folds, seed=seed, params=params)
    x, y, groups = _stack(pools) if pools else (np.zeros((0, 0)), np.zeros(0), [])
    report.rows = int(x.shape[0])
    booster = fit_lambdamart(x, y, groups, params)
    meta = RankerMeta(
        features=features,
        encoders=encoder_signature(manifest),
        collection=collection,
        build_id=build_id,
        training_sha256=training_hash(pools, features, build_id),
        params=dict(params or {}),
        cv={
            "folds": [vars(f) for f in report.folds],
            "rrf_ndcg10": report.mean("rrf_ndcg10") if report.folds else None,
            "model_ndcg10": report.mean("model_ndcg10") if report.folds else None,
            "seed": seed,
            "queries": report.queries,
        },
        source=source,
    )
    return RankerModel(booster, meta), report
