"""Pool-level lexical features: per-field BM25, phrase, proximity, coverage."""

from __future__ import annotations

import numpy as np
import pytest

from mmsearch.index.base import Match
from mmsearch.ranking.features import FeatureSpace, feature_matrix
from mmsearch.ranking.lexical import (
    LEXICAL_FEATURES,
    lexical_matrix,
    phrase_share,
    proximity,
    stem,
    tokens,
)
from mmsearch.retrieval.retrieve import Retrieved


def column(matrix: np.ndarray, name: str) -> np.ndarray:
    return matrix[:, LEXICAL_FEATURES.index(name)]


def test_tokens_drop_stop_words_and_stem_plurals() -> None:
    assert tokens("The flows over heated wings") == ["flow", "over", "heat", "wing"]
    assert stem("gas") == "gas" and stem("class") == "class" and stem("bodies") == "body"


def test_title_match_outranks_a_body_only_match() -> None:
    titles = ["boundary layer transition", "wing flutter", "heat transfer"]
    bodies = [
        "boundary layer transition at high speed",
        "the boundary of the flutter region; a thin layer of paint",
        "heat transfer in laminar flow",
    ]
    matrix = lexical_matrix("boundary layer transition", titles, bodies)
    assert matrix.shape == (3, len(LEXICAL_FEATURES))
    title_bm25 = column(matrix, "lex:bm25_title")
    assert title_bm25[0] > 0 and title_bm25[1] == 0 and title_bm25[2] == 0
    assert column(matrix, "lex:bm25_title_norm")[0] == 1.0
    # Both first bodies hold "boundary" and "layer"; only the first holds them as a phrase.
    assert column(matrix, "lex:phrase_body").tolist() == [1.0, 0.0, 0.0]
    assert column(matrix, "lex:proximity")[0] == 1.0
    assert 0 < column(matrix, "lex:proximity")[1] < 0.5
    assert column(matrix, "lex:coverage").tolist() == [1.0, 2 / 3, 0.0]


def test_empty_query_and_empty_fields_give_zeros() -> None:
    assert not lexical_matrix(None, ["a title"], ["a body"]).any()
    matrix = lexical_matrix("shock wave", ["", "shock wave"], ["", ""])
    assert np.isfinite(matrix).all()
    assert matrix[0].sum() == 0 and column(matrix, "lex:bm25_title")[1] > 0


def test_phrase_and_proximity_need_two_query_words() -> None:
    assert phrase_share(["shock"], ["shock", "wave"]) == 0.0
    assert proximity(["shock", "wave"], ["shock", "x", "y", "wave", "shock"]) == 2 / 2
    assert proximity(["shock", "wave"], ["shock", "x", "wave"]) == 2 / 3
    assert proximity(["shock", "wave"], ["shock", "shock"]) == 0.0


def test_per_query_features_normalise_each_signal_within_its_list() -> None:
    space = FeatureSpace(
        signals=("keyword", "text_vector"), vector_columns=(), numeric=(), strings=(), phash=None
    )
    retrieved = Retrieved(
        text="shock wave",
        image=None,
        where=None,
        ranked={
            "keyword": [Match("a", 12.0), Match("b", 6.0), Match("c", 3.0)],
            "text_vector": [Match("b", 0.8), Match("a", 0.4)],
        },
        query_vectors={},
        depth=3,
    )
    rows = {
        "a": {"title": "shock wave", "search_text": "shock wave tube"},
        "b": {"title": "wave", "search_text": "a wave and a shock"},
        "c": {"title": "", "search_text": ""},
    }
    matrix = feature_matrix(space, retrieved, ["a", "b", "c"], rows)
    values = [dict(zip(space.names(), row, strict=True)) for row in matrix]
    assert [v["keyword:norm"] for v in values] == [1.0, pytest.approx(1 / 3), 0.0]
    assert [v["keyword:rank_ratio"] for v in values] == [
        pytest.approx(1 / 3),
        pytest.approx(2 / 3),
        1.0,
    ]
    assert values[2]["text_vector:rank_ratio"] == 2.0  # absent from the list
    assert np.isnan(values[2]["text_vector:zscore"]) and values[0]["keyword:zscore"] > 0
    assert values[0]["fusion:rrf"] == pytest.approx(1 / 61 + 1 / 62)
    assert values[0]["lex:phrase_title"] == 1.0 and values[1]["lex:phrase_title"] == 0.0
    assert values[0]["lex:bm25_title"] > values[1]["lex:bm25_title"] > 0
