"""Keyword field boosts: a title match may weigh more than a body match.

The store's keyword index scores the concatenated text (title, then every text
field), so a query naming an item's subject scores no better than one whose words
are scattered through a long body. With boosts (``title=2``), the keyword signal's
candidates are rescored as

    score = store BM25 over all text + sum over fields of (boost - 1) * BM25(field)

where BM25(field) is computed over the keyword candidates with their own statistics
(``retrieval/pool_bm25.py``). A boost of 1 leaves a field as it was, so no boosts
(or all 1) is exactly the keyword signal builds always had; a boost below 1 weighs a
field less. Rescoring the candidates rather than keeping one index per field means
every build, also one made before this option existed, can use it: the fields are read
from columns every build has (``title``, ``texts_json``), through the rows the
filtered keyword search returned.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from mmsearch.catalog.mapping import FieldMapping
from mmsearch.errors import QueryError
from mmsearch.index.base import Match
from mmsearch.retrieval.pool_bm25 import pool_bm25_counts, tokenised, tokens

TITLE = "title"
FIELD_COLUMNS = ["title", "texts_json"]


def check_boosts(
    boosts: Mapping[str, float], mapping: FieldMapping, collection: str
) -> dict[str, float]:
    """Boosts by stored field name ("title" for the mapping's title field); a name that
    is not the title or a text field, or a boost that is not a positive number, is an
    error naming it."""
    known = [TITLE, *mapping.text]
    resolved: dict[str, float] = {}
    for name, boost in boosts.items():
        stored = TITLE if name == mapping.title else name
        if stored not in known:
            shown = ", ".join([mapping.title or TITLE, *mapping.text])
            raise QueryError(
                f"Field boost '{name}' names no text field of collection '{collection}'; "
                f"its title and text fields: {shown}."
            )
        if not (math.isfinite(boost) and 0 < boost <= 100):
            raise QueryError(f"Field boost {name}={boost}: a boost is above 0 and at most 100.")
        resolved[stored] = float(boost)
    return resolved


def field_text(row: Mapping[str, Any], name: str) -> str:
    if name == TITLE:
        return str(row.get(TITLE) or "")
    stored = json.loads(row.get("texts_json") or "{}")
    return str(stored.get(name) or "")


def boosted(
    query: str,
    matches: Sequence[Match],
    rows: Mapping[str, Mapping[str, Any]],
    boosts: Mapping[str, float],
) -> list[Match]:
    """The keyword matches rescored with the field boosts, best first (ties keep the
    store's order)."""
    terms = tokens(query)
    extra = np.zeros(len(matches))
    for name, boost in sorted(boosts.items()):
        if boost == 1.0:
            continue
        parsed = [tokenised(field_text(rows.get(m.id, {}), name)) for m in matches]
        scores = pool_bm25_counts(terms, [c for _, c in parsed], [len(w) for w, _ in parsed])
        extra += (boost - 1.0) * scores
    rescored = [
        dataclasses.replace(match, score=float(match.score + add))
        for match, add in zip(matches, extra.tolist(), strict=True)
    ]
    order = sorted(range(len(rescored)), key=lambda i: (-rescored[i].score, i))
    return [rescored[i] for i in order]
