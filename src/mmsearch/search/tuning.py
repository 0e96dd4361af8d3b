"""``mmsearch tune``: learn a collection's default fusion from its own judgments.

The queries are split by a seeded hash of their id into a dev and a test half (the
same split as the benchmark builders', so a dataset's halves agree). Every query is
searched once as plain retrieval and once with keyword feedback, with rules and the
reranker off, exactly as a live query retrieves; ``ranking/tuning.py`` picks the best
fusion on dev (never below the best single signal there) and scores it on test with a
paired test. The result is saved next to the live build, where ``Searcher`` reads it
as the default for requests that name no fusion of their own.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import TYPE_CHECKING

from mmsearch.errors import MMSearchError
from mmsearch.ranking.fusion import RankedLists
from mmsearch.ranking.tuning import (
    FEEDBACK_VARIANT,
    PLAIN_VARIANT,
    Judgments,
    TunedFusion,
    held_out,
    tune_fusion,
)
from mmsearch.retrieval.expansion import FeedbackSettings
from mmsearch.search.request import SearchRequest
from mmsearch.search.training import TrainingQuery

if TYPE_CHECKING:  # the commands import this module at CLI start-up
    from mmsearch.search.searcher import Searcher

SPLIT_SEED = "mmsearch-split-v1"  # as mmsearch.datasets.common: the builders' halves


def split_of(query_id: str) -> str:
    """``dev`` or ``test``, about half each, stable for a given id."""
    digest = hashlib.sha256(f"{SPLIT_SEED}:{query_id}".encode()).digest()
    return ("dev", "test")[digest[0] & 1]


def tune_collection(
    searcher: Searcher,
    queries: list[TrainingQuery],
    judgments: Judgments,
    *,
    candidates: int | None = None,
    feedback: FeedbackSettings | None = None,
    progress: Callable[[int], None] | None = None,
) -> TunedFusion:
    """Tune on the dev half, score on the test half; does not save."""
    judged = [q for q in queries if judgments.get(q.id)]
    if not judged:
        raise MMSearchError("No query has judgments: check that the qrels use the query ids.")
    settings = feedback or FeedbackSettings()
    halves: dict[str, dict[str, dict[str, RankedLists]]] = {
        "dev": {PLAIN_VARIANT: {}, FEEDBACK_VARIANT: {}},
        "test": {PLAIN_VARIANT: {}, FEEDBACK_VARIANT: {}},
    }
    for query in judged:
        half = halves[split_of(query.id)]
        for variant, with_feedback in ((PLAIN_VARIANT, False), (FEEDBACK_VARIANT, True)):
            request = SearchRequest(
                text=query.text,
                image=query.image,
                where=query.where,
                candidates=candidates,
                rules="none",
                reranker="none",
                feedback=settings if with_feedback else False,
            )
            half[variant][query.id] = searcher.retrieve(request).ranked
        if progress:
            progress(1)
    dev = halves["dev"]
    if not dev[PLAIN_VARIANT]:
        raise MMSearchError(
            f"All {len(judged)} judged queries fell in the test half; give more queries."
        )
    choice, scores = tune_fusion(dev, judgments)
    best_signal = max(
        (name for name in scores if name.startswith("single:")), key=lambda name: scores[name]
    )
    test = halves["test"]
    return TunedFusion(
        build_id=searcher.build_id,
        choice=choice,
        dev_queries=len(dev[PLAIN_VARIANT]),
        dev_ndcg10=round(scores["chosen"], 4),
        dev_rrf=round(scores["rrf"], 4),
        dev_best_single=round(scores[best_signal], 4),
        dev_best_single_signal=best_signal.removeprefix("single:"),
        test=held_out(test, choice, judgments) if test[PLAIN_VARIANT] else None,
        feedback=settings,
    )
