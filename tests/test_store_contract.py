"""One contract for every store: each test runs on LanceDB and on Milvus (Milvus Lite server).

Builds are made through the normal ingest path (``Ingestor`` with ``Settings(backend=...)``
and the fake encoders), then read through the ``BuildIndex`` protocol and the Searcher.
The filter oracle is ``filters.evaluate.matches``, as in ``test_filters_store.py``.
What differs by design is asserted as a capability, not skipped: Milvus keeps no old
versions, so reading or restoring one is a clear refusal. The last tests build the same
catalog on both stores and compare: exact search identical, approximate (HNSW) search
overlapping by at least 0.95 at k=10.
"""

from __future__ import annotations

import json
import random
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

from mmsearch.builds import lifecycle
from mmsearch.config import Settings
from mmsearch.encoders.base import create_encoder
from mmsearch.errors import MMSearchError, QueryError
from mmsearch.filters import (
    And,
    Between,
    Compare,
    InList,
    IsNull,
    Like,
    Not,
    Or,
    Visible,
    matches,
)
from mmsearch.index.base import BuildIndex, Match
from mmsearch.index.open import create_build_index, open_build_index
from mmsearch.ingest import IngestOptions, Ingestor
from mmsearch.manifest import BuildManifest
from mmsearch.search.request import SearchRequest
from mmsearch.search.searcher import Searcher
from mmsearch.workspace import CollectionDir, Workspace

from conftest import COLOURS, save_image, store_settings, write_jsonl

pytestmark = pytest.mark.backends
ALL_COLUMNS = ["id", "title", "category", "price", "in_stock", "acl"]


def _catalog(folder: Path, title_suffix: str = "") -> Path:
    rows: list[dict[str, Any]] = []
    for n, (colour, rgb) in enumerate(COLOURS.items()):
        save_image(folder / "img" / f"{colour}.png", rgb)
        rows.append(
            {
                "id": f"item-{n}",
                "title": f"{colour} ceramic mug{title_suffix}",
                "description": f"A {colour} mug for coffee and tea",
                "category": "kitchen" if n % 2 == 0 else "office",
                "price": 5.0 + n,
                "in_stock": n != 3,
                "image": f"img/{colour}.png",
            }
        )
    rows.append(
        {
            "id": "pair",
            "title": "red and blue poster",
            "category": "office",
            "price": 20.0,
            "in_stock": True,
            "image": ["img/red.png", "img/blue.png"],
            "acl": ["staff"],
        }
    )
    rows.append({"id": "secret", "title": "secret green lamp", "price": 9.5, "acl": ["board"]})
    rows.append({"id": "nobody", "title": "hidden black lamp", "category": "office", "acl": []})
    return write_jsonl(folder / "catalog.jsonl", rows)


def _live(settings: Settings, name: str = "shop") -> tuple[BuildManifest, BuildIndex]:
    collection = Workspace(settings.home).collection(name)
    manifest = collection.live_manifest()
    return manifest, open_build_index(collection, manifest, settings)


@pytest.fixture
def built(settings: Settings, tmp_path: Path) -> tuple[Settings, BuildManifest, BuildIndex]:
    Ingestor(settings).run(IngestOptions(_catalog(tmp_path / "cat"), "shop"))
    manifest, index = _live(settings)
    return settings, manifest, index


def _image(colour: str) -> Image.Image:
    image = Image.new("RGB", (16, 16), COLOURS[colour])
    image.putpixel((0, 0), (255, 255, 255))
    return image


def test_ingest_records_the_store_without_secrets(built, backend):
    _, manifest, index = built
    assert manifest.store.backend == backend
    assert "token" not in json.dumps(manifest.store.as_json())
    assert index.row_count() == index.count() == 8
    assert {v.column: v.multi for v in index.vector_fields} == {
        "vector_text": False,
        "vector_image": True,
    }


