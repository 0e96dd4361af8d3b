"""The reranker's entity-graph features: values on a hand-made graph, the same values
whether a search is routed or not, zeros without a graph, and models saved before the
features existed still loading and scoring."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mmsearch.catalog.mapping import FieldMapping
from mmsearch.datasets.products import MAPPING, build_products, products
from mmsearch.graph.features import graph_features
from mmsearch.graph.model import Cluster, Cooccurrence, Entity, EntityGraph
from mmsearch.graph.recognise import Mention
from mmsearch.graph.store import StoredGraph
from mmsearch.graph.view import GraphView
from mmsearch.ingest import IngestOptions, Ingestor
from mmsearch.ranking.features import GRAPH_FEATURES
from mmsearch.ranking.fusion import FusionParams, fuse, order_by_score
from mmsearch.ranking.model import RankerMeta, RankerModel, encoder_signature, fit_lambdamart
from mmsearch.search.request import SearchRequest
from mmsearch.search.searcher import Searcher
from mmsearch.search.training import TrainingQuery, collect_pools, train_ranker

from conftest import write_jsonl

COLUMN = {name: i for i, name in enumerate(GRAPH_FEATURES)}


def tiny_graph() -> StoredGraph:
    """Items a..e; acme on a, b; red on a, c; boots on b, d; blue on e; clusters {a, b, c}
    and {d, e}; acme co-occurs with red (a) and with boots (b)."""
    graph = EntityGraph(
        build_id="b1",
        created_at="2026-01-01T00:00:00Z",
        fields=["brand", "colour", "category"],
        items=["a", "b", "c", "d", "e"],
        entities=[
            Entity(field="brand", value="acme", label="Acme", items=[0, 1]),
            Entity(field="colour", value="red", label="red", items=[0, 2]),
            Entity(field="category", value="boots", label="boots", items=[1, 3]),
            Entity(field="colour", value="blue", label="blue", items=[4]),
        ],
        clusters=[Cluster(items=[0, 1, 2]), Cluster(items=[3, 4])],
        cooccurrence=[
            Cooccurrence(a=0, b=1, count=1, pmi=0.0),
            Cooccurrence(a=0, b=2, count=1, pmi=0.0),
        ],
    )
    return StoredGraph.of(graph, None)


def test_graph_features_on_a_tiny_graph_match_hand_counts():
    view = GraphView(tiny_graph(), None)
    mentions = [Mention(0, "acme", "exact", 1.0), Mention(3, "blue", "meaning", 0.8)]
    ids = ["a", "c", "e", "d", "b", "unknown"]
    x = graph_features(view, mentions, ids, top=3)
    assert x.shape == (6, len(GRAPH_FEATURES))
    rows = dict(zip(ids, x, strict=True))
    pmi = math.log(1 * 5 / (2 * 2))  # acme with red, acme with boots: one shared item of 5
    acme, blue = math.log(1 + 5 / 2), 0.8 * math.log(1 + 5 / 1)
    expected = {
        #        query  match named share weight  pmi  prox  cluster_top (top 3: a, c, e)
        "a": [2, 1, 1, 0.5, acme, pmi, 1.0, 1 / 2],  # red co-occurs with acme; c shares
        "c": [2, 0, 0, 0.0, 0.0, pmi, 0.5, 1 / 2],  # red is one hop from acme
        "e": [2, 1, 0, 0.5, blue, 0.0, 1.0, 0.0],  # blue named by meaning: not "named"
        "d": [2, 0, 0, 0.0, 0.0, pmi, 0.5, 1 / 3],  # boots one hop; e of the top 3 shares
        "b": [2, 1, 1, 0.5, acme, pmi, 1.0, 2 / 3],  # a and c of the top 3 share
        "unknown": [2, 0, 0, 0.0, 0.0, 0.0, 0.0, 0.0],
    }
    for item_id, values in expected.items():
        assert rows[item_id] == pytest.approx(values, abs=1e-4), item_id  # PMI: 4 places


def test_graph_features_count_only_what_the_caller_may_see():
    everyone = graph_features(
        GraphView(tiny_graph(), None), [Mention(0, "acme", "exact", 1.0)], ["a"]
    )
    # Without b, acme has one visible item of four: more specific, and b is no neighbour.
    restricted = graph_features(
        GraphView(tiny_graph(), {0, 2, 3, 4}), [Mention(0, "acme", "exact", 1.0)], ["a", "d"]
    )
    weight = COLUMN["graph:entity_weight"]
    assert everyone[0, weight] == pytest.approx(math.log(1 + 5 / 2))
    assert restricted[0, weight] == pytest.approx(math.log(1 + 4 / 1))
    assert restricted[1, COLUMN["graph:proximity"]] == 0.0  # boots met acme only on b


def test_no_mentions_and_no_ids_give_zeros():
    view = GraphView(tiny_graph(), None)
    assert not graph_features(view, [], ["a", "b"], top=2)[:, :7].any()
    assert graph_features(view, [], []).shape == (0, len(GRAPH_FEATURES))


@pytest.fixture
def shop(settings, tmp_path) -> Searcher:
    catalog = build_products(tmp_path / "products")
    Ingestor(settings).run(IngestOptions(catalog, "shop", FieldMapping.model_validate(MAPPING)))
    return Searcher(settings, "shop")


def shop_judgments() -> tuple[list[TrainingQuery], dict[str, dict[str, int]]]:
    """ "<brand> <category>" queries; relevant: that brand's items of that category (2)
    and its other items (1)."""
    queries: dict[str, TrainingQuery] = {}
    judgments: dict[str, dict[str, int]] = {}
    for product in products():
        qid = f"{product.brand} {product.category}".lower()
        queries.setdefault(qid, TrainingQuery(qid, qid))
    for qid in queries:
        brand, category = qid.split(" ", 1)
        judgments[qid] = {
            p.id: 2 if p.category.lower() == category else 1
            for p in products()
            if p.brand.lower() == brand
        }
    return list(queries.values()), judgments


def test_the_shop_query_features_read_the_entities_it_names(shop):
    request = SearchRequest(text="red Acme boots")
    evidence = shop.router.evidence(request, None, None)
    assert evidence is not None
    ids = [p.id for p in products()]
    x = evidence(ids)
    carried = {
        p.id: sum([p.colour == "red", p.brand == "Acme", p.category == "boots"]) for p in products()
    }
    assert x[:, COLUMN["graph:query_entities"]].min() >= 3
    for row, item_id in zip(x, ids, strict=True):
        assert row[COLUMN["graph:named_matches"]] == carried[item_id]
    # A routed search reuses its plan's recognition: the same values.
    plan = shop.router.plan(request, None)
    routed = shop.router.evidence(request, None, plan)
    assert routed is not None and np.allclose(routed(ids), x)
    # The graph turned off for a request: no evidence.
    assert shop.router.evidence(SearchRequest(text="boots", graph=False), None, None) is None


def test_a_reranker_trained_with_graph_features_ranks_and_explains_them(shop, tmp_path):
    queries, judgments = shop_judgments()
    pools, _ = collect_pools(shop, queries, judgments)
    graph_columns = np.vstack([p.x for p in pools])[:, -len(GRAPH_FEATURES) :]
    assert graph_columns[:, COLUMN["graph:entity_matches"]].max() >= 2
    model, _ = train_ranker(shop, queries, judgments, folds=2)
    assert model.meta.features[-len(GRAPH_FEATURES) :] == list(GRAPH_FEATURES)
    path = model.save(tmp_path / "ranker")
    result = shop.search(SearchRequest(text="acme boots", k=5, reranker=path, explain=True))
    assert result.reranker == str(path) and not result.warnings
    top = result.hits[0]
    assert top.attributes["brand"] == "Acme" and top.attributes["category"] == "boots"
    assert top.explanation is not None and top.explanation.reranker is not None
    named = {f.feature for f in top.explanation.reranker.features}
    assert set(GRAPH_FEATURES) <= named


def test_without_a_graph_the_features_are_zero_and_the_reranker_still_works(settings, tmp_path):
    rows = [
        {"id": f"k{i}", "title": f"{w} model {i}", "description": f"with a {v}"}
        for i, (w, v) in enumerate(
            (w, v) for w in ("teapot", "kettle", "saucer") for v in ("ladle", "whisk")
        )
    ]
    Ingestor(settings).run(IngestOptions(write_jsonl(tmp_path / "k.jsonl", rows), "kitchen"))  # type: ignore[arg-type]
    searcher = Searcher(settings, "kitchen")
    queries = [TrainingQuery(w, w) for w in ("teapot", "kettle", "saucer")]
    judgments = {q.id: {r["id"]: 1 for r in rows if r["title"].startswith(q.id)} for q in queries}
    pools, _ = collect_pools(searcher, queries, judgments)
    assert searcher.router.evidence(SearchRequest(text="teapot"), None, None) is None
    assert not np.vstack([p.x for p in pools])[:, -len(GRAPH_FEATURES) :].any()
    model, _ = train_ranker(searcher, queries, judgments, folds=0)
    path = model.save(tmp_path / "ranker")
    result = searcher.search(SearchRequest(text="kettle", k=2, reranker=path))
    assert result.reranker == str(path) and not result.warnings
    assert all(hit.title.startswith("kettle") for hit in result.hits)


def test_a_model_saved_before_the_graph_features_loads_and_scores_its_own_columns(shop, tmp_path):
    queries, judgments = shop_judgments()
    pools, _ = collect_pools(shop, queries, judgments)
    names = shop.ranking.space.names()
    old_names = names[: -len(GRAPH_FEATURES)]  # the feature list of an older release
    booster = fit_lambdamart(
        np.vstack([p.x[:, : len(old_names)] for p in pools]),
        np.concatenate([p.labels for p in pools]),
        [len(p.ids) for p in pools],
    )
    meta = RankerMeta(
        features=old_names,
        encoders=encoder_signature(shop.manifest),
        collection="shop",
        build_id=shop.build_id,
        training_sha256="0" * 64,
    )
    path = RankerModel(booster, meta).save(tmp_path / "old-ranker")
    model = RankerModel.load(path)
    assert model.incompatibility(names, shop.manifest) is None
    request = SearchRequest(text="globex bags", k=5, graph=False, reranker=path)
    result = shop.search(request)
    assert result.reranker == str(path) and not result.warnings
    retrieved = shop.retrieve(request, reranking=True)  # as a reranking search retrieves
    pool = order_by_score(fuse("rrf", retrieved.ranked, FusionParams()).scores)
    old_columns = shop.ranking.features(retrieved, pool)[:, : len(old_names)]
    expected = dict(zip(pool, model.predict(old_columns), strict=True))
    for hit in result.hits:
        assert hit.score == pytest.approx(round(expected[hit.id], 6), abs=1e-6)
