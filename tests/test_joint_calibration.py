"""Joint calibration of "PDQ ≤ t1 OR visual distance ≤ t2" on distances with a known answer."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mmsearch.moderation.calibration import calibrate, calibrate_union


def _negatives() -> tuple[np.ndarray, np.ndarray]:
    """1,000 non-matching pairs: first distances 10..109 (ten each), second 0.5..0.999 in
    the opposite order, so the pairs closest by one method are the farthest by the other."""
    first = np.repeat(np.arange(10, 110), 10).astype(np.int16)
    second = SORTED_SECOND[::-1].copy()
    return first, second


SORTED_SECOND = np.linspace(0.5, 0.999, 1000).astype(np.float32)


def test_the_union_keeps_the_target_and_shares_the_budget() -> None:
    first, second = _negatives()
    # One kind that only the second method finds, one that only the first does.
    matching_first = {"rotated": np.full(10, 200, np.int16), "flipped": np.full(10, 5, np.int16)}
    matching_second = {
        "rotated": np.full(10, 0.3, np.float32),
        "flipped": np.full(10, 0.9, np.float32),
    }
    found = calibrate_union(first, second, matching_first, matching_second, 0.01)
    # 10 false matches allowed: PDQ ≤ 9 takes none of them (all first distances are ≥ 10),
    # so the second method keeps the whole budget: the 11th smallest second distance breaks it.
    assert found.first_threshold == 9
    assert SORTED_SECOND[9] <= found.second_threshold < SORTED_SECOND[10]
    assert found.false_match_rate == pytest.approx(0.01)
    assert found.recall == {"rotated": 1.0, "flipped": 1.0}
    assert found.lowest_recall == 1.0
    # Adding the two thresholds calibrated alone would double the false matches.
    alone_first = calibrate(first, {}, 0.01).threshold
    alone_second = calibrate(second, {}, 0.01).threshold
    both = np.mean((first <= alone_first) | (second <= alone_second))
    assert both > 0.01


def test_a_wider_first_threshold_is_chosen_when_the_first_method_needs_it() -> None:
    first, second = _negatives()
    # "cropped" needs PDQ ≤ 10 (its second distance is hopeless); "rotated" needs the
    # second method to accept its 7th smallest non-matching distance.
    matching_first = {"cropped": np.full(4, 10, np.int16), "rotated": np.full(4, 300, np.int16)}
    matching_second = {
        "cropped": np.full(4, 2.0, np.float32),
        "rotated": np.full(4, float(SORTED_SECOND[6]), np.float32),
    }
    found = calibrate_union(first, second, matching_first, matching_second, 0.01)
    # PDQ ≤ 10 uses 10 pairs: nothing left for the second method, so rotated is lost;
    # PDQ ≤ 9 keeps rotated and loses cropped. Both have a lowest recall of 0 ...
    assert found.lowest_recall == 0.0
    # ... and the same mean, so the first candidate stays.
    assert found.first_threshold == 9
    assert found.recall == {"cropped": 0.0, "rotated": 1.0}
    assert found.false_match_rate <= 0.01
    # With a budget of 20, PDQ ≤ 10 leaves 10 for the second method: both kinds match.
    wider = calibrate_union(first, second, matching_first, matching_second, 0.02)
    assert wider.first_threshold == 10
    assert wider.recall == {"cropped": 1.0, "rotated": 1.0}
    assert wider.false_match_rate <= 0.02
    assert np.mean(wider.matches(first, second)) == pytest.approx(wider.false_match_rate)


def test_held_out_recall_is_read_at_the_chosen_thresholds() -> None:
    first, second = _negatives()
    found = calibrate_union(
        first, second, {"a": np.array([5], np.int16)}, {"a": np.array([0.9], np.float32)}, 0.01
    )
    held_out = found.recall_of(
        {"a": np.array([5, 50, 50, 50], np.int16)},
        {"a": np.array([0.9, 0.9, 0.1, 0.51], np.float32)},
    )
    # 5 ≤ t1; 0.1 ≤ t2; (50, 0.9) neither; 0.51 is beyond the 11th smallest negative (0.505).
    assert held_out == {"a": 0.5}


def test_the_grid_can_be_given_and_a_grid_that_cannot_keep_the_target_is_an_error() -> None:
    first, second = _negatives()
    matching = {"a": np.array([12], np.int16)}, {"a": np.array([0.9], np.float32)}
    found = calibrate_union(first, second, *matching, 0.01, first_thresholds=np.array([9, 10]))
    assert found.candidates == 2
    assert found.first_threshold == 9 and found.recall == {"a": 0.0}
    with pytest.raises(ValueError, match="widen the grid"):
        calibrate_union(first, second, *matching, 0.01, first_thresholds=np.array([50]))


def test_bad_input_is_named() -> None:
    first, second = _negatives()
    with pytest.raises(ValueError, match="same non-matching pairs"):
        calibrate_union(first, second[:10], {}, {}, 0.01)
    with pytest.raises(ValueError, match="target rate"):
        calibrate_union(first, second, {}, {}, 1.5)
    with pytest.raises(ValueError, match="same kinds"):
        calibrate_union(first, second, {"a": first[:1]}, {"b": second[:1]}, 0.01)
    empty = calibrate_union(first, second, {"a": first[:0]}, {"a": second[:0]}, 0.01)
    assert math.isnan(empty.recall["a"])


def test_float32_distances_keep_the_target() -> None:
    """A threshold just below a float32 distance must stay below it in float32."""
    found = calibrate(SORTED_SECOND, {}, 0.01)
    matched = np.less_equal(SORTED_SECOND, found.threshold)
    assert int(matched.sum()) == 10
    assert found.false_match_rate == pytest.approx(0.01)
    first, second = _negatives()
    union = calibrate_union(first, second, {}, {}, 0.01)
    assert int(np.sum(union.matches(first, second))) == 10


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_each_candidate_agrees_with_a_brute_force_search(seed: int) -> None:
    """The second threshold found from the nearest pairs only is the brute-force one."""
    rng = np.random.default_rng(seed)
    first = rng.integers(0, 60, 5000).astype(np.int16)
    second = rng.random(5000).astype(np.float32)
    target = 0.004  # 20 pairs
    for t1 in range(-1, 8):
        used = int(np.sum(first <= t1))
        if used > 20:
            continue
        rest = np.sort(second[first > t1])
        expected = float(np.nextafter(rest[20 - used], np.float32(-np.inf)))
        found = calibrate_union(first, second, {}, {}, target, first_thresholds=np.array([t1]))
        assert found.second_threshold == expected
        assert int(found.matches(first, second).sum()) == 20
        assert found.false_match_rate == 20 / 5000
