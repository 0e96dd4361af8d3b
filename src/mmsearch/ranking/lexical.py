"""Lexical evidence about each candidate, computed over the candidate pool.

The keyword retriever scores title and body as one text, so it cannot tell a query
that names a document's subject (its title) from one that merely shares words with
its body; and BM25 ignores word order, so "boundary layer" scores the same whether the
two words are adjacent or far apart. These features give the reranker what the
retriever's single score hides:

- BM25 of the title and of the body separately (``bm25s``), with statistics of the
  candidate pool: the pool is what the reranker orders, and pool IDF keeps the
  features query-local (no corpus-wide index to keep in step with the build);
- the share of the query's adjacent word pairs found as phrases in title and body;
- proximity: how tightly the query words that occur in the body cluster together;
- the share of query words that occur at all (coverage).

Every value is finite (0 when a field is empty or the query has no usable word), so a
candidate with no text ranks on its other features.
"""

from __future__ import annotations

import itertools
import math
import re
from collections import Counter
from collections.abc import Sequence
from functools import lru_cache

import bm25s
import numpy as np

LEXICAL_FEATURES = (
    "lex:bm25_title",
    "lex:bm25_body",
    "lex:bm25_title_norm",
    "lex:bm25_body_norm",
    "lex:phrase_title",
    "lex:phrase_body",
    "lex:proximity",
    "lex:coverage",
)
_WORD = re.compile(r"[a-z0-9]+")
_STOPWORDS = frozenset(bm25s.stopwords.STOPWORDS_EN) | {"what", "how", "are", "can", "does"}
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
    return list(_tokenised(text or "")[0])


@lru_cache(maxsize=TOKEN_CACHE_TEXTS)
def _tokenised(text: str) -> tuple[tuple[str, ...], Counter[str]]:
    """A text's tokens and their counts (callers must not change the counter)."""
    words = tuple(stem(w) for w in _WORD.findall(text.lower()) if w not in _STOPWORDS)
    return words, Counter(words)


def pool_bm25(query: Sequence[str], documents: Sequence[Sequence[str]]) -> np.ndarray:
    """BM25 of ``query`` against each document, with the pool's own statistics."""
    return _pool_bm25(query, [Counter(doc) for doc in documents], [len(d) for d in documents])


def _pool_bm25(query: Sequence[str], counts: list[Counter[str]], lengths: list[int]) -> np.ndarray:
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


def phrase_share(query: Sequence[str], document: Sequence[str]) -> float:
    """Share of the query's adjacent word pairs that occur adjacent in the document."""
    pairs = set(itertools.pairwise(query))
    if not pairs:
        return 0.0
    found = set(itertools.pairwise(document))
    return len(pairs & found) / len(pairs)


def proximity(query: Sequence[str], document: Sequence[str]) -> float:
    """Matched query words / the shortest span of the document holding all of them
    (1.0 when they are adjacent; 0 when fewer than two distinct query words occur)."""
    wanted = set(query)
    positions = [(i, w) for i, w in enumerate(document) if w in wanted]
    matched = {w for _, w in positions}
    if len(matched) < 2:
        return 0.0
    best = len(document)
    counts: dict[str, int] = {}
    left = 0
    for end, word in positions:
        counts[word] = counts.get(word, 0) + 1
        while len(counts) == len(matched):
            start, first = positions[left]
            best = min(best, end - start + 1)
            counts[first] -= 1
            if counts[first] == 0:
                del counts[first]
            left += 1
    return len(matched) / best


def lexical_matrix(query: str | None, titles: Sequence[str], bodies: Sequence[str]) -> np.ndarray:
    """One row per candidate, columns in ``LEXICAL_FEATURES`` order."""
    terms = tokens(query)
    titled = [_tokenised(t or "") for t in titles]
    bodied = [_tokenised(b or "") for b in bodies]
    title_tokens = [words for words, _ in titled]
    body_tokens = [words for words, _ in bodied]
    title_bm25 = _pool_bm25(terms, [c for _, c in titled], [len(w) for w in title_tokens])
    body_bm25 = _pool_bm25(terms, [c for _, c in bodied], [len(w) for w in body_tokens])
    distinct = set(terms)
    out = np.zeros((len(titles), len(LEXICAL_FEATURES)), dtype=np.float64)
    for i, (title, body) in enumerate(zip(title_tokens, body_tokens, strict=True)):
        out[i] = [
            title_bm25[i],
            body_bm25[i],
            _share_of_max(title_bm25, i),
            _share_of_max(body_bm25, i),
            phrase_share(terms, title),
            phrase_share(terms, body),
            proximity(terms, body),
            len(distinct & set(body)) / len(distinct) if distinct else 0.0,
        ]
    return out


def _share_of_max(scores: np.ndarray, i: int) -> float:
    top = float(scores.max()) if scores.size else 0.0
    return float(scores[i]) / top if top > 0 else 0.0