def test_get_and_scan_return_the_rows_in_the_asked_order(built):
    _, _, index = built
    rows = index.get(["pair", "item-2", "missing", "item-0"], ["id", "title", "vector_image"])
    assert [r["id"] for r in rows] == ["pair", "item-2", "item-0"]
    assert rows[1]["title"] == "blue ceramic mug"
    assert len(rows[0]["vector_image"]) == 2 and len(rows[1]["vector_image"]) == 1
    assert index.get(["secret"], ["id", "vector_image"])[0]["vector_image"] in (None, [])
    table = index.scan(["id", "price", "acl"])
    assert table.schema.field("price").type == pa.float64()
    assert sorted(table["id"].to_pylist()) == sorted(index.content_hashes())
    acl = dict(zip(table["id"].to_pylist(), table["acl"].to_pylist(), strict=True))
    assert acl["item-0"] is None and acl["nobody"] == [] and acl["pair"] == ["staff"]


def test_the_rows_of_found_matches_come_back_in_their_order(built):
    _, _, index = built
    found = index.keyword_search("mug", 10)
    assert len(found) >= 3
    # A match no search returned (a pinned item) is looked up by its id.
    wanted = [*reversed(found[:3]), Match("pair", 0.0), Match("missing", 0.0)]
    rows = index.get_found(wanted, ["title", "category"])
    assert [r["id"] for r in rows] == [m.id for m in wanted[:4]]
    by_id = {r["id"]: r for r in index.get([m.id for m in wanted], ["id", "title", "category"])}
    assert rows == [by_id[r["id"]] for r in rows]
    assert rows[3]["title"] == "red and blue poster"


def test_upsert_and_delete_through_ingest_and_the_protocol(built, tmp_path):
    settings, _, _ = built
    # A second ingest (changed titles) upserts every item again through the run protocol.
    report = Ingestor(settings).run(
        IngestOptions(_catalog(tmp_path / "cat2", " large"), "shop", sync=True)
    )
    assert report.counts["updated"] >= 5
    manifest, index = _live(settings)
    assert index.count() == 8
    assert {m.id for m in index.keyword_search("large", 10)} == {f"item-{n}" for n in range(5)}
    before = index.version()
    writer = open_build_index(
        Workspace(settings.home).collection("shop"), manifest, settings, for_writing=True
    )
    row = writer.get(["item-2"])[0]
    row["title"] = row["search_text"] = "cobalt ceramic mug"
    writer.upsert(pa.Table.from_pylist([row], schema=writer.schema))
    writer.delete(["item-4", "pair"])
    writer.refresh_indexes()
    assert writer.version() > before
    assert writer.count() == 6 and writer.get(["item-4", "pair"]) == []
    assert [m.id for m in writer.keyword_search("cobalt", 5)] == ["item-2"]
    blue = create_encoder("fake-image").encode_images([_image("blue")])[0]
    assert "pair" not in {m.id for m in writer.vector_search("vector_image", blue, 10)}


@pytest.mark.parametrize("mode", ["keyword", "text", "image", "multi_image", "hybrid"])
def test_every_search_mode_finds_the_obvious_item(built, mode):
    settings, _, _ = built
    searcher = Searcher(settings, "shop")
    if mode == "keyword":
        result = searcher.search(SearchRequest(text="blue mug", k=3, signals=["keyword"]))
        assert result.hits[0].id == "item-2"
    elif mode == "text":
        result = searcher.search(SearchRequest(text="yellow mug", k=3, signals=["text_vector"]))
        assert result.hits[0].id == "item-3"
    elif mode == "image":
        result = searcher.search(SearchRequest(image=_image("green"), k=3))
        assert result.hits[0].id == "item-1"
        assert result.hits[0].signals["image_vector"].score == pytest.approx(1.0, abs=1e-4)
    elif mode == "multi_image":
        # The pair's second image is the blue one: the item scores by its best image.
        result = searcher.search(SearchRequest(image=_image("blue"), k=5, where="price > 10"))
        assert result.hits[0].id == "pair"
        assert result.hits[0].signals["image_vector"].score == pytest.approx(1.0, abs=1e-4)
        assert result.hits[0].matched_image is not None
    else:
        result = searcher.search(SearchRequest(text="green", image=_image("green"), k=2))
        assert result.signals == ["image_vector", "keyword", "text_vector"]
        assert result.hits[0].id == "item-1"


