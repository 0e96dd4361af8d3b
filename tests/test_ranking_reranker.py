"""The learned reranker: features, LambdaMART training with query-grouped CV, guarded loading."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from mmsearch.cli import app
from mmsearch.filters.expr import And, Compare, Visible
from mmsearch.ingest import IngestOptions, Ingestor
from mmsearch.ranking.model import RankerModel
from mmsearch.ranking.training import query_folds
from mmsearch.search.request import SearchRequest
from mmsearch.search.searcher import Searcher
from mmsearch.search.training import TrainingQuery, train_ranker

from conftest import write_jsonl

WORDS = ["teapot", "kettle", "saucer", "ladle", "whisk", "sieve"]
ENV = {"MMSEARCH_TEXT_ENCODER": "fake-text", "MMSEARCH_IMAGE_ENCODER": "fake-image"}


def catalog_rows() -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for i in range(36):
        main, other = WORDS[i % 6], WORDS[(i + 1) % 6]
        rows.append(
            {
                "id": f"k{i}",
                "title": f"{main} model {i}",
                "description": f"goes well with a {other}",
                "popularity": float(i % 4),
            }
        )
    return rows


def judgments() -> dict[str, dict[str, int]]:
    """Relevant: the item is a <word> (title), and popular ones more so."""
    out: dict[str, dict[str, int]] = {}
    for row in catalog_rows():
        word = str(row["title"]).split()[0]
        out.setdefault(word, {})[str(row["id"])] = 1 + int(float(row["popularity"]) >= 2)  # type: ignore[arg-type]
    return out


@pytest.fixture
def searcher(settings, tmp_path) -> Searcher:
    path = write_jsonl(tmp_path / "kitchen.jsonl", catalog_rows())  # type: ignore[arg-type]
    Ingestor(settings).run(IngestOptions(path, "kitchen"))
    return Searcher(settings, "kitchen")


@pytest.fixture
def trained(searcher, tmp_path) -> Path:
    queries = [TrainingQuery(word, word) for word in WORDS]
    model, report = train_ranker(searcher, queries, judgments(), folds=2, seed=3)
    assert len(report.folds) == 2 and report.queries == 6
    assert all(0.0 <= f.rrf_ndcg10 <= 1.0 and 0.0 <= f.model_ndcg10 <= 1.0 for f in report.folds)
    return model.save(tmp_path / "ranker")


def test_missing_signals_are_encoded_explicitly(searcher):
    retrieved = searcher.retrieve(SearchRequest(text="teapot", k=3, candidates=3))
    names = searcher.ranking.space.names()
    assert "attr:popularity" in names and "keyword:found" in names
    not_found = next(
        i
        for i in ["k0", "k1", "k2", "k3", "k4", "k5"]
        if i not in {m.id for m in retrieved.ranked["keyword"]}
    )
    row = searcher.ranking.features(retrieved, [not_found])[0]
    values = dict(zip(names, row, strict=True))
    assert values["keyword:found"] == 0.0 and values["keyword:score"] == 0.0
    assert values["keyword:rank"] == retrieved.depth + 1 == 4
    assert values["attr:popularity"] == float(int(not_found[1:]) % 4)
    assert 0.0 <= values["text_vector:cosine"] <= 1.0001  # computed even when not retrieved


def test_the_has_filter_feature_follows_the_users_filter_not_access_or_rules(searcher, tmp_path):
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "version: 1\nfilters: [{conditions: [{attribute: popularity, op: '>=', value: 0}]}]\n"
    )
    column = searcher.ranking.space.names().index("query:has_filter")

    def has_filter(**request) -> float:
        retrieved = searcher.retrieve(SearchRequest(text="teapot", k=3, **request))
        ids = [m.id for m in retrieved.ranked["keyword"]][:2]
        assert ids
        return float(searcher.ranking.features(retrieved, ids)[0][column])

    assert has_filter() == 0.0
    assert has_filter(access=Visible(frozenset({"g"}), True)) == 0.0
    assert has_filter(rules=str(rules)) == 0.0
    assert has_filter(where="popularity >= 0") == 1.0
    assert has_filter(filter=Compare("popularity", ">=", 0)) == 1.0
    # Private by default: a public access node would be left out here, no item has an ACL.
    access = Visible(frozenset({"g"}), False)
    retrieved = searcher.retrieve(
        SearchRequest(text="teapot", where="popularity > 1", access=access)
    )
    assert retrieved.where == And((Compare("popularity", ">", 1), access))


def test_query_folds_partition_queries_reproducibly():
    folds = query_folds([f"q{i}" for i in range(10)], 3, seed=1)
    assert sorted(q for fold in folds for q in fold) == sorted(f"q{i}" for i in range(10))
    assert [len(f) for f in folds] == [4, 3, 3]
    assert folds == query_folds([f"q{i}" for i in range(10)], 3, seed=1)


def test_saved_model_records_what_it_was_trained_on(searcher, trained):
    meta = json.loads((trained / "meta.json").read_text())
    assert meta["features"] == searcher.ranking.space.names()
    assert meta["collection"] == "kitchen" and meta["build_id"] == searcher.build_id
    assert meta["encoders"]["text"].startswith("fake-text@")
    assert len(meta["training_sha256"]) == 64 and meta["mmsearch_version"]
    assert len(meta["cv"]["folds"]) == 2


def test_search_with_the_reranker_explains_with_shap_values(searcher, trained):
    result = searcher.search(SearchRequest(text="teapot", k=5, reranker=trained, explain=True))
    assert result.reranker == str(trained) and not result.warnings
    scores = [hit.score for hit in result.hits]
    assert scores == sorted(scores, reverse=True)
    for hit in result.hits:
        explanation = hit.explanation
        assert explanation is not None and explanation.reranker is not None
        shap = explanation.reranker
        total = shap.base_value + sum(f.contribution for f in shap.features)
        assert total == pytest.approx(hit.score, abs=1e-4)
        assert {f.feature for f in shap.features} == set(searcher.ranking.space.names())
    # The judgments reward popular teapots; the model has learned that.
    assert all(hit.title.startswith("teapot") for hit in result.hits[:3])


def test_a_model_for_other_features_is_refused_and_search_falls_back(searcher, trained):
    meta_path = trained / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["features"] = [f.replace("attr:popularity", "attr:price") for f in meta["features"]]
    meta_path.write_text(json.dumps(meta))
    result = searcher.search(SearchRequest(text="teapot", k=3, reranker=trained))
    assert result.reranker is None
    assert "reranker not used" in result.warnings[0] and "lacks attr:price" in result.warnings[0]
    plain = searcher.search(SearchRequest(text="teapot", k=3))
    assert [h.id for h in result.hits] == [h.id for h in plain.hits]


def test_a_model_for_other_encoders_is_refused(searcher, trained):
    meta_path = trained / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["encoders"]["text"] = "minilm@abc"
    meta_path.write_text(json.dumps(meta))
    result = searcher.search(SearchRequest(text="teapot", reranker=trained))
    assert result.reranker is None and "encoders" in result.warnings[0]


def test_a_missing_model_is_a_warning_not_a_failed_search(searcher, tmp_path):
    result = searcher.search(SearchRequest(text="teapot", reranker=tmp_path / "none-here"))
    assert result.hits and "train-ranker" in result.warnings[0]


def test_model_roundtrip_predicts_the_same(trained):
    model = RankerModel.load(trained)
    x = np.random.default_rng(0).random((4, len(model.meta.features)))
    again = RankerModel.load(trained)
    assert np.allclose(model.predict(x), again.predict(x))


def test_train_ranker_command_with_qrels(settings, searcher, tmp_path):
    queries = write_jsonl(tmp_path / "q.jsonl", [{"id": w, "text": w} for w in WORDS])
    qrels = tmp_path / "qrels.txt"
    qrels.write_text(
        "".join(f"{q} 0 {i} {g}\n" for q, items in judgments().items() for i, g in items.items())
    )
    out = tmp_path / "model"
    result = CliRunner().invoke(
        app,
        [
            "train-ranker",
            "-c",
            "kitchen",
            "--queries",
            str(queries),
            "--qrels",
            str(qrels),
            "--out",
            str(out),
            "--folds",
            "2",
            "--home",
            str(settings.home),
        ],
        env=ENV,
    )
    assert result.exit_code == 0, result.output
    assert "mean" in result.stdout and (out / "model.txt").is_file()
    search = CliRunner().invoke(
        app,
        [
            "search",
            "kettle",
            "-c",
            "kitchen",
            "--ranker",
            str(out),
            "--explain",
            "--json",
            "--home",
            str(settings.home),
        ],
        env=ENV,
    )
    assert search.exit_code == 0, search.output
    data = json.loads(search.stdout)
    assert data["reranker"] == str(out) and data["hits"][0]["explanation"]["reranker"]


def test_train_ranker_command_from_clicks(settings, searcher, tmp_path):
    events = []
    for word in WORDS:
        shown = [f"k{i}" for i in range(36) if str(catalog_rows()[i]["title"]).startswith(word)]
        events.append({"query": word, "shown": shown, "clicked": shown[-1]})
        events.append({"query": word.upper(), "shown": shown, "clicked": None})
    clicks = write_jsonl(tmp_path / "clicks.jsonl", events)  # type: ignore[arg-type]
    out = tmp_path / "from-clicks"
    result = CliRunner().invoke(
        app,
        [
            "train-ranker",
            "-c",
            "kitchen",
            "--clicks",
            str(clicks),
            "--out",
            str(out),
            "--folds",
            "0",
            "--home",
            str(settings.home),
        ],
        env=ENV,
    )
    assert result.exit_code == 0, result.output
    assert "12 result pages, 6 distinct queries, 6 implicit judgments" in result.stdout
    assert json.loads((out / "meta.json").read_text())["source"] == "clicks"


def test_train_ranker_needs_judgments(settings, searcher):
    result = CliRunner().invoke(
        app, ["train-ranker", "-c", "kitchen", "--home", str(settings.home)], env=ENV
    )
    assert result.exit_code == 2 and "--qrels" in result.output


def test_reranker_retrieval_keeps_the_keyword_feedback_list_for_its_features(searcher):
    request = SearchRequest(text="teapot")
    assert searcher.retrieve(request).feedback is None
    retrieved = searcher.retrieve(request, reranking=True)
    assert retrieved.feedback and retrieved.feedback[0].id in {
        m.id for m in retrieved.ranked["keyword"]
    }
    ids = [m.id for m in retrieved.ranked["keyword"]]
    names = searcher.ranking.space.names()
    matrix = searcher.ranking.features(retrieved, ids)
    found = matrix[:, names.index("keyword_feedback:found")]
    assert found.sum() == len({m.id for m in retrieved.feedback} & set(ids)) > 0
