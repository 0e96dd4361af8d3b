"""The hot in-memory index answers as the durable LanceDB store does.

``HotReader`` (``index/hot``) reads a build once and searches in memory: these tests
hold it to the store's answers. Filters: on the random trees of
``test_filters_store.py`` (every node kind, NULLs, ACL lists, under ``NOT``) every
read path selects exactly the rows ``filters.evaluate.matches`` accepts. Vectors: exact
search returns the durable reader's ids in its order. Staleness: after an upsert or
delete through either reader, the next search sees the new version.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, example, given, settings
from typer.testing import CliRunner

import test_store_contract as contract
from mmsearch.cli import app
from mmsearch.config import AnnSearch, Settings
from mmsearch.errors import QueryError
from mmsearch.filters import And, Compare, Filter, InList, Like, Not, Or, Visible, matches
from mmsearch.index.base import BuildIndex
from mmsearch.index.hot.reader import HotReader
from mmsearch.index.hot.text import Analyzer
from mmsearch.index.open import create_build_index
from mmsearch.index.schema import KEYWORD_COLUMN
from mmsearch.ingest import IngestOptions, Ingestor
from mmsearch.search.request import SearchRequest
from mmsearch.search.searcher import Searcher
from mmsearch.workspace import CollectionDir
from test_filters_store import FILTERS, ROWS, SCHEMA, make_rows


def _table(folder: Path, rows: list[dict]) -> BuildIndex:
    collection = CollectionDir(folder)
    index = create_build_index(
        collection, f"rows_{uuid.uuid4().hex[:12]}", SCHEMA, Settings(home=folder)
    )
    index.upsert(pa.Table.from_pylist(rows, schema=SCHEMA))
    index.refresh_indexes()
    return index


@pytest.fixture(scope="module")
def hot(tmp_path_factory) -> tuple[HotReader, BuildIndex, list[dict]]:
    rows = make_rows()
    durable = _table(Path(tmp_path_factory.mktemp("hot")), rows)
    return HotReader(durable, page_columns=["s", "i"]), durable, rows


@settings(
    max_examples=int(os.environ.get("MMSEARCH_FILTER_EXAMPLES", "150")),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(FILTERS)
@example(Not(And((InList("i", (-3,)), Not(InList("i", (-3,)))))))
@example(Or((InList("s", ("a",), negated=True), InList("s", ("b",), negated=True))))
@example(Compare("i", "<", 2.5))
@example(Compare("i", ">", 1e20))
@example(Not(Like("s", "a\\%b")))
def test_the_hot_masks_select_exactly_what_the_evaluator_accepts(hot, filter: Filter):
    reader, durable, rows = hot
    try:
        durable.count(filter)
    except QueryError:  # a filter the store refuses is refused on the hot path too
        with pytest.raises(QueryError, match="cannot be applied"):
            reader.count(filter)
        return
    expected = {row["id"] for row in rows if matches(filter, row)}
    assert reader.count(filter) == len(expected)
    assert {m.id for m in reader.keyword_search("item", ROWS, filter)} == expected
    query = np.asarray([0.5, 0.5, 0.5, 0.5], dtype=np.float32)
    assert {m.id for m in reader.vector_search("vector_text", query, ROWS, filter)} == expected


def test_exact_vector_search_returns_the_stores_ids_in_its_order(hot):
    reader, durable, _ = hot
    rng = np.random.default_rng(7)
    exact = AnnSearch(exact=True)
    for _ in range(20):
        query = rng.uniform(-1.0, 1.0, size=4).astype(np.float32)
        mine = reader.vector_search("vector_text", query, 10)
        theirs = durable.vector_search("vector_text", query, 10, ann=exact)
        assert [m.id for m in mine] == [m.id for m in theirs]
        assert np.allclose([m.score for m in mine], [m.score for m in theirs], atol=1e-5)


def test_the_rows_of_found_matches_come_from_memory_in_their_order(hot):
    reader, durable, _ = hot
    found = reader.keyword_search("item", 5, Compare("i", ">=", 0))
    assert len(found) >= 3
    rows = reader.get_found(list(reversed(found)), ["s", "i"])
    assert [r["id"] for r in rows] == [m.id for m in reversed(found)]
    assert rows == durable.get([m.id for m in reversed(found)], ["id", "s", "i"])
    # A column the memory does not hold is read from the store, by id.
    assert reader.get_found(found[:2], ["f"]) == durable.get([m.id for m in found[:2]], ["id", "f"])


KEYWORD_TEXTS = [
    "Running shoes for runners",
    "The café serves naïve coffee",
    "Résumé writing for the unemployed",
    "foo_bar baz-qux 3.5km",
    "yourselves and ourselves",
    "Generalization of flows in ducts",
    "don't stop believing",
    "x" * 41 + " long token",
]


def test_keyword_search_finds_what_the_stores_full_text_index_finds(tmp_path):
    rows = [
        {"id": f"t{n}", KEYWORD_COLUMN: text, "vector_text": [1.0, 0.0, 0.0, float(n)]}
        for n, text in enumerate(KEYWORD_TEXTS)
    ]
    durable = _table(tmp_path, rows)
    reader = HotReader(durable)
    queries = [
        "run",
        "runner",
        "cafe",
        "naive",
        "resume",
        "résumé",
        "foo",
        "qux",
        "3",
        "5km",
        "yourselves",
        "ourselves",
        "general flow",
        "the",
        "don't",
        "x" * 41,
        "long",
        "stop believing the",
        "runners running flows",  # a repeated term counts twice in LanceDB's score
    ]
    for query in queries:
        expected = {(m.id, round(m.score, 4)) for m in durable.keyword_search(query, 10)}
        found = {(m.id, round(m.score, 4)) for m in reader.keyword_search(query, 10)}
        assert found == expected, query
    # Stemmed before accents are folded: "résumés" keeps its last "e", as in LanceDB.
    assert Analyzer().terms("Running, the RÉSUMÉS!") == ["run", "resume"]


def test_a_write_is_seen_by_the_next_search(tmp_path):
    """The durable reader moves to a new version; the hot memory follows before serving."""
    rows = make_rows()
    durable = _table(tmp_path, rows)
    reader = HotReader(durable)
    built = reader.version()
    assert not reader.keyword_search("zebra", 5)
    new = {**rows[0], "id": "fresh", KEYWORD_COLUMN: "a zebra crossing", "acl": ["g9"]}
    durable.upsert(pa.Table.from_pylist([new], schema=SCHEMA))
    assert reader.version() != built
    assert [m.id for m in reader.keyword_search("zebra", 5)] == ["fresh"]
    assert reader.count(Visible(frozenset({"g9"}), False)) == 1
    assert reader.get_found(reader.keyword_search("zebra", 5), ["id"]) == [{"id": "fresh"}]
    reader.delete(["fresh"])  # through the hot reader: the store is written, memory follows
    assert not reader.keyword_search("zebra", 5)
    assert reader.row_count() == ROWS


def test_large_columns_walk_an_hnsw_graph_inside_the_filter(tmp_path):
    rng = np.random.default_rng(11)
    rows = [
        {
            "id": f"v{n}",
            KEYWORD_COLUMN: "item",
            "i": n % 10,
            "acl": ["g1"] if n % 3 == 0 else None,
            "vector_text": rng.normal(size=4).astype(np.float32).tolist(),
        }
        for n in range(1200)
    ]
    durable = _table(tmp_path, rows)
    reader = HotReader(durable, hnsw_min_rows=256)
    vectors = reader.current().vectors["vector_text"]
    assert vectors.nbytes() > vectors.vectors.nbytes  # the graph is there
    exact = AnnSearch(exact=True)
    only = And((Visible(frozenset({"g1"}), False), Compare("i", "<", 5)))
    allowed = {r["id"] for r in rows if matches(only, r)}
    hits = total = 0
    for _ in range(20):
        query = rng.normal(size=4).astype(np.float32)
        for filter in (None, only):
            walked = reader.vector_search("vector_text", query, 10, filter, AnnSearch(ef=64))
            truth = durable.vector_search("vector_text", query, 10, filter, exact)
            if filter is not None:
                assert {m.id for m in walked} <= allowed
            hits += len({m.id for m in walked} & {m.id for m in truth})
            total += len(truth)
    assert hits / total >= 0.9
    memory = reader.memory()
    assert memory["rows"] == 1200 and memory["bytes_per_item"] > 4 * 4


CONTRACT_ACLS = {"pair": ["staff"], "secret": ["board"], "nobody": []}  # contract._catalog's


@pytest.fixture
def shop(settings: Settings, tmp_path: Path) -> tuple[Settings, Settings]:
    """The store contract's catalog, and settings with the hot index on by default."""
    Ingestor(settings).run(IngestOptions(contract._catalog(tmp_path / "cat"), "shop"))
    return settings, settings.model_copy(update={"hot_index": True})


