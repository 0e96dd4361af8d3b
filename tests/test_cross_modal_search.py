"""Cross-modal retrieval end to end: a tiny random CLIP model as the image encoder.

The model's vectors mean nothing semantically, so the tests check the mechanics:
which retrievers run, that their scores are the cosines the encoder implies, and
how the text+image blend weight moves the query vector.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from mmsearch.cli import app
from mmsearch.encoders.base import create_encoder
from mmsearch.errors import QueryError
from mmsearch.ingest import IngestOptions, Ingestor
from mmsearch.media.images import load_image
from mmsearch.retrieval.planner import blend_query_vectors, plan_retrievers
from mmsearch.search.request import SearchRequest
from mmsearch.search.searcher import Searcher
from tiny_clip import save_hf_model

from conftest import COLOURS

pytestmark = pytest.mark.clip
os.environ.setdefault("HF_HUB_OFFLINE", "1")
IDS = [f"item-{index}" for index in range(len(COLOURS))]


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory) -> Path:
    return save_hf_model(tmp_path_factory.mktemp("clip") / "tiny-clip", "clip")


@pytest.fixture
def clip_build(settings, make_catalog, clip_dir):
    settings = settings.model_copy(update={"image_encoder": f"hf:{clip_dir}"})
    catalog = make_catalog()
    Ingestor(settings).run(IngestOptions(catalog, "shop"))
    encoder = create_encoder(f"hf:{clip_dir}")
    images = [load_image(catalog.parent / "img" / f"{colour}.png") for colour in COLOURS]
    return Searcher(settings, "shop"), encoder, encoder.encode_images(images)


def _ranking(result, signal: str) -> list[tuple[int, str, float]]:
    found = [(h.id, h.signals[signal].rank, h.signals[signal].score) for h in result.hits]
    return sorted((rank, item_id, score) for item_id, rank, score in found)


def _expected(query: np.ndarray, image_vectors: np.ndarray) -> list[tuple[str, float]]:
    cosines = image_vectors @ query
    order = np.argsort(-cosines, kind="stable")
    return [(IDS[i], float(cosines[i])) for i in order]


def _check_against(result, signal: str, expected: list[tuple[str, float]]) -> None:
    got = _ranking(result, signal)
    assert [item_id for _, item_id, _ in got] == [item_id for item_id, _ in expected]
    for (_, _, score), (_, cosine) in zip(got, expected, strict=True):
        assert score == pytest.approx(cosine, abs=1e-4)


def test_manifest_marks_the_build_cross_modal_and_plans_follow(clip_build):
    searcher, _, _ = clip_build
    encoders = searcher.manifest.encoders
    assert encoders["image"].modalities == ["image", "text"]
    assert encoders["image"].spec.startswith("hf:")

    def names(**query: bool) -> list[str]:
        return [p.name for p in plan_retrievers(encoders=encoders, **query)]

    assert names(has_text=True, has_image=False) == ["keyword", "text_vector", "text_to_image"]
    assert names(has_text=False, has_image=True) == ["image_vector"]
    assert names(has_text=True, has_image=True) == [
        "keyword",
        "text_vector",
        "text_to_image",
        "image_vector",
        "text_image",
    ]


def test_text_query_searches_image_vectors_with_the_clip_text_embedding(clip_build):
    searcher, encoder, image_vectors = clip_build
    result = searcher.search(SearchRequest(text="blue mug", k=5))
    assert result.signals == ["keyword", "text_to_image", "text_vector"]
    assert all("text_to_image" in hit.signals for hit in result.hits)
    query = encoder.encode_texts(["blue mug"])[0]
    _check_against(result, "text_to_image", _expected(query, image_vectors))
    assert "encode_text_with_image_encoder" in result.timings_ms


def test_an_items_own_image_finds_it_first(clip_build, make_catalog):
    searcher, _, _ = clip_build
    picture = load_image(make_catalog().parent / "img" / "green.png")
    result = searcher.search(SearchRequest(image=picture, k=3))
    assert result.signals == ["image_vector"]
    assert result.hits[0].id == "item-1"
    assert result.hits[0].signals["image_vector"].score == pytest.approx(1.0, abs=1e-4)


def test_blend_weight_moves_the_text_image_query_vector(clip_build, make_catalog):
    searcher, encoder, image_vectors = clip_build
    picture = load_image(make_catalog().parent / "img" / "green.png")

    def ask(weight: float, signal: str):
        request = SearchRequest(
            text="red", image=picture, k=5, image_weight=weight, signals=[signal]
        )
        return searcher.search(request)

    def same(left: list[tuple[int, str, float]], right: list[tuple[int, str, float]]) -> None:
        assert [entry[:2] for entry in left] == [entry[:2] for entry in right]
        assert [entry[2] for entry in left] == pytest.approx(
            [entry[2] for entry in right], abs=1e-5
        )

    # w = 1 is the image embedding's ranking, w = 0 the CLIP text embedding's.
    same(
        _ranking(ask(1.0, "text_image"), "text_image"),
        _ranking(ask(1.0, "image_vector"), "image_vector"),
    )
    same(
        _ranking(ask(0.0, "text_image"), "text_image"),
        _ranking(ask(0.0, "text_to_image"), "text_to_image"),
    )
    middle = [entry[1] for entry in _ranking(ask(0.5, "text_image"), "text_image")]
    assert middle[0] == "item-1"  # the query picture's own item still leads at w = 0.5
    text_vec = encoder.encode_texts(["red"])[0]
    image_vec = encoder.encode_images([picture])[0]
    for weight in (0.25, 0.75):
        blended = blend_query_vectors(text_vec, image_vec, weight)
        _check_against(ask(weight, "text_image"), "text_image", _expected(blended, image_vectors))

    both = searcher.search(SearchRequest(text="red", image=picture, k=5))
    assert both.signals == ["image_vector", "keyword", "text_image", "text_to_image", "text_vector"]


def test_blend_is_the_normalised_weighted_sum():
    text = np.array([1.0, 0.0, 0.0], dtype=np.float32)
    image = np.array([0.0, 1.0, 0.0], dtype=np.float32)
    np.testing.assert_allclose(blend_query_vectors(text, image, 0.0), text)
    np.testing.assert_allclose(blend_query_vectors(text, image, 1.0), image)
    np.testing.assert_allclose(
        blend_query_vectors(text, image, 0.25), [0.9486833, 0.3162278, 0], atol=1e-6
    )
    with pytest.raises(QueryError, match="cancel out"):
        blend_query_vectors(text, -text, 0.5)


@pytest.mark.parametrize("weight", [-0.1, 1.5, float("nan")])
def test_image_weight_outside_zero_to_one_is_refused(clip_build, weight):
    searcher, _, _ = clip_build
    with pytest.raises(QueryError, match="between 0 and 1"):
        searcher.search(SearchRequest(text="red", image_weight=weight))


def test_image_weight_needs_a_clip_family_image_encoder(settings, make_catalog):
    Ingestor(settings).run(IngestOptions(make_catalog(), "plain"))
    searcher = Searcher(settings, "plain")
    assert [
        p.name
        for p in plan_retrievers(has_text=True, has_image=True, encoders=searcher.manifest.encoders)
    ] == ["keyword", "text_vector", "image_vector"]
    assert searcher.search(SearchRequest(text="red", image_weight=0.5)).hits  # the default is fine
    with pytest.raises(QueryError, match="CLIP-family image encoder"):
        searcher.search(SearchRequest(text="red", image_weight=0.3))

    result = CliRunner().invoke(
        app,
        ["search", "red", "-c", "plain", "--home", str(settings.home), "--image-weight", "0.3"],
        env={"MMSEARCH_TEXT_ENCODER": "fake-text", "MMSEARCH_IMAGE_ENCODER": "fake-image"},
    )
    assert result.exit_code == 2
    assert "CLIP-family image encoder" in result.output


def test_cli_reports_cross_modal_signals(clip_build):
    searcher, _, _ = clip_build
    home = str(searcher.settings.home)
    result = CliRunner().invoke(app, ["search", "blue mug", "-c", "shop", "--home", home, "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    assert "text_to_image" in payload["signals"]
    assert all("text_to_image" in hit["signals"] for hit in payload["hits"])
