"""Perceptual hashes, all-pairs candidate search, union-find clusters and ``mmsearch dupes``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance
from typer.testing import CliRunner

from mmsearch.cli import app
from mmsearch.config import Settings
from mmsearch.encoders.hashes import hamming, hamming_matrix, image_hashes, to_hex
from mmsearch.evaluation.duplicates import UnionFind, candidate_pairs, find_clusters
from mmsearch.ingest import IngestOptions, Ingestor

from conftest import write_jsonl


def _photo(seed: int, size: int = 96) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (12, 12, 3), dtype=np.uint8)).resize((size, size))


def test_hashes_are_64_bit_and_stable_under_resize() -> None:
    original = _photo(1)
    hashes = image_hashes(original)
    resized = image_hashes(original.resize((48, 48)))
    other = image_hashes(_photo(2))
    assert len(to_hex(hashes.phash)) == 16 and -(2**63) <= hashes.phash < 2**63
    assert hamming(hashes.phash, resized.phash) <= 6
    assert hamming(hashes.phash, other.phash) > 12
    assert hamming(hashes.dhash, resized.dhash) <= 8


def test_transparent_background_hashes_like_white() -> None:
    rgba = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    rgba.paste((200, 0, 0, 255), (16, 16, 48, 48))
    white = Image.new("RGB", (64, 64), (255, 255, 255))
    white.paste((200, 0, 0), (16, 16, 48, 48))
    assert image_hashes(rgba) == image_hashes(white)


def test_candidate_pairs_match_brute_force() -> None:
    rng = np.random.default_rng(7)
    base = rng.integers(-(2**63), 2**63 - 1, 40, dtype=np.int64)
    flips = np.int64(1) << rng.integers(0, 63, 40).astype(np.int64)
    hashes = np.concatenate([base, base ^ flips])  # each base hash has a 1-bit neighbour
    pairs, distances = candidate_pairs(hashes, max_distance=3)
    full = hamming_matrix(hashes, hashes)
    expected = {(i, j) for i in range(80) for j in range(i + 1, 80) if full[i, j] <= 3}
    assert {tuple(p) for p in pairs.tolist()} == expected
    assert all(full[i, j] == d for (i, j), d in zip(pairs.tolist(), distances, strict=True))


def test_union_find_joins_chains() -> None:
    sets = UnionFind(5)
    sets.union(0, 1)
    sets.union(1, 2)
    assert sets.find(0) == sets.find(2) != sets.find(3)


def test_clusters_require_vector_agreement_when_vectors_exist() -> None:
    ids = ["a", "b", "c"]
    hashes = np.array([0, 1, 3], dtype=np.int64)  # all within 2 bits of each other
    vectors = np.array([[1, 0], [1, 0], [0, 1]], dtype=np.float32)
    items = np.arange(3)
    positions = np.zeros(3, dtype=np.int64)
    clusters = find_clusters(ids, items, positions, hashes, vectors, max_distance=2, min_cosine=0.9)
    assert [c.ids for c in clusters] == [["a", "b"]]
    assert clusters[0].kind == "near" and clusters[0].pairs[0].cosine == 1.0
    unconfirmed = find_clusters(
        ids, items, positions, hashes, None, max_distance=2, min_cosine=None
    )
    assert [c.ids for c in unconfirmed] == [["a", "b", "c"]]


def _dupes_catalog(tmp_path: Path) -> Path:
    folder = tmp_path / "dupes"
    folder.mkdir()
    original = _photo(11)
    original.save(folder / "orig.png")
    original.save(folder / "same.png")  # byte-identical copy
    original.resize((60, 60)).save(folder / "small.jpg", quality=60)
    ImageEnhance.Brightness(original).enhance(1.1).save(folder / "bright.png")
    _photo(12).save(folder / "other.png")
    rows = [
        {"id": "orig", "title": "original", "image": "orig.png"},
        {"id": "same", "title": "copy", "image": "same.png"},
        {"id": "small", "title": "smaller jpeg", "image": ["other.png", "small.jpg"]},
        {"id": "bright", "title": "brighter", "image": "bright.png"},
        {"id": "other", "title": "unrelated", "image": "other.png"},
    ]
    return write_jsonl(folder / "catalog.jsonl", rows)


def test_dupes_command_lists_clusters(settings: Settings, tmp_path: Path, monkeypatch) -> None:
    Ingestor(settings).run(IngestOptions(_dupes_catalog(tmp_path), "d"))
    monkeypatch.setenv("MMSEARCH_HOME", str(settings.home))
    runner = CliRunner()
    result = runner.invoke(app, ["dupes", "-c", "d", "--json", "--min-cosine", "0.8"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    clusters = sorted(sorted(c["ids"]) for c in report["clusters"])
    # "small" holds a copy of "other" (image 0) and a copy of "orig" (image 1): one chain
    assert clusters == [["bright", "orig", "other", "same", "small"]]
    pairs = {(p["a"], p["b"]): p for p in report["clusters"][0]["pairs"]}
    assert pairs[("orig", "same")]["distance"] == 0
    assert report["images"] == 6 and report["items"] == 5

    strict = runner.invoke(app, ["dupes", "-c", "d", "--max-distance", "0"])
    assert strict.exit_code == 0, strict.output
    assert "exact" in strict.output and "orig" in strict.output


def test_dupes_on_unknown_collection_is_a_clean_error(settings: Settings, monkeypatch) -> None:
    monkeypatch.setenv("MMSEARCH_HOME", str(settings.home))
    result = CliRunner().invoke(app, ["dupes", "-c", "missing"])
    assert result.exit_code == 2
    assert "Traceback" not in result.output
