"""The one search request model the CLI, the API and evaluation share.

``SearchQuery`` holds what a caller may ask for, in a form any transport can carry
(text, numbers, names, structured filters) and with the bounds a server must enforce;
pydantic, so that the API documents it in OpenAPI and every caller gets the same
validation. ``build_request`` is the single place that turns it into the resolved
``SearchRequest`` (PIL image, filter nodes, access node): before it existed, the API
and the CLI each built requests their own way and drifted apart.

Transports add only what they alone carry: the API's ``SearchBody`` adds a base64
``image`` and a ``mode``; the CLI reads an image file; evaluation loads query images
itself. Those decoded images, and the caller's access, are arguments of
``build_request``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mmsearch.config import AnnSearch
from mmsearch.errors import QueryError
from mmsearch.search.limits import MAX_K, MAX_QUERY_CHARS

if TYPE_CHECKING:
    # Only ``build_request`` needs these: validating a query (which ``mmsearch search``
    # does before it sends one to a running server) loads no PIL, NumPy or PyArrow.
    from PIL import Image

    from mmsearch.filters.expr import Visible
    from mmsearch.manifest import AttributeDescription
    from mmsearch.search.request import SearchRequest

MAX_TEXT = MAX_QUERY_CHARS
MAX_RESULTS = MAX_K
# Reranker and rules are paths for local callers (CLI, evaluation), so their bound is
# generous; the API narrows them to registered names (``service.schemas.SearchBody``).
MAX_CHOICE = 4096
Scalar = str | int | float | bool
Mode = Literal["text", "image", "hybrid"]


class RangeFilter(BaseModel):
    """Numeric bounds, both inclusive; either may be left out."""

    model_config = ConfigDict(extra="forbid")
    min: float | None = None
    max: float | None = None


FilterValue = Scalar | list[Scalar] | RangeFilter


class SearchQuery(BaseModel):
    """A search as a caller describes it. Give ``text``, an image, or both."""

    model_config = ConfigDict(extra="forbid")

    text: str | None = Field(default=None, max_length=MAX_TEXT)
    k: int = Field(default=10, ge=1, le=MAX_RESULTS)
    offset: int = Field(default=0, ge=0, le=MAX_RESULTS - 1)
    where: str | None = Field(
        default=None,
        max_length=MAX_TEXT,
        description="filter over attribute columns: comparisons, IN, BETWEEN, LIKE, IS NULL, "
        "AND/OR/NOT, e.g. price < 10 AND category IN ('mugs', 'cups')",
    )
    filters: dict[str, FilterValue] | None = Field(
        default=None,
        description="attribute → value, list of values, or {min, max}; ANDed with where",
    )
    signals: list[str] | None = Field(default=None, max_length=16)
    fusion: str | None = Field(default=None, max_length=64)
    weights: dict[str, float] | None = None
    normalisation: Literal["minmax", "zscore"] | None = None
    rrf_k: int | None = Field(default=None, ge=1, le=10_000)
    image_weight: float | None = Field(default=None, ge=0.0, le=1.0)
    explain: bool = False
    reranker: str | None = Field(
        default=None,
        max_length=MAX_CHOICE,
        description="the reranker: a model folder (CLI, evaluation) or a registered name "
        "(API); 'none' = plain fusion",
    )
    rules: str | None = Field(
        default=None,
        max_length=MAX_CHOICE,
        description="the business rules: a rules file (CLI, evaluation) or a registered name "
        "(API); 'none' switches the default off",
    )
    candidates: int | None = Field(default=None, ge=1, le=10_000)
    cross_encoder: bool | None = Field(
        default=None,
        description="rescore the top hits with the collection's cross-encoder: true/false; "
        "default: the collection's setting (mmsearch ranking-settings)",
    )
    cross_encoder_top: int | None = Field(
        default=None,
        ge=1,
        le=100,
        description="hits the cross-encoder rescores, at most the collection's own depth",
    )
    ann: AnnSearch | None = Field(
        default=None,
        description="vector index knobs for this search (nprobes, refine_factor, ef, "
        "exact); unset ones take the collection's, then the server's settings",
    )
    graph: bool | None = Field(
        default=None,
        description="entity-graph routing: true/false; default: the collection's setting "
        "(on when the build has a graph)",
    )
    graph_skip: list[Annotated[str, Field(max_length=300)]] | None = Field(
        default=None,
        max_length=50,
        description="entities (field=value) routing leaves out: the chips a user removed",
    )
    like: str | None = Field(
        default=None,
        min_length=1,
        max_length=512,
        description="more like this: an item id; with an entity graph (and graph not "
        "false), items sharing its entities or visual cluster join the ranking",
    )
    group_by: str | None = Field(
        default=None,
        min_length=1,
        max_length=128,
        description="an attribute (e.g. 'document' for PDF pages): keep the best hit per "
        "value, with the group's other matching items counted and named",
    )
    session: str | None = Field(
        default=None,
        max_length=200,
        description="a session id: while a canary runs, one session always sees one build",
    )
    user: str | None = Field(
        default=None,
        max_length=200,
        description="a user id, used like session when no session is given",
    )


def parse_query(**fields: Any) -> SearchQuery:
    """A ``SearchQuery`` from keyword fields; invalid fields become one ``QueryError``.

    For callers without an HTTP layer (the CLI, evaluation), where a pydantic
    traceback would be noise: the message names each field and what is wrong."""
    try:
        return SearchQuery(**fields)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or 'query'}: {error['msg']}"
            for error in exc.errors()
        )
        raise QueryError(f"Invalid search: {problems}.") from None


def build_request(
    query: SearchQuery,
    attributes: Sequence[AttributeDescription] | None = None,
    *,
    image: Image.Image | None = None,
    image_sha256: str | None = None,
    mode: Mode | None = None,
    access: Visible | None = None,
) -> SearchRequest:
    """The ``SearchRequest`` for a query, with the parts only the caller can resolve.

    ``attributes`` (the build manifest's) type the structured ``filters``; ``where``
    travels as the caller wrote it (the Searcher parses it against the build's
    attributes). ``mode`` keeps only the text or only the image of a query that has
    both. ``offset`` is applied by asking for ``k + offset`` hits: the caller slices.
    ``reranker`` and ``rules`` are passed as given (a path, or "none"); the API
    replaces its registered names with paths after this call.
    """
    from mmsearch.filters.structured import structured_filter
    from mmsearch.search.request import SearchRequest

    text = query.text if mode in (None, "text", "hybrid") else None
    query_image = image if mode in (None, "image", "hybrid") else None
    if mode == "text" and not (text or "").strip():
        raise QueryError("mode 'text' needs a text query.")
    if mode == "image" and query_image is None:
        raise QueryError("mode 'image' needs a query image.")
    if query.k + query.offset > MAX_RESULTS:
        raise QueryError(f"offset + k must be at most {MAX_RESULTS}.")
    request = SearchRequest(
        text=text,
        image=query_image,
        k=query.k + query.offset,
        where=query.where,
        filter=structured_filter(query.filters, attributes or []),
        access=access,
        fusion=query.fusion,
        signals=query.signals,
        candidates=query.candidates,
        image_sha256=image_sha256 if query_image is not None else None,
        weights=query.weights,
        normalisation=query.normalisation,
        rrf_k=query.rrf_k,
        explain=query.explain,
        reranker=query.reranker,
        rules=query.rules,
        group_by=query.group_by,
        ann=query.ann,
        graph=query.graph,
        graph_skip=query.graph_skip,
        like=query.like,
        cross_encoder=query.cross_encoder,
        cross_encoder_top=query.cross_encoder_top,
    )
    if query.image_weight is not None:  # None (the API's default): the planner's default
        request.image_weight = query.image_weight
    return request
