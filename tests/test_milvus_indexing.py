"""What a Milvus build's runs leave behind: sealed rows, built indexes, the configured
index parameters; and the two flush modes (``MMSEARCH_MILVUS_FLUSH``)."""

from __future__ import annotations

import logging
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from mmsearch.config import Settings
from mmsearch.index.milvus import MilvusBuildIndex
from mmsearch.index.open import create_build_index, open_build_index
from mmsearch.ingest import IngestOptions, Ingestor
from mmsearch.workspace import CollectionDir, Workspace

from conftest import COLOURS, save_image, store_settings, write_jsonl

pytestmark = pytest.mark.milvus
pytest.importorskip("pymilvus")
pytest.importorskip("milvus_lite")
DIM = 16


def _settings(tmp_path: Path, request: pytest.FixtureRequest, **extra: Any) -> Settings:
    return Settings(
        home=tmp_path / "ws",
        text_encoder="fake-text",
        image_encoder="fake-image",
        **{**store_settings("milvus", request), "milvus_index": "hnsw", **extra},
    )


def _catalog(folder: Path) -> Path:
    rows = []
    for n, (colour, rgb) in enumerate(COLOURS.items()):
        save_image(folder / "img" / f"{colour}.png", rgb)
        rows.append({"id": f"item-{n}", "title": f"{colour} mug", "image": f"img/{colour}.png"})
    return write_jsonl(folder / "catalog.jsonl", rows)


def _vectors_index(tmp_path: Path, settings: Settings, rows: int = 300) -> MilvusBuildIndex:
    schema = pa.schema(
        [pa.field("id", pa.string(), nullable=False), pa.field("v", pa.list_(pa.float32(), DIM))]
    )
    vectors = np.random.default_rng(1).normal(size=(rows, DIM)).astype(np.float32)
    data = pa.Table.from_pylist(
        [{"id": f"r{n}", "v": vectors[n].tolist()} for n in range(rows)], schema=schema
    )
    table = f"idx_{uuid.uuid4().hex[:10]}"
    index = create_build_index(CollectionDir(tmp_path / "c"), table, schema, settings)
    assert isinstance(index, MilvusBuildIndex)
    index.upsert(data)
    return index


def _params(description: dict[str, Any]) -> dict[str, int]:
    """Build parameters from ``describe_index``: nested (Milvus Lite) or flat (Milvus)."""
    found = description.get("params") or description
    return {key: int(found[key]) for key in ("M", "efConstruction") if key in found}


def test_configured_index_parameters_reach_every_vector_index(tmp_path, request):
    """``MMSEARCH_MILVUS_INDEX_PARAMS`` on the text vectors and on the image collection."""
    settings = _settings(tmp_path, request, milvus_index_params={"M": 8, "efConstruction": 64})
    Ingestor(settings).run(IngestOptions(_catalog(tmp_path / "cat"), "shop"))
    collection = Workspace(settings.home).collection("shop")
    index = open_build_index(collection, collection.live_manifest(), settings)
    assert isinstance(index, MilvusBuildIndex)
    dense = [s for s in index.index_states() if s["index_type"] == "HNSW"]
    assert {s["field_name"] for s in dense} == {"vector_text", "vector_image"}
    for state in dense:
        assert _params(state) == {"M": 8, "efConstruction": 64}, state


def test_a_run_publishes_its_rows_indexed(tmp_path, request):
    """After an ingest (flush ``run``) every index has built every row the build holds."""
    settings = _settings(tmp_path, request)
    Ingestor(settings).run(IngestOptions(_catalog(tmp_path / "cat"), "shop"))
    collection = Workspace(settings.home).collection("shop")
    index = open_build_index(collection, collection.live_manifest(), settings)
    assert isinstance(index, MilvusBuildIndex)
    states = {(s["collection"], s["field_name"]): s for s in index.index_states()}
    assert len(states) == 3  # BM25 and text on the items, images on the image rows
    for (target, _field), state in states.items():
        rows = index.row_count() if target == index.collection else len(COLOURS)
        assert state["indexed_rows"] == state["total_rows"] == rows, state
        assert state["pending_index_rows"] == 0 and state["state"] == "Finished"


class _Recording:
    """The index's client, recording which calls were made (and faking index states)."""

    def __init__(self, client: Any, states: list[dict[str, Any]] | None = None):
        self.client = client
        self.calls: list[str] = []
        self.states = states

    def __getattr__(self, name: str) -> Any:
        self.calls.append(name)
        if name == "describe_index" and self.states is not None:
            return lambda *args, **kwargs: (
                self.states.pop(0) if len(self.states) > 1 else self.states[0]
            )
        return getattr(self.client, name)


@pytest.mark.parametrize("mode", ["run", "server"])
def test_flush_modes(tmp_path, request, mode):
    """``run`` flushes and waits for the index; ``server`` leaves both to Milvus."""
    index = _vectors_index(tmp_path, _settings(tmp_path, request, milvus_flush=mode))
    spy = _Recording(index._client)
    index._client = spy
    info = index.refresh_indexes()
    assert info["rows"] == 300
    assert ("flush" in spy.calls) == (mode == "run")
    assert ("describe_index" in spy.calls) == (mode == "run")
    assert len(index.vector_search("v", np.ones(DIM, np.float32), 5)) == 5


def test_the_wait_for_the_index_polls_until_built_and_gives_up_with_a_warning(
    tmp_path, request, caplog
):
    index = _vectors_index(tmp_path, _settings(tmp_path, request))

    def state(pending: int) -> dict[str, Any]:
        return {
            "index_name": "v",
            "total_rows": 300,
            "indexed_rows": 300 - pending,
            "pending_index_rows": pending,
            "state": "InProgress" if pending else "Finished",
        }

    spy = _Recording(index._client, [state(300), state(100), state(0)])
    index._client = spy
    assert index.wait_for_indexes(30.0) is True
    assert spy.calls.count("describe_index") == 3
    spy.states = [state(50)]
    with caplog.at_level(logging.WARNING, logger="mmsearch.index"):
        assert index.wait_for_indexes(0.2) is False
    assert "had not indexed 50 rows" in caplog.text


def test_an_image_search_asks_milvus_for_item_ids_only(tmp_path, request):
    """Group-by over-fetches hits per item (Milvus Lite: 10x k); only ``id`` and the
    score come back, display fields are read once for the final page by the Searcher."""
    settings = _settings(tmp_path, request)
    Ingestor(settings).run(IngestOptions(_catalog(tmp_path / "cat"), "shop"))
    collection = Workspace(settings.home).collection("shop")
    index = open_build_index(collection, collection.live_manifest(), settings)
    assert isinstance(index, MilvusBuildIndex)
    sent: list[dict[str, Any]] = []
    client = index._client

    class Spy:
        def __getattr__(self, name: str) -> Any:
            if name != "search":
                return getattr(client, name)

            def search(*args: Any, **kwargs: Any) -> Any:
                sent.append(kwargs)
                return client.search(*args, **kwargs)

            return search

    index._client = Spy()
    found = index.vector_search("vector_image", np.ones(48, np.float32), 3)
    assert len(found) == 3
    assert [(s["output_fields"], s.get("group_by_field")) for s in sent] == [(["id"], "id")]