@pytest.mark.parametrize("mode", ["keyword", "text", "image", "multi_image", "hybrid"])
def test_the_store_contracts_searches_pass_on_the_hot_path(shop, mode):
    _, hot = shop
    assert isinstance(Searcher(hot, "shop").index, HotReader)
    contract.test_every_search_mode_finds_the_obvious_item((hot, None, None), mode)
    contract.test_acl_visibility_through_the_searcher((hot, None, None))
    contract.test_explanations_name_every_signal((hot, None, None))


def test_hot_and_durable_searchers_retrieve_the_same_scored_lists(shop):
    """Every retriever's list, filter and ACL applied, with the store's scores (BM25 and
    cosine); only the order among equal scores may differ (LanceDB's is arbitrary)."""
    durable, hot = shop
    plain, memory = Searcher(durable, "shop"), Searcher(hot, "shop")
    assert not isinstance(plain.index, HotReader)
    for text in ["mug", "blue mug", "lamp poster", "coffee tea", "green ceramic", "hidden"]:
        for where in [None, "price > 7", "category = 'office'"]:
            for groups in [None, {"staff"}, {"board"}, set()]:
                access = None if groups is None else Visible(frozenset(groups), False)
                request = SearchRequest(text=text, k=5, where=where, access=access)
                expected = plain.retrieve(request).ranked
                found = memory.retrieve(request).ranked
                assert set(found) == set(expected) == {"keyword", "text_vector"}
                for signal, listed in expected.items():
                    scored = {(m.id, round(m.score, 4)) for m in found[signal]}
                    assert scored == {(m.id, round(m.score, 4)) for m in listed}, request
                    ranks = [round(m.score, 4) for m in found[signal]]
                    assert ranks == sorted(ranks, reverse=True)
                if groups is not None:  # private by default: only items sharing a group
                    allowed = {i for i, acl in CONTRACT_ACLS.items() if groups & set(acl)}
                    assert {h.id for h in memory.search(request).hits} <= allowed


