"""Query routing on the synthetic product catalog: entities recognised in a query boost,
filter, weigh signals and expand keyword, each effect explained; and the graph routes
over real HTTP show a caller only what their groups support."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from mmsearch.catalog.mapping import FieldMapping
from mmsearch.config import Settings
from mmsearch.datasets.products import MAPPING, build_products, products
from mmsearch.governance.keys import KeyStore
from mmsearch.graph.settings import RoutingSettings, save_routing
from mmsearch.ingest import IngestOptions, Ingestor
from mmsearch.search.request import SearchRequest
from mmsearch.search.searcher import Searcher
from mmsearch.service.app import create_app
from mmsearch.workspace import Workspace
from service_support import running_server


@pytest.fixture
def shop(settings, tmp_path):
    catalog = build_products(tmp_path / "products")
    Ingestor(settings).run(IngestOptions(catalog, "shop", FieldMapping.model_validate(MAPPING)))
    return settings


def search(settings, text: str, **options):
    return Searcher(settings, "shop").search(SearchRequest(text=text, **options))


def product_id(brand: str, category: str, colour: str) -> str:
    return next(
        p.id for p in products() if (p.brand, p.category, p.colour) == (brand, category, colour)
    )


def test_red_acme_boots_is_read_as_colour_brand_and_category(shop):
    result = search(shop, "red Acme boots", k=5, explain=True)
    routing = result.routing
    assert routing is not None
    named = {(e.entity, e.kind) for e in routing.entities}
    assert named >= {("colour=red", "exact"), ("brand=acme", "exact"), ("category=boots", "exact")}
    assert result.hits[0].id == product_id("Acme", "boots", "red")
    assert "graph" in result.signals and "graph" in result.hits[0].signals
    boots = next(e for e in routing.entities if e.entity == "category=boots")
    assert boots.items == 10 and boots.effects[0].startswith("boost: 10 items")
    # Expansion never adds another value of a field the query already names.
    assert not {"sneakers", "backpacks", "Globex", "Umbrella"} & set(routing.expansion)
    assert "colour/shape words (red)" in routing.reasons[0]


def test_a_misspelt_brand_is_recognised_by_spelling(shop):
    routing = search(shop, "acmee sneakers", k=5).routing
    assert routing is not None
    acme = next(e for e in routing.entities if e.entity == "brand=acme")
    assert acme.kind == "fuzzy" and 0.85 <= acme.score < 1.0


def test_filter_mode_makes_named_values_hard_filters(shop):
    boosted = search(shop, "globex things", k=15)
    assert {h.attributes["brand"] for h in boosted.hits} != {"Globex"}
    folder = Workspace(shop.home).collection("shop")
    save_routing(folder.folder, RoutingSettings(mode="filter"))
    filtered = search(shop, "globex things", k=15)
    assert len(filtered.hits) == 10  # Globex makes 10 products
    assert {h.attributes["brand"] for h in filtered.hits} == {"Globex"}
    assert filtered.routing is not None
    assert "filter: brand = 'Globex'" in filtered.routing.entities[0].effects


def test_routing_is_off_on_request_and_by_setting(shop):
    off = search(shop, "red Acme boots", k=5, graph=False)
    assert off.routing is None and "graph" not in off.signals
    folder = Workspace(shop.home).collection("shop")
    save_routing(folder.folder, RoutingSettings(enabled=False))
    assert search(shop, "red Acme boots", k=5).routing is None
    assert search(shop, "red Acme boots", k=5, graph=True).routing is not None


def test_a_model_number_weights_keyword_up(shop):
    code = product_id("Globex", "mugs", "blue")
    model = next(p.model for p in products() if p.id == code)
    result = search(shop, model, k=3, explain=True)
    assert result.routing is not None
    assert result.routing.signal_weights == {"keyword": 2.0}
    assert result.hits[0].id == code
    explanation = result.hits[0].explanation
    assert explanation is not None and explanation.signals["keyword"].weight == 2.0


def shop_with_a_sales_reader(
    settings: Settings, tmp_path: Path, rows: list[dict[str, Any]]
) -> tuple[Settings, dict[str, str]]:
    """The rows ingested as "shop" with brand and category as entities, and the served
    settings and headers of a reader key in group ``sales``."""
    folder = tmp_path / "acl"
    folder.mkdir()
    catalog = folder / "catalog.jsonl"
    catalog.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    mapping = FieldMapping(attributes=["brand", "category"], entities=["brand", "category"])
    Ingestor(settings).run(IngestOptions(catalog, "shop", mapping))
    _, secret = KeyStore(settings.home).create("reader", groups=("sales",))
    served = settings.model_copy(update={"auth": "auto", "rate_limit_per_minute": 0})
    headers = {"authorization": f"Bearer {secret}"}
    return served, headers


def test_graph_routes_show_a_caller_only_entities_of_visible_items(settings, tmp_path):
    rows = [
        {"id": "a", "title": "open boot", "brand": "Acme", "category": "boots", "acl": ["sales"]},
        {"id": "b", "title": "open mug", "brand": "Acme", "category": "mugs", "acl": ["sales"]},
        {"id": "s", "title": "secret boot", "brand": "Hushco", "category": "boots", "acl": ["x"]},
    ]
    served, headers = shop_with_a_sales_reader(settings, tmp_path, rows)
    with (
        running_server(create_app(served)) as base,
        httpx.Client(base_url=base, timeout=60, headers=headers) as client,
    ):
        listed = client.get("/v1/collections/shop/entities", params={"prefix": ""}).json()
        assert {e["entity"]: e["items"] for e in listed["entities"]} == {
            "brand=acme": 2,
            "category=boots": 1,
            "category=mugs": 1,
        }
        assert client.get("/v1/collections/shop/graph/brand=hushco").status_code == 404
        boots = client.get("/v1/collections/shop/graph/category=boots").json()["entities"][0]
        assert boots["items"] == 1 and boots["sample_items"] == ["a"]
        assert {n["entity"] for n in boots["neighbours"]} == {"brand=acme"}
        found = client.post(
            "/v1/collections/shop/search", json={"text": "hushco boots", "explain": True}
        ).json()
        assert "s" not in {h["id"] for h in found["hits"]}
        assert "brand=hushco" not in {e["entity"] for e in found["routing"]["entities"]}
        assert client.get("/v1/collections/shop/entities").status_code == 200
        assert httpx.get(f"{base}/v1/collections/shop/entities").status_code == 401


def test_a_removed_entity_is_left_out_of_the_route(shop):
    routing = search(shop, "red Acme boots", k=5, graph_skip=["brand=acme"]).routing
    assert routing is not None
    assert "brand=acme" not in {e.entity for e in routing.entities}
    assert routing.skipped == ["brand=acme"]
    assert {e.entity for e in routing.entities} == {"colour=red", "category=boots"}


def more_like(settings, source: str, **options):
    """The "meaning" similar search of the service: the item's title as text, the text
    vector alone, the item as the graph walk's source."""
    title = next(f"{p.brand} {p.colour} {p.category}" for p in products() if p.id == source)
    request = SearchRequest(text=title, signals=["text_vector"], like=source, **options)
    return Searcher(settings, "shop").search(request)


