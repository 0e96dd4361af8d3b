"""Perceptual hashes, duplicate clusters from fingerprints (exact vs near), ``mmsearch dupes``."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageEnhance, ImageOps
from typer.testing import CliRunner

from mmsearch.cli import app
from mmsearch.config import Settings
from mmsearch.encoders.hashes import hamming, image_hashes, to_hex
from mmsearch.evaluation.duplicates import UnionFind, featureless_images, find_clusters
from mmsearch.ingest import IngestOptions, Ingestor
from mmsearch.moderation.fingerprints import (
    MAX_COLOUR_DIFFERENCE,
    STRICTNESS,
    Fingerprint,
    colour_difference,
    fingerprint_bytes,
)
from mmsearch.moderation.pdq import to_hex as to_pdq_hex

from conftest import write_jsonl

STANDARD = STRICTNESS["standard"].max_distance
DEFAULT = STRICTNESS["strict"].max_distance  # what mmsearch dupes uses unless told


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


def test_union_find_joins_chains() -> None:
    sets = UnionFind(5)
    sets.union(0, 1)
    sets.union(1, 2)
    assert sets.find(0) == sets.find(2) != sets.find(3)


def _fingerprint(image: Image.Image, **options: object) -> Fingerprint:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", **options)
    return fingerprint_bytes(buffer.getvalue(), source="test")


def test_clusters_say_exact_only_for_same_bytes_or_pixels() -> None:
    photo = _photo(3)
    prints = [
        _fingerprint(photo),
        _fingerprint(photo),  # the same bytes
        _fingerprint(photo, compress_level=1),  # the same pixels, other bytes
        _fingerprint(photo.transpose(Image.Transpose.FLIP_LEFT_RIGHT)),  # near, by a variant
        _fingerprint(_photo(4)),  # another picture
        _fingerprint(Image.new("RGB", (64, 64), (250, 250, 250))),  # featureless
        _fingerprint(Image.new("RGB", (64, 64), (240, 240, 240))),  # featureless, other pixels
    ]
    ids = ["a", "b", "c", "d", "e", "f", "g"]
    clusters = find_clusters(
        ids, np.arange(7), np.zeros(7, dtype=np.int64), prints, max_distance=STANDARD
    )
    assert [c.ids for c in clusters] == [["a", "b", "c", "d"]]
    kinds = {(p.a, p.b): (p.kind, p.variant) for p in clusters[0].pairs}
    assert kinds[("a", "b")] == ("same bytes", "original")
    assert kinds[("a", "c")] == ("same pixels", "original")
    assert clusters[0].kind == "near"
    near = [p for p in clusters[0].pairs if p.kind == "near"]
    assert len(near) == 1 and near[0].variant == "flip horizontal" and near[0].distance <= 8
    assert featureless_images(prints) == 2
    exact_only = find_clusters(
        ids[:3], np.arange(3), np.zeros(3, dtype=np.int64), prints[:3], max_distance=0
    )
    assert [c.kind for c in exact_only] == ["exact"]


def _flipped_bits(base: np.ndarray, bits: range) -> np.ndarray:
    out = base.copy()
    for bit in bits:
        out[bit // 64] ^= np.uint64(1) << np.uint64(bit % 64)
    return out


def _synthetic(words: np.ndarray, name: str) -> Fingerprint:
    """A fingerprint with the given PDQ hash in all eight variants (the grouping sees no image)."""
    text = to_pdq_hex(words)
    digest = hashlib.sha256(name.encode()).hexdigest()
    return Fingerprint(digest, digest, text, (text,) * 8, 100, 0, 0, 64, 64)


def test_star_linkage_does_not_chain_where_single_linkage_does() -> None:
    # Five pictures in a row, each 30 bits from the next: neighbours match at 30, the ends
    # are 120 bits apart.
    base = np.random.default_rng(0).integers(0, 2**64, size=4, dtype=np.uint64)
    prints = [_synthetic(_flipped_bits(base, range(30 * n)), f"p{n}") for n in range(5)]
    ids = [f"p{n}" for n in range(5)]
    items, positions = np.arange(5), np.zeros(5, dtype=np.int64)
    single = find_clusters(ids, items, positions, prints, max_distance=30, linkage="single")
    assert [c.ids for c in single] == [ids]
    star = find_clusters(ids, items, positions, prints, max_distance=30, linkage="star")
    assert len(star) == 2 and sorted(i for c in star for i in c.ids) == ids
    for cluster in star:
        # every pair listed joins a member to the leader: one item is in all of them
        leaders = set.intersection(*({p.a, p.b} for p in cluster.pairs))
        assert leaders and len(cluster.pairs) == len(cluster.ids) - 1
        assert all(p.distance <= 30 for p in cluster.pairs)
    with pytest.raises(ValueError, match="unknown linkage 'average'"):
        find_clusters(ids, items, positions, prints, max_distance=30, linkage="average")  # type: ignore[arg-type]


# One drawing in four skin tones (the default yellow and three emoji modifier tones).
_TONES = [(255, 220, 93), (247, 222, 206), (213, 171, 136), (124, 83, 62)]


def _face(tone: tuple[int, int, int]) -> Image.Image:
    image = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    draw.ellipse((8, 8, 56, 56), fill=(*tone, 255), outline=(60, 40, 20, 255), width=3)
    draw.ellipse((20, 22, 27, 31), fill=(40, 30, 30, 255))
    draw.ellipse((37, 22, 44, 31), fill=(40, 30, 30, 255))
    draw.arc((20, 30, 44, 48), 20, 160, fill=(90, 30, 30, 255), width=3)
    draw.rectangle((44, 40, 60, 60), fill=(40, 90, 200, 255))
    return image


def test_skin_tone_variants_stay_apart_while_copies_of_one_join_it() -> None:
    tones = [_face(tone) for tone in _TONES]
    middle = tones[2]
    on_white = Image.alpha_composite(Image.new("RGBA", middle.size, "white"), middle)
    copies = [
        middle.resize((48, 48)),
        ImageOps.expand(on_white.convert("RGB"), 6, (0, 0, 0)),  # a black frame
        middle.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
    ]
    prints = [_fingerprint(image) for image in tones + copies]
    ids = ["tone0", "tone1", "tone2", "tone3", "resized", "framed", "mirrored"]
    items, positions = np.arange(len(ids)), np.zeros(len(ids), dtype=np.int64)
    # PDQ alone cannot tell the tones apart: some are within the strict threshold.
    pdq_only = find_clusters(
        ids, items, positions, prints, max_distance=DEFAULT, max_colour_difference=None
    )
    assert any(len({i for i in c.ids if i.startswith("tone")}) > 1 for c in pdq_only)
    clusters = find_clusters(ids, items, positions, prints, max_distance=DEFAULT)
    assert [c.ids for c in clusters] == [["framed", "mirrored", "resized", "tone2"]]
    difference = colour_difference(prints[0], prints[2])
    assert difference is not None and difference > MAX_COLOUR_DIFFERENCE


def test_images_of_one_item_do_not_make_a_cluster() -> None:
    photo = _fingerprint(_photo(5))
    clusters = find_clusters(
        ["only"], np.zeros(2, dtype=np.int64), np.arange(2), [photo, photo], max_distance=30
    )
    assert clusters == []


def _dupes_catalog(tmp_path: Path) -> Path:
    folder = tmp_path / "dupes"
    folder.mkdir()
    original = _photo(11)
    original.save(folder / "orig.png")
    original.save(folder / "same.png")  # byte-identical copy
    original.save(folder / "recoded.png", compress_level=1)  # same pixels, other bytes
    original.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(folder / "flipped.png")
    original.resize((60, 60)).save(folder / "small.jpg", quality=60)
    ImageEnhance.Brightness(original).enhance(1.1).save(folder / "bright.png")
    _photo(12).save(folder / "other.png")
    rows = [
        {"id": "orig", "title": "original", "image": "orig.png"},
        {"id": "same", "title": "copy", "image": "same.png"},
        {"id": "recoded", "title": "re-encoded", "image": "recoded.png"},
        {"id": "flipped", "title": "mirror image", "image": "flipped.png"},
        {"id": "small", "title": "smaller jpeg", "image": ["other.png", "small.jpg"]},
        {"id": "bright", "title": "brighter", "image": "bright.png"},
        {"id": "other", "title": "unrelated", "image": "other.png"},
    ]
    return write_jsonl(folder / "catalog.jsonl", rows)


def test_dupes_command_lists_clusters(settings: Settings, tmp_path: Path, monkeypatch) -> None:
    Ingestor(settings).run(IngestOptions(_dupes_catalog(tmp_path), "d"))
    monkeypatch.setenv("MMSEARCH_HOME", str(settings.home))
    runner = CliRunner()
    result = runner.invoke(app, ["dupes", "-c", "d", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    clusters = sorted(sorted(c["ids"]) for c in report["clusters"])
    # "small" holds a copy of "other" (image 0) and a copy of "orig" (image 1): it is in
    # both clusters, which stay apart (star linkage; single linkage chained them into one)
    assert clusters == [
        ["bright", "flipped", "orig", "recoded", "same", "small"],
        ["other", "small"],
    ]
    pairs = {(p["a"], p["b"]): p for c in report["clusters"] for p in c["pairs"]}
    assert pairs[("orig", "same")]["kind"] == "same bytes"
    assert pairs[("orig", "recoded")]["kind"] == "same pixels"
    assert pairs[("small", "other")]["kind"] == "same bytes"
    flipped = [p for (a, b), p in pairs.items() if "flipped" in (a, b) and p["kind"] == "near"]
    assert flipped and min(p["distance"] for p in flipped) <= 10
    assert report["images"] == 8 and report["items"] == 7
    assert report["strictness"] == "strict" and report["unreadable"] == []
    assert "same decoded pixels" in report["criteria"]
    assert f"colours within {MAX_COLOUR_DIFFERENCE}" in report["criteria"]

    table = runner.invoke(app, ["dupes", "-c", "d"])
    assert table.exit_code == 0, table.output
    header = " ".join(table.output.split())
    assert "exact = same bytes or same decoded pixels" in header
    assert f"PDQ distance ≤ {DEFAULT} of 256 bits" in header and "strictness strict" in header
    assert "match it directly" in header
    # So few pictures are joined exactly, and the report says so (JSON and table alike).
    assert report["near_pairs"].startswith("near pairs: exact (exact scan) over ")
    assert report["near_pairs"] in header

    strict = runner.invoke(app, ["dupes", "-c", "d", "--max-distance", "0", "--json"])
    assert strict.exit_code == 0, strict.output
    exact = json.loads(strict.output)
    # The mirror image is PDQ distance 0 through a variant: still "near", never "exact".
    found = {tuple(sorted(c["ids"])): c["kind"] for c in exact["clusters"]}
    assert found == {("flipped", "orig", "recoded", "same"): "near", ("other", "small"): "exact"}
    assert exact["strictness"] is None and "given by hand" in exact["criteria"]

    bad = runner.invoke(app, ["dupes", "-c", "d", "--strictness", "lenient"])
    assert bad.exit_code == 2 and "choose one of strict, standard, loose" in bad.output


def test_dupes_on_unknown_collection_is_a_clean_error(settings: Settings, monkeypatch) -> None:
    monkeypatch.setenv("MMSEARCH_HOME", str(settings.home))
    result = CliRunner().invoke(app, ["dupes", "-c", "missing"])
    assert result.exit_code == 2
    assert "Traceback" not in result.output