def test_the_ann_command_turns_the_hot_index_on_per_collection(shop):
    durable, _ = shop
    runner = CliRunner()
    home = ["--home", str(durable.home)]
    assert runner.invoke(app, ["ann", "-c", "shop", "--hot", *home]).exit_code == 0
    assert isinstance(Searcher(durable, "shop").index, HotReader)
    shown = runner.invoke(app, ["ann", "-c", "shop", "--json", *home])
    assert shown.exit_code == 0 and '"hot": true' in shown.output
    # The collection's choice wins over the server's default, both ways.
    assert runner.invoke(app, ["ann", "-c", "shop", "--no-hot", *home]).exit_code == 0
    on = durable.model_copy(update={"hot_index": True})
    assert not isinstance(Searcher(on, "shop").index, HotReader)


def test_a_background_build_leaves_the_store_answering_until_it_is_ready(tmp_path):
    rows = make_rows()
    durable = _table(tmp_path, rows)
    reader = HotReader(durable, background=True)
    query = np.asarray([0.5, 0.5, 0.5, 0.5], dtype=np.float32)
    expected = [m.id for m in durable.vector_search("vector_text", query, 5)]
    assert [m.id for m in reader.vector_search("vector_text", query, 5)] == expected
    assert reader.wait_ready(60)
    assert [m.id for m in reader.vector_search("vector_text", query, 5)] == expected
    new = {**rows[0], "id": "fresh", KEYWORD_COLUMN: "a zebra crossing"}
    durable.upsert(pa.Table.from_pylist([new], schema=SCHEMA))
    # Stale memory never serves: the store answers while the new version is built.
    assert [m.id for m in reader.keyword_search("zebra", 5)] == ["fresh"]
    assert reader.wait_ready(60)
    assert reader.current().version == durable.version()
    assert [m.id for m in reader.keyword_search("zebra", 5)] == ["fresh"]


class _Unreadable:
    """A durable reader whose full scan fails (a hot build cannot read it)."""

    def __init__(self, durable: BuildIndex):
        self._durable = durable
        self.scans = 0

    def __getattr__(self, name: str):
        return getattr(self._durable, name)

    def scan(self, columns: list[str], filter: Filter | None = None) -> pa.Table:
        self.scans += 1
        raise OSError("the table's files cannot be read")


def test_a_failed_background_build_leaves_the_store_answering(tmp_path, caplog):
    durable = _table(tmp_path, make_rows())
    unreadable = _Unreadable(durable)
    reader = HotReader(unreadable, background=True)  # type: ignore[arg-type]
    assert not reader.wait_ready(60)
    assert "could not be built" in caplog.text
    expected = [m.id for m in durable.keyword_search("item", 5)]
    assert [m.id for m in reader.keyword_search("item", 5)] == expected
    assert reader.count() == ROWS
    assert reader.wait_ready(60) is False and unreadable.scans == 1  # not retried per read
