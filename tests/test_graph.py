"""The entity graph of a build: made at ingest from the mapping's entity fields, stored
beside the build, remade after an upsert, and read through a caller's view."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mmsearch.catalog.mapping import FieldMapping
from mmsearch.datasets.products import MAPPING, build_products, products
from mmsearch.errors import CatalogError
from mmsearch.filters.expr import Visible
from mmsearch.graph.reports import GraphError, entities_report, entity_report, require_graph
from mmsearch.graph.store import GRAPH_FILE, graph_folder, load_graph
from mmsearch.graph.view import GraphView, caller_view
from mmsearch.index.open import open_build_index
from mmsearch.ingest import IngestOptions, Ingestor
from mmsearch.workspace import Workspace


def ingest(settings, catalog: Path, name: str = "shop", mapping: FieldMapping | None = None):
    Ingestor(settings).run(
        IngestOptions(catalog, name, mapping or FieldMapping.model_validate(MAPPING))
    )
    folder = Workspace(settings.home).collection(name)
    return folder, folder.live_manifest()


@pytest.fixture
def shop(settings, tmp_path):
    catalog = build_products(tmp_path / "products")
    folder, manifest = ingest(settings, catalog)
    return settings, folder, manifest, catalog


def whole(folder, manifest) -> GraphView:
    return GraphView(require_graph(folder.build_dir(manifest.build_id), "shop", "b"), None)


def test_ingest_makes_the_graph_of_the_build_beside_it(shop):
    _, folder, manifest, _ = shop
    assert (graph_folder(folder.build_dir(manifest.build_id)) / GRAPH_FILE).is_file()
    view = whole(folder, manifest)
    graph = view.graph
    assert graph.build_id == manifest.build_id
    assert graph.table_version == manifest.table_version
    expected = {
        "brand": {p.brand.lower() for p in products()},
        "category": {p.category for p in products()},
        "colour": {p.colour for p in products()},
    }
    for field, values in expected.items():
        assert {e.value for e in graph.entities if e.field == field} == values
    acme = view.find("brand=acme")
    assert len(acme) == 1
    assert view.count(acme[0]) == sum(p.brand == "Acme" for p in products())
    # Every item with a picture is in exactly one visual cluster.
    clustered = [i for c in graph.clusters for i in c.items]
    assert sorted(clustered) == list(range(len(graph.items)))
    assert view.embeddings is not None and view.embeddings.shape[0] == len(graph.entities)


def test_hierarchy_and_cooccurrence_come_from_the_data(shop):
    _, folder, manifest, _ = shop
    view = whole(folder, manifest)
    boots = view.find("category=boots")[0]
    relations = {(n.entity.key, n.relation) for n in view.neighbours(boots)}
    assert ("department=footwear", "parent") in relations
    # Acme makes footwear and backpacks only: footwear co-occurs with it above chance,
    # and no Acme item is a lamp, so lamps is no neighbour at all.
    acme = {n.entity.key: n for n in view.neighbours(view.find("acme")[0], limit=50)}
    assert acme["department=footwear"].pmi > 0
    assert "category=lamps" not in acme
    assert acme["department=footwear"].count == 10


def test_an_upsert_remakes_the_graph(shop, tmp_path):
    settings, folder, manifest, catalog = shop
    rows = [json.loads(line) for line in catalog.read_text().splitlines()]
    rows[0]["brand"] = "Newco"
    catalog.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    _, after = ingest(settings, catalog)
    assert after.build_id == manifest.build_id
    view = whole(folder, after)
    assert view.graph.table_version == after.table_version != manifest.table_version
    assert [view.graph.items[i] for i in view.items_of(view.find("newco")[0])] == [rows[0]["id"]]


def test_a_revert_and_an_item_delete_remake_the_graph(shop):
    """In-place writes: no entity may still name an item the table no longer holds."""
    from fastapi.testclient import TestClient

    from mmsearch.ingest.revert import revert_run
    from mmsearch.service.app import create_app

    settings, folder, _, catalog = shop
    rows = [json.loads(line) for line in catalog.read_text().splitlines()]
    rows[0]["brand"] = "Newco"
    catalog.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    run = (
        Ingestor(settings)
        .run(IngestOptions(catalog, "shop", FieldMapping.model_validate(MAPPING)))
        .run_id
    )
    assert whole(folder, folder.live_manifest()).find("newco")
    revert_run(settings, "shop", run, "tester")
    reverted = folder.live_manifest()
    view = whole(folder, reverted)
    assert view.graph.table_version == reverted.table_version
    assert view.find("newco") == []
    assert view.embeddings is not None and view.embeddings.shape[0] == len(view.graph.entities)

    gone = rows[1]["id"]
    with TestClient(create_app(settings)) as client:
        assert client.delete(f"/v1/collections/shop/items/{gone}").status_code == 200
    deleted = folder.live_manifest()
    view = whole(folder, deleted)
    assert view.graph.table_version == deleted.table_version
    assert gone not in view.graph.items and len(view.graph.items) == len(rows) - 1


def test_a_caller_sees_only_entities_of_items_they_may_see(settings, tmp_path):
    folder_path = tmp_path / "acl"
    rows = [
        {"id": "a", "title": "open boot", "brand": "Acme", "acl": ["public"]},
        {"id": "b", "title": "open mug", "brand": "Acme", "acl": ["public"]},
        {"id": "s", "title": "secret boot", "brand": "Hushco", "acl": ["finance"]},
    ]
    folder_path.mkdir()
    catalog = folder_path / "catalog.jsonl"
    catalog.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    mapping = FieldMapping(attributes=["brand"], entities=["brand"])
    folder, manifest = ingest(settings, catalog, "acl", mapping)
    stored = load_graph(folder.build_dir(manifest.build_id))
    assert stored is not None
    index = open_build_index(folder, manifest, settings)
    public = caller_view(stored, index, Visible(frozenset({"public"}), default_public=False))
    finance = caller_view(stored, index, Visible(frozenset({"finance"}), default_public=False))
    assert public.find("hushco") == []
    assert [e["entity"] for e in entities_report(public, "", 10)["entities"]] == ["brand=acme"]
    assert entities_report(finance, "h", 10)["entities"][0]["items"] == 1
    with pytest.raises(GraphError, match="No entity"):
        entity_report(public, "brand=hushco", 10)
    unrestricted = caller_view(stored, index, None)
    assert {e["entity"] for e in entities_report(unrestricted, "", 10)["entities"]} == {
        "brand=acme",
        "brand=hushco",
    }


def test_entity_fields_must_be_stored_fields(settings, tmp_path):
    catalog = build_products(tmp_path / "products")
    mapping = FieldMapping(attributes=["brand"], entities=["brand", "nowhere"])
    with pytest.raises(CatalogError, match="nowhere"):
        Ingestor(settings).run(IngestOptions(catalog, "bad", mapping))


def test_a_build_without_entity_fields_has_no_graph(settings, make_catalog):
    folder, manifest = ingest(settings, make_catalog(), "plain", FieldMapping())
    assert load_graph(folder.build_dir(manifest.build_id)) is None
    with pytest.raises(GraphError, match="no entity graph"):
        require_graph(folder.build_dir(manifest.build_id), "plain", manifest.build_id)


def test_the_graph_commands(shop):
    from typer.testing import CliRunner

    from mmsearch.cli import app

    settings, _, manifest, _ = shop
    home = ["--home", str(settings.home)]

    def run(*args: str) -> dict:
        done = CliRunner().invoke(app, ["graph", "-c", "shop", *home, *args, "--json"])
        assert done.exit_code == 0, done.output
        return json.loads(done.output)

    stats = run("stats")
    assert stats["items"] == len(products()) and stats["entities_by_field"]["brand"] == 4
    assert stats["build_id"] == manifest.build_id
    assert [e["entity"] for e in run("entities", "--prefix", "gl")["entities"]] == ["brand=globex"]
    acme = run("entity", "brand=acme", "--limit", "3")["entities"][0]
    assert acme["items"] == 15 and len(acme["sample_items"]) == 3
    near = run("neighbours", "boots")["entities"][0]["neighbours"]
    assert near[0] == {
        "entity": "department=footwear",
        "label": "footwear",
        "relation": "parent",
        "shared_items": 10,
        "pmi": 0.0,
    }
    rebuilt = run("build")
    assert rebuilt["entities"] == stats["entities"]
    assert run("routing")["mode"] == "boost"
    changed = run("routing", "--mode", "filter", "--expand", "0")
    assert (changed["mode"], changed["expand"]) == ("filter", 0)
    assert run("routing")["mode"] == "filter"
    bad = CliRunner().invoke(app, ["graph", "-c", "shop", *home, "routing", "--mode", "hard"])
    assert bad.exit_code != 0 and "mode" in bad.output
    missing = CliRunner().invoke(app, ["graph", "-c", "shop", *home, "entity", "nope"])
    assert missing.exit_code != 0 and "No entity 'nope'" in missing.output


def test_search_explains_routing_and_graph_flag_turns_it_off(shop):
    from typer.testing import CliRunner

    from mmsearch.cli import app

    settings, _, _, _ = shop
    base = ["search", "-c", "shop", "red acme boots", "--home", str(settings.home), "--local"]
    routed = CliRunner().invoke(app, [*base, "--json"])
    assert routed.exit_code == 0, routed.output
    entities = {e["entity"] for e in json.loads(routed.output)["routing"]["entities"]}
    assert entities == {"colour=red", "brand=acme", "category=boots"}
    off = CliRunner().invoke(app, [*base, "--no-graph", "--json"])
    assert json.loads(off.output)["routing"] is None
    explained = CliRunner().invoke(app, [*base, "--explain"])
    assert "graph routing (boost" in explained.output
    assert "brand=acme ← 'acme' (exact" in explained.output
