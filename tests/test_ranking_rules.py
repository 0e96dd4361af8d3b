"""Business rules: file validation, store filters, boosts, pins, blocks, diversity, dedupe."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mmsearch.filters.expr import And, Compare, InList, Not, Visible
from mmsearch.ingest import IngestOptions, Ingestor
from mmsearch.ranking.apply_rules import apply_rules
from mmsearch.ranking.rules import Condition, RulesError, RuleSet, load_rules
from mmsearch.search.request import SearchRequest
from mmsearch.search.searcher import Searcher

RULES_YAML = """
version: "shop-7"
filters:
  - name: office-only
    query: {pattern: "^office", match: regex}
    conditions: [{attribute: category, op: "=", value: office}]
boosts:
  - name: cheap
    conditions: [{attribute: price, op: "<", value: 6.5}]
    multiply: 10
pins:
  - name: mug-landing
    query: {pattern: "Mug", match: exact}
    items: [{id: item-4, position: 1}]
blocks:
  - name: recalled
    ids: [item-3]
"""


def write(tmp_path: Path, text: str, name: str = "rules.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def rules(**data) -> RuleSet:
    return RuleSet.model_validate({"version": "t", **data})


def test_yaml_and_toml_load_to_the_same_rules(tmp_path):
    yaml_rules = load_rules(write(tmp_path, RULES_YAML))
    toml = """
