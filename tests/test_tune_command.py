"""`mmsearch tune`: the chosen fusion is stored with the build and used by default."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from mmsearch.cli import app
from mmsearch.ingest import IngestOptions, Ingestor
from mmsearch.ranking.tuning import load_tuned
from mmsearch.search.request import SearchRequest
from mmsearch.search.searcher import Searcher
from mmsearch.search.tuning import split_of

from conftest import write_jsonl

WORDS = ["teapot", "kettle", "saucer", "ladle", "whisk", "sieve"]


def test_tune_stores_a_choice_no_worse_than_the_best_signal(settings, tmp_path, monkeypatch):
    rows: list[dict[str, object]] = [
        {
            "id": f"k{i}",
            "title": f"{WORDS[i % 6]} model {i}",
            "text": f"with a {WORDS[(i + 1) % 6]}",
        }
        for i in range(24)
    ]
    Ingestor(settings).run(IngestOptions(write_jsonl(tmp_path / "c.jsonl", rows), "kitchen"))
    queries = [{"id": f"q{n}-{word}", "text": word} for n in range(3) for word in WORDS]
    assert {split_of(str(q["id"])) for q in queries} == {"dev", "test"}
    write_jsonl(tmp_path / "q.jsonl", queries)  # type: ignore[arg-type]
    qrels = [
        f"{q['id']} 0 {row['id']} 1"
        for q in queries
        for row in rows
        if str(row["title"]).startswith(str(q["text"]))
    ]
    (tmp_path / "qrels.txt").write_text("\n".join(qrels) + "\n", encoding="utf-8")
    monkeypatch.setenv("MMSEARCH_TEXT_ENCODER", "fake-text")
    monkeypatch.setenv("MMSEARCH_IMAGE_ENCODER", "fake-image")
    args = ["tune", "-c", "kitchen", "--queries", str(tmp_path / "q.jsonl")]
    args += ["--qrels", str(tmp_path / "qrels.txt"), "--home", str(settings.home), "--json"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    searcher = Searcher(settings, "kitchen")
    tuned = load_tuned(searcher.folder.build_dir(searcher.build_id))
    assert tuned is not None and out["stored"]
    assert tuned.dev_ndcg10 >= tuned.dev_best_single and tuned.dev_ndcg10 >= tuned.dev_rrf
    assert tuned.test is not None and tuned.test.queries > 0
    # Searches that name no fusion use the stored one; a request's own choice wins.
    assert searcher.search(SearchRequest(text="teapot")).fusion == tuned.choice.method
    own = "dbsf" if tuned.choice.method != "dbsf" else "rrf"
    assert searcher.search(SearchRequest(text="teapot", fusion=own)).fusion == own


def test_tune_refuses_queries_without_judgments(settings, tmp_path):
    rows: list[dict[str, object]] = [{"id": "a", "title": "teapot"}]
    Ingestor(settings).run(IngestOptions(write_jsonl(tmp_path / "c.jsonl", rows), "kitchen"))
    write_jsonl(tmp_path / "q.jsonl", [{"id": "q1", "text": "teapot"}])
    (tmp_path / "qrels.txt").write_text("other 0 a 1\n", encoding="utf-8")
    args = ["tune", "-c", "kitchen", "--queries", str(tmp_path / "q.jsonl")]
    args += ["--qrels", str(tmp_path / "qrels.txt"), "--home", str(settings.home)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code != 0
    assert "No query has judgments" in result.output
