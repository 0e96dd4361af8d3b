"""The reranker's keyword-feedback features: values on a hand-made list, and absence."""

from __future__ import annotations

import numpy as np
import pytest

from mmsearch.index.base import Match
from mmsearch.ranking.features import FEEDBACK_FEATURES, feedback_matrix


def test_feedback_columns_read_score_rank_and_the_lists_own_scale() -> None:
    matches = [Match("a", 6.0, 1), Match("b", 4.0, 2), Match("c", 2.0, 3)]
    matrix = feedback_matrix(matches, ["c", "x", "a"], depth=10)
    assert matrix.shape == (3, len(FEEDBACK_FEATURES))
    sd = float(np.std([6.0, 4.0, 2.0]))
    assert matrix[0] == pytest.approx([2.0, 3.0, 1.0, 0.0, -2.0 / sd])
    assert matrix[2] == pytest.approx([6.0, 1.0, 1.0, 1.0, 2.0 / sd])
    assert matrix[1, :4].tolist() == [0.0, 11.0, 0.0, 0.0] and np.isnan(matrix[1, 4])


def test_without_a_feedback_list_every_candidate_is_absent() -> None:
    for matches in (None, []):
        matrix = feedback_matrix(matches, ["a", "b"], depth=5)
        assert matrix[:, :4].tolist() == [[0.0, 6.0, 0.0, 0.0]] * 2
        assert np.isnan(matrix[:, 4]).all()
    one = feedback_matrix([Match("a", 3.0, 1)], ["a"], depth=5)
    assert one[0].tolist() == [3.0, 1.0, 1.0, 1.0, 0.0]
