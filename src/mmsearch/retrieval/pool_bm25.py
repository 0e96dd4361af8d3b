"""Words and BM25 over a small pool of texts, with the pool's own statistics.

Two stages score a pool this way: the reranker's lexical features
(``ranking/lexical.py``: title and body apart) and the keyword signal's field boosts
(``retrieval/field_boosts.py``: a title match may weigh more than a body match). Both
score the same catalog texts query after query, so each text's tokens are cached per
process, and only the query's words are scored (no index over the pool).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from functools import lru_cache

import bm25s
import numpy as np

WORD = re.compile(r"[a-z0-9]+")
STOPWORDS = frozenset(bm25s.stopwords.STOPWORDS_EN) | {"what", "how", "are", "can", "does"}
# bm25s's defaults (``bm25s.BM25()``: Lucene variant), which ``pool_bm25`` reproduces.
BM25_K1, BM25_B = 1.5, 0.75
# Texts tokenised and counted per process: a catalog's titles and bodies come back in
# the pools of query after query, and stemming every word again was most of the
# reranker's cost. Bounded by entries (one per distinct text) rather than bytes.
TOKEN_CACHE_TEXTS = 8192


@lru_cache(maxsize=65536)
def stem(word: str) -> str:
    """A light English stemmer (plural and -ing/-ed endings): enough to match "flows"
    with "flow" and "heated" with "heat" without a stemming dependency."""
    for suffix, keep in (("sses", "ss"), ("ies", "y"), ("ing", ""), ("ed", ""), ("s", "")):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            if suffix == "s" and word.endswith(("ss", "us", "is")):
                return word
            return word[: len(word) - len(suffix)] + keep
    return word


def tokens(text: str | None) -> list[str]:
    """Lower-cased, stemmed words without stop words, in order."""
    return list(tokenised(text or "")[0])


@lru_cache(maxsize=TOKEN_CACHE_TEXTS)
def tokenised(text: str) -> tuple[tuple[str, ...], Counter[str]]:
    """A text's tokens and their counts (callers must not change the counter)."""
    words = tuple(stem(w) for w in WORD.findall(text.lower()) if w not in STOPWORDS)
    return words, Counter(words)


def pool_bm25(query: Sequence[str], documents: Sequence[Sequence[str]]) -> np.ndarray:
    """BM25 of ``query`` against each document, with the pool's own statistics."""
    return pool_bm25_counts(query, [Counter(doc) for doc in documents], [len(d) for d in documents])


def pool_bm25_counts(
    query: Sequence[str], counts: list[Counter[str]], lengths: list[int]
) -> np.ndarray:
    """``bm25s.BM25().index(pool).get_scores(query)``, value for value, without building
    an index: only the query's words are scored.

    bm25s indexes every word of every document (a sparse matrix over the pool's whole
    vocabulary) to answer one query, which cost a reranked search more than everything
    else together. The arithmetic is bm25s's own, in its order and precisions: the
    Lucene IDF rounded to float32, the term part in float64, each (document, word)
    score rounded to float32, and the words' scores summed in float32 in query order
    (a repeated query word counts again). An empty document stands in as one
    placeholder word, as bm25s cannot index an empty one."""
    if not query or not any(lengths):
        return np.zeros(len(lengths))
    known = [t for t in query if any(t in c for c in counts)]
    if not known:
        return np.zeros(len(lengths))
    sizes = np.asarray([n or 1 for n in lengths])  # the placeholder word
    average = sizes.mean()
    norm = BM25_K1 * ((1 - BM25_B) + BM25_B * sizes / average)
    scores = np.zeros(len(lengths), dtype=np.float32)
    per_word: dict[str, np.ndarray] = {}
    for word in known:
        if word not in per_word:
            tf = np.asarray([c.get(word, 0) for c in counts], dtype=np.float64)
            df = int(np.count_nonzero(tf))
            idf = np.float32(math.log(1 + (len(lengths) - df + 0.5) / (df + 0.5)))
            per_word[word] = (np.float64(idf) * (tf / (norm + tf))).astype(np.float32)
        scores += per_word[word]
    return scores.astype(np.float64)
