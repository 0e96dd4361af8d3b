"""The one shape of a search answer, for every surface that prints or sends one.

The CLI's ``search --json``, the API's search routes and anything else that shows hits
build a ``SearchResponse`` here, so a hit has the same keys wherever a client meets it
and the API's OpenAPI schema documents exactly what the CLI prints. It lives in
``search/`` (below ``service/`` and ``commands/``) so that both can import it.

What only HTTP carries is in ``TRANSPORT_ONLY``: URLs to the item page and its images,
and ``extra`` (the pre-shared-shape home of ``matched_image``/``duplicate``, kept for
clients written against it). The CLI leaves those out.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field

from mmsearch.graph.explanation import RoutingExplanation
from mmsearch.ranking.explain import Explanation
from mmsearch.retrieval.image_match import DuplicateKind, MatchedImage
from mmsearch.search.grouping import HitGroup

if TYPE_CHECKING:
    # Only the ``of`` constructors read these: parsing a server's answer (what
    # ``mmsearch search`` does when a running server answers) needs no NumPy.
    from mmsearch.search.result import Hit, SearchResult

# Hit fields that only the API sends (they are links into the server, or a legacy copy).
TRANSPORT_ONLY: frozenset[str] = frozenset({"image_urls", "item_url", "extra"})
# Response fields that only the API sends (routing and paging happen in the server).
RESPONSE_TRANSPORT_ONLY: frozenset[str] = frozenset({"query_id", "routed", "k", "offset"})


class SignalOut(BaseModel):
    """One retriever's score and rank for a hit."""

    score: float
    rank: int


class SearchHit(BaseModel):
    """One hit, as the CLI prints it and the API sends it."""

    rank: int = Field(description="1-based position in the whole ranking (offset included)")
    id: str
    title: str
    score: float
    signals: dict[str, SignalOut]
    attributes: dict[str, Any]
    images: list[str] = Field(
        description="the item's images: file paths in the CLI, image URLs in the API"
    )
    matched_image: MatchedImage | None = Field(
        default=None, description="the item's image that scored best for an image signal"
    )
    duplicate: DuplicateKind | None = Field(
        default=None, description="query by image: the hit is an 'exact' or 'near' copy"
    )
    duplicate_distance: int | None = Field(
        default=None, description="smallest pHash Hamming distance to the query image"
    )
    rules: list[str] = Field(
        default_factory=list, description="names of the business rules that touched it"
    )
    explanation: Explanation | None = Field(default=None, description="with explain=true")
    group: HitGroup | None = Field(
        default=None, description="with group_by: the group this hit is the best item of"
    )
    # Transport-only (API): see TRANSPORT_ONLY.
    image_urls: list[str] | None = Field(
        default=None, description="API only: the item's image URLs (same as images)"
    )
    item_url: str | None = Field(default=None, description="API only: the item's web page")
    extra: dict[str, Any] | None = Field(
        default=None,
        description="API only, kept for older clients: matched_image, duplicate, "
        "duplicate_distance and rules again",
    )

    @classmethod
    def of(cls, hit: Hit, rank: int) -> SearchHit:
        """The hit as the search produced it (image paths as stored)."""
        return cls(
            rank=rank,
            id=hit.id,
            title=hit.title,
            score=hit.score,
            signals={k: SignalOut(score=s.score, rank=s.rank) for k, s in hit.signals.items()},
            attributes=hit.attributes,
            images=list(hit.images),
            matched_image=hit.matched_image,
            duplicate=hit.duplicate,
            duplicate_distance=hit.duplicate_distance,
            rules=list(hit.rules),
            explanation=hit.explanation,
            group=hit.group,
        )


class SearchResponse(BaseModel):
    """A search answer: the hits and how they were found."""

    collection: str
    build_id: str = Field(description="the build that answered")
    hits: list[SearchHit]
    signals: list[str]
    timings_ms: dict[str, float]
    warnings: list[str] = Field(default_factory=list)
    fusion: str | None = Field(default=None, description="how the signals were fused")
    reranker: str | None = Field(default=None, description="the model that ranked the hits")
    rules_version: str | None = None
    dropped_signals: list[str] = Field(
        default_factory=list,
        description="signals dropped because a query encoder failed (a fallback answer)",
    )
    routing: RoutingExplanation | None = Field(
        default=None, description="entities recognised in the query and what each did"
    )
    # Transport-only (API): see RESPONSE_TRANSPORT_ONLY.
    query_id: str | None = Field(default=None, description="API only: for feedback")
    routed: Literal["live", "canary"] | None = Field(
        default=None, description="API only: whether the live build or the canary answered"
    )
    k: int | None = Field(default=None, description="API only: hits asked for")
    offset: int | None = Field(default=None, description="API only: hits skipped (paging)")

    @classmethod
    def of(
        cls, result: SearchResult, hits: list[Hit] | None = None, offset: int = 0
    ) -> SearchResponse:
        """``result`` (or the page ``hits`` of it, starting after ``offset``) in this shape."""
        page = result.hits if hits is None else hits
        return cls(
            collection=result.collection,
            build_id=result.build_id,
            hits=[SearchHit.of(hit, offset + i + 1) for i, hit in enumerate(page)],
            signals=result.signals,
            timings_ms=result.timings_ms,
            warnings=result.warnings,
            fusion=result.fusion,
            reranker=result.reranker,
            rules_version=result.rules_version,
            dropped_signals=result.dropped_signals,
            routing=result.routing,
        )

    def cli_json(self) -> dict[str, Any]:
        """JSON-ready, without the transport-only fields (the CLI's ``--json``)."""
        return self.model_dump(
            mode="json",
            exclude={
                **dict.fromkeys(RESPONSE_TRANSPORT_ONLY, True),
                "hits": {"__all__": set(TRANSPORT_ONLY)},
            },
        )
