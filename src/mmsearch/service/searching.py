"""Running one API search: body → ``SearchRequest`` → ``Searcher`` → response, observed.

The body is a ``search.query.SearchQuery`` plus what only HTTP carries (a base64
image, a ``mode``); ``search.query.build_request`` turns it into the resolved request
exactly as it does for the CLI and evaluation. What stays here is HTTP's own part:
decoding the image under the server's limits (to the size ingest decodes to, under the
process's decode budget: ``service.query_images``), the caller's access, registered
rules/reranker names → paths, canary routing and offset slicing; what is recorded
about an answered search is ``service/observer.py``'s.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from PIL import Image

from mmsearch.config import Settings
from mmsearch.errors import QueryError
from mmsearch.governance.registry import Registry, RegistryError
from mmsearch.media.images import ImageLimits
from mmsearch.monitoring.tracing import now_ns
from mmsearch.ranking.pipeline import OFF
from mmsearch.ranking.rules import RulesChoice
from mmsearch.search.query import FilterValue, RangeFilter, build_request
from mmsearch.search.response import SearchHit, SearchResponse
from mmsearch.search.result import Hit, SearchResult
from mmsearch.service.access import Caller
from mmsearch.service.errors import Forbidden, PayloadTooLarge
from mmsearch.service.observer import AnsweredSearch, SearchObserver
from mmsearch.service.query_images import decode_bounded
from mmsearch.service.schemas import SearchBody
from mmsearch.service.state import ServiceState


def image_limits(settings: Settings) -> ImageLimits:
    return ImageLimits(settings.max_image_bytes, settings.max_image_pixels)


@dataclass(frozen=True)
class QueryImage:
    """A decoded query image and the sha256 of its bytes (exact-duplicate detection)."""

    image: Image.Image
    sha256: str


def decode_query_image(data: bytes, source: str, settings: Settings) -> QueryImage:
    """Decode to ``ingest_image_max_side`` (what the encoders saw of the catalog), under
    the process-wide budget of pixels decoded at once: a small file may declare tens
    of megapixels, and a few such searches at once must not grow the server by GBs."""
    image = decode_bounded(data, source, image_limits(settings), settings.ingest_image_max_side)
    return QueryImage(image, hashlib.sha256(data).hexdigest())


def decode_base64_image(encoded: str, settings: Settings) -> QueryImage:
    """A base64 (or ``data:`` URL) image, size-checked before and after decoding."""
    if encoded.startswith("data:"):
        encoded = encoded.partition(",")[2]
    if len(encoded) * 3 // 4 > settings.max_image_bytes:
        raise PayloadTooLarge(
            f"The query image is over the limit of {settings.max_image_bytes} bytes."
        )
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise QueryError("The image is not valid base64.") from None
    return decode_query_image(data, "query image", settings)


def image_url(collection: str, item_id: str, n: int) -> str:
    return f"/v1/collections/{quote(collection)}/items/{quote(item_id, safe='')}/images/{n}"


def item_url(collection: str, item_id: str) -> str:
    return f"/items/{quote(collection)}/{quote(item_id, safe='')}"


def hit_payload(collection: str, hit: Hit, rank: int, explain: bool) -> SearchHit:
    """The shared hit shape (``search.response``) with the server's links: ``images``
    are URLs here (a server path is no client's business), ``image_urls`` and ``extra``
    stay for clients written before the shapes were one."""
    shared = SearchHit.of(hit, rank)
    urls = [image_url(collection, hit.id, n) for n in range(len(hit.images))]
    return shared.model_copy(
        update={
            "images": urls,
            "image_urls": urls,
            "item_url": item_url(collection, hit.id),
            "explanation": shared.explanation if explain else None,
            "extra": shared.model_dump(
                mode="json", include={"matched_image", "duplicate", "duplicate_distance", "rules"}
            ),
        }
    )


def run_search(
    state: ServiceState,
    collection: str,
    body: SearchBody,
    image: QueryImage | None,
    caller: Caller,
) -> dict[str, Any]:
    """Search as ``caller`` (its ACL goes into the store query); the lookups happen
    here, the observations (metrics, canary guards, trace, query log) in
    ``SearchObserver``; return the response body: a ``search.response.SearchResponse``
    (the CLI's shape, plus the API's links and paging), JSON-ready."""
    routed, collection_state = state.route(collection, body.session or body.user)
    searcher = state.searcher(collection, routed.build_id)
    request = build_request(
        body,
        searcher.manifest.attributes,
        image=image.image if image else None,
        image_sha256=image.sha256 if image else None,
        mode=body.mode,
    )
    request = dataclasses.replace(
        request,
        access=state.access_filter(caller, collection, searcher),
        rules=resolve_rules(state, collection, body.rules, caller),
        reranker=resolve_ranker(state, body.reranker),
    )
    started_ns, tick = now_ns(), time.perf_counter()
    result: SearchResult = searcher.search(request)
    seconds = time.perf_counter() - tick
    hits = result.hits[body.offset :]  # build_request asked for k + offset
    hits = hits[: body.k]
    query_id = uuid.uuid4().hex
    SearchObserver(state).observe(
        AnsweredSearch(
            query_id=query_id,
            collection=collection,
            caller=caller,
            routed=routed,
            collection_state=collection_state,
            result=result,
            hits=hits,
            text=request.text,
            has_image=request.image is not None,
            where=body.where,
            structured_filters=_filters_json(body.filters),
            started_ns=started_ns,
            seconds=seconds,
        )
    )
    response = SearchResponse.of(result, hits, body.offset).model_copy(
        update={
            "query_id": query_id,
            "collection": collection,
            "routed": "canary" if routed.canary else "live",
            "k": body.k,
            "offset": body.offset,
            "hits": [
                hit_payload(collection, hit, body.offset + i + 1, body.explain)
                for i, hit in enumerate(hits)
            ],
            "timings_ms": {**result.timings_ms, "total": round(seconds * 1000.0, 3)},
        }
    )
    return response.model_dump(mode="json")


def resolve_rules(
    state: ServiceState, collection: str, name: str | None, caller: Caller
) -> RulesChoice:
    """A request names registered rules, or none: never a server path.

    Without a name, the collection's default rules apply (else the server's setting).
    The default binds every caller but an admin of all collections: for anyone else a
    named set is stacked on top of it (it may narrow or reorder, never lift a filter or
    a block), and switching it off ("none") is refused."""
    registry = Registry(state.settings.home)
    default = registry.default_rules(collection)
    default_path = registry.rules_path(default) if default else None
    if name is None:
        return default_path  # None: the ranking stage falls back to the server's setting
    binding = default_path or state.settings.rules
    if name.strip().lower() in OFF:
        if binding is not None and not caller.global_admin:
            raise Forbidden(
                "Only an admin of every collection may switch this collection's default rules off."
            )
        return "none"
    try:
        chosen = registry.rules_path(name)
    except RegistryError:
        raise QueryError(f"No rules named '{name}' are registered on this server.") from None
    if binding is None or caller.global_admin or Path(binding) == chosen:
        return chosen
    return (Path(binding), chosen)


def resolve_ranker(state: ServiceState, name: str | None) -> Path | str | None:
    """A registered reranker by name, "none" for plain fusion, or the server's default."""
    if name is None:
        return None
    if name.strip().lower() in OFF:
        return "none"
    try:
        return Registry(state.settings.home).ranker_path(name)
    except RegistryError:
        raise QueryError(f"No reranker named '{name}' is registered on this server.") from None


def _filters_json(filters: dict[str, FilterValue] | None) -> dict[str, Any] | None:
    """The structured filters as the caller sent them, JSON-ready, for the query log."""
    if not filters:
        return None
    return {
        name: value.model_dump(exclude_none=True) if isinstance(value, RangeFilter) else value
        for name, value in filters.items()
    }
