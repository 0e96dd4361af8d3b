"""The store registry: a store is added in ``index/`` alone, and an unknown one is refused.

``CountingStore`` below is a store registered from outside mmsearch's own code (it
keeps LanceDB's tables but is its own backend name): a collection ingested with it
records its name in the manifest, and every later open goes through it, without a
line changed anywhere else.
"""

from __future__ import annotations

import pytest

from mmsearch.errors import MMSearchError
from mmsearch.index import stores
from mmsearch.index.lancedb_store import LanceStore
from mmsearch.index.open import open_build_index
from mmsearch.ingest import IngestOptions, Ingestor
from mmsearch.search.request import SearchRequest
from mmsearch.search.searcher import Searcher
from mmsearch.workspace import Workspace

CALLS: list[str] = []


class CountingStore(LanceStore):
    name = "counting"

    def describe(self, collection, settings):
        return {**super().describe(collection, settings), "backend": self.name}

    def create(self, collection, table, schema, settings):
        CALLS.append("create")
        return super().create(collection, table, schema, settings)

    def open(self, collection, manifest, settings, version):
        CALLS.append("open")
        return super().open(collection, manifest, settings, version)


@pytest.fixture
def counting(monkeypatch):
    monkeypatch.setitem(stores.STORES, "counting", f"{__name__}:CountingStore")
    monkeypatch.setattr(stores, "_LOADED", {})
    CALLS.clear()
    yield
    CALLS.clear()


def test_a_registered_store_serves_its_builds_from_creation_to_search(
    counting, settings, make_catalog
):
    settings = settings.model_copy(update={"backend": "counting"})
    Ingestor(settings).run(IngestOptions(make_catalog(), "shop"))
    manifest = Workspace(settings.home).collection("shop").live_manifest()
    assert manifest.store.backend == "counting"
    assert "create" in CALLS
    opened = CALLS.count("open")
    hits = Searcher(settings, "shop").search(SearchRequest(text="red mug", k=3)).hits
    assert hits and hits[0].id == "item-0"
    assert CALLS.count("open") > opened  # the searcher opened the build through the store


def test_a_build_of_an_unknown_store_is_refused_by_name(settings, make_catalog):
    Ingestor(settings).run(IngestOptions(make_catalog(), "shop"))
    folder = Workspace(settings.home).collection("shop")
    manifest = folder.live_manifest()
    manifest.store.backend = "cassandra"
    with pytest.raises(MMSearchError, match=r"uses the store 'cassandra'.*lancedb, milvus"):
        open_build_index(folder, manifest, settings)


def test_a_new_build_in_an_unknown_store_is_refused_before_anything_is_written(
    settings, make_catalog
):
    settings = settings.model_copy(update={"backend": "cassandra"})
    with pytest.raises(MMSearchError, match="store 'cassandra'"):
        Ingestor(settings).run(IngestOptions(make_catalog(), "shop"))
    assert Workspace(settings.home).find("shop") is None or not (
        Workspace(settings.home).collection("shop").build_ids()
    )


def test_every_registered_store_implements_the_protocol():
    for name in stores.store_names():
        backend = stores.store_backend(name)
        assert backend.name == name
        for method in ("describe", "create", "open", "drop", "sync_aliases"):
            assert callable(getattr(backend, method))
