"""Click logs → implicit relevance judgments, corrected for position bias.

Log format (JSONL, one line per result page shown; the HTTP service writes these)::

    {"query": "red mug", "shown": ["A1", "B7", "C3"], "clicked": ["B7"],
     "where": "price < 50", "at": "2024-06-01T12:00:00Z"}

``query`` is the text as typed; ``shown`` the item ids in the order displayed (rank 1
first); ``clicked`` one id, a list of ids, or null/absent for a page without clicks
(it still counts as an impression); ``where`` (optional) the filter that was active;
``at`` (optional) is informational.

Why the correction: people click the first results because they are first. With
the position-based model, P(click) = P(examined | rank) x P(relevant), and the
examination propensity is modelled as ``p(rank) = (1 / rank) ** eta`` (Joachims et
al. 2017; eta = 1 by default, 0 switches the correction off). Each click is weighted
by 1 / p(rank) (inverse propensity weighting), clipped at ``max_weight`` to bound the
variance, and the estimate for (query, item) is

    r(q, d) = sum over clicks on d for q of min(rank ** eta, max_weight) / pages shown for q

which is an unbiased estimate of P(relevant) under that model (up to the clipping).
LambdaMART needs integer grades, so ``r`` is binned: ≥ 0.5 → 3, ≥ 0.2 → 2, > 0 → 1;
items shown but never clicked get no judgment (grade 0, like unjudged items).
Queries are grouped by their case-folded, whitespace-collapsed text.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmsearch.errors import MMSearchError

GRADE_BINS = ((0.5, 3), (0.2, 2), (0.0, 1))


class ClickLogError(MMSearchError):
    """A click log line cannot be read."""


@dataclass(frozen=True)
class ClickEvent:
    query: str
    shown: list[str]
    clicked: list[str] = field(default_factory=list)
    where: str | None = None


@dataclass
class ImplicitJudgments:
    """What train-ranker needs: queries (id → text, filter) and graded judgments."""

    queries: dict[str, tuple[str, str | None]]
    judgments: dict[str, dict[str, int]]
    estimates: dict[str, dict[str, float]]  # the unbinned IPW relevance estimates
    pages: int


def normalise_query(text: str) -> str:
    return " ".join(text.casefold().split())


def query_id(text: str, where: str | None) -> str:
    key = normalise_query(text) + "\x00" + (where or "")
    return "c" + hashlib.sha1(key.encode("utf-8")).hexdigest()[:12]


def propensity(rank: int, eta: float = 1.0) -> float:
    """Probability that a result at ``rank`` (1-based) is examined: (1/rank)^eta."""
    return (1.0 / rank) ** eta


def _event(data: Any, where: str) -> ClickEvent:
    if not isinstance(data, dict):
        raise ClickLogError(f"{where}: expected a JSON object.")
    text, shown = data.get("query"), data.get("shown")
    if not isinstance(text, str) or not text.strip():
        raise ClickLogError(f"{where}: 'query' must be a non-empty string.")
    if not isinstance(shown, list) or not all(isinstance(i, str) for i in shown):
        raise ClickLogError(f"{where}: 'shown' must be a list of item ids in display order.")
    clicked = data.get("clicked")
    clicks = [] if clicked is None else [clicked] if isinstance(clicked, str) else clicked
    if not isinstance(clicks, list) or not all(isinstance(i, str) for i in clicks):
        raise ClickLogError(f"{where}: 'clicked' must be an item id, a list of ids, or null.")
    filter_ = data.get("where")
    return ClickEvent(text, shown, clicks, filter_ if isinstance(filter_, str) else None)


def read_click_log(path: Path) -> list[ClickEvent]:
    if not path.is_file():
        raise ClickLogError(f"The click log {path} does not exist.")
    events: list[ClickEvent] = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ClickLogError(f"{path}:{number}: not JSON ({exc.msg}).") from exc
            events.append(_event(data, f"{path}:{number}"))
    if not events:
        raise ClickLogError(f"The click log {path} is empty.")
    return events


def grade(estimate: float) -> int:
    for threshold, value in GRADE_BINS:
        if estimate >= threshold and estimate > 0:
            return value
    return 0


def implicit_judgments(
    events: list[ClickEvent], *, eta: float = 1.0, max_weight: float = 10.0
) -> ImplicitJudgments:
    """Aggregate clicks per query into IPW relevance estimates and integer grades."""
    if eta < 0 or max_weight < 1:
        raise ClickLogError("eta must be >= 0 and max_weight >= 1.")
    pages: dict[str, int] = defaultdict(int)
    credit: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    queries: dict[str, tuple[str, str | None]] = {}
    for event in events:
        qid = query_id(event.query, event.where)
        queries.setdefault(qid, (event.query.strip(), event.where))
        pages[qid] += 1
        ranks = {item_id: rank for rank, item_id in enumerate(event.shown, start=1)}
        for item_id in event.clicked:
            rank = ranks.get(item_id)
            if rank is None:  # a click on something not shown: no position to correct for
                continue
            credit[qid][item_id] += min(1.0 / propensity(rank, eta), max_weight)
    estimates = {
        qid: {item: value / pages[qid] for item, value in items.items()}
        for qid, items in credit.items()
    }
    judgments = {
        qid: {item: g for item, value in items.items() if (g := grade(value)) > 0}
        for qid, items in estimates.items()
    }
    judgments = {qid: items for qid, items in judgments.items() if items}
    return ImplicitJudgments(queries, judgments, estimates, len(events))
