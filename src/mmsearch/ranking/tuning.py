"""Per-collection fusion learned from judgments: which method, which weights, and
whether keyword search should use pseudo-relevance feedback.

Equal-weight fusion assumes every signal is useful. On a catalog where one is mostly
noise (BM25 over emoji names answering tag queries) it drags the fused list below the
good signal alone. Tuning scores a fixed grid of choices on the *dev* queries:

- RRF (k = 60) and DBSF, as they are;
- weighted fusion with min-max or z-score normalisation over a grid of weights;
- every single signal alone (its weight 1, the others' 0);

each with and without keyword feedback when both candidate sets are given. The best
dev nDCG@10 wins; since the single signals are among the choices, the chosen default
can never score below the best single signal on the dev judgments. The choice is then
scored once on the held-out *test* queries against RRF and the best single signal,
with a paired t-test over queries, so the report says whether the gain is real.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mmsearch.errors import MMSearchError
from mmsearch.ranking.fusion import FusionParams, Normalisation, RankedLists, fuse
from mmsearch.retrieval.expansion import FeedbackSettings

TUNED_FILE = "tuned_fusion.json"
Method = Literal["rrf", "weighted", "dbsf"]
Judgments = Mapping[str, Mapping[str, int]]
# Query id -> the retrievers' ranked lists, for one retrieval variant.
QueryLists = Mapping[str, RankedLists]
WEIGHT_STEPS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
FEEDBACK_VARIANT = "feedback"
PLAIN_VARIANT = "plain"


class FusionChoice(BaseModel):
    """One fusion setting: a method, its weights and normalisation, and feedback."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    method: Method = "rrf"
    weights: dict[str, float] | None = None
    normalisation: Normalisation = "minmax"
    rrf_k: int = Field(default=60, ge=1)
    feedback: bool = False

    def params(self) -> FusionParams:
        return FusionParams(k=self.rrf_k, weights=self.weights, normalisation=self.normalisation)

    def label(self) -> str:
        parts = [self.method]
        if self.method == "weighted":
            parts.append(self.normalisation)
        if self.weights:
            parts.append(", ".join(f"{s}={w:g}" for s, w in sorted(self.weights.items())))
        if self.feedback:
            parts.append("keyword feedback")
        return "; ".join(parts)


class HeldOut(BaseModel):
    """The chosen fusion against RRF and the best single signal on the test queries."""

    queries: int
    chosen: float
    rrf: float
    best_single: float
    best_single_signal: str
    p_vs_rrf: float | None  # paired t-test over queries; None when undefined (no variance)
    p_vs_best_single: float | None


class TunedFusion(BaseModel):
    """What ``mmsearch tune`` stores next to a build: search uses it when a request
    names no fusion of its own."""

    model_config = ConfigDict(extra="forbid")

    build_id: str
    choice: FusionChoice
    dev_queries: int
    dev_ndcg10: float
    dev_rrf: float
    dev_best_single: float
    dev_best_single_signal: str
    test: HeldOut | None = None
    feedback: FeedbackSettings = Field(default_factory=FeedbackSettings)
    tuned_at: str = Field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))


def candidate_choices(signals: list[str], variants: list[str]) -> list[FusionChoice]:
    """The grid tuning scores: RRF, DBSF, single signals and weighted fusions."""
    choices: list[FusionChoice] = []
    for variant in variants:
        feedback = variant == FEEDBACK_VARIANT
        choices += [
            FusionChoice(method="rrf", feedback=feedback),
            FusionChoice(method="dbsf", feedback=feedback),
        ]
        for signal in signals:
            weights = {s: float(s == signal) for s in signals}
            choices.append(FusionChoice(method="weighted", weights=weights, feedback=feedback))
        if len(signals) < 2:
            continue
        steps = WEIGHT_STEPS if len(signals) == 2 else (0.0, 0.25, 0.5, 0.75, 1.0)
        for combo in itertools.product(steps, repeat=len(signals) - 1):
            last = round(1.0 - sum(combo), 4)
            if last <= 0 or any(w <= 0 for w in combo):  # singles are already in the grid
                continue
            weights = dict(zip(signals, [*combo, last], strict=True))
            for normalisation in ("minmax", "zscore"):
                choices.append(
                    FusionChoice(
                        method="weighted",
                        weights=weights,
                        normalisation=normalisation,
                        feedback=feedback,
                    )
                )
    return choices


def fused_run(lists: QueryLists, choice: FusionChoice) -> dict[str, dict[str, float]]:
    params = choice.params()
    return {qid: fuse(choice.method, ranked, params).scores for qid, ranked in lists.items()}


def single_run(lists: QueryLists, signal: str) -> dict[str, dict[str, float]]:
    """A signal's own order as a run (rank-based scores: ties cannot reorder it)."""
    run: dict[str, dict[str, float]] = {}
    for qid, ranked in lists.items():
        entries = ranked.get(signal, [])
        run[qid] = {
            (e if isinstance(e, str) else e.id): float(len(entries) - i)
            for i, e in enumerate(entries)
        }
    return run


