"""Queries, judgments and configuration files: parsing and the errors users see."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmsearch.errors import EvaluationError
from mmsearch.evaluation.configs import (
    builtin_configs,
    check_unique_names,
    load_config_file,
    make_config,
)
from mmsearch.evaluation.judgments import load_judgments, write_trec_qrels
from mmsearch.evaluation.queries import EvalQuery, load_queries, write_queries
from mmsearch.ranking import fusion

from conftest import save_image


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_queries_resolve_images_relative_to_the_file_and_keep_extra_keys(tmp_path):
    save_image(tmp_path / "imgs" / "q.png", (10, 20, 30))
    path = write(
        tmp_path / "q.jsonl",
        '{"id": "a", "text": "red mug", "where": "price < 9", "split": "dev"}\n'
        "\n"
        '{"id": 7, "image": "imgs/q.png"}\n',
    )
    first, second = load_queries(path)
    assert (first.id, first.text, first.where, first.extra) == (
        "a",
        "red mug",
        "price < 9",
        {"split": "dev"},
    )
    assert first.modalities == {"text"}
    assert second.id == "7" and second.image == (tmp_path / "imgs" / "q.png").resolve()
    assert second.modalities == {"image"}


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "q.jsonl:2: not valid JSON"),
        ('["a"]', "q.jsonl:2: each line must be a JSON object"),
        ('{"text": "x"}', "q.jsonl:2: 'id' is missing"),
        ('{"id": "b"}', "q.jsonl:2: query 'b' needs 'text', 'image' or both"),
        ('{"id": "b", "text": 3}', "q.jsonl:2: 'text' must be a string"),
        ('{"id": "b", "image": "missing.png"}', "q.jsonl:2: image 'missing.png' not found"),
        ('{"id": "a", "text": "again"}', "q.jsonl:2: query id 'a' is already used on line 1"),
    ],
)
def test_malformed_query_lines_are_reported_with_their_line_number(tmp_path, line, message):
    path = write(tmp_path / "q.jsonl", '{"id": "a", "text": "ok"}\n' + line + "\n")
    with pytest.raises(EvaluationError, match=message):
        load_queries(path)


def test_queries_round_trip_with_relative_image_paths(tmp_path):
    image = save_image(tmp_path / "out" / "img" / "x.png", (1, 2, 3))
    path = write_queries(
        tmp_path / "out" / "q.jsonl",
        [EvalQuery("x", "t", image.resolve(), extra={"kind": "image"})],
    )
    assert '"image": "img/x.png"' in path.read_text()
    assert load_queries(path)[0].image == image.resolve()


def test_trec_and_jsonl_judgments_load_alike_and_drop_non_positive_grades(tmp_path):
    trec = write(
        tmp_path / "qrels.txt",
        "# comment\nq1 0 d1 2\nq1 0 d2 1\nq1 0 d3 0\nq2 0 d9 -1\nq3 0 d4 3\n",
    )
    jsonl = write(
        tmp_path / "qrels.jsonl",
        '{"query_id": "q1", "item_id": "d1", "relevance": 2}\n'
        '{"query_id": "q1", "item_id": "d2", "relevance": 1}\n'
        '{"query_id": "q3", "item_id": "d4", "relevance": 3.0}\n',
    )
    expected = {"q1": {"d1": 2, "d2": 1}, "q3": {"d4": 3}}
    assert load_judgments(trec) == expected
    assert load_judgments(jsonl) == expected
    assert load_judgments(write_trec_qrels(tmp_path / "again.txt", expected)) == expected


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("r.txt", "q1 0 d1 1\nq1 d2 1\n", "r.txt:2: expected 4 columns"),
        ("r.txt", "q1 0 d1 high\n", "r.txt:1: the grade must be an integer"),
        ("r.jsonl", '{"query_id": "q1", "item_id": "d1"}\n', "r.jsonl:1: missing key"),
        (
            "r.jsonl",
            '{"query_id": "q1", "item_id": "d1", "relevance": 1.5}\n',
            "must be an integer",
        ),
        ("r.jsonl", "oops\n", "r.jsonl:1: not valid JSON"),
        ("r.txt", "q1 0 d1 0\n", "no positive judgments"),
    ],
)
def test_malformed_judgments_name_the_line(tmp_path, name, content, message):
    with pytest.raises(EvaluationError, match=message):
        load_judgments(write(tmp_path / name, content))


def test_config_files_map_search_request_fields_generically(tmp_path):
    toml = load_config_file(
        write(tmp_path / "kw.toml", 'name = "bm25"\nsignals = ["keyword"]\ncandidates = 50\n')
    )
    assert toml.name == "bm25" and toml.options == {"signals": ["keyword"], "candidates": 50}
    request = toml.request(text="x", k=5, where=None)
    assert request.signals == ["keyword"] and request.candidates == 50 and request.k == 5
    yaml_config = load_config_file(write(tmp_path / "dense.yaml", "signals: [text_vector]\n"))
    assert yaml_config.name == "dense" and yaml_config.signals == ["text_vector"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            'name = "x"\nsignal = ["keyword"]\n',
            "unknown key\\(s\\) signal; a configuration may set",
        ),
        ('name = "x"\nk = 5\n', "k come from each query"),
        ('name = "x"\nfusion = "nope"\n', "unknown fusion 'nope'"),
        ('name = "x"\nsignals = "keyword"\n', "'signals' must be a list"),
        ('name = "x"\nsignals = [\n', "is not valid"),
    ],
)
def test_bad_config_files_say_what_to_fix(tmp_path, content, message):
    with pytest.raises(EvaluationError, match=message):
        load_config_file(write(tmp_path / "c.toml", content))


def test_builtin_set_depends_on_queries_collection_and_available_fusions(monkeypatch):
    names = [
        c.name for c in builtin_configs(has_text=True, has_image=False, has_image_vectors=True)
    ]
    assert names[:3] == ["keyword", "text-vector", "hybrid-rrf"]
    assert "image-vector" not in names
    names = [
        c.name for c in builtin_configs(has_text=True, has_image=True, has_image_vectors=False)
    ]
    assert "image-vector" not in names
    names = [
        c.name for c in builtin_configs(has_text=False, has_image=True, has_image_vectors=True)
    ]
    assert names[:2] == ["image-vector", "hybrid-rrf"]
    monkeypatch.setattr(fusion, "FUSIONS", {"rrf": fusion.FUSIONS["rrf"]})
    names = [
        c.name for c in builtin_configs(has_text=True, has_image=False, has_image_vectors=False)
    ]
    assert "hybrid-weighted" not in names
    monkeypatch.setattr(fusion, "FUSIONS", {**fusion.FUSIONS, "weighted": lambda r, **kw: {}})
    names = [
        c.name for c in builtin_configs(has_text=True, has_image=False, has_image_vectors=False)
    ]
    assert names[-1] == "hybrid-weighted"


def test_duplicate_and_reserved_configuration_names_are_rejected():
    with pytest.raises(EvaluationError, match="Two configurations are named 'a'"):
        check_unique_names([make_config("a", {}), make_config("a", {"fusion": "rrf"})])
    with pytest.raises(EvaluationError, match="reserved"):
        check_unique_names([make_config("significance", {})])
