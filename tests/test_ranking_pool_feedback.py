"""Reranker features from feedback over the pool: fused scores with the feedback list,
vector feedback (Rocchio) and the cosine standardised within the pool."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mmsearch.index.base import Match
from mmsearch.ranking.pool_feedback import pool_feedback_matrix, pool_feedback_names
from mmsearch.retrieval.retrieve import Retrieved

IDS = ["a", "b", "c", "d", "e"]
ROWS = {
    "a": {"vec": [1.0, 0.0]},
    "b": {"vec": [0.0, 1.0]},
    "c": {"vec": [0.6, 0.8]},
    "d": {"vec": [0.8, 0.6]},
    "e": {"vec": None},
}


def retrieved(
    feedback: list[Match] | None, query: tuple[float, float] | None = (1.0, 0.0)
) -> Retrieved:
    return Retrieved(
        text="q",
        image=None,
        where=None,
        ranked={
            "keyword": [Match("a", 3.0, 1), Match("b", 2.0, 2), Match("c", 1.0, 3)],
            "text_vector": [Match("b", 0.9, 2), Match("c", 0.8, 3), Match("d", 0.7, 4)],
        },
        query_vectors={} if query is None else {"text_vector": np.asarray(query)},
        depth=10,
        feedback=feedback,
    )


def columns(r: Retrieved) -> dict[str, np.ndarray]:
    matrix = pool_feedback_matrix(r, IDS, [("text_vector", "vec")], ROWS)
    names = pool_feedback_names(["text_vector"])
    assert matrix.shape == (len(IDS), len(names))
    return {name: matrix[:, i] for i, name in enumerate(names)}


def test_the_feedback_list_replaces_the_keyword_list_in_the_feedback_fusions() -> None:
    got = columns(retrieved([Match("d", 1.0, 4), Match("a", 0.5, 1)]))
    assert got["fusion:dbsf_feedback"][3] > got["fusion:dbsf"][3]  # d: found by feedback
    assert got["fusion:dbsf_feedback"][1] < got["fusion:dbsf"][1]  # b: not in it
    assert got["fusion:rrf_feedback"][3] == pytest.approx(1 / 61 + 1 / 63)
    assert got["fusion:rrf_feedback"][4] == got["fusion:dbsf"][4] == 0.0
    plain = columns(retrieved(None))
    assert np.array_equal(plain["fusion:dbsf_feedback"], plain["fusion:dbsf"])


def test_vector_feedback_moves_the_query_toward_the_top_candidates() -> None:
    got = columns(retrieved(None))
    # Ten deep takes every candidate with a vector: mean (0.6, 0.6), query moved to (1.6, 0.6).
    norm = math.hypot(1.6, 0.6)
    assert got["text_vector:prf_cosine10"][:4] == pytest.approx(
        [1.6 / norm, 0.6 / norm, (0.96 + 0.48) / norm, (1.28 + 0.36) / norm]
    )
    cosine = np.asarray([1.0, 0.0, 0.6, 0.8])
    assert got["text_vector:pool_zscore"][:4] == pytest.approx(
        (cosine - cosine.mean()) / cosine.std()
    )
    assert got["text_vector:pool_share"][:4] == pytest.approx(cosine)
    assert all(np.isnan(got[name][4]) for name in got if name.startswith("text_vector"))


def test_without_a_query_vector_the_vector_columns_are_missing() -> None:
    got = columns(retrieved(None, query=None))
    assert all(np.isnan(got[name]).all() for name in got if name.startswith("text_vector"))
    assert not np.isnan(got["fusion:dbsf"]).any()
