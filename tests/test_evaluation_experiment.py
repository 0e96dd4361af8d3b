"""Experiments end to end: runs over a real LanceDB collection, ranx metrics, reports, CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mmsearch.cli import app
from mmsearch.errors import EvaluationError
from mmsearch.evaluation.configs import make_config
from mmsearch.evaluation.experiment import run_evaluation
from mmsearch.evaluation.metrics import evaluate_runs
from mmsearch.evaluation.report import results_of
from mmsearch.evaluation.runner import ConfigRun, RankedHit
from mmsearch.ingest import IngestOptions, Ingestor

from conftest import write_jsonl


def ranked(*ids: str) -> list[RankedHit]:
    return [RankedHit(item_id, 1.0) for item_id in ids]  # equal scores: order must still count


def run_of(name: str, rankings: dict[str, list[RankedHit]]) -> ConfigRun:
    return ConfigRun(make_config(name, {}), rankings=rankings)


def test_metrics_follow_our_rank_order_not_raw_scores():
    judgments = {"q1": {"d1": 1}, "q2": {"d5": 2, "d6": 1}}
    run = run_of("a", {"q1": ranked("d2", "d1"), "q2": ranked("d5")})
    evaluation = evaluate_runs(judgments, [run])
    q1 = evaluation.per_query["a"]["q1"]
    assert q1["mrr@10"] == pytest.approx(0.5)
    assert q1["ndcg@10"] == pytest.approx(1 / math.log2(3))
    assert q1["recall@10"] == pytest.approx(1.0)
    assert evaluation.per_query["a"]["q2"]["recall@10"] == pytest.approx(0.5)
    assert evaluation.means["a"]["mrr@10"] == pytest.approx(0.75)


def test_unanswered_and_unjudged_queries_are_handled_explicitly():
    judgments = {"q1": {"d1": 1}, "q2": {"d2": 1}}
    run = run_of("a", {"q1": ranked("d1"), "q2": [], "q3": ranked("d1")})
    evaluation = evaluate_runs(judgments, [run])
    assert evaluation.query_ids == ["q1", "q2"]
    assert evaluation.unjudged_queries == ["q3"]
    assert evaluation.means["a"]["ndcg@10"] == pytest.approx(0.5)


def test_significance_separates_a_clear_win_from_no_difference():
    queries = [f"q{i}" for i in range(20)]
    judgments = {q: {"rel": 1} for q in queries}
    filler = [f"x{i}" for i in range(9)]
    good = run_of("good", {q: ranked("rel", *filler) for q in queries})
    bad = run_of("bad", {q: ranked(*filler, "rel") for q in queries})
    same = run_of("same", {q: ranked("rel", *filler) for q in queries})
    evaluation = evaluate_runs(judgments, [good, bad, same])
    assert evaluation.baseline == "good"
    assert evaluation.comparisons["bad"].significant["ndcg@10"]
    assert evaluation.comparisons["bad"].p_values["mrr@10"] < 0.05
    assert evaluation.comparisons["bad"].win_tie_loss["mrr@10"]["L"] == 20
    assert not evaluation.comparisons["same"].significant["ndcg@10"]
    fisher = evaluate_runs(judgments, [good, bad], stat_test="fisher")
    assert fisher.comparisons["bad"].significant["map"]


@pytest.fixture
def experiment(settings, make_catalog, tmp_path):
    catalog = make_catalog()
    Ingestor(settings).run(IngestOptions(catalog, "shop"))
    queries = write_jsonl(
        tmp_path / "queries.jsonl",
        [
            {"id": "blue", "text": "blue"},
            {"id": "red", "text": "red mug"},
            {"id": "yellow-picture", "image": str(catalog.parent / "img" / "yellow.png")},
            {"id": "kitchen-green", "text": "green", "where": "category = 'kitchen'"},
            {"id": "no-judgments", "text": "tea"},
        ],
    )
    qrels = tmp_path / "qrels.txt"
    qrels.write_text(
        "blue 0 item-2 1\nred 0 item-0 2\nyellow-picture 0 item-3 1\nkitchen-green 0 item-1 1\n"
    )
    return settings, queries, qrels


def test_builtin_experiment_over_a_real_collection(experiment, tmp_path):
    settings, queries, qrels = experiment
    outcome = run_evaluation(settings, "shop", queries, qrels, k=10, out=tmp_path / "out")
    results = results_of(outcome.summary)
    assert list(results)[:4] == ["keyword", "text-vector", "image-vector", "hybrid-rrf"]
    keyword = outcome.evaluation.per_query["keyword"]
    assert keyword["blue"]["ndcg@10"] == pytest.approx(1.0)
    assert keyword["red"]["mrr@10"] == pytest.approx(1.0)
    assert keyword["yellow-picture"]["ndcg@10"] == 0.0  # a text signal cannot answer a picture
    # item-1 (green) is filed under 'office', so the filter inside the store hides it
    assert keyword["kitchen-green"]["recall@100"] == 0.0
    assert outcome.evaluation.per_query["image-vector"]["yellow-picture"]["mrr@10"] == 1.0
    details = outcome.summary["details"]
    assert details["configurations"]["keyword"]["answered"] == 4
    assert details["configurations"]["image-vector"]["answered"] == 1
    assert details["queries"] == {"evaluated": 4, "without_judgments": 1}
    assert results["hybrid-rrf"]["ndcg@10"] >= results["text-vector"]["ndcg@10"] - 1e-9


def test_reports_are_written_and_self_contained(experiment, tmp_path):
    settings, queries, qrels = experiment
    configs = [make_config("kw", {"signals": ["keyword"]}), make_config("all", {})]
    outcome = run_evaluation(
        settings, "shop", queries, qrels, configs=configs, k=10, out=tmp_path / "out"
    )
    out = tmp_path / "out"
    saved = json.loads((out / "results.json").read_text())
    assert saved["kw"] == outcome.summary["kw"]
    assert saved["significance"]["baseline"] == "kw"
    assert set(saved["significance"]["comparisons"]["all"]["ndcg@10"]) >= {"p_value", "significant"}
    rows = json.loads((out / "per-query" / "kw.json").read_text())
    assert [row["query_id"] for row in rows] == ["blue", "red", "yellow-picture", "kitchen-green"]
    assert rows[0]["top"][0] == {
        "id": "item-2",
        "score": pytest.approx(rows[0]["top"][0]["score"]),
        "grade": 1,
    }
    csv_lines = (out / "per-query" / "all.csv").read_text().splitlines()
    assert csv_lines[0].startswith("query_id,text,image,answered,relevant,ndcg@10")
    assert len(csv_lines) == 5
    assert (out / "metrics.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    markdown = (out / "report.md").read_text()
    assert "| kw |" in markdown and "![metrics](metrics.png)" in markdown
    page = (out / "report.html").read_text()
    assert "data:image/png;base64," in page
    assert "http://" not in page and "https://" not in page and "<script" not in page


def test_eval_cli_json_and_config_files(experiment, tmp_path):
    settings, queries, qrels = experiment
    config = tmp_path / "dense.toml"
    config.write_text('signals = ["text_vector"]\ncandidates = 20\n')
    runner = CliRunner()
    args = ["eval", "-c", "shop", "--queries", str(queries), "--qrels", str(qrels)]
    args += ["--home", str(settings.home), "--k", "10"]
    # The CLI reads settings from the environment; point its encoders at the fakes.
    env = {"MMSEARCH_TEXT_ENCODER": "fake-text", "MMSEARCH_IMAGE_ENCODER": "fake-image"}
    result = runner.invoke(app, [*args, "--config", str(config), "--json"], env=env)
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert set(results_of(data)) == {"dense"}
    assert data["dense"]["ndcg@10"] is not None

    bad = tmp_path / "bad.toml"
    bad.write_text("weigths = {keyword = 1.0}\n")
    result = runner.invoke(app, [*args, "--config", str(bad)], env=env)
    assert result.exit_code == 2
    assert "unknown key(s) weigths" in result.output
    assert "Traceback" not in result.output


def test_bench_cli_reports_latency_per_mode(experiment):
    settings, _, _ = experiment
    result = CliRunner().invoke(
        app, ["bench", "-c", "shop", "--queries", "5", "--home", str(settings.home), "--json"]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert {"keyword", "text_vector", "text_hybrid", "image", "text+image"} <= set(data["modes"])
    for stats in data["modes"].values():
        assert stats["count"] == 5
        assert 0 < stats["p50"] <= stats["p95"] <= stats["p99"]
    assert data["items"] == 5 and data["peak_rss_mb"] > 0


def test_eval_cli_missing_collection_is_a_clean_error(tmp_path):
    queries = write_jsonl(tmp_path / "q.jsonl", [{"id": "a", "text": "x"}])
    qrels = tmp_path / "r.txt"
    qrels.write_text("a 0 b 1\n")
    result = CliRunner().invoke(
        app,
        [
            *("eval", "-c", "nothing", "--queries", str(queries), "--qrels", str(qrels)),
            *("--home", str(tmp_path / "ws")),
        ],
    )
    assert result.exit_code == 2
    assert "error:" in result.output and "Traceback" not in result.output


def test_paths_in_the_report_header_point_to_inputs(experiment, tmp_path):
    settings, queries, qrels = experiment
    outcome = run_evaluation(settings, "shop", queries, qrels, k=10)
    info = outcome.summary["details"]["experiment"]
    assert Path(info["queries_file"]) == queries and Path(info["judgments_file"]) == qrels
    assert info["extra"]["encoders"] == {"text": "fake-text", "image": "fake-image"}
    assert outcome.files == {}


def test_groups_run_every_query_as_that_caller(settings, make_catalog, tmp_path):
    secret = {
        "id": "secret",
        "title": "blue secret mug",
        "category": "office",
        "price": 9.5,
        "in_stock": True,
        "acl": ["staff"],
    }
    Ingestor(settings).run(IngestOptions(make_catalog([secret]), "shop"))
    queries = write_jsonl(
        tmp_path / "q.jsonl", [{"id": "s", "text": "secret"}, {"id": "b", "text": "blue"}]
    )
    qrels = tmp_path / "qrels.txt"
    qrels.write_text("s 0 secret 1\nb 0 item-2 1\n")
    kw = [make_config("kw", {"signals": ["keyword"]})]

    def recall(groups):
        outcome = run_evaluation(settings, "shop", queries, qrels, configs=kw, groups=groups)
        return outcome.evaluation.per_query["kw"]["s"]["recall@10"]

    assert recall(None) == 1.0  # the operator sees everything
    assert recall([]) == 0.0
    assert recall(["staff"]) == 1.0
    assert recall(["other"]) == 0.0


def test_a_bad_where_in_the_queries_file_names_the_query_before_searching(experiment, tmp_path):
    settings, _, qrels = experiment
    queries = write_jsonl(
        tmp_path / "bad.jsonl",
        [{"id": "fine", "text": "blue"}, {"id": "typo", "text": "red", "where": "size = 3"}],
    )
    with pytest.raises(EvaluationError) as raised:
        run_evaluation(settings, "shop", queries, qrels, k=10)
    assert str(raised.value).startswith("Query 'typo': The filter is not allowed at position 1")
    assert "search_text" not in str(raised.value)