def test_explanations_name_every_signal(built):
    settings, _, _ = built
    result = Searcher(settings, "shop").search(SearchRequest(text="red mug", k=3, explain=True))
    top = result.hits[0]
    assert top.id == "item-0" and top.explanation is not None
    assert set(top.signals) == {"keyword", "text_vector"}


FILTERS = [
    Compare("category", "=", "office"),
    Compare("price", ">=", 7),
    Compare("price", "<", 7.5),
    Not(Compare("in_stock", "=", True)),
    InList("category", ("office", "garden")),
    InList("id", ("item-0", "pair"), negated=True),
    Between("price", 6, 9.5),
    Not(Between("price", 6, 9.5)),
    Like("title", "%mug"),
    Like("title", "_ed%", negated=True),
    IsNull("category"),
    IsNull("price", negated=True),
    Or((Compare("category", "=", "kitchen"), Compare("price", ">", 15))),
    And((Not(IsNull("category")), Not(Compare("category", "=", "kitchen")))),
    Visible(frozenset({"staff"}), True),
    Visible(frozenset({"board"}), False),
    Not(Visible(frozenset({"staff"}), True)),
    And((Visible(frozenset(), True), Compare("price", "<", 100))),
]


@pytest.mark.parametrize("filter", FILTERS, ids=lambda f: type(f).__name__)
def test_filters_select_what_the_evaluator_accepts(built, filter):
    _, _, index = built
    rows = index.scan(ALL_COLUMNS).to_pylist()
    expected = {r["id"] for r in rows if matches(filter, r)}
    assert index.count(filter) == len(expected)
    assert set(index.scan(["id"], filter)["id"].to_pylist()) == expected
    text = create_encoder("fake-text").encode_texts(["mug"])[0]
    assert {m.id for m in index.vector_search("vector_text", text, 20, filter)} == expected
    with_images = {r["id"] for r in rows if r["id"] in expected and r["id"] not in ("secret",)}
    with_images.discard("nobody")
    found = index.vector_search("vector_image", np.ones(48, np.float32) / 48**0.5, 20, filter)
    assert {m.id for m in found} == with_images


def test_a_filter_the_store_cannot_apply_is_a_neutral_query_error(built):
    _, _, index = built
    for bad in (Compare("no_such", "=", 1), Compare("price", "=", "x"), Like("price", "1%")):
        with pytest.raises(QueryError) as raised:
            index.count(bad)
        assert str(raised.value) == "The filter cannot be applied to this collection."


def test_acl_visibility_through_the_searcher(built):
    settings, _, _ = built
    searcher = Searcher(settings, "shop")
    for groups, expected in [({"staff"}, {"pair"}), ({"board"}, {"secret"}), (set(), set())]:
        access = Visible(frozenset(groups), default_public=False)
        result = searcher.search(SearchRequest(text="lamp poster mug", k=20, access=access))
        assert {h.id for h in result.hits} == expected
    public = searcher.search(
        SearchRequest(text="lamp", k=20, access=Visible(frozenset(), default_public=True))
    )
    assert "nobody" not in {h.id for h in public.hits} and "secret" not in {
        h.id for h in public.hits
    }


