"""Graph routing inside one search: before retrieval (filters, signal weights) and
after it (keyword expansion, the ``graph`` signal).

The ``Searcher`` owns one ``GraphRouter`` per build. It applies the caller's
visibility to the graph (``graph/view.py``) before recognising anything, and every
item the ``graph`` signal adds is fetched back through the store with the search's
whole filter (user filter, rules, access), so routing can neither show nor count
what the retrievers could not return.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from mmsearch.encoders.base import create_encoder
from mmsearch.filters.expr import Filter, InList, all_of
from mmsearch.graph.features import graph_features
from mmsearch.graph.recognise import Mention, recognise
from mmsearch.graph.routing import GRAPH_SIGNAL, RoutePlan, plan_item_route, plan_route
from mmsearch.graph.settings import RoutingSettings, load_routing, routing_path
from mmsearch.graph.store import StoredGraph, load_graph
from mmsearch.graph.view import GraphView, caller_view
from mmsearch.index.base import BuildReader, Match
from mmsearch.manifest import BuildManifest
from mmsearch.ranking.features import GraphEvidence
from mmsearch.retrieval.query_cache import QueryEmbeddingCache, text_key
from mmsearch.retrieval.retrieve import Retrieved
from mmsearch.search.request import SearchRequest


class GraphRouter:
    def __init__(
        self,
        manifest: BuildManifest,
        index: BuildReader,
        build_dir: Path,
        collection_dir: Path,
        query_cache: QueryEmbeddingCache,
    ):
        self.manifest = manifest
        self.index = index
        self.build_dir = build_dir
        self.collection_dir = collection_dir
        self.query_cache = query_cache
        self._settings: tuple[tuple[int, int, int] | None, RoutingSettings] | None = None

    def graph(self) -> StoredGraph | None:
        return load_graph(self.build_dir)

    def settings(self) -> RoutingSettings:
        """The collection's routing settings, read again only when the file changes.

        A search asks twice (planning, then fusion weights); parsing and validating the
        JSON each time cost about as much as recognising the query's entities. The key
        is the file's (modification time, inode, size): a save replaces the file, so it
        gets a new inode even within one tick of the clock."""
        path = routing_path(self.collection_dir)
        try:
            found = path.stat()
            stamp: tuple[int, int, int] | None = (found.st_mtime_ns, found.st_ino, found.st_size)
        except FileNotFoundError:
            stamp = None
        cached = self._settings
        if cached is not None and cached[0] == stamp:
            return cached[1]
        settings = load_routing(self.collection_dir)
        self._settings = (stamp, settings)
        return settings

    def plan(self, request: SearchRequest, access: Filter | None) -> RoutePlan | None:
        """The route of a text request, or the graph walk of an item request (``like``);
        None: routing off, no graph, or nothing to route. ``access`` is what the caller
        may read (access and moderation nodes)."""
        text = (request.text or "").strip()
        if (not text and not request.like) or request.graph is False:
            return None
        settings = self.settings()
        if request.graph is None and not settings.enabled:
            return None
        stored = self.graph()
        if stored is None:
            return None
        if request.like:
            # An item's own text names its own entities: the walk from the item says the
            # same without guessing, so the text is not routed as well.
            tick = time.perf_counter()
            view = caller_view(stored, self.index, access)
            plan = plan_item_route(view, request.like, settings, set(request.graph_skip or []))
            plan.explanation.ms = round((time.perf_counter() - tick) * 1000.0, 3)
            return plan
        # The query embedding is the text retriever's own (shared through the cache),
        # so it is timed apart: routing's cost is the rest.
        tick = time.perf_counter()
        vector = self._query_vector(stored, text) if settings.meaning_top else None
        encoded = time.perf_counter() - tick
        tick = time.perf_counter()
        view = caller_view(stored, self.index, access)
        mentions = self._recognise(view, text, settings, vector)
        skip = set(request.graph_skip or [])
        kept = [m for m in mentions if view.graph.entities[m.entity].key not in skip]
        plan = plan_route(view, kept, text, settings)
        plan.explanation.skipped = sorted(
            {view.graph.entities[m.entity].key for m in mentions} & skip
        )
        plan.explanation.ms = round((time.perf_counter() - tick) * 1000.0, 3)
        plan.encode_ms = round(encoded * 1000.0, 3)
        return plan

    def evidence(
        self, request: SearchRequest, access: Filter | None, plan: RoutePlan | None
    ) -> GraphEvidence | None:
        """The reranker's graph features for this request, computed only if asked (a
        search without a reranker pays nothing). They follow the graph, not the routing
        settings: a build with a graph has them for every text query that does not turn
        the graph off (``graph: false``), routed or not, so training (which retrieves
        without routing) and searching see the same values. A routed search reuses its
        plan's recognition; None: no graph, no text, an item walk, or graph off."""
        text = (request.text or "").strip()
        if not text or request.like or request.graph is False:
            return None
        if plan is not None and plan.view is not None:
            view, mentions = plan.view, plan.mentions
            return lambda ids: graph_features(view, mentions, ids)
        stored = self.graph()
        if stored is None:
            return None
        skip = set(request.graph_skip or [])

        def compute(ids: Sequence[str]) -> np.ndarray:
            settings = self.settings()
            vector = self._query_vector(stored, text) if settings.meaning_top else None
            view = caller_view(stored, self.index, access)
            found = self._recognise(view, text, settings, vector)
            kept = [m for m in found if view.graph.entities[m.entity].key not in skip]
            return graph_features(view, kept, ids)

        return compute

    @staticmethod
    def _recognise(
        view: GraphView, text: str, settings: RoutingSettings, vector: np.ndarray | None
    ) -> list[Mention]:
        return recognise(
            view,
            text,
            fuzzy_min=settings.fuzzy_min,
            query_vector=vector,
            meaning_min=settings.meaning_min,
            meaning_top=settings.meaning_top,
        )

    def routed_request(
        self, request: SearchRequest, plan: RoutePlan, planned: list[str]
    ) -> SearchRequest:
        """The request with the plan's hard filters and signal weights; weights only for
        signals this query plans (the ranking stage refuses others)."""
        filters: list[Filter] = [
            InList(column, tuple(values)) for column, values in plan.filters.items()
        ]
        weights = dict(request.weights or {})
        applied: dict[str, float] = {}
        for signal, factor in plan.weight_factors.items():
            if signal in planned:
                weights[signal] = applied[signal] = weights.get(signal, 1.0) * factor
        if plan.weight_factors and not applied:
            plan.explanation.reasons.append("no such signal answers this query: weights unchanged")
        plan.explanation.signal_weights = applied
        if plan.boosts:
            weights.setdefault(GRAPH_SIGNAL, self.settings().graph_weight)
        return replace(
            request,
            filter=all_of(request.filter, *filters),
            weights=weights or None,
        )

    def after_retrieval(self, retrieved: Retrieved, plan: RoutePlan) -> None:
        """Keyword again with the expansion; the ``graph`` signal from the boosts, each
        item fetched back through the search's whole filter."""
        tick = time.perf_counter()
        keyword = "keyword"
        if plan.expansion and keyword in retrieved.ranked and retrieved.text:
            expanded = " ".join([retrieved.text, *plan.expansion])
            retrieved.ranked[keyword] = self.index.keyword_search(
                expanded, retrieved.depth, retrieved.where
            )
        if plan.boosts:
            if retrieved.where is None and self._graph_is_current():
                # Nothing to filter and no row changed since the graph was made: every
                # boosted item is in the store, so the lookup would return them all.
                best = list(plan.boosts)[: retrieved.depth]
                retrieved.ranked[GRAPH_SIGNAL] = [Match(i, plan.boosts[i]) for i in best]
            else:
                retrieved.ranked[GRAPH_SIGNAL] = self._allowed(plan.boosts, retrieved)
            retrieved.planned.append(GRAPH_SIGNAL)
        spent = (time.perf_counter() - tick) * 1000.0 + plan.explanation.ms
        retrieved.timings["graph"] = round(spent, 3)
        if plan.encode_ms:
            retrieved.timings["graph_encode_text"] = plan.encode_ms

    def _graph_is_current(self) -> bool:
        """Whether the graph was made from the table version searches read now (an item
        PUT or delete since then moves the table on, and the store is asked again)."""
        stored = self.graph()
        return stored is not None and stored.graph.table_version == self.index.version()

    def _allowed(self, boosts: dict[str, float], retrieved: Retrieved) -> list[Match]:
        """The best boosted items that pass the search's whole filter, up to the depth;
        asked of the store a depth at a time, best first, so a search pays for one
        small lookup unless the filter removes many."""
        ids = list(boosts)  # best first
        out: list[Match] = []
        for start in range(0, len(ids), retrieved.depth):
            chunk = ids[start : start + retrieved.depth]
            rows = self.index.get(chunk, ["id"], filter=retrieved.where)
            allowed = {row["id"] for row in rows}
            out += [Match(i, boosts[i]) for i in chunk if i in allowed]
            if len(out) >= retrieved.depth:
                break
        return out[: retrieved.depth]

    def _query_vector(self, stored: StoredGraph, text: str) -> np.ndarray | None:
        """The query's text embedding, through the cache the text retriever reads, so
        it is computed once; None when the graph's embeddings came from another model."""
        encoder = self.manifest.encoders.get("text")
        if encoder is None or stored.embeddings is None:
            return None
        if (stored.graph.embedding_spec, stored.graph.embedding_version) != (
            encoder.spec,
            encoder.version,
        ):
            return None
        key = text_key(encoder.spec, encoder.version, text)
        vector = self.query_cache.get(key)
        if vector is None:
            try:
                vector = create_encoder(encoder.spec).encode_texts([text])[0]
            except Exception:
                return None  # the text retriever reports the failing model
            self.query_cache.put(key, vector)
        return vector