def per_query_ndcg10(
    run: Mapping[str, Mapping[str, float]], judgments: Judgments
) -> dict[str, float]:
    """nDCG@10 of each judged query of ``run`` (0 for a query with no results).

    Linear gains and a log2 discount, as ranx's ``ndcg@10``; written out because tuning
    scores hundreds of runs and this is the inner loop. Ties in score keep id order."""
    out: dict[str, float] = {}
    discounts = 1.0 / np.log2(np.arange(2, 12))
    for qid, scores in run.items():
        grades = judgments.get(qid)
        if not grades or not any(g > 0 for g in grades.values()):
            continue
        top = sorted(scores, key=lambda item: (-scores[item], item))[:10]
        gains = np.asarray([max(grades.get(item, 0), 0) for item in top], dtype=np.float64)
        ideal = np.asarray(sorted((g for g in grades.values() if g > 0), reverse=True)[:10])
        dcg = float(gains @ discounts[: len(gains)])
        out[qid] = dcg / float(ideal @ discounts[: len(ideal)])
    return out


def mean(values: Mapping[str, float]) -> float:
    return float(sum(values.values()) / len(values)) if values else float("nan")


def paired_p(a: Mapping[str, float], b: Mapping[str, float]) -> float | None:
    """Two-sided paired t-test over the queries both hold: None when undefined (fewer
    than two queries, or no difference at all); 0 when every query gains the same."""
    from scipy.stats import ttest_rel

    common = sorted(set(a) & set(b))
    if len(common) < 2:
        return None
    differences = np.asarray([a[q] - b[q] for q in common])
    if np.ptp(differences) < 1e-12:  # every query moved alike: no spread to test against
        return None if abs(float(differences[0])) < 1e-12 else 0.0
    p = float(ttest_rel([a[q] for q in common], [b[q] for q in common]).pvalue)
    return None if math.isnan(p) else p


def tune_fusion(
    variants: Mapping[str, QueryLists], judgments: Judgments
) -> tuple[FusionChoice, dict[str, float]]:
    """The choice with the best dev nDCG@10 (ties keep the earlier, simpler choice), and
    the dev scores of RRF, each single signal and the choice."""
    plain = variants.get(PLAIN_VARIANT)
    if not plain:
        raise MMSearchError("There are no dev queries with results to tune on.")
    signals = sorted({s for ranked in plain.values() for s in ranked})
    if not signals:
        raise MMSearchError("The dev queries returned no candidates from any retriever.")
    best: tuple[float, FusionChoice] | None = None
    for choice in candidate_choices(signals, list(variants)):
        lists = variants[FEEDBACK_VARIANT if choice.feedback else PLAIN_VARIANT]
        score = mean(per_query_ndcg10(fused_run(lists, choice), judgments))
        if best is None or score > best[0] + 1e-9:
            best = (score, choice)
    assert best is not None
    scores = {
        "chosen": best[0],
        "rrf": mean(per_query_ndcg10(fused_run(plain, FusionChoice()), judgments)),
    }
    for signal in signals:
        scores[f"single:{signal}"] = mean(per_query_ndcg10(single_run(plain, signal), judgments))
    return best[1], scores


def held_out(
    variants: Mapping[str, QueryLists], choice: FusionChoice, judgments: Judgments
) -> HeldOut:
    """Score the chosen fusion on test queries, against RRF and the best single signal."""
    plain = variants[PLAIN_VARIANT]
    lists = variants[FEEDBACK_VARIANT if choice.feedback else PLAIN_VARIANT]
    chosen = per_query_ndcg10(fused_run(lists, choice), judgments)
    rrf = per_query_ndcg10(fused_run(plain, FusionChoice()), judgments)
    signals = sorted({s for ranked in plain.values() for s in ranked})
    singles = {s: per_query_ndcg10(single_run(plain, s), judgments) for s in signals}
    best_signal = max(signals, key=lambda s: mean(singles[s]))
    return HeldOut(
        queries=len(chosen),
        chosen=round(mean(chosen), 4),
        rrf=round(mean(rrf), 4),
        best_single=round(mean(singles[best_signal]), 4),
        best_single_signal=best_signal,
        p_vs_rrf=paired_p(chosen, rrf),
        p_vs_best_single=paired_p(chosen, singles[best_signal]),
    )


def tuned_path(build_dir: Path) -> Path:
    return build_dir / TUNED_FILE


def load_tuned(build_dir: Path) -> TunedFusion | None:
    """The build's tuned fusion, or None when it was never tuned."""
    path = tuned_path(build_dir)
    if not path.is_file():
        return None
    try:
        return TunedFusion.model_validate_json(path.read_text(encoding="utf-8"))
    except (OSError, ValidationError) as exc:
        raise MMSearchError(
            f"The tuned fusion {path} cannot be read ({exc}); run `mmsearch tune` again."
        ) from exc


def save_tuned(build_dir: Path, tuned: TunedFusion) -> Path:
    path = tuned_path(build_dir)
    temporary = path.with_suffix(".json.tmp")
    temporary.write_text(tuned.model_dump_json(indent=2) + "\n", encoding="utf-8")
    temporary.replace(path)
    return path
