"""Moderation fingerprints: crop to content, PDQ symmetries, exact vs near, lookup, calibration."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageOps

from mmsearch.errors import ImageError, MMSearchError
from mmsearch.media.images import ImageLimits, to_rgb
from mmsearch.moderation.calibration import calibrate
from mmsearch.moderation.content import crop_to_content, pixels_sha256
from mmsearch.moderation.fingerprints import (
    STRICTNESS,
    compare,
    fingerprint_bytes,
    strictness,
)
from mmsearch.moderation.hash_index import CHUNKS, HashIndex
from mmsearch.moderation.pdq import from_hex, hamming, to_hex

from conftest import by_profile

SAMPLE = Path(__file__).resolve().parents[1] / "src" / "mmsearch" / "sample_data" / "emoji"
NOTO = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "emoji" / "google-64"
STANDARD = STRICTNESS["standard"].max_distance


def _png(image: Image.Image, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", **options)
    return buffer.getvalue()


def _emoji(name: str = "1f600.png") -> Image.Image:
    return Image.open(SAMPLE / "images" / name).convert("RGBA")


def _fingerprint(image: Image.Image, **options: object):
    return fingerprint_bytes(_png(image, **options), source="test")


def test_a_transparent_canvas_and_a_white_border_crop_to_the_same_pixels():
    emoji = _emoji()
    wider = Image.new("RGBA", (emoji.width + 40, emoji.height + 16), (0, 0, 0, 0))
    wider.paste(emoji, (31, 3))
    assert _fingerprint(wider).pixels_sha256 == _fingerprint(emoji).pixels_sha256
    flattened = compare(_fingerprint(to_rgb(wider)), _fingerprint(emoji), 0)
    assert flattened is not None and flattened.kind == "same pixels"

    flat = to_rgb(emoji)
    framed = ImageOps.expand(ImageOps.expand(flat, 5, fill="white"), 6, fill=(200, 30, 30))
    assert crop_to_content(framed).size == crop_to_content(flat).size
    assert pixels_sha256(crop_to_content(framed)) == pixels_sha256(crop_to_content(flat))


def test_a_flat_image_keeps_its_whole_canvas():
    blank = Image.new("RGBA", (20, 10), (0, 0, 0, 0))
    assert crop_to_content(blank).size == (20, 10)
    assert crop_to_content(Image.new("RGB", (9, 7), "navy")).size == (9, 7)


def test_a_png_re_encoded_is_an_exact_match_by_pixels_not_bytes():
    emoji = _emoji()
    original = _fingerprint(emoji)
    recoded = _fingerprint(emoji, compress_level=1, optimize=False)
    assert original.sha256 != recoded.sha256
    match = compare(recoded, original, STANDARD)
    assert match is not None and match.kind == "same pixels"
    same = compare(original, original, STANDARD)
    assert same is not None and same.kind == "same bytes"


@pytest.mark.parametrize(
    ("transpose", "variant"),
    [
        (Image.Transpose.FLIP_LEFT_RIGHT, "flip horizontal"),
        (Image.Transpose.ROTATE_90, "rotate 270"),
        (Image.Transpose.TRANSPOSE, "rotate 90 + flip vertical"),
        (Image.Transpose.ROTATE_180, "rotate 180"),
    ],
)
def test_flips_and_quarter_turns_match_through_the_dihedral_variants(transpose, variant):
    emoji = _emoji("1f697.png")
    original = _fingerprint(emoji)
    turned = _fingerprint(emoji.transpose(transpose))
    plain = int(hamming(from_hex(turned.pdq), from_hex(original.pdq)))
    match = compare(turned, original, STANDARD)
    assert plain > 60  # without the variants the copy is as far as another picture
    assert match is not None and match.kind == "near" and match.pdq_distance <= 8
    assert match.variant == variant  # what turns the copy back into the original


@pytest.mark.skipif(
    not (NOTO / "1f44d-1f3fb.png").is_file(), reason="shared emoji data not present"
)  # the packaged sample has no skin-tone variants; CI has the data and fails on a skip
def test_a_skin_tone_variant_is_never_exact():
    thumbs = [_fingerprint(Image.open(NOTO / f"1f44d{s}.png")) for s in ("", "-1f3fb", "-1f3ff")]
    for variant in thumbs[1:]:
        match = compare(variant, thumbs[0], max_distance=256)
        assert match is not None and match.kind == "near"
    assert thumbs[1].pixels_sha256 != thumbs[2].pixels_sha256


def test_stripes_of_two_colours_are_not_exact_even_when_the_hashes_agree():
    def stripes(colour: str) -> Image.Image:
        image = Image.new("RGB", (64, 64), "white")
        for x in range(0, 64, 16):
            image.paste(colour, (x, 0, x + 8, 64))
        return image

    red, blue = _fingerprint(stripes("red")), _fingerprint(stripes("blue"))
    assert red.phash == blue.phash  # what "exact" used to mean
    match = compare(red, blue, 256)
    assert match is not None and match.kind == "near"


def test_fingerprinting_keeps_the_image_limits():
    data = _png(Image.new("RGB", (300, 300), "white"))
    with pytest.raises(ImageError, match="over the limit"):
        fingerprint_bytes(data, source="big.png", limits=ImageLimits(max_pixels=10_000))
    with pytest.raises(ImageError):
        fingerprint_bytes(b"not an image", source="junk.png")


def test_hex_form_round_trips_and_strictness_levels_are_ordered():
    words = np.array([1, 2**63, 0, 2**64 - 1], dtype=np.uint64)
    assert to_hex(words).startswith("ffffffffffffffff")
    assert np.array_equal(from_hex(to_hex(words)), words)
    with pytest.raises(ValueError):
        from_hex("12")
    levels = [strictness(name).max_distance for name in ("strict", "standard", "loose")]
    assert levels == sorted(levels) and levels[0] >= 0
    with pytest.raises(MMSearchError, match="choose one of"):
        strictness("lenient")


def _near(rng: np.random.Generator, base: np.ndarray, bits: int) -> np.ndarray:
    flipped = base.copy()
    for bit in rng.choice(256, size=bits, replace=False):
        flipped[bit // 64] ^= np.uint64(1) << np.uint64(bit % 64)
    return flipped


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    radius=st.integers(0, 70),
    count=st.integers(1, 400),
    queries=st.integers(1, 8),
)
def test_the_hash_index_finds_exactly_what_brute_force_finds(seed, radius, count, queries):
    rng = np.random.default_rng(seed)
    stored = rng.integers(0, 2**64, size=(count, 4), dtype=np.uint64)
    base = stored[rng.integers(count)]
    # Stored hashes near the query, on both sides of the radius, so there is something to find.
    for row in rng.choice(count, size=min(count, 20), replace=False):
        stored[row] = _near(rng, base, int(rng.integers(0, radius + 6)))
    query = np.stack([base, *(_near(rng, base, 3) for _ in range(queries - 1))])
    brute = hamming(query[:, None, :], stored[None, :, :]).min(axis=0)
    expected = np.flatnonzero(brute <= radius)
    # The tables always (the path under test), and the default that may choose a scan.
    for index in (HashIndex(stored, scan_share=math.inf), HashIndex(stored)):
        rows, distances = index.search(query, radius)
        assert rows.tolist() == expected.tolist()
        assert distances.tolist() == brute[expected].tolist()


@settings(max_examples=by_profile(40, 10), deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    radius=st.integers(0, 90),
    count=st.integers(1, 300),
    kinds=st.integers(1, 8),
    budget=st.sampled_from([1, 500, 4_000_000]),
)
def test_the_self_join_finds_every_pair_an_all_pairs_scan_finds(seed, radius, count, kinds, budget):
    rng = np.random.default_rng(seed)
    stored = rng.integers(0, 2**64, size=(count, 4), dtype=np.uint64)
    # Groups of near copies on both sides of the radius, so that there are pairs to find.
    for row in rng.choice(count, size=min(count, 30), replace=False):
        stored[row] = _near(rng, stored[row % 5], int(rng.integers(0, radius + 6)))
    variants = np.stack(
        [np.stack([row, *(_near(rng, row, 20) for _ in range(kinds - 1))]) for row in stored]
    )
    # The scan: every variant of every row against every row.
    every = hamming(variants[:, :, None, :], stored[None, None, :, :])  # (n, kinds, n)
    best = every.min(axis=1)
    expected = {(int(i), int(j)): int(best[i, j]) for i, j in np.argwhere(best <= radius) if i != j}
    # The tables always (the path under test), and the default that may choose a scan.
    for index in (HashIndex(stored, scan_share=math.inf), HashIndex(stored)):
        first, second, distance, variant = index.pairs_within(variants, radius, budget=budget)
        pairs = zip(first.tolist(), second.tolist(), strict=True)
        found = dict(zip(pairs, distance.tolist(), strict=True))
        assert len(found) == len(first) and found == expected
        turned = hamming(variants[first, variant], stored[second])
        assert turned.tolist() == distance.tolist()  # the variant named is the one that matched


def test_the_hash_index_visits_few_rows_for_a_tight_radius():
    rng = np.random.default_rng(1)
    stored = rng.integers(0, 2**64, size=(50_000, 4), dtype=np.uint64)
    index = HashIndex(stored)
    candidates = index._candidates(stored[:1], 31)
    assert candidates is not None and 0 < len(candidates) < 2_000
    assert 31 // CHUNKS == 1
    rows, distances = index.search(_near(rng, stored[7], 31), 31)
    assert 7 in rows.tolist() and distances[rows.tolist().index(7)] == 31
    assert index._candidates(stored[:1], 85) is None  # a wide radius is a scan
    rows, _ = index.search(_near(rng, stored[9], 85), 85)
    assert 9 in rows.tolist()
    with pytest.raises(ValueError):
        index.search(stored[0], -1)


def test_calibration_picks_the_largest_threshold_within_the_target():
    rng = np.random.default_rng(0)
    different = rng.integers(20, 200, size=10_000)
    different[:5] = [3, 8, 12, 15, 18]  # a few hard pairs below the bulk
    matching = {"easy": rng.integers(0, 10, size=500), "hard": rng.integers(10, 40, size=500)}
    tight = calibrate(different, matching, 0.0001)  # one false match allowed in 10,000
    assert tight.threshold == 7 and tight.false_match_rate == 0.0001
    looser = calibrate(different, matching, 0.0005)
    assert looser.threshold == 19 and looser.false_match_rate <= 0.0005
    assert looser.recall["easy"] == 1.0 and 0.2 < looser.recall["hard"] < 0.4
    assert calibrate(np.array([0, 5]), {}, 0.0).threshold == -1
    scores = calibrate(np.array([0.5, 0.6, 0.7, 0.8]), {"m": np.array([0.1, 0.6])}, 0.25)
    assert 0.59 < scores.threshold < 0.6 and scores.recall["m"] == 0.5
    with pytest.raises(ValueError):
        calibrate(np.array([]), {}, 0.1)
