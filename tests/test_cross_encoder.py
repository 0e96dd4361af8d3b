"""The cross-encoder option: a tiny random BERT cross-encoder saved to a temp folder.

Its scores are random but fixed, so the order a search returns can be checked against
what ``sentence_transformers.CrossEncoder`` itself says about the same pairs; the
folder is checked before anything is searched, with errors naming it.
"""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from mmsearch.catalog.mapping import FieldMapping
from mmsearch.cli import app
from mmsearch.collection_state import CrossEncoderSettings, RankingSettings
from mmsearch.errors import QueryError
from mmsearch.ranking.cross_encoder import (
    CrossEncoderChoice,
    CrossEncoderError,
    check_folder,
    clear_models,
    item_text,
    load_model,
    rescore_head,
    resolve_choice,
)
from mmsearch.workspace import Workspace
from tiny_cross_encoder import save_tiny_cross_encoder

MAPPING = FieldMapping(title="title", text=["description", "tags"])


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory):
    return save_tiny_cross_encoder(tmp_path_factory.mktemp("ce") / "tiny-ce")


def reference_scores(folder, query: str, texts: list[str], max_length: int) -> np.ndarray:
    from sentence_transformers import CrossEncoder

    model = CrossEncoder(str(folder), max_length=max_length, device="cpu", local_files_only=True)
    return np.asarray(model.predict([(query, t) for t in texts]), dtype=np.float64)


def test_a_missing_or_incomplete_folder_is_an_error_naming_it(tmp_path, model_folder):
    with pytest.raises(CrossEncoderError, match=str(tmp_path / "nowhere")):
        check_folder(tmp_path / "nowhere")
    broken = tmp_path / "broken"
    shutil.copytree(model_folder, broken)
    (broken / "model.safetensors").unlink()
    with pytest.raises(CrossEncoderError, match=r"broken is not a model: it lacks model\.safe"):
        check_folder(broken)
    (broken / "model.safetensors").write_text("not weights")
    (broken / "config.json").write_text("{")
    with pytest.raises(CrossEncoderError, match=r"config\.json cannot be read"):
        check_folder(broken)
    assert check_folder(model_folder) == model_folder.resolve()


def test_the_choice_follows_request_then_collection(model_folder):
    settings = RankingSettings(
        cross_encoder=CrossEncoderSettings(path=str(model_folder), top=20, fields=["title"])
    )
    choice = resolve_choice(settings, MAPPING, "shop", on=None, top=None)
    assert choice is not None and choice.top == 20 and choice.fields == ("title",)
    assert resolve_choice(settings, MAPPING, "shop", on=None, top=5).top == 5  # type: ignore[union-attr]
    assert resolve_choice(settings, MAPPING, "shop", on=False, top=None) is None
    quiet = RankingSettings(
        cross_encoder=CrossEncoderSettings(path=str(model_folder), default_on=False)
    )
    assert resolve_choice(quiet, MAPPING, "shop", on=None, top=None) is None
    assert resolve_choice(quiet, MAPPING, "shop", on=True, top=None) is not None
    with pytest.raises(QueryError, match="'shop' has no cross-encoder"):
        resolve_choice(None, MAPPING, "shop", on=True, top=None)
    assert resolve_choice(None, MAPPING, "shop", on=None, top=None) is None


def test_rescoring_follows_the_model_and_keeps_the_rest_below(model_folder):
    clear_models()
    rows = {
        f"i{n}": {"id": f"i{n}", "title": title, "texts_json": json.dumps({"description": body})}
        for n, (title, body) in enumerate(
            [
                ("red mug", "a red ceramic mug for coffee"),
                ("blue mug", "blue kitchen mug"),
                ("glider wing", "boundary layer of a glider wing"),
                ("engine parts", "spare engine parts kit"),
                ("green tea", "green tea for the office"),
                ("black mug", "black mug"),
            ]
        )
    }
    order = [f"i{n}" for n in range(6)]
    scores = {item_id: 1.0 - 0.1 * n for n, item_id in enumerate(order)}
    choice = CrossEncoderChoice(model_folder, top=4, fields=("title", "description"), max_length=64)
    rescored, explained = rescore_head(choice, "red mug coffee", order, scores, rows)
    texts = [item_text(rows[i], choice.fields, 64 * 8) for i in order[:4]]
    expected = reference_scores(model_folder, "red mug coffee", texts, 64)
    assert np.ptp(expected) > 1e-3  # the model tells the texts apart
    new_order = sorted(rescored, key=lambda i: -rescored[i])
    assert new_order[:4] == [order[i] for i in np.argsort(-expected, kind="stable")]
    assert new_order[4:] == ["i4", "i5"]  # below the head, in their order
    assert rescored["i4"] == scores["i4"] and set(explained) == set(order[:4])
    for n, item_id in enumerate(order[:4]):
        assert explained[item_id].score == pytest.approx(expected[n], abs=1e-6)
        assert explained[item_id].rank_before == n + 1
    assert texts[0] == "red mug\na red ceramic mug for coffee"


