"""Hybrid search over a collection's live build.

A text query runs keyword (BM25) and dense-text retrievers; an image query runs the
dense-image retriever; both at once run all three. Results are fused (RRF by
default). When a model cannot be used, the keyword retriever still answers and the
result says which signal was dropped and why.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image

from mmsearch.config import Settings
from mmsearch.encoders.base import create_encoder
from mmsearch.errors import MMSearchError, QueryError
from mmsearch.filters.expr import Filter, Visible, all_of
from mmsearch.filters.parse import parse_where
from mmsearch.index.base import BuildIndex, Match
from mmsearch.index.open import open_build_index
from mmsearch.index.schema import ACL_COLUMN
from mmsearch.ranking.explain import Explanation
from mmsearch.ranking.features import Retrieved
from mmsearch.ranking.pipeline import RankingStage
from mmsearch.retrieval.fusion import FusionParams
from mmsearch.retrieval.image_hits import (
    DuplicateKind,
    ImageSignal,
    MatchedImage,
    QueryImage,
    best_images,
    duplicate_of_query,
)
from mmsearch.retrieval.planner import (
    DEFAULT_IMAGE_WEIGHT,
    IMAGE_VECTOR,
    TEXT_VECTOR,
    plan_retrievers,
)
from mmsearch.retrieval.query_cache import QueryEmbeddingCache, image_key, text_key
from mmsearch.workspace import BUILDING, Workspace

MAX_QUERY_CHARS = 2000
MAX_K = 1000
HIT_COLUMNS = ["id", "title", "images", "texts_json"]


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
    rules: str | Path | None = None  # rules file; settings.rules when None; "none" = off
    # Weight of the image in the text_image blend (CLIP-family builds only), in [0, 1].
    image_weight: float = DEFAULT_IMAGE_WEIGHT


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

    def as_dict(self) -> dict[str, Any]:
        # Arrays are not JSON (and not for clients): callers that need them read the field.
        data = asdict(replace(self, query_vectors={}))
        del data["query_vectors"]
        return data


class Searcher:
    """Opens one build of a collection (live unless ``build_id`` names another: a canary,
    a candidate under evaluation) once and answers many queries against it."""

    def __init__(
        self,
        settings: Settings,
        collection: str,
        query_cache: QueryEmbeddingCache | None = None,
        build_id: str | None = None,
    ):
        self.settings = settings
        # The service shares one cache across Searchers; alone, a Searcher keeps its own.
        self.query_cache = query_cache or QueryEmbeddingCache(settings.query_cache_size)
        folder = Workspace(settings.home).collection(collection)
        self.folder = folder
        self.collection = collection
        self.manifest = folder.live_manifest() if build_id is None else folder.manifest(build_id)
        if self.manifest.get("state") == BUILDING:
            raise MMSearchError(
                f"Build {build_id} of '{collection}' is still being built; it cannot be "
                "searched until its first ingest finishes."
            )
        self.build_id: str = self.manifest["build_id"]
        self.index: BuildIndex = open_build_index(folder, self.manifest, settings)
        self.attribute_columns = [a["column"] for a in self.manifest["attributes"]]
        # What a user's ``where`` may name: the attribute columns and their kinds, only.
        self.attribute_kinds = {a["column"]: a["kind"] for a in self.manifest["attributes"]}
        self.ranking = RankingStage(settings, self.manifest, self.index)
        self._items_with_acl: int | None = None

    def effective_access(self, access: Visible | None) -> Visible | None:
        """The access node, or None where it cannot exclude anything.

        In a build where no item carries an ACL and the default is public, the node
        admits every row; any filter costs LanceDB its prefilter path (about 1 ms per
        retriever at 1k rows), so catalogs without ACLs should not pay for one. The
        count is taken once per Searcher, which reads one table snapshot: a write
        that adds ACLs changes the manifest, and the service then opens a new one."""
        if access is None or not access.default_public:
            return access
        if self._items_with_acl is None:
            has_column = ACL_COLUMN in self.index.schema.names
            # Visible to no group but public = exactly the items without an ACL.
            without = Visible(frozenset(), default_public=True)
            self._items_with_acl = (
                self.index.row_count() - self.index.count(without) if has_column else 0
            )
        return access if self._items_with_acl else None

    def access_for(self, groups: Iterable[str]) -> Visible:
        """The access node of a caller with these ACL groups, under the collection's default."""
        default = self.folder.default_access(self.settings.default_access)
        return Visible(frozenset(groups), default == "public")

    def user_filter(self, request: SearchRequest) -> Filter | None:
        """The caller's own filter: the parsed ``where`` AND the structured ``filter``."""
        where = request.where.strip() if request.where else ""
        parsed = parse_where(where, self.attribute_kinds) if where else None
        return all_of(parsed, request.filter)

    def search(self, request: SearchRequest) -> SearchResult:
        retrieved = self.retrieve(request)
        fusion = request.fusion or self.settings.fusion
        ranked = self.ranking.rank(
            retrieved,
            k=request.k,
            fusion=fusion,
            params=_fusion_params(request, self.settings),
            reranker=request.reranker,
            rules=request.rules,
            explain=request.explain,
        )
        tick = time.perf_counter()
        hits = self._hits(ranked.top, ranked.scores, retrieved.ranked)
        self._annotate_images(hits, retrieved, request)
        for hit in hits:
            hit.rules = list(dict.fromkeys(a.rule for a in ranked.rules.get(hit.id, [])))
            hit.explanation = ranked.explanations.get(hit.id)
        retrieved.timings["fetch"] = _ms(tick)
        return SearchResult(
            self.collection,
            self.build_id,
            hits,
            sorted(retrieved.ranked),
            retrieved.timings,
            retrieved.warnings + ranked.warnings,
            fusion=fusion,
            reranker=ranked.reranker,
            rules_version=ranked.rules_version,
            dropped_signals=retrieved.dropped,
            query_vectors=_own_space_vectors(retrieved.query_vectors),
        )

    def retrieve(self, request: SearchRequest) -> Retrieved:
        """Run every planned retriever to depth ``candidates``; no fusion, no cut."""
        text = _validate(request)
        user_filter = self.user_filter(request)
        # One tree for every retriever: the user's filter, the business rules' filters and
        # blocks, and what the caller may see. The store applies it before any top-k cut.
        combined = all_of(
            user_filter,
            self.ranking.store_filter(text, request.rules),
            self.effective_access(request.access),
        )
        timings: dict[str, float] = {}
        warnings: list[str] = []
        depth = max(request.candidates or self.settings.candidates, request.k)
        plans = plan_retrievers(
            has_text=text is not None,
            has_image=request.image is not None,
            encoders=self.manifest["encoders"],
            only=request.signals,
            image_weight=request.image_weight,
        )
        queries: dict[str, Any] = {"text": text, "image": request.image}
        embeddings: dict[tuple[str, str], np.ndarray | None] = {}
        failures: dict[tuple[str, str], str] = {}
        skipped: list[str] = []
        dropped: list[str] = []
        ranked: dict[str, list[Match]] = {}
        for plan in plans:
            if plan.kind == "keyword":
                tick = time.perf_counter()
                ranked[plan.name] = self.index.keyword_search(text or "", depth, combined)
                timings[plan.name] = _ms(tick)
                continue
            for key in plan.embeddings:
                if key not in embeddings:
                    embeddings[key] = self._encode(timings, *key, queries[key[1]], failures)
            missing = [key for key in plan.embeddings if embeddings[key] is None]
            if missing:
                skipped.append(f"{plan.name} skipped ({failures[missing[0]]})")
                dropped.append(plan.name)
                continue
            parts = [v for key in plan.embeddings if (v := embeddings[key]) is not None]
            vector = plan.query_vector(parts, request.image_weight)
            embeddings[(plan.role or "", plan.query_modality)] = vector
            tick = time.perf_counter()
            ranked[plan.name] = self.index.vector_search(plan.column or "", vector, depth, combined)
            timings[plan.name] = _ms(tick)

        if skipped:
            remaining = ", ".join(sorted(ranked)) or "no signal"
            warnings.append(f"{'; '.join(skipped)}; results come from {remaining} only")
        query_vectors = {
            plan.name: vector
            for plan in plans
            if plan.kind == "vector"
            and (vector := embeddings.get((plan.role or "", plan.query_modality))) is not None
        }
        return Retrieved(
            text=text,
            image=request.image,
            where=combined,
            user_filtered=user_filter is not None,
            ranked=ranked,
            query_vectors=query_vectors,
            depth=depth,
            planned=[plan.name for plan in plans],
            warnings=warnings,
            timings=timings,
            dropped=dropped,
        )

    def _encode(
        self,
        timings: dict[str, float],
        role: str,
        modality: str,
        query: Any,
        failures: dict[tuple[str, str], str],
    ) -> np.ndarray | None:
        """Embed the query; a failing text model becomes a warning, not a failed search."""
        tick = time.perf_counter()
        spec = self.manifest["encoders"][role]["spec"]
        version = str(self.manifest["encoders"][role].get("version", ""))
        try:
            # Keyed by spec and version: a changed model never answers from the cache.
            key = (text_key if modality == "text" else image_key)(spec, version, query)
            cached = self.query_cache.get(key)
            if cached is not None:
                return cached
            encoder = create_encoder(spec)
            if modality == "text":
                vector = encoder.encode_texts([query])[0]
            else:
                vector = encoder.encode_images([query])[0]
            self.query_cache.put(key, vector)
        except Exception as exc:
            if modality == "image":
                raise MMSearchError(f"The image encoder '{spec}' failed: {exc}") from exc
            failures[(role, modality)] = f"the encoder '{spec}' failed: {exc}"
            return None
        finally:
            label = modality if role == modality else f"{modality}_with_{role}_encoder"
            timings[f"encode_{label}"] = _ms(tick)
        return vector

    def _hits(
        self, top: list[str], fused: dict[str, float], ranked: dict[str, list[Match]]
    ) -> list[Hit]:
        signals: dict[str, dict[str, SignalScore]] = {item_id: {} for item_id in top}
        for name, matches in ranked.items():
            for rank, match in enumerate(matches, start=1):
                if match.id in signals:
                    signals[match.id][name] = SignalScore(round(match.score, 6), rank)
        rows = {
            row["id"]: row for row in self.index.get(top, [*HIT_COLUMNS, *self.attribute_columns])
        }
        hits = []
        for item_id in top:
            row = rows.get(item_id, {})
            hits.append(
                Hit(
                    id=item_id,
                    title=row.get("title") or "",
                    score=round(fused[item_id], 6),
                    signals=signals[item_id],
                    images=list(row.get("images") or []),
                    attributes={c: row.get(c) for c in self.attribute_columns},
                )
            )
        return hits

    def _annotate_images(
        self, hits: list[Hit], retrieved: Retrieved, request: SearchRequest
    ) -> None:
        """Say which image of each hit matched, and which hits copy the query image."""
        multi = {v.column for v in self.index.vector_fields if v.multi}
        plans = plan_retrievers(
            has_text=retrieved.text is not None,
            has_image=retrieved.image is not None,
            encoders=self.manifest["encoders"],
            image_weight=request.image_weight,
        )
        signals = [
            ImageSignal(plan.name, plan.column, retrieved.query_vectors[plan.name])
            for plan in sorted(plans, key=lambda plan: plan.query_modality != "image")
            if plan.column in multi and plan.name in retrieved.query_vectors
        ]
        check_duplicates = request.image is not None and "image_phash" in self.index.schema.names
        if not hits or (not signals and not check_duplicates):
            return
        columns = ["id", "images", *dict.fromkeys(signal.column for signal in signals)]
        if check_duplicates:
            columns += ["image_phash", "image_sha256"]
        rows = {row["id"]: row for row in self.index.get([hit.id for hit in hits], columns)}
        matched = best_images(rows, signals)
        query = QueryImage.of(request.image, request.image_sha256) if check_duplicates else None
        for hit in hits:
            hit.matched_image = matched.get(hit.id)
            if query is not None and hit.id in rows:
                hit.duplicate, hit.duplicate_distance = duplicate_of_query(
                    query,
                    rows[hit.id],
                    hit.matched_image,
                    max_distance=self.settings.dupe_max_distance,
                    min_cosine=self.settings.dupe_min_cosine,
                )


def _fusion_params(request: SearchRequest, settings: Settings) -> FusionParams:
    k = request.rrf_k if request.rrf_k is not None else settings.rrf_k
    if k < 1:
        raise QueryError("The RRF constant k must be at least 1.")
    return FusionParams(
        k=k,
        weights=request.weights,
        normalisation=request.normalisation or settings.fusion_normalisation,
    )


def _validate(request: SearchRequest) -> str | None:
    text = (request.text or "").strip() or None
    if text is None and request.image is None:
        raise QueryError("Give a text query, an image, or both.")
    if text is not None and len(text) > MAX_QUERY_CHARS:
        raise QueryError(f"The query is longer than {MAX_QUERY_CHARS} characters.")
    if not 1 <= request.k <= MAX_K:
        raise QueryError(f"k must be between 1 and {MAX_K}.")
    return text


# Retrievers whose query vector lies in the space of the role's stored vectors.
_OWN_SPACE = {TEXT_VECTOR: "text", IMAGE_VECTOR: "image"}


def _own_space_vectors(by_signal: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {role: by_signal[name] for name, role in _OWN_SPACE.items() if name in by_signal}


def _ms(tick: float) -> float:
    return round((time.perf_counter() - tick) * 1000.0, 3)