def test_an_item_moved_to_another_tenant_is_found_only_there(built, backend):
    """A one-group ACL is a tenant (a partition key on Milvus); an upsert that changes it
    moves the row, leaving no copy behind in the old tenant."""
    _, _, index = built
    row = index.get(["secret"])[0]
    assert row["acl"] == ["board"]
    index.upsert(pa.Table.from_pylist([{**row, "acl": ["staff"]}], schema=index.schema))
    assert index.row_count() == 8
    assert index.count(Visible(frozenset({"board"}), default_public=False)) == 0
    staff = Visible(frozenset({"staff"}), default_public=False)
    assert index.count(staff) == 2
    assert {r["id"] for r in index.get(["secret", "pair", "item-0"], ["id"], staff)} == {
        "secret",
        "pair",
    }
    if backend == "milvus":
        from mmsearch.index.milvus_store import milvus_connection

        settings = built[0]
        fields = milvus_connection(settings).client().describe_collection(index.collection)
        keys = [f["name"] for f in fields["fields"] if f.get("is_partition_key")]
        assert keys == ["_tenant"] and fields["num_partitions"] >= 16  # Lite adds _default


def test_versions_are_a_capability(built):
    """LanceDB reads and restores old versions; Milvus refuses both, saying what to use."""
    settings, manifest, _ = built
    writer = open_build_index(
        Workspace(settings.home).collection("shop"), manifest, settings, for_writing=True
    )
    published = writer.version()
    writer.delete(["item-0"])
    assert writer.version() > published
    if writer.supports_versions:
        assert "item-0" in writer.content_hashes(published)
        writer.restore(published)
        assert writer.get(["item-0"]) != []
    else:
        with pytest.raises(MMSearchError, match="LanceDB"):
            writer.content_hashes(published)
        with pytest.raises(MMSearchError, match="LanceDB"):
            writer.restore(published)
        assert writer.get(["item-0"]) == []
    writer.restore(writer.version())  # the latest version is always "restorable"


def test_store_aliases_follow_lifecycle_switches(settings, tmp_path, backend):
    Ingestor(settings).run(IngestOptions(_catalog(tmp_path / "a"), "shop"))
    first, _ = _live(settings)
    Ingestor(settings).run(IngestOptions(_catalog(tmp_path / "b"), "shop", new_build=True))
    second, _ = _live(settings)
    collection = Workspace(settings.home).collection("shop")
    lifecycle.rollback(collection, "tester")
    assert collection.alias("live") == first.build_id
    lifecycle.start_canary(collection, second.build_id, 10, "tester")
    expected = {"live": first, "previous": second, "canary": second}
    if backend == "milvus":
        _assert_milvus_aliases(settings, collection, expected)
    lifecycle.stop_canary(collection, "tester")
    if backend == "milvus":
        _assert_milvus_aliases(settings, collection, {**expected, "canary": None})


def _assert_milvus_aliases(settings, collection, expected) -> None:
    from mmsearch.index.milvus_client import alias_name, collection_name
    from mmsearch.index.milvus_store import milvus_connection

    client = milvus_connection(settings).client()
    for alias, manifest in expected.items():
        name = alias_name(collection.name, str(collection.folder.resolve()), alias)
        if manifest is None:
            with pytest.raises(Exception):  # noqa: B017 - pymilvus: alias not found
                client.describe_alias(name)
        else:
            assert client.describe_alias(name)["collection_name"] == collection_name(manifest.table)


# --- the same catalog on both stores ---------------------------------------------------


@pytest.fixture(scope="module")
def both(request, tmp_path_factory) -> dict[str, Settings]:
    """LanceDB and Milvus builds of one catalog: the tests using it are not parametrised by
    backend, so they run once."""
    out = {}
    for name in ("lancedb", "milvus"):
        home = tmp_path_factory.mktemp(f"both-{name}")
        settings = Settings(
            home=home / "ws",
            text_encoder="fake-text",
            image_encoder="fake-image",
            batch_size=8,
            write_batch_rows=16,
            **store_settings(name, request),
        )
        Ingestor(settings).run(IngestOptions(_catalog(home / "cat"), "shop"))
        out[name] = settings
    return out


