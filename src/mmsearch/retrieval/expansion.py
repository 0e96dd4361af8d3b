"""Pseudo-relevance feedback: widen a keyword query with words of its own top hits.

A short query ("slipstream effects on wings") misses documents that use the field's
other words for the same thing ("propeller wash", "nacelle"). RM3 assumes the first
few keyword hits are relevant, estimates a word distribution from them (each hit's
term frequencies, weighted by its share of the hits' scores), and adds the heaviest
words the query lacks. The expanded query runs as a second keyword search through the
same store call, so the filter tree and the caller's access apply inside it exactly
as in the first; the two result lists are then interpolated (original weight
``original_weight``), which keeps the first search's precision at the top.

Pure functions over text and ``Match`` lists; the retriever decides when to call them.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

from bm25s.stopwords import STOPWORDS_EN
from pydantic import BaseModel, ConfigDict, Field

from mmsearch.index.base import Match

_WORD = re.compile(r"[a-z][a-z0-9]+")
# Function words (bm25s's English list) and report boilerplate carry no topic; numbers
# and one-letter tokens are left out by _WORD.
_REPORT_WORDS = "also obtained given found used using shown results method methods paper"
_STOP = frozenset(STOPWORDS_EN) | frozenset(f"{_REPORT_WORDS} present may one two upon".split())


class FeedbackSettings(BaseModel):
    """How many hits feed the expansion, how many words it adds, how much the original
    query keeps. Defaults are the usual RM3 settings (10 documents, 10 terms, 0.5)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    docs: int = Field(default=10, ge=1, le=100)
    terms: int = Field(default=10, ge=1, le=50)
    original_weight: float = Field(default=0.5, ge=0.0, le=1.0)


def words(text: str | None) -> list[str]:
    return [w for w in _WORD.findall((text or "").lower()) if w not in _STOP]


def expansion_terms(
    query: str, feedback: Sequence[tuple[str, float]], count: int
) -> list[tuple[str, float]]:
    """The ``count`` heaviest words of the feedback documents that the query lacks,
    with their RM1 weight ``Σ_d P(w|d) · P(d|q)``; ``feedback`` is (text, score) pairs."""
    total = sum(max(score, 0.0) for _, score in feedback)
    if total <= 0:
        return []
    asked = set(words(query))
    weights: dict[str, float] = {}
    for text, score in feedback:
        counts = Counter(words(text))
        length = sum(counts.values())
        if not length or score <= 0:
            continue
        for word, n in counts.items():
            if word not in asked:
                weights[word] = weights.get(word, 0.0) + (n / length) * (score / total)
    return sorted(weights.items(), key=lambda item: (-item[1], item[0]))[:count]


def expanded_query(query: str, terms: Sequence[tuple[str, float]]) -> str:
    """The query followed by the expansion words (the store's BM25 weighs them by IDF)."""
    return " ".join([query, *(word for word, _ in terms)])


def interpolate(
    original: Sequence[Match], expanded: Sequence[Match], original_weight: float, depth: int
) -> list[Match]:
    """Mix the two keyword lists: each list's scores divided by its top score, then
    ``w · original + (1 - w) · expanded``; an item missing from a list scores 0 there.
    Row handles come from whichever list had the item."""
    scores: dict[str, float] = {}
    handles: dict[str, int | None] = {}
    for matches, weight in ((original, original_weight), (expanded, 1.0 - original_weight)):
        top = max((m.score for m in matches), default=0.0)
        for m in matches:
            share = m.score / top if top > 0 else 0.0
            scores[m.id] = scores.get(m.id, 0.0) + weight * share
            handles.setdefault(m.id, m.row_id)
    order = sorted(scores, key=lambda item: (-scores[item], item))[:depth]
    return [Match(item, scores[item], handles[item]) for item in order]
