"""The Cranfield builder on a hand-written miniature of the original file formats."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mmsearch.cli import app
from mmsearch.datasets.common import split_of
from mmsearch.datasets.cranfield import build_cranfield
from mmsearch.errors import EvaluationError
from mmsearch.evaluation.judgments import load_judgments
from mmsearch.evaluation.queries import load_queries
from mmsearch.ingest import IngestOptions, Ingestor

DOCS = """.I 1
.T
flow over a flat plate .
.A
smith,j.
.B
j. ae. scs. 1, 1950, 1.
.W
flow over a flat plate .
  boundary layer measurements on a plate .
.I 2
.T
heat transfer in hypersonic flow .
.A
.B
rep. 7.
.W
heat transfer at high mach numbers .
.I 3
.T
wing flutter .
.A
doe,a.
.B
.W
flutter of swept wings .
.I 4
.W
stray record without the usual fields
"""
QUERIES = """.I 001
.W
boundary layer on a flat plate .
.I 004
.W
heat transfer at high speed
 in hypersonic flow .
.I 009
.W
flutter .
"""
QRELS = "1 1 1\n1 3 -1\n2 2 2\n2 1 4\n3 3 3\n"


@pytest.fixture
def source(tmp_path: Path) -> Path:
    folder = tmp_path / "cranfield"
    folder.mkdir()
    (folder / "cran.all.1400").write_text(DOCS)
    (folder / "cran.qry").write_text(QUERIES)
    (folder / "cranqrel").write_text(QRELS)
    return folder


def test_query_ids_are_positions_and_grades_are_inverted(source, tmp_path):
    stats = build_cranfield(source, tmp_path / "out")
    queries = load_queries(tmp_path / "out" / "queries.jsonl")
    assert [q.id for q in queries] == ["1", "2", "3"]  # not the .I numbers 001, 004, 009
    assert queries[1].text == "heat transfer at high speed in hypersonic flow ."
    assert queries[1].extra["source_number"] == "004"
    assert load_judgments(tmp_path / "out" / "qrels.txt") == {
        "1": {"1": 4},  # the -1 line is dropped
        "2": {"2": 3, "1": 1},
        "3": {"3": 2},
    }
    assert (stats.documents, stats.queries, stats.judgments) == (3, 3, 4)
    assert stats.skipped_documents == ["4"]


def test_catalog_fields_and_dev_test_split(source, tmp_path):
    build_cranfield(source, tmp_path / "out")
    rows = [
        json.loads(line) for line in (tmp_path / "out" / "catalog.jsonl").read_text().splitlines()
    ]
    assert rows[0] == {
        "id": "1",
        "title": "flow over a flat plate .",
        "author": "smith,j.",
        "bibliography": "j. ae. scs. 1, 1950, 1.",
        "text": "flow over a flat plate . boundary layer measurements on a plate .",
    }
    assert rows[1]["author"] == ""
    splits = {q.id: q.extra["split"] for q in load_queries(tmp_path / "out" / "queries.jsonl")}
    assert splits == {query_id: split_of(query_id) for query_id in ("1", "2", "3")}
    for split in ("dev", "test"):
        part = load_queries(tmp_path / "out" / f"queries-{split}.jsonl")
        assert {q.id for q in part} == {q for q, s in splits.items() if s == split}


def test_split_is_stable_and_roughly_even():
    ids = [str(i) for i in range(1, 401)]
    first = [split_of(i) for i in ids]
    assert first == [split_of(i) for i in ids]
    assert 150 < first.count("dev") < 250


def test_limit_keeps_judged_documents_and_distractors(source, tmp_path):
    stats = build_cranfield(source, tmp_path / "out", limit_queries=1, extra_documents=1)
    ids = [
        json.loads(line)["id"]
        for line in (tmp_path / "out" / "catalog.jsonl").read_text().splitlines()
    ]
    assert ids == ["1", "2"]  # doc 1 is judged for query 1; doc 2 is the first distractor
    assert stats.queries == 1


def test_catalog_ingests_with_the_guessed_mapping(source, tmp_path, settings):
    build_cranfield(source, tmp_path / "out")
    report = Ingestor(settings).run(IngestOptions(tmp_path / "out" / "catalog.jsonl", "cran"))
    assert report.mapping.id == "id" and report.mapping.title == "title"
    assert report.mapping.text == ["text"]
    assert set(report.mapping.attributes or []) == {"author", "bibliography"}
    assert report.counts["added"] == 3 and not report.errors


def test_missing_files_and_cli(source, tmp_path):
    with pytest.raises(EvaluationError, match=r"lacks cran\.all\.1400"):
        build_cranfield(tmp_path, tmp_path / "out")
    result = CliRunner().invoke(
        app, ["datasets", "cranfield", str(source), str(tmp_path / "cli"), "--json"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["queries"] == 3
    result = CliRunner().invoke(app, ["datasets", "cranfield", str(tmp_path), str(tmp_path / "x")])
    assert result.exit_code == 2 and "lacks" in result.output
