"""Hybrid search over one build of a collection: retrieval, then ranking, then hits.

A text query runs keyword (BM25) and dense-text retrievers; an image query runs the
dense-image retriever; both at once run all three. Results are fused (RRF by
default), optionally reranked and ruled. When a model cannot be used, the keyword
retriever still answers and the result says which signal was dropped and why.

The ``Searcher`` is the only object that talks to both ``retrieval/`` and
``ranking/``: it builds the one filter tree every retriever applies (which needs the
rules from ranking), hands the candidates to the ranking stage, and fetches the rows
shown for the final hits.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from mmsearch.catalog.aliases import ALIAS_COLUMN, decode_keys, like_key, query_keys
from mmsearch.collection_state import ann_search, hot_index
from mmsearch.config import Settings
from mmsearch.errors import MMSearchError, QueryError
from mmsearch.filters.expr import Filter, IsNull, Like, Or, Visible, all_of
from mmsearch.filters.parse import parse_where
from mmsearch.index.base import BuildIndex, Match
from mmsearch.index.open import open_build_index
from mmsearch.index.schema import ACL_COLUMN
from mmsearch.manifest import BUILDING
from mmsearch.moderation.decisions import HIDDEN_COLUMN
from mmsearch.ranking.cross_encoder import resolve_choice
from mmsearch.ranking.explain import Explanation
from mmsearch.ranking.fusion import FusionParams
from mmsearch.ranking.pipeline import Ranked, RankingStage
from mmsearch.ranking.rules import RuleSet
from mmsearch.ranking.tuning import load_tuned
from mmsearch.retrieval.expansion import FeedbackSettings
from mmsearch.retrieval.planner import plan_retrievers
from mmsearch.retrieval.query_cache import QueryEmbeddingCache
from mmsearch.retrieval.retrieve import RetrievalQuery, Retrieved, Retriever
from mmsearch.search.graph_route import GraphRouter
from mmsearch.search.grouping import HitGroup, group_ranked
from mmsearch.search.request import SearchRequest, fusion_params, validate_request
from mmsearch.search.result import Hit, SearchResult, SignalScore
from mmsearch.workspace import Workspace

HIT_COLUMNS = ["id", "title", "images", "texts_json"]


class Searcher:
    """Opens one build of a collection (live unless ``build_id`` names another: a canary,
    a candidate under evaluation) once and answers many queries against it.

    ``hot_in_background``: where the hot index is on, build it on a thread while the
    store answers (a server), instead of before the first search (the CLI, evaluations)."""

    def __init__(
        self,
        settings: Settings,
        collection: str,
        query_cache: QueryEmbeddingCache | None = None,
        build_id: str | None = None,
        hot_in_background: bool = False,
    ):
        self.settings = settings
        # The service shares one cache across Searchers; alone, a Searcher keeps its own.
        self.query_cache = query_cache or QueryEmbeddingCache(settings.query_cache_size)
        folder = Workspace(settings.home).collection(collection)
        self.folder = folder
        self.collection = collection
        self.manifest = folder.live_manifest() if build_id is None else folder.manifest(build_id)
        if self.manifest.state == BUILDING:
            raise MMSearchError(
                f"Build {build_id} of '{collection}' is still being built; it cannot be "
                "searched until its first ingest finishes."
            )
        self.build_id: str = self.manifest.build_id
        self.attribute_columns = [a.column for a in self.manifest.attributes]
        # The collection's ANN knobs, read with the build: a Searcher answers from one
        # snapshot, and the service opens a new one when the live build changes.
        self.collection_ann = folder.state().ann
        self.index: BuildIndex = open_build_index(folder, self.manifest, settings)
        if hot_index(settings, self.collection_ann):
            from mmsearch.index.hot.reader import HotReader

            # Searches from memory, the results page's rows too; the store stays the truth.
            self.index = HotReader(
                self.index,
                page_columns=[*HIT_COLUMNS, *self.attribute_columns],
                hnsw_min_rows=settings.ann_min_rows,
                background=hot_in_background,
            )
        # What a user's ``where`` may name: the attribute columns and their kinds, only.
        self.attribute_kinds: dict[str, str] = {a.column: a.kind for a in self.manifest.attributes}
        self.retriever = Retriever(settings, self.manifest, self.index, self.query_cache)
        self.ranking = RankingStage(settings, self.manifest, self.index)
        # The fusion (and keyword feedback) `mmsearch tune` chose for this build, if any.
        self.tuned = load_tuned(folder.build_dir(self.build_id))
        self.router = GraphRouter(
            self.manifest,
            self.index,
            folder.build_dir(self.build_id),
            folder.folder,
            self.query_cache,
        )
        self._items_with_acl: int | None = None
        # Its cross-encoder and keyword field boosts (collection.json ``ranking``), likewise.
        self.collection_ranking = folder.state().ranking
        self._hidden_items: int | None = None

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

    def moderation_filter(self) -> Filter | None:
        """The node leaving out items a moderation policy hides, or None where none is.

        Hidden items carry ``moderation_hidden = TRUE`` (``moderation/decisions.py``);
        every other row has NULL there, so the node is one ``IS NULL`` test, applied
        inside the store with the access node, for every caller: only the review
        routes read hidden items. Counted once per Searcher, like ACLs: a build where
        nothing is hidden (or made before the column) pays for no filter, and every
        moderation write changes the manifest, so the service opens a new Searcher."""
        if self._hidden_items is None:
            self._hidden_items = (
                self.index.count(IsNull(HIDDEN_COLUMN, negated=True))
                if HIDDEN_COLUMN in self.index.schema.names
                else 0
            )
        return IsNull(HIDDEN_COLUMN) if self._hidden_items else None

    def visible_filter(self, access: Visible | None) -> Filter | None:
        """What a caller may read of this build: their access node and the moderation
        node (item reads such as GET use it as search does)."""
        return all_of(self.effective_access(access), self.moderation_filter())

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
        # The rules are resolved once: their filters go down with retrieval, the rest
        # (boosts, pins, diversity) come back up through ranking.
        ruleset = self.ranking.rules_for(request.rules)
        group_by = self._group_column(request.group_by)
        # Checked before anything is retrieved: a missing model folder fails the search now.
        cross = resolve_choice(
            self.collection_ranking,
            self.manifest.mapping,
            self.collection,
            on=request.cross_encoder,
            top=request.cross_encoder_top,
        )
        visible = self.visible_filter(request.access)
        route = self.router.plan(request, visible)
        evidence = self.router.evidence(request, visible, route)
        if route is not None:
            request = self.router.routed_request(request, route, self._planned(request))
        reranking = self.ranking.reranker_path(request.reranker) is not None
        retrieved = self.retrieve(request, ruleset, reranking=reranking)
        if route is not None:
            self.router.after_retrieval(retrieved, route)
        fusion, params = self._fusion(request, retrieved.planned)
        # Grouped, the whole candidate list is ranked: k groups may need many more items.
        depth = max(request.candidates or self.settings.candidates, request.k)
        ranked = self.ranking.rank(
            retrieved,
            k=depth if group_by else request.k,
            fusion=fusion,
            params=params,
            reranker=request.reranker,
            ruleset=ruleset,
            explain=request.explain,
            graph=evidence,
            cross=cross,
        )
        if request.text:
            self._pin_aliases(request, ruleset, ranked, fusion, depth if group_by else request.k)
        tick = time.perf_counter()
        top, groups = ranked.top, {}
        if group_by is not None:
            top, groups = self._grouped(ranked.top, group_by, request.k)
        hits = self._hits(top, ranked.scores, retrieved.ranked)
        images = self.retriever.hit_images(
            [hit.id for hit in hits],
            retrieved,
            image_weight=request.image_weight,
            image_sha256=request.image_sha256,
        )
        for hit in hits:
            if hit.id in images:
                found = images[hit.id]
                hit.matched_image = found.matched_image
                hit.duplicate, hit.duplicate_distance = found.duplicate, found.duplicate_distance
            hit.rules = list(dict.fromkeys(a.rule for a in ranked.rules.get(hit.id, [])))
            hit.explanation = ranked.explanations.get(hit.id)
            hit.group = groups.get(hit.id)
        retrieved.timings["fetch"] = _ms(tick)
        if route is not None and route.related:
            # What brought each returned hit of an item walk, for these hits only.
            route.explanation.related = {
                hit.id: route.related[hit.id] for hit in hits if hit.id in route.related
            }
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
            query_vectors=retrieved.own_space_vectors(),
            routing=route.explanation if route is not None else None,
        )

    def retrieve(
        self, request: SearchRequest, ruleset: RuleSet | None = None, *, reranking: bool = False
    ) -> Retrieved:
        """Run every planned retriever to depth ``candidates``; no fusion, no cut.

        One tree for every retriever: the user's filter, the business rules' filters and
        blocks, what the caller may see and what moderation hides. The store applies it
        before any top-k cut.
        ``ruleset`` is the request's resolved rules (``search`` resolves them once);
        alone, this resolves ``request.rules`` itself. Retrieval knows nothing of rules,
        which is why the combination happens here rather than in ``retrieval/``.
        ``reranking``: a reranker will read these candidates, so the keyword search with
        feedback runs too and its list is kept for the reranker's feedback features."""
        text = validate_request(request)
        if ruleset is None:
            ruleset = self.ranking.rules_for(request.rules)
        user_filter = self.user_filter(request)
        combined = self.store_filter(request, ruleset, text)
        return self.retriever.retrieve(
            RetrievalQuery(
                text=text,
                image=request.image,
                depth=max(request.candidates or self.settings.candidates, request.k),
                where=combined,
                user_filtered=user_filter is not None,
                signals=request.signals,
                image_weight=request.image_weight,
                feedback=self._feedback(request),
                feedback_list=self._feedback_settings() if reranking else None,
                ann=ann_search(self.settings, self.collection_ann, request.ann),
            )
        )

    def store_filter(
        self, request: SearchRequest, ruleset: RuleSet | None, text: str | None
    ) -> Filter | None:
        """The one tree every store read of this request goes through: the user's filter,
        the rules' filters and blocks, the caller's access and the moderation node."""
        return all_of(
            self.user_filter(request),
            ruleset.store_filter(text) if ruleset is not None else None,
            self.visible_filter(request.access),
        )

    def _pin_aliases(
        self,
        request: SearchRequest,
        ruleset: RuleSet | None,
        ranked: Ranked,
        fusion: str,
        k: int,
    ) -> None:
        """Put the items holding a code or alias the query names first, in place.

        A query that is a code (``flag-eg``) or holds one as ``:tada:`` names one item;
        keyword and vector scores rank such a name weakly, so an exact match is pinned
        ahead of the fused list rather than weighted into it. The items are read through
        the request's whole store filter, so an alias of an item the caller may not see
        (or that moderation hides, or the ``where`` leaves out) is never returned. A
        build whose mapping names no alias field (or made before the column) pays
        nothing."""
        if not self.manifest.mapping.aliases or ALIAS_COLUMN not in self.index.schema.names:
            return
        keys = query_keys(request.text or "")
        found = alias_filter(keys)
        if found is None:
            return
        rows = self.index.scan(
            ["id", ALIAS_COLUMN],
            all_of(found, self.store_filter(request, ruleset, request.text)),
        ).to_pylist()
        named: dict[str, str] = {}
        for row in rows:
            stored = set(decode_keys(row.get(ALIAS_COLUMN)))
            key = next((key for key in keys if key in stored), None)
            if key is not None:
                named[str(row["id"])] = key
        if not named:
            return
        # Among pinned items, the fused order first, then the store's.
        order = {item_id: rank for rank, item_id in enumerate(ranked.top)}
        pinned = sorted(named, key=lambda item_id: order.get(item_id, len(order)))[:k]
        best = max(ranked.scores.values(), default=0.0)
        rest = [item_id for item_id in ranked.top if item_id not in named]
        ranked.top = [*pinned, *rest][:k]
        for position, item_id in enumerate(pinned):
            ranked.scores[item_id] = best + float(len(pinned) - position)
        if request.explain:
            for item_id in pinned:
                explanation = ranked.explanations.get(item_id) or Explanation(
                    fusion=fusion, fused_score=0.0
                )
                explanation.alias = named[item_id]
                explanation.final_score = ranked.scores[item_id]
                ranked.explanations[item_id] = explanation

    def _planned(self, request: SearchRequest) -> list[str]:
        """The retrievers this request will run (graph routing weights only those)."""
        return [
            plan.name
            for plan in plan_retrievers(
                has_text=bool((request.text or "").strip()),
                has_image=request.image is not None,
                encoders=self.manifest.encoders,
                only=request.signals,
                image_weight=request.image_weight,
            )
        ]

    def _fusion(self, request: SearchRequest, planned: list[str]) -> tuple[str, FusionParams]:
        """The request's fusion; where it names no method, the build's tuned one (its
        weights for the signals this query runs, the request's own weights on top)."""
        params = fusion_params(request, self.settings)  # checks the request's own values
        tuned = self.tuned.choice if self.tuned is not None and request.fusion is None else None
        if tuned is None:
            return request.fusion or self.settings.fusion, params
        weights = {s: w for s, w in (tuned.weights or {}).items() if s in planned}
        weights.update(request.weights or {})
        return tuned.method, FusionParams(
            k=request.rrf_k if request.rrf_k is not None else tuned.rrf_k,
            weights=weights or None,
            normalisation=request.normalisation or tuned.normalisation,
        )

    def _feedback_settings(self) -> FeedbackSettings:
        """The build's tuned feedback settings, else the defaults."""
        return self.tuned.feedback if self.tuned is not None else FeedbackSettings()

    def _feedback(self, request: SearchRequest) -> FeedbackSettings | None:
        """Keyword feedback: the request's choice, else the build's tuned one (off)."""
        choice = request.feedback
        if isinstance(choice, FeedbackSettings):
            return choice
        tuned = self.tuned
        on = choice if choice is not None else tuned is not None and tuned.choice.feedback
        return self._feedback_settings() if on else None

    def _group_column(self, name: str | None) -> str | None:
        """The attribute column ``group_by`` names, checked before any retrieval."""
        if name is None:
            return None
        if name not in self.attribute_kinds:
            known = ", ".join(sorted(self.attribute_kinds)) or "none"
            raise QueryError(
                f"group_by {name!r} is not an attribute of '{self.collection}'; "
                f"its attributes: {known}."
            )
        return name

    def _grouped(
        self, ranked: list[str], column: str, k: int
    ) -> tuple[list[str], dict[str, HitGroup]]:
        """The best item of each of the first ``k`` groups (search/grouping.py)."""
        values = {row["id"]: row.get(column) for row in self.index.get(ranked, ["id", column])}
        return group_ranked(ranked, values.get, column, k)

    def _hits(
        self, top: list[str], fused: dict[str, float], ranked: dict[str, list[Match]]
    ) -> list[Hit]:
        signals: dict[str, dict[str, SignalScore]] = {item_id: {} for item_id in top}
        for name, matches in ranked.items():
            for rank, match in enumerate(matches, start=1):
                if match.id in signals:
                    signals[match.id][name] = SignalScore(round(match.score, 6), rank)
        # The retrievers' own matches carry the store's row handles: the rows are read by
        # them, not looked up again by id (pinned items, found by no retriever, are).
        found: dict[str, Match] = {}
        for name in sorted(ranked):
            for match in ranked[name]:
                found.setdefault(match.id, match)
        wanted = [found.get(item_id) or Match(item_id, 0.0) for item_id in top]
        columns = [*HIT_COLUMNS, *self.attribute_columns]
        rows = {row["id"]: row for row in self.index.get_found(wanted, columns)}
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


def alias_filter(keys: list[str]) -> Filter | None:
    """The store node finding items whose ``alias_keys`` hold any of ``keys`` (or a near
    key: see ``like_key``; the caller compares the stored keys)."""
    nodes: tuple[Filter, ...] = tuple(
        Like(ALIAS_COLUMN, f"%|{like_key(key)}|%") for key in keys if key
    )
    if not nodes:
        return None
    return nodes[0] if len(nodes) == 1 else Or(nodes)


def _ms(tick: float) -> float:
    return round((time.perf_counter() - tick) * 1000.0, 3)
