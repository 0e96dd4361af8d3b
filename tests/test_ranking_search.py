"""Fusion choices, per-query weights and explanations through a real search."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from mmsearch.cli import app
from mmsearch.commands.ranking_output import parse_weights
from mmsearch.errors import QueryError
from mmsearch.ingest import IngestOptions, Ingestor
from mmsearch.search.request import SearchRequest
from mmsearch.search.searcher import Searcher


@pytest.fixture
def searcher(settings, make_catalog) -> Searcher:
    Ingestor(settings).run(IngestOptions(make_catalog(), "shop"))
    return Searcher(settings, "shop")


@pytest.mark.parametrize("fusion", ["rrf", "weighted", "dbsf"])
def test_every_fusion_runs_and_explains_its_scores(searcher, fusion):
    result = searcher.search(SearchRequest(text="blue mug", k=5, fusion=fusion, explain=True))
    assert result.fusion == fusion
    assert result.hits[0].id == "item-2"
    for hit in result.hits:
        explanation = hit.explanation
        assert explanation is not None and explanation.fusion == fusion
        assert set(explanation.signals) == set(hit.signals)
        total = sum(part.contribution for part in explanation.signals.values())
        assert total == pytest.approx(hit.score, abs=1e-5)
        for signal, part in explanation.signals.items():
            assert part.rank == hit.signals[signal].rank
    json.dumps(result.as_dict(), default=str)  # serialisable as the API returns it


def test_weights_change_the_ranking_and_show_in_the_explanation(searcher):
    request = SearchRequest(text="blue coffee", k=5, fusion="weighted", explain=True)
    keyword_only = searcher.search(
        SearchRequest(**{**vars(request), "weights": {"keyword": 1.0, "text_vector": 0.0}})
    )
    top = keyword_only.hits[0]
    assert top.explanation is not None
    assert top.explanation.signals["keyword"].weight == pytest.approx(1.0)
    assert top.explanation.signals["text_vector"].contribution == 0.0
    expected = searcher.search(SearchRequest(text="blue coffee", k=5, signals=["keyword"]))
    assert top.id == expected.hits[0].id


def test_weight_for_a_signal_the_query_does_not_use_is_a_clear_error(searcher):
    with pytest.raises(QueryError, match=r"image_vector.*keyword, text_vector"):
        searcher.search(SearchRequest(text="mug", weights={"image_vector": 1.0}))


def test_without_explain_hits_carry_no_explanation(searcher):
    result = searcher.search(SearchRequest(text="mug", k=2))
    assert all(hit.explanation is None for hit in result.hits)
    assert result.fusion == "rrf"


def test_settings_choose_the_default_fusion(settings, make_catalog):
    Ingestor(settings).run(IngestOptions(make_catalog(), "shop"))
    searcher = Searcher(settings.model_copy(update={"fusion": "dbsf"}), "shop")
    assert searcher.search(SearchRequest(text="mug")).fusion == "dbsf"


def test_candidate_depth_limits_each_retriever(searcher):
    result = searcher.search(SearchRequest(text="mug", k=1, candidates=2, explain=True))
    assert len(result.hits) == 1
    shallow = searcher.retrieve(SearchRequest(text="mug", k=1, candidates=2))
    assert all(len(matches) <= 2 for matches in shallow.ranked.values())


@pytest.mark.parametrize(
    ("values", "message"),
    [(["keyword"], "SIGNAL=NUMBER"), (["keyword=x"], "SIGNAL=NUMBER"), (["a=1", "a=2"], "twice")],
)
def test_weight_option_parsing_errors(values, message):
    with pytest.raises(QueryError, match=message):
        parse_weights(values)


def test_cli_weights_fusion_and_explain(settings, make_catalog):
    Ingestor(settings).run(IngestOptions(make_catalog(), "shop"))
    runner = CliRunner()
    base = ["search", "blue mug", "-c", "shop", "--home", str(settings.home), "--k", "2"]
    env = {"MMSEARCH_TEXT_ENCODER": "fake-text", "MMSEARCH_IMAGE_ENCODER": "fake-image"}
    result = runner.invoke(
        app,
        [
            *base,
            "--fusion",
            "weighted",
            "--weight",
            "keyword=0.3",
            "--weight",
            "text_vector=0.7",
            "--explain",
            "--json",
        ],
        env=env,
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    top = data["hits"][0]["explanation"]
    assert data["fusion"] == "weighted"
    assert top["signals"]["keyword"]["weight"] == pytest.approx(0.3)
    assert top["signals"]["text_vector"]["weight"] == pytest.approx(0.7)

    text = runner.invoke(app, [*base, "--explain"], env=env)
    assert text.exit_code == 0, text.output
    assert "#1 item-2" in text.stdout and "keyword" in text.stdout and "x w 1" in text.stdout

    bad = runner.invoke(app, [*base, "--weight", "image_vector=1"], env=env)
    assert bad.exit_code == 2 and "image_vector" in bad.output
