"""Reranker training data from real searches: the part of training that runs the Searcher.

Candidate pools must come from the same retrieval a live query gets (planned
retrievers, filters pushed into the store, depth ``candidates``), with the rules and
the current reranker off so that the model learns from plain retrieval. That needs a
``Searcher``, so it lives here, above ``ranking/``; the model side (folds, CV, fit,
metadata) stays in ``ranking/training.py`` and only ever sees the pools.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from mmsearch.filters.parse import FilterError
from mmsearch.ranking.fusion import FusionParams, fuse, order_by_score
from mmsearch.ranking.model import RankerModel
from mmsearch.ranking.training import Judgments, QueryPool, TrainingReport, fit_ranker
from mmsearch.search.request import SearchRequest

if TYPE_CHECKING:  # the commands import this module at CLI start-up; opening stores can wait
    from mmsearch.search.searcher import Searcher


@dataclass(frozen=True)
class TrainingQuery:
    id: str
    text: str | None = None
    image: Image.Image | None = None
    where: str | None = None


def collect_pools(
    searcher: Searcher,
    queries: list[TrainingQuery],
    judgments: Judgments,
    *,
    candidates: int | None = None,
    progress: Callable[[int], None] | None = None,
    groups: Iterable[str] | None = None,
) -> tuple[list[QueryPool], list[str]]:
    """Search every query once (rules and reranker off) and build its feature rows.

    ``groups``: search as a caller with these ACL groups (None: unrestricted operator).
    """
    pools: list[QueryPool] = []
    skipped: list[str] = []
    params = FusionParams(k=searcher.settings.rrf_k)
    access = searcher.access_for(groups) if groups is not None else None
    for query in queries:
        request = SearchRequest(
            text=query.text,
            image=query.image,
            where=query.where,
            access=access,
            candidates=candidates,
            rules="none",
            reranker="none",
        )
        try:
            retrieved = searcher.retrieve(request, reranking=True)
        except FilterError as exc:
            raise FilterError(f"Query {query.id!r}: {exc}") from None
        rrf = fuse("rrf", retrieved.ranked, params).scores
        ids = order_by_score(rrf)
        if progress:
            progress(1)
        if not ids:
            skipped.append(query.id)
            continue
        grades = judgments.get(query.id, {})
        labels = np.asarray([grades.get(i, 0) for i in ids], dtype=np.int32)
        # The graph features as a search computes them: over what this caller may see.
        graph = searcher.router.evidence(request, searcher.visible_filter(access), None)
        x = searcher.ranking.features(retrieved, ids, graph)
        pools.append(QueryPool(query.id, ids, x, labels, rrf))
    return pools, skipped


def train_ranker(
    searcher: Searcher,
    queries: list[TrainingQuery],
    judgments: Judgments,
    *,
    folds: int = 5,
    seed: int = 13,
    candidates: int | None = None,
    params: dict[str, Any] | None = None,
    source: str = "qrels",
    progress: Callable[[int], None] | None = None,
    groups: Iterable[str] | None = None,
) -> tuple[RankerModel, TrainingReport]:
    """Collect pools on the searcher's build, cross-validate (``folds`` >= 2), fit on all.

    ``groups``: collect candidates as a caller with these ACL groups (None: unrestricted).
    """
    pools, skipped = collect_pools(
        searcher, queries, judgments, candidates=candidates, progress=progress, groups=groups
    )
    return fit_ranker(
        pools,
        judgments,
        features=searcher.ranking.space.names(),
        manifest=searcher.manifest,
        collection=searcher.collection,
        folds=folds,
        seed=seed,
        params=params,
        source=source,
        skipped=skipped,
    )
