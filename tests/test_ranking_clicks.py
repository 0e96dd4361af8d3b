"""Click logs → implicit judgments with inverse-propensity weighting."""

from __future__ import annotations

import pytest

from mmsearch.ranking.clicks import (
    ClickEvent,
    ClickLogError,
    grade,
    implicit_judgments,
    propensity,
    query_id,
    read_click_log,
)

from conftest import write_jsonl


def test_propensity_follows_one_over_rank_to_the_eta():
    assert propensity(1) == 1.0
    assert propensity(4, eta=1.0) == 0.25
    assert propensity(4, eta=0.5) == 0.5
    assert propensity(7, eta=0.0) == 1.0


def test_clicks_low_in_the_list_count_more_than_clicks_at_the_top():
    events = [
        ClickEvent("Red Mug", ["a", "b", "c", "d"], ["a"]),
        ClickEvent("red  mug", ["a", "b", "c", "d"], ["d"]),
        ClickEvent("red mug", ["a", "b", "c", "d"], []),
        ClickEvent("red mug", ["a", "b", "c", "d"], ["zz"]),  # not shown: ignored
    ]
    out = implicit_judgments(events, eta=1.0)
    qid = query_id("red mug", None)
    assert list(out.queries) == [qid] and out.pages == 4
    assert out.estimates[qid] == pytest.approx({"a": 1 / 4, "d": 4 / 4})
    assert out.judgments[qid] == {"a": 2, "d": 3}


def test_weights_are_clipped_and_eta_zero_turns_correction_off():
    events = [ClickEvent("q", [f"i{n}" for n in range(50)], ["i49"])]
    assert implicit_judgments(events, max_weight=10).estimates[query_id("q", None)] == {"i49": 10.0}
    assert implicit_judgments(events, eta=0.0).estimates[query_id("q", None)] == {"i49": 1.0}


def test_filters_separate_queries():
    events = [ClickEvent("q", ["a"], ["a"], where="price < 5"), ClickEvent("q", ["a"], ["a"])]
    assert len(implicit_judgments(events).queries) == 2


def test_grade_bins():
    assert [grade(v) for v in (0.0, 0.01, 0.2, 0.49, 0.5, 3.0)] == [0, 1, 2, 2, 3, 3]


def test_reading_a_log_accepts_one_or_many_clicks(tmp_path):
    path = write_jsonl(
        tmp_path / "c.jsonl",
        [
            {"query": "q", "shown": ["a", "b"], "clicked": "b"},
            {"query": "q", "shown": ["a", "b"], "clicked": ["a", "b"], "at": "2024-01-01"},
            {"query": "q", "shown": ["a"]},
        ],
    )
    events = read_click_log(path)
    assert [e.clicked for e in events] == [["b"], ["a", "b"], []]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"query": "", "shown": []}', "query"),
        ('{"query": "q", "shown": "a"}', "shown"),
        ('{"query": "q", "shown": ["a"], "clicked": 3}', "clicked"),
        ("not json", "not JSON"),
    ],
)
def test_bad_log_lines_name_the_line(tmp_path, line, message):
    path = tmp_path / "c.jsonl"
    path.write_text(line + "\n")
    with pytest.raises(ClickLogError, match=f"c.jsonl:1.*{message}|{message}"):
        read_click_log(path)
