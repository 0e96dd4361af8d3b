"""Technical multi-word terms mined from a catalog's text: "boundary layer", "mach
number", "angle of attack".

The statistic is Dunning's log-likelihood ratio (G², "Accurate methods for the
statistics of surprise and coincidence", 1993) of a 2x2 contingency table: how much
more often the two parts of a candidate occur together than their separate counts
predict. It is the usual choice for collocations because, unlike PMI, it does not
reward pairs seen twice; a minimum count and item count are required on top of it.

Candidates are runs of two or three words inside one segment (``words.text_segments``:
no phrase crosses punctuation) that start and end with a content word: not a stop word
(scikit-learn's English list), at least two characters, holding a letter. A three-word
candidate may have a stop word in the middle ("angle of attack"); it is scored at its
weaker split (``angle | of attack`` and ``angle of | attack``), so it is kept only when
both halves belong together. Only positive associations count (observed above expected).

Bounded work: at most ``MAX_MINING_ITEMS`` items are read (spread evenly over the
catalog), and at most ``limit`` phrases come out, strongest first.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

MAX_MINING_ITEMS = 50_000
MIN_COUNT = 5  # occurrences of the phrase in the mined text
MIN_ITEMS = 3  # items whose text holds it
MIN_LLR = 10.83  # G² with one degree of freedom at p = 0.001
STOP_WORDS = frozenset(ENGLISH_STOP_WORDS)


@dataclass(frozen=True)
class MinedPhrase:
    text: str  # normalised words joined by single spaces
    count: int  # occurrences in the mined text
    items: int  # items whose text holds it
    llr: float  # G² of its weaker split


def is_content_word(word: str) -> bool:
    """A word a phrase may start or end with."""
    return len(word) >= 2 and word not in STOP_WORDS and any(c.isalpha() for c in word)


def log_likelihood_ratio(
    together: np.ndarray, left: np.ndarray, right: np.ndarray, total: float
) -> np.ndarray:
    """G² of each 2x2 table [[k11, k12], [k21, k22]] with k11 = ``together``, row sum
    ``left``, column sum ``right`` and grand total ``total``; 0 where the pair occurs
    no more often than chance (a negative association is not a phrase)."""
    k11 = together.astype(np.float64)
    k12 = left - k11
    k21 = right - k11
    k22 = total - k11 - k12 - k21
    rows = (k11 + k12, k21 + k22)
    cols = (k11 + k21, k12 + k22)
    score = np.zeros_like(k11)
    for observed, row, col in ((k11, 0, 0), (k12, 0, 1), (k21, 1, 0), (k22, 1, 1)):
        expected = rows[row] * cols[col] / total
        with np.errstate(divide="ignore", invalid="ignore"):
            term = np.where(observed > 0, observed * np.log(observed / expected), 0.0)
        score += term
    score = 2.0 * score
    return np.where(k11 * total > rows[0] * cols[0], np.maximum(score, 0.0), 0.0)


def mine_phrases(
    texts: Sequence[Sequence[Sequence[str]]],
    *,
    limit: int,
    min_count: int = MIN_COUNT,
    min_items: int = MIN_ITEMS,
    min_llr: float = MIN_LLR,
) -> list[MinedPhrase]:
    """The ``limit`` strongest phrases of the items' text; ``texts`` holds each item's
    segments (lists of normalised words), as ``words.text_segments`` cuts them."""
    if limit <= 0 or not texts:
        return []
    step = max(1, len(texts) // MAX_MINING_ITEMS)
    unigrams: Counter[str] = Counter()
    bigrams: Counter[tuple[str, ...]] = Counter()
    trigrams: Counter[tuple[str, ...]] = Counter()
    holders: Counter[tuple[str, ...]] = Counter()
    for segments in texts[::step]:
        seen: set[tuple[str, ...]] = set()
        for words in segments:
            unigrams.update(words)
            for i in range(len(words) - 1):
                pair = (words[i], words[i + 1])
                bigrams[pair] += 1
                if is_content_word(pair[0]) and is_content_word(pair[1]):
                    seen.add(pair)
                if i + 2 < len(words):
                    triple = (*pair, words[i + 2])
                    trigrams[triple] += 1
                    if is_content_word(triple[0]) and is_content_word(triple[2]):
                        seen.add(triple)
        holders.update(seen)
    total = float(max(sum(unigrams.values()), 1))
    candidates = [g for g, n in holders.items() if n >= min_items]
    counts = {**bigrams, **trigrams}
    candidates = [g for g in candidates if counts[g] >= min_count]
    if not candidates:
        return []
    scores = np.full(len(candidates), np.inf)
    for split in (1, 2):
        rows = [i for i, g in enumerate(candidates) if split < len(g)]
        if not rows:
            continue
        together = np.array([counts[candidates[i]] for i in rows], dtype=np.float64)
        left = np.array([_count(candidates[i][:split], unigrams, bigrams) for i in rows])
        right = np.array([_count(candidates[i][split:], unigrams, bigrams) for i in rows])
        llr = log_likelihood_ratio(together, left, right, total)
        scores[rows] = np.minimum(scores[rows], llr)
    ranked = sorted(
        (
            MinedPhrase(" ".join(g), counts[g], holders[g], round(float(s), 3))
            for g, s in zip(candidates, scores.tolist(), strict=True)
            if s >= min_llr
        ),
        key=lambda phrase: (-phrase.llr, phrase.text),
    )
    return ranked[:limit]


def _count(
    part: tuple[str, ...], unigrams: Counter[str], bigrams: Counter[tuple[str, ...]]
) -> float:
    return float(unigrams[part[0]] if len(part) == 1 else bigrams[part])