def test_exact_search_is_identical_on_both_stores(both):
    lance = _live(both["lancedb"])[1]
    milvus = _live(both["milvus"])[1]
    text = create_encoder("fake-text").encode_texts(["ceramic mug for tea"])[0]
    image = create_encoder("fake-image").encode_images([_image("red")])[0]
    for column, vector in (("vector_text", text), ("vector_image", image)):
        for filter in (None, Compare("category", "=", "office"), Visible(frozenset(), True)):
            a = _ranked(lance.vector_search(column, vector, 10, filter))
            b = _ranked(milvus.vector_search(column, vector, 10, filter))
            assert [m[1] for m in a] == [m[1] for m in b], (column, filter)
            assert [m[0] for m in a] == pytest.approx([m[0] for m in b], abs=1e-5)
    for filter in FILTERS:
        assert lance.count(filter) == milvus.count(filter), filter
    # BM25 scores differ (tantivy vs Milvus analysers); the matching items do not.
    for query in ("mug", "lamp", "poster", "green"):
        assert {m.id for m in lance.keyword_search(query, 20)} == {
            m.id for m in milvus.keyword_search(query, 20)
        }
    columns = ["id", "title", "price", "acl", "vector_text"]
    assert lance.scan(columns).sort_by("id").equals(milvus.scan(columns).sort_by("id"))


def _ranked(found: list) -> list[tuple[float, str]]:
    """Matches in score order, ties (equal to 1e-5) by id: engines break ties differently."""
    return sorted((-round(m.score, 5), m.id) for m in found)


