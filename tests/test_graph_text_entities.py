"""Entities found in text: phrases mined from a catalog's text by log-likelihood ratio,
known entity names matched in text, their item edges and co-occurrence in a build made
by a real ingest, and a query naming a mined phrase routed through it."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import chi2_contingency
from typer.testing import CliRunner

from mmsearch.catalog.mapping import FieldMapping, validate_mapping
from mmsearch.cli import app
from mmsearch.errors import CatalogError
from mmsearch.graph.phrases import log_likelihood_ratio, mine_phrases
from mmsearch.graph.store import load_graph
from mmsearch.graph.words import text_segments
from mmsearch.ingest import IngestOptions, Ingestor
from mmsearch.search.request import SearchRequest
from mmsearch.search.searcher import Searcher
from mmsearch.workspace import Workspace

ITEMS = 40
FILLER = [f"{a}{b}" for a in ("bra", "cle", "dro", "fen", "gal") for b in "kmnprstvwxyz"]
# Sentences and the items whose description holds them (each sentence twice).
PLANTED = {
    "the boundary layer grows": range(0, 4),
    "heat transfer was measured": range(4, 7),
    "heat transfers were measured": range(7, 8),  # the plural: the same entity
    "the angle of attack varies": range(8, 12),
    "of the": range(12, 16),  # stop words only
    "a blue whale swam": range(16, 18),  # too rare
    "common flow everywhere": range(0, ITEMS),  # on every item: no name singles one out
    "made by acme": range(20, 24),  # a known maker named in text
    "the nature of it": range(24, 28),  # a maker's name that is a common word here
    "as in e.g the": range(30, 33),  # a maker's "name" that is an abbreviation
}


def descriptions() -> list[str]:
    rng = random.Random(7)
    out = []
    for item in range(ITEMS):
        parts = [" ".join(rng.choice(FILLER) for _ in range(12))]
        for sentence, holders in PLANTED.items():
            if item in holders:
                parts += [sentence, " ".join(rng.choice(FILLER) for _ in range(4)), sentence]
        out.append(" . ".join(parts) + " .")
    return out


def maker(item: int) -> str:
    return "Acme" if item < 5 else "Nature" if item == 5 else "E.g" if item == 6 else "Globex"


@pytest.fixture
def lab(settings, tmp_path: Path):
    catalog = tmp_path / "reports.jsonl"
    rows = [
        {"id": f"r{i}", "title": f"report {i}", "description": text, "maker": maker(i)}
        for i, text in enumerate(descriptions())
    ]
    catalog.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    mapping = FieldMapping(
        id="id",
        title="title",
        text=["description"],
        attributes=["maker"],
        entities=["maker"],
        entity_text_fields=["title", "description"],
        entity_phrases=50,
    )
    Ingestor(settings).run(IngestOptions(catalog, "lab", mapping))
    folder = Workspace(settings.home).collection("lab")
    stored = load_graph(folder.build_dir(folder.live_manifest().build_id))
    assert stored is not None
    return settings, stored


def test_mining_finds_the_planted_phrases_and_not_stop_words_or_rare_pairs():
    mined = {p.text: p for p in mine_phrases([text_segments(t) for t in descriptions()], limit=50)}
    assert {"boundary layer", "heat transfer", "angle of attack", "common flow"} <= set(mined)
    assert mined["boundary layer"].count == 8 and mined["boundary layer"].items == 4
    assert not {"of the", "blue whale", "the boundary", "the angle"} & set(mined)
    assert all(p.llr >= 10.83 for p in mined.values())
    # The limit keeps the strongest.
    strongest = mine_phrases([text_segments(t) for t in descriptions()], limit=2)
    assert [p.text for p in strongest] == sorted(mined, key=lambda t: -mined[t].llr)[:2]


def test_the_likelihood_ratio_is_the_g_test_of_the_two_by_two_table():
    for k11, row, col, n in [(8, 30, 12, 1000), (3, 50, 40, 5000), (20, 25, 22, 300)]:
        ours = log_likelihood_ratio(
            np.array([k11], dtype=float),
            np.array([row], dtype=float),
            np.array([col], dtype=float),
            float(n),
        )
        table = [[k11, row - k11], [col - k11, n - row - col + k11]]
        result = chi2_contingency(table, correction=False, lambda_="log-likelihood")
        # scipy's result bunch is typed as an anonymous class
        statistic = result.statistic  # pyright: ignore[reportAttributeAccessIssue]
        assert float(ours[0]) == pytest.approx(float(statistic), rel=1e-9)
    # A pair seen less often than chance is no phrase.
    assert log_likelihood_ratio(np.array([1.0]), np.array([100.0]), np.array([100.0]), 1000.0)[
        0
    ] == pytest.approx(0.0)


def test_text_entities_carry_the_items_whose_text_names_them(lab):
    _, stored = lab
    graph = stored.graph
    items = {e.key: {graph.items[i] for i in e.items} for e in graph.entities}
    assert graph.text_fields == ["title", "description"] and graph.phrases > 0
    assert items["text:phrase=boundary layer"] == {f"r{i}" for i in range(4)}
    assert items["text:phrase=angle of attack"] == {f"r{i}" for i in range(8, 12)}
    assert items["text:phrase=heat transfer"] == {f"r{i}" for i in range(4, 8)}
    assert "text:phrase=heat transfers" not in items
    # A known name found in text: its own entity, the attribute's entity unchanged.
    assert items["text:maker=acme"] == {f"r{i}" for i in range(20, 24)}
    assert items["maker=acme"] == {f"r{i}" for i in range(5)}
    # On every item (over the share), too rare, stop words, or a common word: no entity.
    for key in ("common flow", "blue whale", "of the"):
        assert f"text:phrase={key}" not in items
    assert "text:maker=nature" not in items and "maker=nature" in items
    assert "text:maker=e.g" not in items and "maker=e.g" in items
    # Co-occurrence edges reach the text entities: boundary layer and the Acme maker
    # share items r0-r3.
    layer, acme = stored.by_key["text:phrase=boundary layer"], stored.by_key["maker=acme"]
    edges = stored.cooccurring[layer]
    assert any({edge.a, edge.b} == {layer, acme} and edge.count == 4 for edge in edges)


def test_a_query_naming_a_mined_phrase_is_routed_to_its_items(lab):
    settings, _ = lab
    result = Searcher(settings, "lab").search(
        SearchRequest(text="boundary layer separation", k=5, graph=True, explain=True)
    )
    assert result.routing is not None
    named = {(e.entity, e.kind) for e in result.routing.entities}
    assert ("text:phrase=boundary layer", "exact") in named
    boosted = {hit.id for hit in result.hits if "graph" in hit.signals}
    assert boosted and boosted <= {f"r{i}" for i in range(4)}
    plural = Searcher(settings, "lab").search(SearchRequest(text="heat transfers", graph=True))
    assert plural.routing is not None
    assert "text:phrase=heat transfer" in {e.entity for e in plural.routing.entities}
    quiet = Searcher(settings, "lab").search(SearchRequest(text="of the", k=5, graph=True))
    assert quiet.routing is None or not any(
        e.entity.startswith("text:") for e in quiet.routing.entities
    )


def test_an_entity_text_field_must_be_stored_text():
    mapping = FieldMapping(
        id="id",
        title="title",
        text=["description"],
        attributes=["maker"],
        entity_text_fields=["maker"],
    )
    with pytest.raises(CatalogError, match=r"Entity text field.*maker.*neither the title nor"):
        validate_mapping(mapping)


def test_the_ingest_options_make_text_entities_of_known_names_only(tmp_path: Path):
    """``--entity-text-field`` with ``--entity-phrases 0``: the maker's name found in
    text is an entity, no phrase is mined; ``mmsearch graph build`` remakes the same."""
    catalog = tmp_path / "reports.jsonl"
    rows = [
        {"id": f"r{i}", "title": f"report {i}", "description": text, "maker": maker(i)}
        for i, text in enumerate(descriptions())
    ]
    catalog.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    runner = CliRunner(env={"MMSEARCH_TEXT_ENCODER": "fake-text"})
    home = ["-c", "lab", "--home", str(tmp_path / "ws")]
    options = ["--id-field", "id", "--title-field", "title", "--text-field", "description"]
    options += ["--attribute", "maker", "--entity-field", "maker"]
    options += ["--entity-text-field", "description", "--entity-phrases", "0"]
    result = runner.invoke(app, ["ingest", str(catalog), *home, *options])
    assert result.exit_code == 0, result.output

    def entities() -> dict[str, int]:
        shown = runner.invoke(app, ["graph", *home, "entities", "--limit", "50", "--json"])
        assert shown.exit_code == 0, shown.output
        return {e["entity"]: e["items"] for e in json.loads(shown.output)["entities"]}

    found = entities()
    assert found["text:maker=acme"] == 4 and found["maker=acme"] == 5
    assert not any(key.startswith("text:phrase=") for key in found)
    rebuilt = runner.invoke(app, ["graph", *home, "build", "--json"])
    assert rebuilt.exit_code == 0, rebuilt.output
    assert entities() == found
