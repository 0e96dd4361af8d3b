"""Fusion methods by name: weighted RRF, normalised weighted fusion, DBSF — exact values."""

from __future__ import annotations

import math

import pytest

from mmsearch.errors import QueryError
from mmsearch.index.base import Match
from mmsearch.ranking.fusion import (
    FUSIONS,
    FusionParams,
    distribution_based_score_fusion,
    fuse,
    min_max,
    order_by_score,
    reciprocal_rank_fusion,
    three_sigma,
    weighted_score_fusion,
    z_score,
)

LISTS = {
    "keyword": [Match("a", 10.0), Match("b", 6.0), Match("c", 2.0)],
    "text_vector": [Match("b", 0.9), Match("d", 0.5)],
}


def test_all_three_methods_are_registered_by_name() -> None:
    assert set(FUSIONS) == {"rrf", "weighted", "dbsf"}


def test_weighted_rrf_multiplies_each_reciprocal_rank() -> None:
    scores = reciprocal_rank_fusion(LISTS, k=10, weights={"keyword": 2.0, "text_vector": 0.5})
    assert scores == pytest.approx(
        {"a": 2 / 11, "b": 2 / 12 + 0.5 / 11, "c": 2 / 13, "d": 0.5 / 12}
    )


def test_rrf_ignores_scores_and_accepts_plain_ids() -> None:
    by_match = reciprocal_rank_fusion(LISTS, k=60)
    by_id = reciprocal_rank_fusion({s: [m.id for m in ms] for s, ms in LISTS.items()}, k=60)
    assert by_match == pytest.approx(by_id)


def test_signals_without_a_weight_get_one() -> None:
    partial = reciprocal_rank_fusion(LISTS, k=10, weights={"keyword": 2.0})
    assert partial["d"] == pytest.approx(1 / 12)


def test_min_max_weighted_fusion_is_a_convex_combination() -> None:
    scores = weighted_score_fusion(LISTS, weights={"keyword": 3.0, "text_vector": 1.0})
    # keyword min-max: a 1, b 0.5, c 0; text_vector: b 1, d 0; weights 0.75 / 0.25.
    assert scores == pytest.approx({"a": 0.75, "b": 0.75 * 0.5 + 0.25, "c": 0.0, "d": 0.0})
    assert order_by_score(scores)[:2] == ["a", "b"]


def test_z_score_weighted_fusion() -> None:
    scores = weighted_score_fusion(LISTS, normalisation="zscore")
    sd = math.sqrt(((10 - 6) ** 2 + 0 + (2 - 6) ** 2) / 3)
    assert scores["a"] == pytest.approx(0.5 * (4 / sd))
    assert scores["b"] == pytest.approx(0.5 * 0.0 + 0.5 * 1.0)
    assert scores["d"] == pytest.approx(0.5 * -1.0)


def test_dbsf_maps_mean_plus_minus_three_sd_to_unit_interval_and_sums() -> None:
    scores = distribution_based_score_fusion(LISTS)
    sd = math.sqrt(32 / 3)
    keyword = {i: (s - (6 - 3 * sd)) / (6 * sd) for i, s in {"a": 10, "b": 6, "c": 2}.items()}
    text = {"b": (0.9 - (0.7 - 0.6)) / 1.2, "d": (0.5 - 0.1) / 1.2}
    assert scores == pytest.approx(
        {"a": keyword["a"], "b": keyword["b"] + text["b"], "c": keyword["c"], "d": text["d"]}
    )


def test_normalisers_on_degenerate_lists() -> None:
    assert min_max([3.0, 3.0]) == [1.0, 1.0]
    assert z_score([2.0]) == [0.0]
    assert three_sigma([5.0, 5.0]) == [0.5, 0.5]
    assert min_max([1.0, 3.0, 2.0]) == [0.0, 1.0, 0.5]


def test_contributions_explain_the_fused_score_exactly() -> None:
    params = FusionParams(weights={"keyword": 3.0, "text_vector": 1.0})
    result = fuse("weighted", LISTS, params)
    b = result.contributions["b"]
    assert b["keyword"].score == 6.0 and b["keyword"].rank == 2
    assert b["keyword"].normalised == pytest.approx(0.5) and b["keyword"].weight == 0.75
    assert b["text_vector"].contribution == pytest.approx(0.25)
    for item, parts in result.contributions.items():
        assert sum(p.contribution for p in parts.values()) == pytest.approx(result.scores[item])
    assert "text_vector" not in result.contributions["a"]  # missing = no contribution


def test_fuse_matches_the_named_functions() -> None:
    assert fuse("rrf", LISTS, FusionParams(k=5)).scores == pytest.approx(
        reciprocal_rank_fusion(LISTS, k=5)
    )
    assert fuse("dbsf", LISTS, FusionParams()).scores == pytest.approx(
        distribution_based_score_fusion(LISTS)
    )


@pytest.mark.parametrize("weights", [{"keyword": -1.0}, {"keyword": math.nan}])
def test_bad_weights_are_query_errors(weights: dict[str, float]) -> None:
    with pytest.raises(QueryError, match="weight of 'keyword'"):
        reciprocal_rank_fusion(LISTS, weights=weights)


def test_all_zero_weights_are_rejected() -> None:
    with pytest.raises(QueryError, match="has weight 0"):
        weighted_score_fusion(LISTS, weights={"keyword": 0.0, "text_vector": 0.0})


def test_zero_weight_drops_a_signal_from_weighted_fusion() -> None:
    scores = weighted_score_fusion(LISTS, weights={"keyword": 0.0})
    assert scores["a"] == 0.0 and scores["b"] == pytest.approx(1.0)


def test_unknown_method_names_the_choices() -> None:
    with pytest.raises(QueryError, match="dbsf, rrf, weighted"):
        fuse("combsum", LISTS, FusionParams())


def test_a_weighted_signal_that_found_nothing_is_not_an_error() -> None:
    lists = {"keyword": [], "text_vector": [Match("a", 0.5)]}
    scores = weighted_score_fusion(lists, weights={"keyword": 1.0, "text_vector": 0.0})
    assert scores == {"a": 0.0}
