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
from collections.abc import Sequence

import numpy as np

from mmsearch.retrieval.pool_bm25 import (
    BM25_B,
    BM25_K1,
    STOPWORDS,
    WORD,
    pool_bm25,
    pool_bm25_counts,
    stem,
    tokenised,
    tokens,
)

__all__ = ["BM25_B", "BM25_K1", "LEXICAL_FEATURES", "lexical_matrix", "pool_bm25", "stem", "tokens"]

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
# Tokens and pool BM25 live in retrieval/pool_bm25.py: the keyword signal's field
# boosts use them too. Names kept here for the callers that knew them.
_WORD, _STOPWORDS = WORD, STOPWORDS


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
    titled = [tokenised(t or "") for t in titles]
    bodied = [tokenised(b or "") for b in bodies]
    title_tokens = [words for words, _ in titled]
    body_tokens = [words for words, _ in bodied]
    title_bm25 = pool_bm25_counts(terms, [c for _, c in titled], [len(w) for w in title_tokens])
    body_bm25 = pool_bm25_counts(terms, [c for _, c in bodied], [len(w) for w in body_tokens])
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
