"""What a search returns: hits with their per-signal scores, and the result around them.

Plain dataclasses so that evaluation can read ids and scores without a serialisation
layer; what clients see of them (the CLI's ``--json``, the API's answer) is one shape,
``search.response.SearchResponse``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from mmsearch.graph.explanation import RoutingExplanation
from mmsearch.ranking.explain import Explanation
from mmsearch.retrieval.image_match import DuplicateKind, MatchedImage
from mmsearch.search.grouping import HitGroup


@dataclass
class SignalScore:
    score: float
    rank: int


@dataclass
class Hit:
    id: str
    title: str
    score: float
    signals: dict[str, SignalScore]
    images: list[str] = field(default_factory=list)
    attributes: dict[str, Any] = field(default_factory=dict)
    matched_image: MatchedImage | None = None  # the item's image that scored best
    duplicate: DuplicateKind | None = None  # query by image: "exact" or "near" copy
    duplicate_distance: int | None = None  # smallest pHash Hamming distance to the query
    rules: list[str] = field(default_factory=list)  # names of the business rules that touched it
    explanation: Explanation | None = None  # with SearchRequest.explain
    group: HitGroup | None = None  # with SearchRequest.group_by: the group this hit leads


@dataclass
class SearchResult:
    collection: str
    build_id: str
    hits: list[Hit]
    signals: list[str]
    timings_ms: dict[str, float]
    warnings: list[str] = field(default_factory=list)
    fusion: str = "rrf"
    reranker: str | None = None  # the model that ranked the hits, when one did
    rules_version: str | None = None
    # Signals dropped because a query encoder failed: the answer is a fallback.
    dropped_signals: list[str] = field(default_factory=list)
    # Encoder role -> the query's embedding in that role's own space (text query by the
    # text encoder, image query by the image encoder), for drift monitoring
    # (``monitoring.query_vectors``). Cross-modal and blended vectors are left out: they
    # are not drawn from the distribution of the role's stored vectors.
    query_vectors: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    routing: RoutingExplanation | None = None  # entity-graph routing, when it ran

    def as_dict(self) -> dict[str, Any]:
        # Arrays are not JSON (and not for clients): callers that need them read the field.
        data = asdict(replace(self, query_vectors={}))
        del data["query_vectors"]
        return data
