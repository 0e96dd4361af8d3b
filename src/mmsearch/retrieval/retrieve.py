"""Running the planned retrievers of one build: the candidates every later stage works on.

This is retrieval proper and nothing more: embed the query (through the shared LRU,
keyed by encoder spec and version), run keyword and vector retrievers to a fixed
depth with one filter tree pushed into every store query, and say which signals had
to be dropped. What the filter contains (the user's filter, the rules' filters, the
caller's access) and what happens to the candidates afterwards (fusion, reranking,
rules, display rows) is decided above, in ``mmsearch.search``; keeping that out of
here is what lets ``retrieval/`` import nothing from ``ranking/``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from mmsearch.config import AnnSearch, Settings
from mmsearch.encoders.base import create_encoder
from mmsearch.errors import MMSearchError
from mmsearch.filters.expr import Filter
from mmsearch.index.base import BuildReader, Match
from mmsearch.manifest import BuildManifest
from mmsearch.retrieval.expansion import (
    FeedbackSettings,
    expanded_query,
    expansion_terms,
    interpolate,
)
from mmsearch.retrieval.field_boosts import FIELD_COLUMNS, boosted
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

# Retrievers whose query vector lies in the space of the role's stored vectors.
_OWN_SPACE = {TEXT_VECTOR: "text", IMAGE_VECTOR: "image"}
# Keyword searches run here while the caller's thread encodes the query and runs the
# vector searches: LanceDB and torch release the GIL in their native code, so the two
# overlap on a multi-core host. One small pool for the process bounds the extra
# threads however many requests the service answers at once.
KEYWORD_THREADS = 4
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _keyword_pool() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(KEYWORD_THREADS, thread_name_prefix="mmsearch-keyword")
        return _pool


@dataclass
class Retrieved:
    """What the retrievers returned for one query: the input of fusion and reranking."""

    text: str | None
    image: Image.Image | None
    # Everything the store applied (user filter, rules, blocks, access): pinned items
    # fetched from outside the candidates must pass it too.
    where: Filter | None
    ranked: dict[str, list[Match]]
    query_vectors: dict[str, np.ndarray]  # vector signal -> query embedding
    depth: int
    # Whether the user filtered (``where`` or structured filters). The reranker feature
    # reads this, not ``where``, so that it does not change with who asks (access) or
    # with the rules in force.
    user_filtered: bool = False
    planned: list[str] = field(default_factory=list)  # retrievers planned, including skipped ones
    warnings: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    # Signals planned but dropped because their query encoder failed (keyword fallback).
    dropped: list[str] = field(default_factory=list)
    # The keyword list with feedback (RM3), kept apart from ``ranked`` when the query
    # asked for it (``RetrievalQuery.feedback_list``): the reranker's feedback features
    # read it; None when not asked for or there is no keyword signal.
    feedback: list[Match] | None = None

    def own_space_vectors(self) -> dict[str, np.ndarray]:
        """Encoder role → query vector, for the signals whose vector lies in the space of
        that role's stored vectors (drift monitoring compares like with like; cross-modal
        and blended vectors are not drawn from that distribution)."""
        by_signal = self.query_vectors
        return {role: by_signal[name] for name, role in _OWN_SPACE.items() if name in by_signal}


@dataclass(frozen=True)
class RetrievalQuery:
    """A query as the retrievers see it: already validated, with its whole filter built.

    ``text`` is stripped (None when empty); ``where`` is the one tree every retriever
    pushes into the store; ``depth`` is the per-retriever candidate count."""

    text: str | None
    image: Image.Image | None
    depth: int
    where: Filter | None = None
    user_filtered: bool = False
    ann: AnnSearch | None = None  # the resolved ANN knobs of every vector search
    signals: list[str] | None = None  # restrict to these retrievers (evaluation, debugging)
    image_weight: float = DEFAULT_IMAGE_WEIGHT
    # Pseudo-relevance feedback for the keyword retriever (``retrieval/expansion.py``).
    feedback: FeedbackSettings | None = None
    # Also run keyword feedback with these settings and keep its list apart
    # (``Retrieved.feedback``), leaving the lists fusion sees as they are: the reranker
    # reads the feedback search as evidence of its own. Where ``feedback`` is on, its
    # list is the one kept.
    feedback_list: FeedbackSettings | None = None
    # Keyword field boosts (``retrieval/field_boosts.py``): None = the collection's
    # (collection.json ``ranking.field_boosts``); {} = none.
    field_boosts: dict[str, float] | None = None


@dataclass
class HitImages:
    """Per-image facts about one hit: the image that matched, and whether it copies the query."""

    matched_image: MatchedImage | None = None
    duplicate: DuplicateKind | None = None
    duplicate_distance: int | None = None


class Retriever:
    """The retrievers of one opened build; the ``Searcher`` owns one per build."""

    def __init__(
        self,
        settings: Settings,
        manifest: BuildManifest,
        index: BuildReader,
        query_cache: QueryEmbeddingCache,
    ):
        self.settings = settings
        self.manifest = manifest
        self.index = index
        self.query_cache = query_cache
        # The collection's keyword field boosts, read with the build (as its ANN knobs).
        self.field_boosts = collection_field_boosts(settings, manifest)

    def retrieve(self, query: RetrievalQuery) -> Retrieved:
        """Run every planned retriever to ``query.depth``; no fusion, no cut."""
        text, depth, combined = query.text, query.depth, query.where
        timings: dict[str, float] = {}
        warnings: list[str] = []
        plans = plan_retrievers(
            has_text=text is not None,
            has_image=query.image is not None,
            encoders=self.manifest.encoders,
            only=query.signals,
            image_weight=query.image_weight,
        )
        queries: dict[str, Any] = {"text": text, "image": query.image}
        embeddings: dict[tuple[str, str], np.ndarray | None] = {}
        failures: dict[tuple[str, str], str] = {}
        skipped: list[str] = []
        dropped: list[str] = []
        ranked: dict[str, list[Match]] = {}
        keyword: tuple[str, Future[tuple[list[Match], float, list[Match] | None]]] | None = None
        feedback_list: list[Match] | None = None
        try:
            for plan in plans:
                if plan.kind == "keyword":
                    boosts = (
                        query.field_boosts if query.field_boosts is not None else self.field_boosts
                    )
                    search = self._keyword_call(
                        text or "", depth, combined, query.feedback, boosts, query.feedback_list
                    )
                    if len(plans) > 1:
                        keyword = (plan.name, _keyword_pool().submit(search))
                    else:
                        ranked[plan.name], timings[plan.name], feedback_list = search()
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
                vector = plan.query_vector(parts, query.image_weight)
                embeddings[(plan.role or "", plan.query_modality)] = vector
                tick = time.perf_counter()
                ranked[plan.name] = self.index.vector_search(
                    plan.column or "", vector, depth, combined, query.ann
                )
                timings[plan.name] = _ms(tick)
            if keyword is not None:
                ranked[keyword[0]], timings[keyword[0]], feedback_list = keyword[1].result()
        finally:
            if keyword is not None:
                keyword[1].cancel()  # a vector path that failed leaves no queued search
        # In plan order, whichever thread finished first: fusion sees the same lists.
        ranked = {plan.name: ranked[plan.name] for plan in plans if plan.name in ranked}

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
            image=query.image,
            where=combined,
            user_filtered=query.user_filtered,
            ranked=ranked,
            query_vectors=query_vectors,
            depth=depth,
            planned=[plan.name for plan in plans],
            warnings=warnings,
            timings=timings,
            dropped=dropped,
            feedback=feedback_list,
        )

    def _keyword_call(
        self,
        text: str,
        depth: int,
        where: Filter | None,
        feedback: FeedbackSettings | None,
        boosts: dict[str, float] | None = None,
        feedback_list: FeedbackSettings | None = None,
    ) -> Callable[[], tuple[list[Match], float, list[Match] | None]]:
        """The keyword search with its own timing, to run on this thread or the pool's;
        third, the feedback list where ``feedback_list`` (or ``feedback``) asks for it."""

        def search() -> tuple[list[Match], float, list[Match] | None]:
            tick = time.perf_counter()
            matches = self.index.keyword_search(text, depth, where)
            kept: list[Match] | None = None
            if feedback is not None and matches:
                matches = self._with_feedback(text, matches, depth, where, feedback)
                kept = matches if feedback_list is not None else None
            elif feedback_list is not None:
                kept = (
                    self._with_feedback(text, matches, depth, where, feedback_list)
                    if matches
                    else []
                )
            if boosts and matches and any(b != 1.0 for b in boosts.values()):
                # The rows of the filtered search's own matches, read by row handle.
                found = self.index.get_found(matches, ["id", *FIELD_COLUMNS])
                matches = boosted(text, matches, {r["id"]: r for r in found}, boosts)
            return matches, _ms(tick), kept

        return search

    def _with_feedback(
        self,
        text: str,
        matches: list[Match],
        depth: int,
        where: Filter | None,
        feedback: FeedbackSettings,
    ) -> list[Match]:
        """RM3: expand the query with words of its top hits and search again, through
        the same filtered store call, then interpolate the two lists."""
        top = matches[: feedback.docs]
        rows = {row["id"]: row for row in self.index.get_found(top, ["search_text"])}
        pairs = [(str(rows[m.id].get("search_text") or ""), m.score) for m in top if m.id in rows]
        terms = expansion_terms(text, pairs, feedback.terms)
        if not terms:
            return matches
        second = self.index.keyword_search(expanded_query(text, terms), depth, where)
        return interpolate(matches, second, feedback.original_weight, depth)

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
        spec = self.manifest.encoders[role].spec
        version = self.manifest.encoders[role].version
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

    def hit_images(
        self,
        ids: list[str],
        retrieved: Retrieved,
        *,
        image_weight: float,
        image_sha256: str | None = None,
    ) -> dict[str, HitImages]:
        """Which image of each hit matched, and which hits copy the query image.

        Only for the final hits (a handful of rows), because the store ranks items by
        their best image without saying which one it was. Ids absent from the answer
        have nothing to say."""
        multi = {v.column for v in self.index.vector_fields if v.multi}
        plans = plan_retrievers(
            has_text=retrieved.text is not None,
            has_image=retrieved.image is not None,
            encoders=self.manifest.encoders,
            image_weight=image_weight,
        )
        signals = [
            ImageSignal(plan.name, plan.column, retrieved.query_vectors[plan.name])
            for plan in sorted(plans, key=lambda plan: plan.query_modality != "image")
            if plan.column in multi and plan.name in retrieved.query_vectors
        ]
        check_duplicates = retrieved.image is not None and "image_phash" in self.index.schema.names
        if not ids or (not signals and not check_duplicates):
            return {}
        columns = ["id", "images", *dict.fromkeys(signal.column for signal in signals)]
        if check_duplicates:
            columns += ["image_phash", "image_sha256"]
        rows = {row["id"]: row for row in self.index.get(ids, columns)}
        matched = best_images(rows, signals)
        query = (
            QueryImage.of(retrieved.image, image_sha256)
            if check_duplicates and retrieved.image is not None
            else None
        )
        facts: dict[str, HitImages] = {}
        for item_id in ids:
            found = HitImages(matched_image=matched.get(item_id))
            if query is not None and item_id in rows:
                found.duplicate, found.duplicate_distance = duplicate_of_query(
                    query,
                    rows[item_id],
                    found.matched_image,
                    max_distance=self.settings.dupe_max_distance,
                    min_cosine=self.settings.dupe_min_cosine,
                )
            facts[item_id] = found
        return facts


def collection_field_boosts(settings: Settings, manifest: BuildManifest) -> dict[str, float]:
    """The keyword field boosts the build's collection sets (none when it sets none)."""
    from mmsearch.workspace import Workspace

    folder = Workspace(settings.home).collection(manifest.collection)
    if not folder.folder.is_dir():
        return {}
    ranking = folder.state().ranking
    return dict(ranking.field_boosts or {}) if ranking is not None else {}


def _ms(tick: float) -> float:
    return round((time.perf_counter() - tick) * 1000.0, 3)
