"""Choose a match threshold from data, for a target false-match rate.

A threshold picked by hand says nothing about how often it is wrong. Given the
distances of pairs that must not match (different pictures) and of pairs that must
(altered copies of one picture), ``calibrate`` returns the largest threshold whose
false-match rate on the first set is at most the target, and the recall of each kind
of alteration at it, so the trade-off is a number that was measured. A pair matches
when its distance is at most the threshold; for similarity scores pass
``1 - similarity`` (or any decreasing map) as the distance.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Calibration:
    """A threshold and what it does on the pairs it was chosen from."""

    threshold: float  # match when distance ≤ threshold (below every distance: none may)
    target_false_match_rate: float
    false_match_rate: float  # measured on the non-matching pairs
    non_matching_pairs: int
    recall: dict[str, float]  # per kind of matching pair


def calibrate(
    non_matching: np.ndarray,
    matching: Mapping[str, np.ndarray],
    target_false_match_rate: float,
) -> Calibration:
    """The largest threshold whose false-match rate on ``non_matching`` is ≤ the target.

    Integer distances give an integer threshold (the largest allowed distance); float
    ones the largest float below the first distance that would break the target.
    """
    if not 0.0 <= target_false_match_rate < 1.0:
        raise ValueError(f"the target rate must be in [0, 1) (got {target_false_match_rate})")
    negatives = np.sort(np.asarray(non_matching).reshape(-1))
    if negatives.size == 0:
        raise ValueError("calibration needs at least one non-matching pair")
    allowed = math.floor(target_false_match_rate * negatives.size + 1e-9)
    first_bad = negatives[allowed]  # the (allowed+1)-th smallest: matching it breaks the target
    if np.issubdtype(negatives.dtype, np.integer):
        threshold = float(int(first_bad) - 1)
    else:
        threshold = _just_below(first_bad)
    rate = float(np.mean(negatives <= threshold))
    recall = {
        name: float(np.mean(np.asarray(values) <= threshold)) if len(values) else math.nan
        for name, values in matching.items()
    }
    return Calibration(threshold, target_false_match_rate, rate, int(negatives.size), recall)


def _just_below(value: np.generic | np.ndarray) -> float:
    """The largest number of ``value``'s own type below it: a float32 distance compared
    with a threshold is compared in float32, where a float64 just below would round up."""
    scalar = np.asarray(value)
    return float(np.nextafter(scalar, np.array(-np.inf, dtype=scalar.dtype)))


@dataclass(frozen=True)
class JointCalibration:
    """Two thresholds whose union (either method matches) keeps one false-match target."""

    first_threshold: float  # match when the first distance ≤ this (integer distances: PDQ bits)
    second_threshold: float  # ... or when the second distance ≤ this (e.g. 1 - cosine)
    target_false_match_rate: float
    false_match_rate: float  # of the union, measured on the non-matching pairs
    non_matching_pairs: int
    recall: dict[str, float]  # of the union, per kind of the matching pairs it was chosen on
    candidates: int  # first thresholds tried

    @property
    def lowest_recall(self) -> float:
        return min(self.recall.values()) if self.recall else math.nan

    def matches(self, first: np.ndarray, second: np.ndarray) -> np.ndarray:
        """Which pairs the union calls a match, given both distances of each pair."""
        return (np.asarray(first) <= self.first_threshold) | (
            np.asarray(second) <= self.second_threshold
        )

    def recall_of(
        self, first: Mapping[str, np.ndarray], second: Mapping[str, np.ndarray]
    ) -> dict[str, float]:
        """The union's recall per kind on other matching pairs (a held-out split)."""
        return {
            name: float(np.mean(self.matches(first[name], second[name])))
            if len(first[name])
            else math.nan
            for name in first
        }