def test_the_model_is_loaded_once_per_process(model_folder):
    clear_models()
    tokenizer = load_model(model_folder, 64).model.tokenizer
    ids = tokenizer("red mug", "glider wing")["input_ids"]
    assert tokenizer.unk_token_id not in ids and len(ids) == 7  # words, not unknowns
    assert load_model(model_folder, 64) is load_model(model_folder, 64)
    assert load_model(model_folder, 64) is not load_model(model_folder, 32)


def test_item_text_is_bounded():
    row = {"title": "t" * 50, "texts_json": json.dumps({"description": "d" * 5000})}
    assert len(item_text(row, ("title", "description"), 100)) == 100


def test_setting_a_missing_folder_is_refused_naming_it(tmp_path, settings, make_catalog):
    from mmsearch.ingest import IngestOptions, Ingestor

    Ingestor(settings).run(IngestOptions(make_catalog(), "shop"))
    missing = tmp_path / "no-such-model"
    home = str(settings.home)
    result = CliRunner().invoke(
        app,
        ["ranking-settings", "-c", "shop", "--cross-encoder", str(missing)],
        env={"MMSEARCH_HOME": home},
    )
    assert result.exit_code != 0 and "no-such-model" in result.output
    folder = Workspace(settings.home).collection("shop").folder
    assert "ranking" not in json.loads((folder / "collection.json").read_text())
    result = CliRunner().invoke(
        app,
        [
            "ranking-settings",
            "-c",
            "shop",
            "--cross-encoder",
            str(tmp_path),
            "--home",
            str(settings.home),
        ],
    )
    assert result.exit_code != 0 and "is not a model" in result.output
    result = CliRunner().invoke(
        app,
        [
            "ranking-settings",
            "-c",
            "shop",
            "--cross-encoder",
            str(tmp_path),
            "--cross-encoder-field",
            "colour",
            "--home",
            str(settings.home),
        ],
    )
    assert result.exit_code != 0


@pytest.fixture
def shop(settings, make_catalog, model_folder):
    from mmsearch.ingest import IngestOptions, Ingestor

    Ingestor(settings).run(IngestOptions(make_catalog(), "shop"))
    result = CliRunner().invoke(
        app,
        [
            "ranking-settings",
            "-c",
            "shop",
            "--cross-encoder",
            str(model_folder),
            "--cross-encoder-top",
            "4",
            "--cross-encoder-max-length",
            "64",
            "--home",
            str(settings.home),
        ],
    )
    assert result.exit_code == 0, result.output
    return settings


def test_a_search_reorders_its_top_hits_by_the_models_scores(shop, model_folder):
    from mmsearch.search.request import SearchRequest
    from mmsearch.search.searcher import Searcher

    searcher = Searcher(shop, "shop")
    plain = searcher.search(SearchRequest(text="red mug coffee", k=5, cross_encoder=False))
    before = [hit.id for hit in plain.hits]
    assert all(hit.explanation is None for hit in plain.hits)
    result = searcher.search(SearchRequest(text="red mug coffee", k=5, explain=True))
    rows = {row["id"]: row for row in searcher.index.get(before, ["id", "title", "texts_json"])}
    fields = ("title", "description", "tags")
    texts = [item_text(rows[i], fields, 64 * 8) for i in before[:4]]
    expected = reference_scores(model_folder, "red mug coffee", texts, 64)
    assert [hit.id for hit in result.hits][:4] == [
        before[i] for i in np.argsort(-expected, kind="stable")
    ]
    assert [hit.id for hit in result.hits][4:] == before[4:]
    assert "cross_encoder" in result.timings_ms
    for hit in result.hits[:4]:
        explained = hit.explanation.cross_encoder  # type: ignore[union-attr]
        assert explained is not None and explained.model == str(model_folder.resolve())
        assert explained.score == pytest.approx(expected[before.index(hit.id)], abs=1e-6)
        assert explained.rank_before == before.index(hit.id) + 1
    assert result.hits[4].explanation.cross_encoder is None  # type: ignore[union-attr]
    # A request may read fewer hits than the collection allows.
    two = searcher.search(SearchRequest(text="red mug coffee", k=5, cross_encoder_top=2))
    assert {hit.id for hit in two.hits[:2]} == set(before[:2])
    assert [hit.id for hit in two.hits][2:] == before[2:]


