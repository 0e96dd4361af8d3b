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
import re
from collections.abc import Sequence

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
    return [stem(w) for w in _WORD.findall((text or "").lower()) if w not in _STOPWORDS]


def pool_bm25(query: list[str], documents: list[list[str]]) -> np.ndarray:
    """BM25 of ``query`` against each document, with the pool's own statistics."""
    if not query or not any(documents):
        return np.zeros(len(documents))
    # bm25s cannot index an empty document; a placeholder token that no query has
    # keeps positions aligned and scores 0.
    corpus = [doc or ["\x00"] for doc in documents]
    model = bm25s.BM25()
    model.index(corpus, show_progress=False)
    known = [t for t in query if t in model.vocab_dict]
    if not known:
        return np.zeros(len(documents))
    return np.asarray(model.get_scores(known), dtype=np.float64)


def phrase_share(query: list[str], document: list[str]) -> float:
    """Share of the query's adjacent word pairs that occur adjacent in the document."""
    pairs = set(itertools.pairwise(query))
    if not pairs:
        return 0.0
    found = set(itertools.pairwise(document))
    return len(pairs & found) / len(pairs)


def proximity(query: list[str], document: list[str]) -> float:
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
    title_tokens = [tokens(t) for t in titles]
    body_tokens = [tokens(b) for b in bodies]
    title_bm25 = pool_bm25(terms, title_tokens)
    body_bm25 = pool_bm25(terms, body_tokens)
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
