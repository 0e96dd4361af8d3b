"""Run every configuration over the same queries against one collection.

Each configuration sees exactly the same queries, images and filters, in the same
order, against the same build, so differences between their metrics come from the
configuration alone. A configuration that cannot answer a query (an image-only
signal for a text query) gets an empty ranking for it: the query still counts, with
a score of 0, and the report says how many queries each configuration answered.

Each query's ``where`` goes through the same parser as a search's; every one is checked
before the first search, so a typo in line 90 does not waste the first 89 queries.
With ``groups``, every query runs as a caller with those ACL groups (what they may see
under the collection's default access); without, as the unrestricted operator.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from PIL import Image

from mmsearch.config import Settings
from mmsearch.errors import EvaluationError, QueryError
from mmsearch.evaluation.configs import RetrievalConfig
from mmsearch.evaluation.queries import EvalQuery
from mmsearch.filters.parse import FilterError, parse_where
from mmsearch.manifest import EncoderDescription
from mmsearch.media.images import ImageLimits, load_image
from mmsearch.retrieval.planner import plan_retrievers
from mmsearch.search.searcher import Searcher

ProgressCallback = Callable[[int], None]


@dataclass
class RankedHit:
    id: str
    score: float


@dataclass
class ConfigRun:
    """One configuration's rankings, keyed by query id, with per-query latency."""

    config: RetrievalConfig
    rankings: dict[str, list[RankedHit]] = field(default_factory=dict)
    latency_ms: dict[str, float] = field(default_factory=dict)
    unanswered: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def answered(self) -> int:
        return len(self.rankings) - len(self.unanswered)

    def ranx_run(self) -> dict[str, dict[str, float]]:
        """Scores ranx can sort: by our rank, not raw score, so ties keep mmsearch's order."""
        return {
            query_id: {hit.id: float(len(hits) - position) for position, hit in enumerate(hits)}
            for query_id, hits in self.rankings.items()
        }


def can_answer(
    config: RetrievalConfig, query: EvalQuery, encoders: dict[str, EncoderDescription]
) -> bool:
    """Whether the planner would give this configuration any retriever for this query."""
    try:
        plans = plan_retrievers(
            has_text="text" in query.modalities,
            has_image="image" in query.modalities,
            encoders=encoders,
            only=config.signals,
        )
    except QueryError:
        return False
    return bool(plans)


def check_filters(queries: list[EvalQuery], columns: dict[str, str]) -> None:
    """Parse every query's ``where`` as a search would; the first bad one names its query."""
    for query in queries:
        if query.where and query.where.strip():
            try:
                parse_where(query.where, columns)
            except FilterError as exc:
                raise EvaluationError(f"Query {query.id!r}: {exc}") from None


def run_experiment(
    settings: Settings,
    collection: str,
    queries: list[EvalQuery],
    configs: list[RetrievalConfig],
    *,
    k: int = 100,
    progress: ProgressCallback | None = None,
    groups: Iterable[str] | None = None,
    build_id: str | None = None,
) -> list[ConfigRun]:
    """Search every query with every configuration; returns one ConfigRun per configuration.

    ``groups``: run every query as a caller with these ACL groups (None: unrestricted).
    ``build_id``: the build to search (None: live), so a candidate is judged before it is.
    """
    searcher = Searcher(settings, collection, build_id=build_id)
    check_filters(queries, searcher.attribute_kinds)
    access = searcher.access_for(groups) if groups is not None else None
    encoders = searcher.manifest.encoders
    limits = ImageLimits(settings.max_image_bytes, settings.max_image_pixels)
    images: dict[str, Image.Image] = {}
    advance = progress or (lambda done: None)
    runs = []
    for config in configs:
        run = ConfigRun(config)
        for query in queries:
            if not can_answer(config, query, encoders):
                run.rankings[query.id] = []
                run.unanswered.append(query.id)
                advance(1)
                continue
            image = None
            if query.image is not None:
                if query.id not in images:
                    images[query.id] = load_image(query.image, limits)
                image = images[query.id]
            request = config.request(
                text=query.text, image=image, k=k, where=query.where, access=access
            )
            tick = time.perf_counter()
            result = searcher.search(request)
            run.latency_ms[query.id] = (time.perf_counter() - tick) * 1000.0
            run.rankings[query.id] = [RankedHit(hit.id, float(hit.score)) for hit in result.hits]
            run.warnings.extend(f"{query.id}: {warning}" for warning in result.warnings)
            advance(1)
        runs.append(run)
    return runs
