"""The resolved form of one search, as the ``Searcher`` consumes it.

A ``SearchRequest`` holds what no transport can send as such: a decoded PIL image,
filter nodes already built from structured filters, the caller's access node, and
reranker/rules choices already resolved to paths (or "none"). Callers describe a
search with ``search.query.SearchQuery`` and get this form from ``build_request``;
tests and benchmarks may still build it directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from PIL import Image

from mmsearch.config import AnnSearch, Settings
from mmsearch.errors import QueryError
from mmsearch.filters.expr import Filter, Visible
from mmsearch.ranking.fusion import FusionParams
from mmsearch.ranking.rules import RulesChoice
from mmsearch.retrieval.expansion import FeedbackSettings
from mmsearch.retrieval.planner import DEFAULT_IMAGE_WEIGHT
from mmsearch.search.limits import MAX_K, MAX_QUERY_CHARS


@dataclass
class SearchRequest:
    """One query. Filters: ``where`` is the user's text (parsed against the build's
    attribute columns), ``filter`` already-built nodes (the API's structured filters),
    ``access`` what the caller may see (None: an unrestricted operator). All of them,
    and the business rules' filters, are ANDed and applied inside every retriever."""

    text: str | None = None
    image: Image.Image | None = None
    k: int = 10
    where: str | None = None
    filter: Filter | None = None
    access: Visible | None = None
    fusion: str | None = None  # rrf | weighted | dbsf; settings.fusion when None
    signals: list[str] | None = None  # restrict to these retrievers (evaluation, debugging)
    candidates: int | None = None  # per-retriever depth; settings.candidates when None
    image_sha256: str | None = None  # of the query image's bytes: exact duplicates by content
    weights: dict[str, float] | None = None  # per-signal fusion weights; signals not named get 1
    normalisation: Literal["minmax", "zscore"] | None = None  # weighted fusion; settings default
    rrf_k: int | None = None  # settings.rrf_k when None
    explain: bool = False  # attach a per-hit Explanation (signals, reranker, rules)
    reranker: str | Path | None = None  # model folder; settings.ranker when None; "none" = off
    # rules file; settings.rules when None; "none" = off; (binding, added) stacks them
    rules: RulesChoice = None
    # Weight of the image in the text_image blend (CLIP-family builds only), in [0, 1].
    image_weight: float = DEFAULT_IMAGE_WEIGHT
    # An attribute column: one hit per value, the best (search/grouping.py).
    group_by: str | None = None
    # ANN knobs over the collection's and the settings' (collection_state.ann_search).
    ann: AnnSearch | None = None
    # Entity-graph routing (search/graph_route.py): None = the collection's setting.
    graph: bool | None = None
    graph_skip: list[str] | None = None  # entity keys (field=value) routing leaves out
    # "More like this": the source item's id. With a graph (and routing not off), items
    # sharing its entities or its visual cluster join as the ``graph`` signal.
    like: str | None = None
    # Keyword pseudo-relevance feedback (retrieval/expansion.py): None = the build's tuned
    # choice (off when untuned); True/False = on/off; settings = on with these.
    feedback: FeedbackSettings | bool | None = None
    # The collection's cross-encoder (ranking/cross_encoder.py): None = its setting;
    # ``cross_encoder_top`` = hits rescored, at most the collection's depth.
    cross_encoder: bool | None = None
    cross_encoder_top: int | None = None


def validate_request(request: SearchRequest) -> str | None:
    """The stripped query text (None when there is none), once the request is answerable.

    Checked here as well as in ``SearchQuery`` because tests, benchmarks and internal
    callers build ``SearchRequest`` directly."""
    text = (request.text or "").strip() or None
    if text is None and request.image is None:
        raise QueryError("Give a text query, an image, or both.")
    if text is not None and len(text) > MAX_QUERY_CHARS:
        raise QueryError(f"The query is longer than {MAX_QUERY_CHARS} characters.")
    if not 1 <= request.k <= MAX_K:
        raise QueryError(f"k must be between 1 and {MAX_K}.")
    return text


def fusion_params(request: SearchRequest, settings: Settings) -> FusionParams:
    """The request's fusion parameters, with the settings filling what it leaves open."""
    k = request.rrf_k if request.rrf_k is not None else settings.rrf_k
    if k < 1:
        raise QueryError("The RRF constant k must be at least 1.")
    return FusionParams(
        k=k,
        weights=request.weights,
        normalisation=request.normalisation or settings.fusion_normalisation,
    )
