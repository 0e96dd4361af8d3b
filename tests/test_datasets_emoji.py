"""The emoji builder on a miniature of the emoji-datasource/emojibase files and PNG folders."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mmsearch.cli import app
from mmsearch.datasets.emoji import build_emoji, join_key
from mmsearch.errors import EvaluationError
from mmsearch.evaluation.judgments import load_judgments
from mmsearch.evaluation.queries import load_queries
from mmsearch.ingest import IngestOptions, Ingestor

from conftest import save_image

DATASOURCE = [
    {
        "name": "GRINNING FACE",
        "unified": "1F600",
        "image": "1f600.png",
        "category": "Smileys & Emotion",
        "subcategory": "face-smiling",
        "sort_order": 1,
        "has_img_google": True,
        "has_img_twitter": True,
    },
    {
        "name": "WAVING HAND SIGN",
        "unified": "1F44B",
        "image": "1f44b.png",
        "category": "People & Body",
        "subcategory": "hand-fingers-open",
        "sort_order": 2,
        "has_img_google": True,
        "has_img_twitter": True,
        "skin_variations": {
            "1F3FB": {
                "unified": "1F44B-1F3FB",
                "image": "1f44b-1f3fb.png",
                "has_img_google": True,
                "has_img_twitter": False,
            }
        },
    },
    {
        "name": "HEAVY BLACK HEART",
        "unified": "2764-FE0F",
        "image": "2764-fe0f.png",
        "category": "Smileys & Emotion",
        "subcategory": "heart",
        "sort_order": 3,
        "has_img_google": True,
        "has_img_twitter": True,
    },
]
EMOJIBASE = [
    {"label": "grinning face", "hexcode": "1F600", "tags": ["face", "grin", "cheerful"]},
    {
        "label": "waving hand",
        "hexcode": "1F44B",
        "tags": ["hand", "wave", "hello"],
        "skins": [{"label": "waving hand: light skin tone", "hexcode": "1F44B-1F3FB"}],
    },
    {"label": "red heart", "hexcode": "2764", "tags": ["heart", "love", "Cheerful"]},
]


@pytest.fixture
def source(tmp_path: Path) -> Path:
    folder = tmp_path / "emoji"
    folder.mkdir()
    (folder / "emoji-datasource.json").write_text(json.dumps(DATASOURCE))
    (folder / "emojibase-en.json").write_text(json.dumps(EMOJIBASE))
    for index, name in enumerate(["1f600.png", "1f44b.png", "1f44b-1f3fb.png", "2764-fe0f.png"]):
        save_image(folder / "google-64" / name, (40 * index, 200, 90))
        save_image(folder / "twitter-64" / name, (40 * index, 190, 100))
    return folder


def test_join_ignores_case_and_variation_selectors():
    assert join_key("2764-fe0f") == join_key("2764") == "2764"
    assert join_key("1f44b-1f3fb") == "1F44B-1F3FB"


def test_catalog_has_every_image_with_its_joined_name(source, tmp_path):
    stats = build_emoji(source, tmp_path / "out", with_categories=True, copy_images=False)
    rows = [json.loads(x) for x in (tmp_path / "out" / "catalog.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == ["1F600", "1F44B", "1F44B-1F3FB", "2764-FE0F"]
    assert rows[2]["name"] == "waving hand: light skin tone"
    assert rows[3]["name"] == "red heart"  # joined although emojibase omits -FE0F
    assert rows[0]["category"] == "Smileys & Emotion" and rows[0]["subcategory"] == "face-smiling"
    assert Path(rows[0]["image"]) == (source / "google-64" / "1f600.png").resolve()
    assert stats.items == 4 and stats.unjoined == 0


def test_text_queries_skip_tags_that_are_words_of_the_name(source, tmp_path):
    build_emoji(source, tmp_path / "out")
    queries = {q.id: q for q in load_queries(tmp_path / "out" / "queries-text.jsonl")}
    judgments = load_judgments(tmp_path / "out" / "qrels.txt")
    assert queries["t-cheerful"].text == "cheerful"
    assert judgments["t-cheerful"] == {"1F600": 1, "2764-FE0F": 1}
    assert judgments["t-hello"] == {"1F44B": 1, "1F44B-1F3FB": 1}  # variants inherit tags
    assert "t-face" not in queries and "t-hand" not in queries and "t-heart" not in queries
    assert {"t-grin", "t-wave", "t-love"} <= set(queries)


def test_image_queries_use_the_other_artist_and_skip_fallback_images(source, tmp_path):
    stats = build_emoji(source, tmp_path / "out")
    queries = load_queries(tmp_path / "out" / "queries-image.jsonl")
    assert [q.id for q in queries] == ["i-1F600", "i-1F44B", "i-2764-FE0F"]
    assert queries[0].image == (source / "twitter-64" / "1f600.png").resolve()
    assert load_judgments(tmp_path / "out" / "qrels.txt")["i-1F44B"] == {"1F44B": 1}
    assert stats.image_queries["all"] == 3
    assert stats.image_queries["dev"] + stats.image_queries["test"] == 3
    combined = load_queries(tmp_path / "out" / "queries.jsonl")
    assert {q.extra["kind"] for q in combined} == {"text", "image"}
    assert all(q.extra["split"] in {"dev", "test"} for q in combined)


def test_limit_copy_images_and_ingest(source, tmp_path, settings):
    build_emoji(source, tmp_path / "out", limit=2)
    rows = [json.loads(x) for x in (tmp_path / "out" / "catalog.jsonl").read_text().splitlines()]
    assert [r["image"] for r in rows] == ["images/1f600.png", "images/1f44b.png"]
    assert "category" not in rows[0]
    report = Ingestor(settings).run(IngestOptions(tmp_path / "out" / "catalog.jsonl", "emoji"))
    assert report.counts["added"] == 2 and report.mapping.title == "name"
    assert report.mapping.images == ["image"]


def test_bad_arguments_are_clean_errors(source, tmp_path):
    with pytest.raises(EvaluationError, match="two different artists"):
        build_emoji(source, tmp_path / "o", vendor="google", query_vendor="google")
    result = CliRunner().invoke(
        app, ["datasets", "emoji", str(source), str(tmp_path / "o"), "--query-vendor", "apple"]
    )
    assert result.exit_code == 2 and "No images for vendor 'apple'" in result.output
    result = CliRunner().invoke(
        app, ["datasets", "emoji", str(source), str(tmp_path / "ok"), "--limit", "3", "--json"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["items"] == 3
