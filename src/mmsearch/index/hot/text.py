"""BM25 over the keyword text in memory, tokenised as LanceDB's FTS index tokenises it.

Why its own analyzer: the hot keyword search must find what the durable one finds
(``index/lancedb.py`` builds ``FTS(stem=True, remove_stop_words=True)`` with the other
settings at LanceDB's defaults). Probing LanceDB 0.40 showed its pipeline: split on
every character that is not a letter or digit (``_`` splits too), drop tokens of 40
bytes or more, lowercase, Snowball English stemming, remove English stop words (after
stemming: ``yourselves`` stays as ``yourselv``), then fold accents to ASCII (after
stemming: ``résumé`` is not found by ``resume``). PyStemmer is the same Snowball
stemmer; the stop words are those LanceDB removed when probed. Scores are BM25 with
k1 1.2 and b 0.75 (bm25s, Lucene's IDF, times LanceDB's k1 + 1), summed over the
query's terms with repeats, and a document matches only if it holds a query term, as
in LanceDB's OR query over the terms.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np

from mmsearch.errors import MMSearchError

K1, B = 1.2, 0.75  # LanceDB's BM25 parameters
MAX_TOKEN_BYTES = 40  # LanceDB's max_token_length: longer tokens are dropped
_WORDS = re.compile(r"[^\W_]+")
# The English stop words LanceDB 0.40's FTS drops (probed one word per document).
STOP_WORDS = frozenset(
    """a about after again against ain all am an and are aren as at be been being below
    between both but by can couldn d did didn do doesn doing don down each few for from
    further had hadn has hasn have haven having he her here hers herself him himself his
    how i if in into is isn it its itself just ll m ma me mightn more most mustn my myself
    needn no nor not now o of off on or other our ours out over own re s same shan she
    should shouldn so some such t than that the their theirs them then there these they
    this those through to too under until up ve was wasn we were weren what when where
    which while who whom will with won wouldn y you your yours yourself""".split()  # noqa: SIM905
)


def _stemmer() -> Any:
    try:
        import Stemmer
    except ImportError:
        raise MMSearchError(
            "The hot index needs PyStemmer (the hot extra): pip install 'mmsearch[hot]'."
        ) from None
    return Stemmer.Stemmer("english")


@lru_cache(maxsize=65536)
def _fold(token: str) -> str:
    if token.isascii():
        return token
    decomposed = unicodedata.normalize("NFKD", token)
    return "".join(c for c in decomposed if not unicodedata.combining(c))


class Analyzer:
    """Text to index terms, as LanceDB's FTS analyzer makes them."""

    def __init__(self) -> None:
        self._stem = _stemmer().stemWords

    def terms(self, text: str | None) -> list[str]:
        if not text:
            return []
        words = [
            w.lower()
            for w in _WORDS.findall(text)
            if len(w) < 10 or len(w.encode()) < MAX_TOKEN_BYTES  # 9 chars: < 40 bytes
        ]
        return [_fold(t) for t in self._stem(words) if t not in STOP_WORDS]


class KeywordIndex:
    """BM25 over one text per row (the build's ``search_text``), rows in table order."""

    def __init__(self, texts: Sequence[str | None]):
        import bm25s

        self.analyzer = Analyzer()
        self.rows = len(texts)
        self._bm25 = bm25s.BM25(k1=K1, b=B, method="lucene")
        corpus = [self.analyzer.terms(text) for text in texts]
        self._bm25.index(corpus, show_progress=False)

    def search(self, query: str, k: int, allowed: np.ndarray | None) -> list[tuple[int, float]]:
        """(row, score) of the ``k`` best rows holding a query term, among ``allowed``."""
        # A term the query repeats counts each time, as in LanceDB's scores.
        ids = self._bm25.get_tokens_ids(self.analyzer.terms(query))
        if not ids or k <= 0:
            return []
        # bm25s leaves out BM25's constant (k1 + 1) factor; LanceDB's scores have it.
        scores = np.asarray(self._bm25.get_scores_from_ids(ids), dtype=np.float32) * (K1 + 1)
        candidates = scores > 0
        if allowed is not None:
            candidates &= allowed
        return top_rows(scores, candidates, k)

    def nbytes(self) -> int:
        scores = self._bm25.scores
        return int(sum(np.asarray(scores[name]).nbytes for name in ("data", "indices", "indptr")))


def top_rows(scores: np.ndarray, candidates: np.ndarray, k: int) -> list[tuple[int, float]]:
    """The ``k`` best candidate rows, best first, ties by row (deterministic)."""
    rows = np.flatnonzero(candidates)
    if len(rows) > k:
        part = np.argpartition(-scores[rows], k - 1)[:k]
        rows = rows[part]
    order = np.lexsort((rows, -scores[rows]))
    return [(int(rows[i]), float(scores[rows[i]])) for i in order]
