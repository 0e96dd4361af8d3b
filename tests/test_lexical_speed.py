"""The pool BM25 and the cached tokens are bm25s's values and the old tokens, exactly.

The reranker's lexical features used to build a bm25s index over every candidate pool;
``ranking/lexical.py`` now scores only the query's words and caches each text's
tokens. A model trained on the old values must see the same numbers, so these tests
compare with bm25s itself and with tokenising from scratch, value for value.
"""

from __future__ import annotations

import random
import re

import bm25s
import numpy as np

from mmsearch.ranking import lexical
from mmsearch.ranking.lexical import lexical_matrix, pool_bm25, tokens

VOCABULARY = [f"w{i}" for i in range(40)]


def bm25s_scores(query: list[str], documents: list[list[str]]) -> np.ndarray:
    """What ``pool_bm25`` computed before: a bm25s index over the pool."""
    if not query or not any(documents):
        return np.zeros(len(documents))
    model = bm25s.BM25()
    model.index([doc or ["\x00"] for doc in documents], show_progress=False)
    known = [t for t in query if t in model.vocab_dict]
    if not known:
        return np.zeros(len(documents))
    return np.asarray(model.get_scores(known), dtype=np.float64)


def random_pool(rng: random.Random) -> tuple[list[str], list[list[str]]]:
    documents = [
        [rng.choice(VOCABULARY) for _ in range(rng.choice([0, 1, 3, 20, 120]))]
        for _ in range(rng.randint(1, 60))
    ]
    # Repeated words, words no document holds, and words every document holds.
    query = [rng.choice(VOCABULARY) for _ in range(rng.randint(1, 6))]
    query += rng.sample(["zz-absent", query[0], "w1"], k=rng.randint(0, 3))
    return query, documents


def test_pool_bm25_equals_bm25s_value_for_value() -> None:
    rng = random.Random(11)
    checked_nonzero = 0
    for _ in range(300):
        query, documents = random_pool(rng)
        ours, theirs = pool_bm25(query, documents), bm25s_scores(query, documents)
        assert ours.dtype == np.float64 and ours.shape == (len(documents),)
        assert np.array_equal(ours, theirs), (query, documents)
        checked_nonzero += int(theirs.any())
    assert checked_nonzero > 200  # the comparison was not between zeros


def test_pool_bm25_edge_cases_match_bm25s() -> None:
    cases = [
        ([], [["a"]]),
        (["a"], [[], []]),
        (["x"], [["a", "b"], []]),
        (["a", "a", "b"], [["a", "b", "a"], [], ["b"]]),
        (["a"], [["a"]] * 5),
    ]
    for query, documents in cases:
        assert np.array_equal(pool_bm25(query, documents), bm25s_scores(query, documents))


def test_cached_tokens_equal_fresh_tokens() -> None:
    text = "The Flows over heated wings; flows, classes and gases"
    fresh = [
        lexical.stem.__wrapped__(w)
        for w in re.findall(r"[a-z0-9]+", text.lower())
        if w not in lexical._STOPWORDS
    ]
    assert tokens(text) == fresh
    first = tokens(text)
    first.append("changed")  # a caller's list is its own: the cache is not touched
    assert tokens(text) == fresh


def test_lexical_matrix_bm25_columns_follow_bm25s() -> None:
    rng = random.Random(5)

    def text(most: int) -> str:
        return " ".join(rng.choice(VOCABULARY) for _ in range(rng.randint(0, most)))

    titles = [text(6) for _ in range(30)]
    bodies = [text(80) for _ in range(30)]
    query = "w1 w2 w3 w2"
    matrix = lexical_matrix(query, titles, bodies)
    terms = tokens(query)
    expected_title = bm25s_scores(terms, [tokens(t) for t in titles])
    expected_body = bm25s_scores(terms, [tokens(b) for b in bodies])
    assert np.array_equal(matrix[:, 0], expected_title)
    assert np.array_equal(matrix[:, 1], expected_body)
    assert expected_title.any() and expected_body.any()