def test_a_missing_folder_fails_before_anything_is_searched(shop, model_folder, tmp_path):
    from mmsearch.search.request import SearchRequest
    from mmsearch.search.searcher import Searcher

    moved = tmp_path / "moved"
    shutil.copytree(model_folder, moved)
    folder = Workspace(shop.home).collection("shop")

    def point_elsewhere(state):
        assert state.ranking is not None and state.ranking.cross_encoder is not None
        state.ranking.cross_encoder.path = str(moved)

    folder.update_state(point_elsewhere)
    searcher = Searcher(shop, "shop")
    shutil.rmtree(moved)

    def no_retrieval(*args, **kwargs):
        raise AssertionError("retrieval ran before the cross-encoder folder was checked")

    searcher.retrieve = no_retrieval  # type: ignore[method-assign]
    with pytest.raises(CrossEncoderError, match=str(moved)):
        searcher.search(SearchRequest(text="red mug", k=3))
    # Switched off for one request, the search runs without it.
    searcher = Searcher(shop, "shop")
    assert searcher.search(SearchRequest(text="red mug", k=3, cross_encoder=False)).hits


def test_the_api_body_field_turns_it_on_and_off_for_a_reader(shop, model_folder):
    from fastapi.testclient import TestClient

    from mmsearch.governance.keys import KeyStore
    from mmsearch.service.app import create_app

    keys = KeyStore(shop.home)
    _, reader = keys.create("reader", groups=["staff"])
    headers = {"authorization": f"Bearer {reader}"}
    with TestClient(create_app(shop)) as client:
        url = "/v1/collections/shop/search"
        on = client.post(url, json={"text": "red mug", "k": 5, "explain": True}, headers=headers)
        assert on.status_code == 200, on.text
        hits = on.json()["hits"]
        assert hits[0]["explanation"]["cross_encoder"]["rank_before"] >= 1
        off = client.post(
            url,
            json={"text": "red mug", "k": 5, "explain": True, "cross_encoder": False},
            headers=headers,
        )
        assert off.status_code == 200
        assert all(h["explanation"]["cross_encoder"] is None for h in off.json()["hits"])
        bad = client.post(url, json={"text": "red mug", "cross_encoder_top": 500}, headers=headers)
        assert bad.status_code == 422
        anonymous = client.post(url, json={"text": "red mug", "cross_encoder": True})
        assert anonymous.status_code == 401


def test_a_running_service_follows_ranking_settings_changed_meanwhile(shop):
    """``mmsearch ranking-settings`` while the service runs: the next search uses the new
    settings, without an ingest or a restart."""
    from fastapi.testclient import TestClient

    from mmsearch.service.app import create_app

    def explained(client) -> list:
        reply = client.post(
            "/v1/collections/shop/search", json={"text": "red mug", "k": 5, "explain": True}
        )
        assert reply.status_code == 200, reply.text
        return [hit["explanation"]["cross_encoder"] for hit in reply.json()["hits"]]

    home = str(shop.home)
    with TestClient(create_app(shop)) as client:
        assert explained(client)[0] is not None
        off = CliRunner().invoke(
            app, ["ranking-settings", "-c", "shop", "--no-cross-encoder", "--home", home]
        )
        assert off.exit_code == 0, off.output
        assert all(score is None for score in explained(client))


def test_the_cli_shows_the_cross_encoder_score_and_can_turn_it_off(shop):
    home = str(shop.home)
    args = ["search", "red mug", "-c", "shop", "--explain", "--local", "--home", home]
    shown = CliRunner().invoke(app, args)
    assert shown.exit_code == 0, shown.output
    assert "cross-encoder" in shown.output and "(was #" in shown.output
    off = CliRunner().invoke(app, [*args, "--no-cross-encoder"])
    assert off.exit_code == 0, off.output
    assert "cross-encoder" not in off.output
