from __future__ import annotations

import pytest

from mmsearch.errors import QueryError
from mmsearch.ranking.fusion import (
    fusion_by_name,
    order_by_score,
    reciprocal_rank_fusion,
)


def test_rrf_sums_reciprocal_ranks_across_lists() -> None:
    scores = reciprocal_rank_fusion({"keyword": ["x", "y"], "vector": ["y", "z"]}, k=60)
    assert scores == pytest.approx({"x": 1 / 61, "y": 1 / 62 + 1 / 61, "z": 1 / 62})


def test_rrf_default_k_is_60() -> None:
    assert reciprocal_rank_fusion({"keyword": ["a"]}) == pytest.approx({"a": 1 / 61})


def test_rrf_uses_the_given_k() -> None:
    scores = reciprocal_rank_fusion({"keyword": ["a", "b"], "vector": ["b"]}, k=1)
    assert scores == pytest.approx({"a": 1 / 2, "b": 1 / 3 + 1 / 2})


def test_item_found_by_two_retrievers_outranks_items_found_by_one_at_the_same_ranks() -> None:
    scores = reciprocal_rank_fusion(
        {"keyword": ["only_kw", "both"], "vector": ["only_vec", "both"]}, k=60
    )
    assert order_by_score(scores)[0] == "both"
    scores = reciprocal_rank_fusion({"keyword": ["a", "b"], "vector": ["a", "c"]}, k=60)
    assert order_by_score(scores) == ["a", "b", "c"]


def test_rrf_score_depends_only_on_rank_not_list_name() -> None:
    first = reciprocal_rank_fusion({"keyword": ["a", "b"]})
    second = reciprocal_rank_fusion({"image_vector": ["a", "b"]})
    assert first == second


def test_rrf_of_no_lists_is_empty() -> None:
    assert reciprocal_rank_fusion({}) == {}
    assert reciprocal_rank_fusion({"keyword": []}) == {}


@pytest.mark.parametrize("k", [0, -1, -60])
def test_rrf_rejects_k_below_one(k: int) -> None:
    with pytest.raises(QueryError, match="at least 1"):
        reciprocal_rank_fusion({"keyword": ["a"]}, k=k)


def test_fusion_by_name_returns_rrf() -> None:
    assert fusion_by_name("rrf") is reciprocal_rank_fusion


@pytest.mark.parametrize("name", ["combsum", "RRF", ""])
def test_unknown_fusion_name_raises_and_lists_choices(name: str) -> None:
    with pytest.raises(QueryError, match="rrf"):
        fusion_by_name(name)


def test_order_by_score_highest_first() -> None:
    assert order_by_score({"a": 0.1, "b": 0.3, "c": 0.2}) == ["b", "c", "a"]


def test_order_by_score_breaks_ties_by_id() -> None:
    forwards = order_by_score({"b": 0.5, "a": 0.5, "c": 0.9, "d": 0.5})
    backwards = order_by_score({"d": 0.5, "c": 0.9, "a": 0.5, "b": 0.5})
    assert forwards == backwards == ["c", "a", "b", "d"]


def test_fused_ties_are_ordered_by_id() -> None:
    scores = reciprocal_rank_fusion({"keyword": ["z", "m"], "vector": ["m", "z"]})
    assert scores["z"] == scores["m"]
    assert order_by_score(scores) == ["m", "z"]