version = "shop-7"
[[boosts]]
name = "cheap"
multiply = 10
conditions = [{attribute = "price", op = "<", value = 6.5}]
"""
    toml_rules = load_rules(write(tmp_path, toml, "rules.toml"))
    assert yaml_rules.version == toml_rules.version == "shop-7"
    assert yaml_rules.boosts == toml_rules.boosts


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("boosts: []", "version"),
        ("version: 1\nboosts: [{conditions: [{attribute: a, value: 1}]}]", "multiply"),
        ("version: 1\nfilters: [{conditions: [{attribute: 'a; drop', value: 1}]}]", "column"),
        ("version: 1\nfilters: [{conditions: [{attribute: a, op: in, value: 1}]}]", "list"),
        ("version: 1\npins: [{query: {pattern: '(', match: regex}, items: [{id: x}]}]", "regex"),
        ("version: 1\nsurprise: 1", "surprise"),
        ("- just a list", "mapping"),
    ],
)
def test_invalid_rules_files_say_what_is_wrong(tmp_path, text, message):
    with pytest.raises(RulesError, match=message):
        load_rules(write(tmp_path, text))


def test_missing_rules_file_is_a_user_error(tmp_path):
    with pytest.raises(RulesError, match="does not exist"):
        load_rules(tmp_path / "nope.yaml")


def test_conditions_become_filter_nodes_and_evaluate_on_rows():
    condition = Condition(attribute="brand", op="in", value=["O'Neil", "Acme"])
    assert condition.to_filter() == InList("brand", ("O'Neil", "Acme"))
    assert condition.matches({"brand": "Acme"}) and not condition.matches({"brand": None})
    excluded = Condition(attribute="brand", op="not in", value=["Acme"])
    assert excluded.to_filter() == InList("brand", ("Acme",), negated=True)
    assert not excluded.matches({"brand": None}) and excluded.matches({"brand": "Other"})
    assert Condition(attribute="in_stock", value=True).to_filter() == Compare("in_stock", "=", True)
    assert not Condition(attribute="price", op="<", value=3).matches({"price": "cheap"})


def test_store_filter_combines_scoped_filters_and_blocks():
    ruleset = load_rules_text(RULES_YAML)
    blocked = Not(InList("id", ("item-3",)))
    assert ruleset.store_filter("office chairs") == And(
        (Compare("category", "=", "office"), blocked)
    )
    assert ruleset.store_filter("mug") == blocked


def load_rules_text(text: str) -> RuleSet:
    import yaml

    return RuleSet.model_validate(yaml.safe_load(text))


SCORES = {"a": 0.5, "b": 0.4, "c": 0.3, "d": 0.2}
ROWS = {
    "a": {"brand": "x", "price": 10.0},
    "b": {"brand": "x", "price": 3.0},
    "c": {"brand": "x", "price": 20.0},
    "d": {"brand": "y", "price": 1.0},
}


def test_multiplicative_and_additive_boosts_reorder_and_are_recorded():
    ruleset = rules(
        boosts=[
            {
                "name": "cheap",
                "conditions": [{"attribute": "price", "op": "<", "value": 5}],
                "multiply": 2,
            },
            {"conditions": [{"attribute": "brand", "value": "y"}], "add": 0.05},
        ]
    )
    out = apply_rules(ruleset, "q", SCORES, ROWS, k=4, phash_column=None)
    assert out.scores["b"] == pytest.approx(0.8) and out.scores["d"] == pytest.approx(0.45)
    assert out.order == ["b", "a", "d", "c"]
    assert [a.rule for a in out.applied["d"]] == ["cheap", "boost[1]"]
    assert "c" not in out.applied


def test_multiplicative_boost_raises_negative_scores_too():
    ruleset = rules(boosts=[{"conditions": [{"attribute": "brand", "value": "y"}], "multiply": 2}])
    out = apply_rules(ruleset, "q", {"a": -1.0, "d": -2.0}, ROWS, k=2, phash_column=None)
    assert out.scores["d"] == pytest.approx(0.0) and out.order == ["d", "a"]


def test_pins_land_at_their_positions_and_blocks_win_over_pins():
    ruleset = rules(
        pins=[
            {
                "query": {"pattern": "lamp"},
                "items": [{"id": "d", "position": 1}, {"id": "c", "position": 3}],
            }
        ],
        blocks=[{"ids": ["a"]}],
    )
    out = apply_rules(ruleset, " LAMP ", SCORES, ROWS, k=4, phash_column=None)
    assert out.order == ["d", "b", "c"]
    assert out.applied["d"][0].kind == "pin"
    other = apply_rules(ruleset, "lamps", SCORES, ROWS, k=4, phash_column=None)
    assert other.order == ["b", "c", "d"]  # exact pattern: no pins; the block still holds


def test_diversity_caps_items_per_attribute_value():
    ruleset = rules(diversity={"max_per_value": {"attribute": "brand", "limit": 1}})
    out = apply_rules(ruleset, "q", SCORES, ROWS, k=2, phash_column=None)
    assert out.order[:2] == ["a", "d"]
    assert out.applied["b"][0].kind == "diversity"


def test_mmr_prefers_a_different_item_over_a_near_copy():
    vectors = {
        "a": np.array([1.0, 0.0]),
        "b": np.array([1.0, 0.0]),
        "c": np.array([0.0, 1.0]),
        "d": np.array([0.0, 1.0]),
    }
    ruleset = rules(diversity={"mmr": {"signal": "text_vector", "lambda": 0.5}})
    out = apply_rules(ruleset, "q", SCORES, ROWS, k=2, phash_column=None, vectors=vectors)
    assert out.order[:2] == ["a", "c"]
    plain = rules(diversity={"mmr": {"signal": "text_vector", "lambda": 1.0}})
    assert apply_rules(plain, "q", SCORES, ROWS, k=2, phash_column=None, vectors=vectors).order[
        :2
    ] == ["a", "b"]


def test_dedupe_keeps_the_best_of_a_hash_cluster_or_warns_without_hashes():
    rows = {
        "a": {"image_phash": [0b1111]},
        "b": {"image_phash": [0b1110]},  # 1 bit from a
        "c": {"image_phash": [-1]},  # far from both
        "d": {"image_phash": []},
    }
    ruleset = rules(dedupe={"max_hamming": 2})
    out = apply_rules(ruleset, "q", SCORES, rows, k=4, phash_column="image_phash")
    assert out.order == ["a", "c", "d"]
    assert "kept over near-duplicate b" in out.applied["a"][0].detail
    skipped = apply_rules(ruleset, "q", SCORES, rows, k=4, phash_column=None)
    assert skipped.order == ["a", "b", "c", "d"] and "no perceptual-hash" in skipped.warnings[0]


@pytest.fixture
def searcher(settings, make_catalog) -> Searcher:
    Ingestor(settings).run(IngestOptions(make_catalog(), "shop"))
    return Searcher(settings, "shop")


def test_rules_file_applies_in_search_and_hits_record_it(searcher, tmp_path):
    path = write(tmp_path, RULES_YAML)
    result = searcher.search(SearchRequest(text="mug", k=5, rules=path, explain=True))
    ids = [hit.id for hit in result.hits]
    assert "item-3" not in ids  # blocked inside the store query
    assert ids[0] == "item-4" and result.hits[0].rules == ["mug-landing"]
    cheap = {hit.id for hit in result.hits if "cheap" in hit.rules}
    assert cheap == {"item-0", "item-1"}
    explanation = result.hits[0].explanation
    assert explanation is not None and explanation.rules_version == "shop-7"
    assert result.rules_version == "shop-7"

    office = searcher.search(SearchRequest(text="office mug", k=5, rules=path))
    assert {hit.attributes["category"] for hit in office.hits} == {"office"}
    assert {hit.id for hit in office.hits} == {"item-1"}


def test_pinned_item_outside_the_candidates_is_fetched_if_it_passes_the_filter(searcher, tmp_path):
    path = write(
        tmp_path,
        "version: 2\npins: [{query: {pattern: red}, items: [{id: item-4, position: 1}]}]\n",
    )
    result = searcher.search(SearchRequest(text="red", k=3, signals=["keyword"], rules=path))
    assert result.hits[0].id == "item-4"
    filtered = searcher.search(
        SearchRequest(text="red", k=3, signals=["keyword"], rules=path, where="price < 6")
    )
    assert "item-4" not in [hit.id for hit in filtered.hits]


def test_pinned_items_are_fetched_only_if_the_caller_may_see_them(settings, make_catalog, tmp_path):
    staff_only = {"id": "item-9", "title": "staff kettle", "category": "office", "price": 1.0}
    catalog = make_catalog([{**staff_only, "in_stock": True, "acl": ["staff"]}])
    Ingestor(settings).run(IngestOptions(catalog, "acl"))
    searcher = Searcher(settings, "acl")
    path = write(
        tmp_path,
        "version: 3\npins: [{query: {pattern: red}, items: [{id: item-9, position: 1}]}]\n",
    )

    def top(**request) -> list[str]:
        found = searcher.search(SearchRequest(text="red", k=3, signals=["keyword"], **request))
        return [hit.id for hit in found.hits]

    assert top(rules=path)[0] == "item-9"  # unrestricted operator
    assert top(rules=path, access=Visible(frozenset({"staff"}), True))[0] == "item-9"
    assert "item-9" not in top(rules=path, access=Visible(frozenset({"other"}), True))
    assert "item-9" not in top(rules=path, filter=Compare("price", ">", 2))


def test_rules_on_unknown_columns_are_refused(searcher, tmp_path):
    path = write(
        tmp_path,
        "version: 1\nboosts: [{conditions: [{attribute: colour, value: red}], multiply: 2}]\n",
    )
    with pytest.raises(RulesError, match="colour"):
        searcher.search(SearchRequest(text="mug", rules=path))


def test_settings_default_rules_and_switching_them_off(settings, make_catalog, tmp_path):
    Ingestor(settings).run(IngestOptions(make_catalog(), "shop"))
    path = write(tmp_path, RULES_YAML)
    searcher = Searcher(settings.model_copy(update={"rules": path}), "shop")
    assert searcher.search(SearchRequest(text="mug")).hits[0].id == "item-4"
    off = searcher.search(SearchRequest(text="mug", rules="none"))
    assert off.rules_version is None and "item-3" in {hit.id for hit in off.hits}
