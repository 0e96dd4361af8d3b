"""Property: no read path returns an item outside the caller's groups.

Hypothesis generates collections of items with random ACLs (none, empty, one or more
groups) and a random default access, then random callers and random queries across
every mode (text, image, both), fusion, ``where`` and structured filters, k and
explanations. Each query runs through the service's own search function on a real
LanceDB build; item reads, image reads, facets, counts and "more like this" are
checked too. The oracle is the ACL rule itself, evaluated in Python on the catalog.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mmsearch.config import Settings
from mmsearch.governance.roles import Role
from mmsearch.ingest import IngestOptions, Ingestor
from mmsearch.service.access import Caller
from mmsearch.service.errors import NotFound
from mmsearch.service.facets import collection_facets
from mmsearch.service.items import get_item, item_image_path
from mmsearch.service.routers.collections import _similar, summary
from mmsearch.service.schemas import SearchBody
from mmsearch.service.searching import decode_query_image, run_search
from mmsearch.service.state import ServiceState

from conftest import COLOURS, by_profile, save_image

GROUPS = ("g1", "g2", "g3")
WORDS = ("mug", "lamp", "chair", "kettle", "vase")
CASES = {"queries": 0, "item_reads": 0, "collections": 0}
ROW = {"word": "mug", "colour": "red", "price": 3, "category": "a"}

acls = st.one_of(st.none(), st.lists(st.sampled_from(GROUPS), max_size=2, unique=True))
items = st.lists(
    st.fixed_dictionaries(
        {
            "word": st.sampled_from(WORDS),
            "colour": st.sampled_from(sorted(COLOURS)),
            "price": st.integers(0, 20),
            "category": st.sampled_from(["a", "b"]),
            "acl": acls,
        }
    ),
    min_size=2,
    max_size=12,
)
callers = st.lists(st.sampled_from(GROUPS), max_size=2, unique=True)
queries = st.fixed_dictionaries(
    {
        "mode": st.sampled_from(["text", "image", "hybrid"]),
        "text": st.sampled_from([*WORDS, "red mug", "blue lamp chair"]),
        "colour": st.sampled_from(sorted(COLOURS)),
        "fusion": st.sampled_from(["rrf", "weighted", "dbsf"]),
        "where": st.sampled_from(
            [None, "price < 10", "category = 'a'", "price >= 5 OR category = 'b'"]
        ),
        "filters": st.sampled_from([None, {"category": "a"}, {"price": {"max": 12}}]),
        "k": st.integers(1, 20),
        "explain": st.booleans(),
    }
)


def visible(acl: list[str] | None, groups: set[str], default_public: bool) -> bool:
    if acl is None:
        return default_public
    return bool(set(acl) & groups)


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("acl-images")
    for name, rgb in COLOURS.items():
        save_image(folder / f"{name}.png", rgb)
    return folder


def build(
    home: Path, images: Path, rows: list[dict], default: str, hot: bool = False
) -> ServiceState:
    catalog = images / f"catalog-{home.name}.jsonl"
    records = [
        {
            "id": f"i{n}",
            "title": f"{row['colour']} {row['word']}",
            "price": row["price"],
            "category": row["category"],
            "image": f"{row['colour']}.png",
            "acl": row["acl"],  # null: no ACL, the collection's default applies
        }
        for n, row in enumerate(rows)
    ]
    catalog.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    config = Settings(
        home=home,
        text_encoder="fake-text",
        image_encoder="fake-image",
        write_batch_rows=64,
        allowed_roots=[images],
        hot_index=hot,  # searches from the in-memory hot index (index/hot) or the store
    )
    # Every row states the "acl" field explicitly so the mapping is the same for all.
    from mmsearch.catalog.mapping import FieldMapping

    mapping = FieldMapping(acl="acl", attributes=["price", "category"])
    Ingestor(config).run(IngestOptions(catalog, "c", mapping))
    state = ServiceState(config)
    state.workspace.collection("c").set_default_access(default)
    return state


@settings(
    max_examples=by_profile(full=50, light=6),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(rows=items, default=st.sampled_from(["public", "private"]), data=st.data())
def _property(images: Path, rows: list[dict], default: str, data: st.DataObject) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        # Every other collection searches from the hot index (index/hot), so both read
        # paths are held to the same ACLs in every run.
        hot = CASES["collections"] % 2 == 1
        state = build(Path(tmp) / "home", images, rows, default, hot)
        CASES["collections"] += 1
        default_public = default == "public"
        acl_of = {f"i{n}": row["acl"] for n, row in enumerate(rows)}
        for _ in range(10):
            groups: set[str] = set(data.draw(callers, label="caller groups"))
            caller = Caller("k_test", Role.READER, None, frozenset(groups))
            allowed = {i for i, acl in acl_of.items() if visible(acl, groups, default_public)}
            query: dict[str, Any] = data.draw(queries, label="query")
            image = None
            if query["mode"] in ("image", "hybrid"):
                path = images / f"{query['colour']}.png"
                image = decode_query_image(path.read_bytes(), "query", state.settings)
            body = SearchBody(
                text=query["text"] if query["mode"] != "image" else None,
                k=query["k"],
                fusion=query["fusion"],
                where=query["where"],
                filters=query["filters"],
                explain=query["explain"],
            )
            result = run_search(state, "c", body, image, caller)
            CASES["queries"] += 1
            returned = {hit["id"] for hit in result["hits"]}
            assert returned <= allowed, (returned - allowed, groups, default)
            assert "acl" not in json.dumps(result["warnings"])
            assert summary(state, "c", caller)["items"] == len(allowed)
            facets = collection_facets(
                state.searcher("c").index,
                state.searcher("c").manifest,
                state.access_filter(caller, "c"),
            )
            category = next(f for f in facets if f["field"] == "category")
            assert sum(category.get("counts", [])) == len(allowed)
            for item_id in acl_of:
                CASES["item_reads"] += 1
                if item_id in allowed:
                    assert get_item(state, "c", item_id, caller)["id"] == item_id
                    assert item_image_path(state, "c", item_id, 0, caller).is_file()
                else:
                    with pytest.raises(NotFound):
                        get_item(state, "c", item_id, caller)
                    with pytest.raises(NotFound):
                        item_image_path(state, "c", item_id, 0, caller)
            if allowed:
                source = sorted(allowed)[0]
                similar = _similar(state, "c", source, "look", 20, caller)
                assert {hit["id"] for hit in similar["hits"]} <= allowed
        state.close()


def test_no_read_path_reveals_an_item_outside_the_callers_groups(images):
    CASES.update(dict.fromkeys(CASES, 0))
    _property(images)
    print(f"ACL property cases: {CASES}")  # the figure quoted in docs/BENCHMARKS.md
    assert CASES["queries"] >= by_profile(full=100, light=30)
    assert CASES["collections"] >= by_profile(full=10, light=5)


def test_the_access_node_is_left_out_only_where_it_admits_every_item(images, tmp_path):
    from mmsearch.filters.expr import Visible

    plain = build(tmp_path / "plain", images, [dict(ROW, acl=None), dict(ROW, acl=None)], "public")
    guarded = build(
        tmp_path / "acl", images, [dict(ROW, acl=["g1"]), dict(ROW, acl=None)], "public"
    )
    public = Visible(frozenset({"g2"}), default_public=True)
    private = Visible(frozenset({"g2"}), default_public=False)
    assert plain.searcher("c").effective_access(public) is None
    assert plain.searcher("c").effective_access(private) == private
    assert guarded.searcher("c").effective_access(public) == public
    caller = Caller("k_test", Role.READER, None, frozenset({"g2"}))
    hits = run_search(guarded, "c", SearchBody(text="mug", k=10), None, caller)["hits"]
    assert {hit["id"] for hit in hits} == {"i1"}