def test_more_like_this_walks_to_the_same_brand_and_category(shop):
    source = product_id("Acme", "boots", "red")
    by_id = {p.id: p for p in products()}

    def kin(result) -> int:
        """Hits of the source's brand or category, the source itself left out."""
        return sum(
            1
            for h in result.hits
            if h.id != source and (by_id[h.id].brand == "Acme" or by_id[h.id].category == "boots")
        )

    off = more_like(shop, source, k=8, graph=False)
    on = more_like(shop, source, k=8, explain=True)
    assert off.routing is None and "graph" not in off.signals
    assert on.routing is not None and on.routing.source == source
    assert "graph" in on.signals
    assert kin(on) > kin(off)
    walked = {e.entity for e in on.routing.entities}
    assert walked >= {"brand=acme", "category=boots", "colour=red"}
    assert all(e.kind == "item" for e in on.routing.entities)
    # Each hit the walk brought says which entities (or cluster) it shares.
    sister = product_id("Acme", "boots", "blue")
    assert sister in on.routing.related
    assert {"brand=acme", "category=boots"} <= set(on.routing.related[sister])
    assert source not in on.routing.related
    # A removed entity walks nowhere: without brand and category, no sister boots rank.
    skipped = more_like(shop, source, k=8, graph_skip=["brand=acme", "category=boots"])
    assert skipped.routing is not None
    assert set(skipped.routing.skipped) == {"brand=acme", "category=boots"}
    assert all("brand=acme" not in why for why in skipped.routing.related.values())


def test_more_like_this_candidates_pass_the_callers_filter(shop):
    source = product_id("Acme", "boots", "red")
    found = more_like(shop, source, k=20, where="colour = 'blue'")
    assert found.routing is not None and found.routing.related
    assert {h.attributes["colour"] for h in found.hits} == {"blue"}
    assert "graph" in found.signals
    assert set(found.routing.related) <= {h.id for h in found.hits}


def test_more_like_this_never_shows_an_item_the_caller_may_not_see(settings, tmp_path):
    rows = [
        {"id": "a", "title": "open boot", "brand": "Acme", "category": "boots", "acl": ["sales"]},
        {"id": "b", "title": "open mug", "brand": "Acme", "category": "mugs", "acl": ["sales"]},
        {"id": "c", "title": "plain hat", "brand": "Zed", "category": "hats", "acl": ["sales"]},
        {"id": "s", "title": "secret boot", "brand": "Acme", "category": "boots", "acl": ["x"]},
    ]
    served, headers = shop_with_a_sales_reader(settings, tmp_path, rows)
    with (
        running_server(create_app(served)) as base,
        httpx.Client(base_url=base, timeout=60, headers=headers) as client,
    ):
        url = "/v1/collections/shop/items/a/similar"
        found = client.get(url, params={"by": "meaning", "k": 10, "explain": True}).json()
        ids = [h["id"] for h in found["hits"]]
        assert "s" not in ids and "a" not in ids
        assert found["routing"]["source"] == "a"
        assert found["routing"]["related"]["b"] == ["brand=acme"]
        # The only other boot is hidden from this caller: the walk has no boots to offer.
        assert "category=boots" not in {e["entity"] for e in found["routing"]["entities"]}
        assert "s" not in found["routing"]["related"]
        off = client.get(url, params={"by": "meaning", "k": 10, "graph": False}).json()
        assert off["routing"] is None
        assert client.get("/v1/collections/shop/items/s/similar?by=meaning").status_code in (
            403,
            404,
        )


def test_an_item_deleted_after_the_graph_was_made_is_never_boosted(shop):
    """Unfiltered searches skip the store lookup only while the table is the one the
    graph was made from: a delete moves it on, and the deleted item stays out."""
    gone = product_id("Acme", "boots", "red")
    before = search(shop, "red Acme boots", k=5)
    assert gone in {h.id for h in before.hits}
    searcher = Searcher(shop, "shop")
    searcher.index.delete([gone])
    after = searcher.search(SearchRequest(text="red Acme boots", k=5, explain=True))
    assert after.routing is not None and "graph" in after.signals
    assert gone not in {h.id for h in after.hits}