def test_approximate_search_overlaps_exact_search(request, tmp_path):
    """Milvus with an HNSW index against LanceDB's exact search: overlap ≥ 0.95 at k=10."""
    dim, rows = 16, 600
    rng = np.random.default_rng(7)
    vectors = rng.normal(size=(rows, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    schema = pa.schema(
        [pa.field("id", pa.string(), nullable=False), pa.field("v", pa.list_(pa.float32(), dim))]
    )
    data = pa.Table.from_pylist(
        [{"id": f"r{n}", "v": vectors[n].tolist()} for n in range(rows)], schema=schema
    )
    table = f"ann_{uuid.uuid4().hex[:10]}"
    folder = CollectionDir(tmp_path / "ann")
    exact = create_build_index(folder, table, schema, Settings(home=tmp_path))
    approx = create_build_index(
        folder,
        table,
        schema,
        Settings(home=tmp_path, **{**store_settings("milvus", request), "milvus_index": "hnsw"}),
    )
    exact.upsert(data)
    approx.upsert(data)
    overlap = []
    for query in random.Random(3).sample(range(rows), 40):
        want = {m.id for m in exact.vector_search("v", vectors[query], 10)}
        got = {m.id for m in approx.vector_search("v", vectors[query], 10)}
        overlap.append(len(want & got) / 10)
    assert float(np.mean(overlap)) >= 0.95


@pytest.mark.parametrize(
    "exact_rows",
    [4096, 1, 20_000],
    ids=["answered-exactly", "wider-walk", "counted-then-read-whole"],  # 20k > one query
)
def test_a_selective_filter_away_from_the_query_keeps_recall(request, tmp_path, exact_rows):
    """Clustered vectors; each query sits on one cluster and filters to a few rows of
    another. HNSW under such a filter alone found 0.26 of the exact top 10 on Milvus Lite;
    Milvus answers a search that keeps few rows exactly, and walks wider for the rest."""
    dim, rows, clusters = 16, 3000, 20
    rng = np.random.default_rng(5)
    centres = rng.normal(size=(clusters, dim)).astype(np.float32)
    label = rng.integers(0, clusters, rows)
    vectors = centres[label] + 0.6 * rng.normal(size=(rows, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    years = rng.integers(1950, 1980, rows)
    schema = pa.schema(
        [
            pa.field("id", pa.string(), nullable=False),
            pa.field("kind", pa.string()),
            pa.field("year", pa.int64()),
            pa.field("v", pa.list_(pa.float32(), dim)),
        ]
    )
    data = pa.Table.from_pylist(
        [
            {"id": f"r{n}", "kind": f"c{label[n]}", "year": int(years[n]), "v": vectors[n].tolist()}
            for n in range(rows)
        ],
        schema=schema,
    )
    table = f"sel_{uuid.uuid4().hex[:10]}"
    folder = CollectionDir(tmp_path / "sel")
    exact = create_build_index(folder, table, schema, Settings(home=tmp_path))
    milvus = Settings(
        home=tmp_path, milvus_exact_filter_rows=exact_rows, **store_settings("milvus", request)
    )
    approx = create_build_index(folder, table, schema, milvus)
    exact.upsert(data)
    approx.upsert(data)
    approx.refresh_indexes()
    recall = []
    for q in range(30):
        where = And((Compare("kind", "=", f"c{(q + 7) % clusters}"), Compare("year", ">=", 1975)))
        want = {m.id for m in exact.vector_search("v", centres[q % clusters], 10, where)}
        got = {m.id for m in approx.vector_search("v", centres[q % clusters], 10, where)}
        assert want, where
        recall.append(len(want & got) / len(want))
    assert float(np.mean(recall)) >= 0.95


def test_a_filter_widens_the_hnsw_walk_in_proportion_to_what_it_removes():
    from mmsearch.index.milvus import MAX_FILTERED_EF, search_params

    assert search_params("hnsw", 10, {}) == {"ef": 64}
    assert search_params("hnsw", 10, {}, widen=4.0) == {"ef": 256}
    assert search_params("hnsw", 10, {"ef": 100}, widen=2.5) == {"ef": 250}
    assert search_params("hnsw", 10, {}, widen=1e6) == {"ef": MAX_FILTERED_EF}
    assert search_params("hnsw", 10, {"ef": 4000}, widen=3.0) == {"ef": 4000}
    assert search_params("ivf_flat", 10, {}, widen=9.0) == {"nprobe": 32}


def test_real_milvus_gets_every_value_as_a_template_parameter():
    """Milvus ≥ 2.5 takes ``filter_params``: no value is ever written into the expression."""
    from mmsearch.index.milvus_filter import to_milvus_expr

    schema = pa.schema(
        [
            pa.field("id", pa.string(), nullable=False),
            pa.field("s", pa.string()),
            pa.field("acl", pa.list_(pa.string())),
        ]
    )
    sneaky = And((Compare("s", "=", 'x" or id >= "'), Visible(frozenset({"g1"}), False)))
    expr = to_milvus_expr(sneaky, schema, templated=True)
    assert expr.text == (
        "((s is not null and s == {v0})) and "
        "(((acl is not null and array_contains_any(acl, {v1}))))"
    )
    assert expr.params == {"v0": 'x" or id >= "', "v1": ["g1"]}
    inline = to_milvus_expr(sneaky, schema, templated=False)
    assert '"x\\" or id >= \\""' in inline.text and not inline.params


def test_the_milvus_token_never_shows_in_settings_or_connections(tmp_path):
    from mmsearch.index.milvus_store import milvus_connection

    (tmp_path / "token").write_text("root:s3cret\n")
    settings = Settings(home=tmp_path, milvus_token_file=tmp_path / "token")
    connection = milvus_connection(settings)
    assert connection.token == "root:s3cret" and "s3cret" not in repr(connection)
    assert "hunter2" not in repr(Settings(home=tmp_path, milvus_token="hunter2"))


def test_the_tenant_hint_is_implied_by_the_access_node():
    """Only access nodes that every match must satisfy narrow the partitions searched."""
    from mmsearch.index.milvus import tenant_hint

    acme = Visible(frozenset({"acme"}), default_public=False)
    assert tenant_hint(acme) == InList("_tenant", ("", "acme"))
    both = And((Compare("price", ">", 1), Visible(frozenset({"b", "a"}), True)))
    assert tenant_hint(both) == InList("_tenant", ("", "a", "b"))
    assert tenant_hint(Or((acme, Compare("price", ">", 1)))) is None
    assert tenant_hint(Not(acme)) is None
    assert tenant_hint(Compare("price", ">", 1)) is None