def calibrate_union(
    non_matching_first: np.ndarray,
    non_matching_second: np.ndarray,
    matching_first: Mapping[str, np.ndarray],
    matching_second: Mapping[str, np.ndarray],
    target_false_match_rate: float,
    first_thresholds: np.ndarray | None = None,
) -> JointCalibration:
    """The pair of thresholds for "first ≤ t1 OR second ≤ t2" that maximises the lowest
    recall over the kinds of matching pairs while the union's false-match rate on the
    non-matching pairs stays within the target.

    Calibrating each method alone for the target and then OR-ing them would roughly add
    their false matches; here the budget is shared. For each candidate ``t1`` (every
    integer from "none" up to the first method's own threshold for the target, unless
    ``first_thresholds`` is given) the non-matching pairs that ``t1`` already accepts
    use up part of the budget, and ``t2`` is the largest value that keeps the rest of it
    among the pairs that the first method rejects; the candidate whose union has the
    highest lowest recall (then the highest mean recall) wins. ``non_matching_*`` are
    the two distances of the same pairs, element by element; likewise per kind for
    ``matching_*``.
    """
    if not 0.0 <= target_false_match_rate < 1.0:
        raise ValueError(f"the target rate must be in [0, 1) (got {target_false_match_rate})")
    first = np.asarray(non_matching_first).reshape(-1)
    second = np.asarray(non_matching_second).reshape(-1)
    if first.size != second.size:
        raise ValueError(
            f"both methods need the distances of the same non-matching pairs "
            f"(got {first.size} and {second.size})"
        )
    if first.size == 0:
        raise ValueError("calibration needs at least one non-matching pair")
    if set(matching_first) != set(matching_second):
        raise ValueError("both methods need the distances of the same kinds of matching pairs")
    allowed = math.floor(target_false_match_rate * first.size + 1e-9)
    if first_thresholds is None:
        alone = calibrate(first, {}, target_false_match_rate).threshold
        start = float(np.floor(first.min())) - 1
        first_thresholds = np.arange(start, alone + 1)
    sorted_first = np.sort(first)
    # At most ``allowed`` pairs are accepted by the first method, so the pair that would
    # break the budget is among the 2 * allowed + 1 smallest second distances: only those
    # are sorted, which keeps each candidate cheap on tens of millions of pairs.
    keep = min(2 * allowed + 1, second.size)
    nearest = np.argpartition(second, keep - 1)[:keep] if keep < second.size else None
    if nearest is None:
        nearest = np.arange(second.size)
    nearest = nearest[np.argsort(second[nearest], kind="stable")]
    near_second, near_first = second[nearest], first[nearest]
    best: JointCalibration | None = None
    best_key = (-math.inf, -math.inf)
    for t1 in np.asarray(first_thresholds, dtype=np.float64):
        used = int(np.searchsorted(sorted_first, t1, side="right"))
        if used > allowed:
            continue
        budget = allowed - used
        rejected = np.flatnonzero(near_first > t1)
        if budget >= rejected.size:  # only possible when every pair is among the nearest
            t2 = math.inf
            union = used + rejected.size
        else:
            t2 = _just_below(near_second[rejected[budget]])
            union = used + int(np.count_nonzero(near_second[rejected] <= t2))
        rate = union / first.size
        candidate = JointCalibration(
            float(t1), t2, target_false_match_rate, rate, int(first.size), {}, 0
        )
        recall = candidate.recall_of(matching_first, matching_second)
        values = [v for v in recall.values() if not math.isnan(v)]
        key = (min(values), float(np.mean(values))) if values else (math.nan, math.nan)
        if best is None or key > best_key:
            best_key = key
            best = JointCalibration(
                float(t1), t2, target_false_match_rate, rate, int(first.size), recall, 0
            )
    if best is None:
        raise ValueError("no first threshold keeps the target on its own; widen the grid")
    return JointCalibration(
        best.first_threshold,
        best.second_threshold,
        best.target_false_match_rate,
        best.false_match_rate,
        best.non_matching_pairs,
        best.recall,
        len(first_thresholds),
    )
