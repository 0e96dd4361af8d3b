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
        threshold = float(np.nextafter(float(first_bad), -math.inf))
    rate = float(np.mean(negatives <= threshold))
    recall = {
        name: float(np.mean(np.asarray(values) <= threshold)) if len(values) else math.nan
        for name, values in matching.items()
    }
    return Calibration(threshold, target_false_match_rate, rate, int(negatives.size), recall)
