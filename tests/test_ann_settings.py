"""ANN knobs: the settings, a collection's collection.json and a request, in that order."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
from typer.testing import CliRunner

from mmsearch.cli import app
from mmsearch.collection_state import AnnSettings, ann_search
from mmsearch.config import AnnSearch, Settings
from mmsearch.errors import QueryError
from mmsearch.index.open import open_build_index
from mmsearch.ingest import IngestOptions, Ingestor
from mmsearch.retrieval.retrieve import RetrievalQuery
from mmsearch.search.query import build_request, parse_query
from mmsearch.search.request import SearchRequest
from mmsearch.search.searcher import Searcher
from mmsearch.workspace import Workspace

from conftest import write_jsonl

WORDS = ["red", "blue", "green", "mug", "lamp", "tent", "hat", "oak", "wool", "glass", "linen"]


def test_a_request_overrides_its_collection_which_overrides_the_settings(tmp_path):
    settings = Settings(home=tmp_path, ann_nprobes=20, ann_refine_factor=1, ann_ef=None)
    collection = AnnSettings(nprobes=40, ef=64)
    resolved = ann_search(settings, collection, AnnSearch(refine_factor=3))
    assert (resolved.nprobes, resolved.refine_factor, resolved.ef) == (40, 3, 64)
    assert ann_search(settings, None).nprobes == 20
    assert ann_search(settings, AnnSettings(index_type="flat")).exact is True
    assert (
        ann_search(settings, AnnSettings(index_type="flat"), AnnSearch(exact=False)).exact is False
    )


@pytest.mark.parametrize(
    ("ann", "named"),
    [({"nprobes": 0}, "ann.nprobes"), ({"refine": 2}, "ann.refine"), ({"ef": -1}, "ann.ef")],
)
def test_invalid_request_knobs_are_query_errors_naming_the_field(ann, named):
    with pytest.raises(QueryError, match=named):
        parse_query(text="mug", ann=ann)


def test_the_request_carries_its_knobs_to_the_searcher():
    request = build_request(parse_query(text="mug", ann={"nprobes": 7, "exact": True}))
    assert request.ann == AnnSearch(nprobes=7, exact=True)


@pytest.fixture
def indexed(tmp_path, settings):
    """300 items, past ann_min_rows (256): the text column gets the collection's index."""
    rng = random.Random(3)
    rows: list[dict[str, object] | str] = [
        {"id": f"it-{n}", "title": " ".join(rng.choice(WORDS) for _ in range(4))}
        for n in range(300)
    ]
    catalog = write_jsonl(tmp_path / "catalog.jsonl", rows)
    settings = settings.model_copy(update={"ann_min_rows": 256})
    return settings, catalog


def _exact_top(searcher: Searcher, vector: np.ndarray, k: int) -> list[str]:
    table = searcher.index.scan(["id", "vector_text"])
    matrix = np.stack(table["vector_text"].to_numpy(zero_copy_only=False))
    order = np.argsort(-(matrix @ vector), kind="stable")[:k]
    return [table["id"][int(i)].as_py() for i in order]


def test_exact_requests_bypass_the_index_and_knobs_reach_it(indexed):
    settings, catalog = indexed
    Ingestor(settings).run(IngestOptions(catalog, "shop"))
    searcher = Searcher(settings, "shop")
    assert "vector_text" in searcher.index.ann_columns()  # pyright: ignore[reportAttributeAccessIssue]
    query = RetrievalQuery(text="red mug lamp", image=None, depth=10, signals=["text_vector"])
    vector = searcher.retriever.retrieve(query).query_vectors["text_vector"]

    def vector_scores(ann: AnnSearch) -> list[float]:
        request = SearchRequest(text="red mug lamp", k=10, signals=["text_vector"], ann=ann)
        return [hit.signals["text_vector"].score for hit in searcher.search(request).hits]

    # Ties in score may come in any order: compare the scores of the exact top 10.
    truth = _exact_top(searcher, vector, 10)
    expected = sorted(_scores(searcher, vector, truth), reverse=True)
    assert vector_scores(AnnSearch(exact=True)) == pytest.approx(expected, abs=1e-5)
    assert len(vector_scores(AnnSearch(nprobes=64, refine_factor=10, ef=200))) == 10


def _scores(searcher: Searcher, vector: np.ndarray, ids: list[str]) -> list[float]:
    rows = searcher.index.get(ids, ["id", "vector_text"])
    return [float(np.dot(np.asarray(r["vector_text"]), vector)) for r in rows]


def test_a_flat_collection_builds_no_vector_index(indexed):
    settings, catalog = indexed
    workspace = Workspace(settings.home)
    folder = workspace.create_or_open("shop")
    runner = CliRunner()
    home = ["--home", str(settings.home)]
    result = runner.invoke(app, ["ann", "-c", "shop", "--index-type", "flat", *home])
    assert result.exit_code == 0, result.output
    Ingestor(settings).run(IngestOptions(catalog, "shop"))
    index = open_build_index(folder, folder.live_manifest(), settings)
    assert index.ann_columns() == []  # pyright: ignore[reportAttributeAccessIssue]
    assert json.loads((folder.folder / "collection.json").read_text())["ann"] == {
        "index_type": "flat"
    }


def test_the_ann_command_validates_merges_and_clears(settings, make_catalog):
    Ingestor(settings).run(IngestOptions(make_catalog(), "shop"))
    runner = CliRunner()
    home = ["--home", str(settings.home)]
    bad = runner.invoke(app, ["ann", "-c", "shop", "--index-type", "hnsw", *home])
    assert bad.exit_code != 0
    assert "collection 'shop'" in bad.output and "index_type" in bad.output
    bad = runner.invoke(app, ["ann", "-c", "shop", "--nprobes", "0", *home])
    assert bad.exit_code != 0 and "nprobes" in bad.output
    assert runner.invoke(app, ["ann", "-c", "shop", "--nprobes", "32", *home]).exit_code == 0
    assert runner.invoke(app, ["ann", "-c", "shop", "--ef", "80", *home]).exit_code == 0
    shown = runner.invoke(app, ["ann", "-c", "shop", "--json", *home])
    assert json.loads(shown.output)["ann"] == {"nprobes": 32, "ef": 80}
    assert Searcher(settings, "shop").collection_ann == AnnSettings(nprobes=32, ef=80)
    assert runner.invoke(app, ["ann", "-c", "shop", "--clear", *home]).exit_code == 0
    state = json.loads(
        (Workspace(settings.home).collection("shop").folder / "collection.json").read_text()
    )
    assert "ann" not in state
