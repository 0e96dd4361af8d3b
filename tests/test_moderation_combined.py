"""The combined near-match rule: PDQ or the visual descriptor, at a strictness level's
jointly calibrated thresholds, in banned-list matching, ``compare`` and ``dupes``; and the
banned list's versioned cache."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from mmsearch.evaluation.duplicates import find_clusters
from mmsearch.media.images import ImageLimits
from mmsearch.moderation.banned import load_banned
from mmsearch.moderation.decisions import ItemDecision, decide
from mmsearch.moderation.descriptor import decode_vector, encode_vector, pairs_at_least
from mmsearch.moderation.evaluate import moderate
from mmsearch.moderation.fingerprints import STRICTNESS, compare, fingerprint_bytes
from mmsearch.moderation.policy import BannedImages
from mmsearch.moderation.store import InstalledPolicy, PolicyStore

LEVEL = STRICTNESS["standard"]


def _picture(seed: int) -> Image.Image:
    """A drawing of six coloured ellipses and rectangles, the same for the same seed."""
    rng = np.random.default_rng(seed)
    image = Image.new("RGB", (128, 128), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    for _ in range(6):
        x, y = (int(v) for v in rng.integers(0, 100, 2))
        width, height = (int(v) for v in rng.integers(20, 60, 2))
        colour = tuple(int(v) for v in rng.integers(0, 255, 3))
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        shape((x, y, x + width, y + height), fill=colour)
    return image


def _rotated(image: Image.Image) -> Image.Image:
    return image.rotate(5, resample=Image.Resampling.BICUBIC, fillcolor=(255, 255, 255))


def _with_text(image: Image.Image) -> Image.Image:
    image = image.copy()
    ImageDraw.Draw(image).text(
        (6, 50), "SALE 50%", fill=(0, 0, 0), font=ImageFont.load_default(size=22)
    )
    return image


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


BANNED_SEED, OTHER_SEED = 5, 105


@pytest.fixture
def policy(tmp_path: Path) -> InstalledPolicy:
    folder = tmp_path / "banned"
    folder.mkdir()
    (folder / "poster.png").write_bytes(_png(_picture(BANNED_SEED)))
    (folder / "other.png").write_bytes(_png(_picture(BANNED_SEED + 1)))
    policy = tmp_path / "p.toml"
    policy.write_text(
        'version = 1\n[[rules]]\nid = "posters"\naction = "block"\n'
        f'[rules.banned_images]\nfolder = "{folder}"\nstrictness = "standard"\n',
        encoding="utf-8",
    )
    return PolicyStore(tmp_path / "home").install("posters", policy)


def test_rotated_and_overlaid_copies_match_by_the_combined_rule(policy: InstalledPolicy) -> None:
    original = _picture(BANNED_SEED)
    copies = {"rotated.png": _rotated(original), "text.png": _with_text(original)}
    report = moderate([policy], images=[(n, _png(im)) for n, im in copies.items()])
    found = {d.image: d for d in report.decisions}
    assert set(found) == set(copies)
    assert LEVEL.min_visual_cosine is not None
    methods = set()
    for decision in found.values():
        assert decision.banned == "poster.png" and decision.kind == "near"
        assert decision.distance is not None and decision.cosine is not None
        # The evidence names the method that matched, and its number backs it.
        if decision.method == "pdq":
            assert decision.distance <= LEVEL.max_distance
        else:
            assert decision.method == "visual"
            assert decision.distance > LEVEL.max_distance
            assert decision.cosine >= LEVEL.min_visual_cosine
        methods.add(decision.method)
    # PDQ alone misses at least one of them: the descriptor is what catches it.
    assert "visual" in methods


def test_the_stored_decision_keeps_the_method_and_cosine(policy: InstalledPolicy) -> None:
    rotated = _png(_rotated(_picture(BANNED_SEED)))
    decision = decide(moderate([policy], images=[("rotated.png", rotated)]), "2026-01-01T00:00:00Z")
    assert decision is not None
    [evidence] = decision.evidence
    assert evidence.method == "visual" and evidence.kind == "near"
    assert evidence.cosine is not None and evidence.cosine >= (LEVEL.min_visual_cosine or 1.0)
    reread = ItemDecision.model_validate_json(decision.model_dump_json())
    assert reread.evidence[0].method == "visual"
    assert reread.evidence[0].cosine == evidence.cosine


def test_a_different_picture_is_not_matched(policy: InstalledPolicy) -> None:
    report = moderate([policy], images=[("other.png", _png(_picture(OTHER_SEED)))])
    assert report.decisions == []


def test_compare_names_the_method_and_pdq_alone_misses() -> None:
    original = fingerprint_bytes(_png(_picture(BANNED_SEED)), source="original")
    rotated = fingerprint_bytes(_png(_rotated(_picture(BANNED_SEED))), source="rotated")
    assert LEVEL.min_visual_cosine is not None
    combined = compare(rotated, original, LEVEL.max_distance, LEVEL.min_visual_cosine)
    assert combined is not None and combined.kind == "near"
    assert combined.visual_cosine is not None
    if combined.method == "visual":
        assert compare(rotated, original, LEVEL.max_distance) is None
    exact = compare(original, original, LEVEL.max_distance, LEVEL.min_visual_cosine)
    assert exact is not None and exact.method == "exact" and exact.visual_cosine == 1.0


def test_a_mirrored_copy_keeps_its_visual_cosine() -> None:
    original = fingerprint_bytes(_png(_picture(BANNED_SEED)), source="original")
    flipped = fingerprint_bytes(
        _png(_picture(BANNED_SEED).transpose(Image.Transpose.FLIP_LEFT_RIGHT)), source="flipped"
    )
    match = compare(flipped, original, -1, LEVEL.min_visual_cosine)  # PDQ left out
    assert match is not None and match.method == "visual"
    assert match.visual_cosine is not None and match.visual_cosine > 0.99


def test_stored_descriptor_round_trip_and_foreign_revisions() -> None:
    vector = np.random.default_rng(0).normal(size=290).astype(np.float32)
    vector /= np.linalg.norm(vector)
    text = encode_vector(vector)
    assert len(text) < 420
    back = decode_vector(text)
    assert back is not None and float(back @ vector) > 0.9999
    tag, _, payload = text.partition(":")
    assert decode_vector(f"000000000000:{payload}") is None  # another descriptor revision
    assert decode_vector(f"{tag}:not base64!") is None
    assert decode_vector(f"{tag}:{payload[:40]}") is None  # wrong length


def test_an_old_banned_cache_is_rebuilt_not_misread(tmp_path: Path) -> None:
    folder = tmp_path / "banned"
    folder.mkdir()
    data = _png(_picture(BANNED_SEED))
    (folder / "poster.png").write_bytes(data)
    cache = tmp_path / "p.fingerprints.json"
    sha = hashlib.sha256(data).hexdigest()
    # The format before the descriptor: a flat map of PDQ entries (this one wrong).
    cache.write_text(json.dumps({sha: {"pdq": "0" * 64, "pixels": "x"}}), encoding="utf-8")
    condition = BannedImages(folder=str(folder))
    banned = load_banned(condition, cache, ImageLimits())
    truth = fingerprint_bytes(data, source="poster")
    assert banned.pdq == [truth.pdq] and banned.vectors is not None
    rewritten = json.loads(cache.read_text(encoding="utf-8"))
    assert rewritten["header"]["version"] == 2
    assert rewritten["entries"][sha]["visual"] == truth.visual


def test_dupes_joins_a_rotated_copy_by_the_descriptor() -> None:
    pictures = [_picture(BANNED_SEED), _rotated(_picture(BANNED_SEED)), _picture(OTHER_SEED)]
    prints = [fingerprint_bytes(_png(p), source=str(n)) for n, p in enumerate(pictures)]
    items = np.arange(3, dtype=np.int64)
    positions = np.zeros(3, dtype=np.int64)
    ids = ["original", "rotated", "other"]
    pdq_only = find_clusters(
        ids, items, positions, prints, max_distance=20, max_colour_difference=None
    )
    assert pdq_only == []
    clusters = find_clusters(
        ids,
        items,
        positions,
        prints,
        max_distance=20,
        min_visual_cosine=LEVEL.min_visual_cosine,
        max_colour_difference=None,
    )
    assert [c.ids for c in clusters] == [["original", "rotated"]]
    [pair] = clusters[0].pairs
    assert pair.method == "visual" and pair.cosine is not None
    assert pair.cosine >= (LEVEL.min_visual_cosine or 1.0)


def test_the_visual_self_join_finds_pairs_across_blocks() -> None:
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(2100, 290)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    vectors[2090] = vectors[3]  # a pair whose rows fall in different blocks of 2,048
    first, second, cosine = pairs_at_least(vectors, 0.9)
    assert list(zip(first.tolist(), second.tolist(), strict=True)) == [(3, 2090)]
    assert cosine[0] == pytest.approx(1.0)
