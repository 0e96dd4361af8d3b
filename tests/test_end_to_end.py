"""End to end, as a user runs it: the real CLI in a subprocess, the real MiniLM model,
LanceDB on disk, and the bundled emoji sample catalog."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mmsearch.encoders.base import create_encoder, resolve_spec
from mmsearch.sample_data import SAMPLE_EMOJI_DIR, sample_catalog_path

from conftest import by_profile

pytestmark = pytest.mark.integration


def mmsearch(*args: str, home: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    completed = subprocess.run(
        [sys.executable, "-m", "mmsearch", *args, "--home", str(home)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if check and completed.returncode != 0:
        raise AssertionError(f"mmsearch {args} failed:\n{completed.stdout}\n{completed.stderr}")
    return completed


@pytest.fixture(scope="module")
def demo_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("demo-home")
    completed = mmsearch("demo", home=home)
    assert "red heart" in completed.stdout
    assert "400 added" in completed.stdout
    return home


def search_ids(home: Path, *args: str) -> list[str]:
    completed = mmsearch("search", *args, "-c", "demo", "--json", home=home)
    return [hit["id"] for hit in json.loads(completed.stdout)["hits"]]


def test_red_heart_query_puts_a_red_heart_in_the_top_three(demo_home):
    assert "2764-FE0F" in search_ids(demo_home, "red heart", "--k", "3")


# Each search is a fresh process that loads the models; the light run keeps two of them.
OWN_IMAGE_EMOJI = by_profile(
    full=["1F680", "1F436", "1F355", "2764-FE0F", "1F600", "1F98E"], light=["1F680", "2764-FE0F"]
)


@pytest.mark.parametrize("emoji", OWN_IMAGE_EMOJI)
def test_an_emojis_own_image_finds_it_first(demo_home, emoji):
    image = SAMPLE_EMOJI_DIR / "images" / f"{emoji.lower()}.png"
    assert search_ids(demo_home, "--image", str(image), "--k", "3")[0] == emoji


def test_filters_and_collections_listing(demo_home):
    ids = search_ids(demo_home, "face", "--where", "category = 'Animals & Nature'", "--k", "10")
    catalog = {
        row["id"]: row
        for row in map(json.loads, sample_catalog_path().read_text(encoding="utf-8").splitlines())
    }
    assert ids and all(catalog[i]["category"] == "Animals & Nature" for i in ids)
    listed = json.loads(mmsearch("collections", "--json", home=demo_home).stdout)
    assert listed[0]["items"] == 400
    text_spec, _ = resolve_spec("minilm:auto")  # the default: onnx where installed, else torch
    assert listed[0]["encoders"]["text"].startswith(f"{text_spec} (sentence-transformers/")


def test_reingesting_the_sample_changes_nothing(demo_home):
    completed = mmsearch(
        "ingest", str(sample_catalog_path()), "-c", "demo", "--json", home=demo_home
    )
    counts = json.loads(completed.stdout)["counts"]
    assert counts["unchanged"] == 400 and counts["added"] == counts["updated"] == 0
    assert counts["items"] == 400


def test_minilm_encoder_is_offline_normalised_and_versioned():
    encoder = create_encoder("minilm")
    vectors = encoder.encode_texts(["a car", "an automobile", "a banana"])
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.2
    assert encoder.version.startswith("sentence-transformers/all-MiniLM-L6-v2@sha256:")
    assert len(encoder.version.rsplit(":", 1)[1]) == 64
