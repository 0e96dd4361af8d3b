"""Moderation matching: recall on altered copies at a calibrated false-match rate.

Data: the emoji of ``shared/datasets/emoji`` by both artists (Noto and Twemoji, 3,786
each, 64x64 RGBA). Every image is fingerprinted (``mmsearch.moderation``: cropped to
content, then PDQ with its eight rotations and flips, pHash and dHash) and described
by the ``visual`` encoder (on the image as it is, as ingest does today).

- Non-matching pairs: every pair of gallery images of *different* emoji, within and
  across artists. A "family" groups an emoji with its skin-tone and gender variants
  (the code points with tone modifiers, gender signs and man/woman/person folded
  away); pairs inside a family are left out of the false-match rate and reported as
  their own rows, because whether they should match is a policy choice. Pairs whose
  decoded pixels are identical (a few Noto files repeat) are the same picture, not a
  false match, and are left out too.
- Matching pairs: a seeded sample of originals (half from each artist), each altered
  17 ways (the six of ``near_duplicates.py`` plus flattening, flip, quarter turn,
  border, scale on a canvas, grayscale, hue shift, blur and combinations); the pair
  is the altered copy and its own original.

For each method the threshold is calibrated on the non-matching pairs for the target
false-match rate (``moderation.calibration.calibrate``: the largest distance whose
rate is within the target), and recall per alteration is read at it. ``visual`` is
the descriptor as moderation stores it (quantised to bytes, ``moderation.descriptor``);
"visual mirrored" also tries the query's mirror and keeps the higher cosine.

The combined rule (PDQ dihedral ≤ t1 OR visual cosine ≥ t2) is calibrated jointly
(``moderation.calibration.calibrate_union``): the union's false-match rate on all the
non-matching pairs stays within the target, and of the threshold pairs that do, the
one with the highest lowest recall on a *calibration half* of the originals wins; its
recall is reported on the other, held-out half. That is done for the three strictness
levels stored in ``moderation/fingerprints.py``, and PDQ alone at them for comparison.
Then the multi-index lookup (``moderation.hash_index``) is timed against a scan on
synthetic random 256-bit hashes (index timing only: random hashes spread evenly over
the buckets, real ones cluster somewhat more).

Usage::

    python benchmarks/moderation_robustness.py --sample 400 --seed 0

``--cache FILE`` keeps the gallery's and the altered copies' fingerprints in an .npz
between runs (keyed by sample, seed and descriptor version), so a rerun skips the
minutes of fingerprinting.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from near_duplicates import ALTERATIONS, DATASET, machine
from PIL import Image, ImageFilter, ImageOps

from mmsearch.encoders.base import Encoder, create_encoder
from mmsearch.encoders.hashes import hamming_matrix
from mmsearch.encoders.visual import DescriptorParams, mirror_permutation
from mmsearch.media.images import decode_image, to_rgb
from mmsearch.moderation.calibration import (
    Calibration,
    JointCalibration,
    calibrate,
    calibrate_union,
)
from mmsearch.moderation.content import crop_to_content, pixels_sha256
from mmsearch.moderation.descriptor import quantise, unit_rows
from mmsearch.moderation.hash_index import HashIndex
from mmsearch.moderation.pdq import hamming, pdq_hashes

LEVELS = {"strict": 0.0001, "standard": 0.001, "loose": 0.01}
TONES = {"1F3FB", "1F3FC", "1F3FD", "1F3FE", "1F3FF"}
# Folded to one symbol so that man/woman/person (and boy/girl/child, old man/woman/older
# person) versions of one emoji share a family.
PEOPLE = {
    "1F468": "P",
    "1F469": "P",
    "1F9D1": "P",
    "1F466": "C",
    "1F467": "C",
    "1F9D2": "C",
    "1F474": "O",
    "1F475": "O",
    "1F9D3": "O",
}
GENDER_SIGNS = {"2640", "2642"}


def family_of(unified: str) -> str:
    parts = [p for p in unified.upper().split("-") if p not in TONES | GENDER_SIGNS | {"FE0F"}]
    folded = [PEOPLE.get(p, p) for p in parts]
    while folded and folded[-1] == "200D":
        folded.pop()
    return "-".join(folded)


@dataclass
class Entry:
    artist: str
    file: str
    unified: str
    family: str
    tone: bool  # carries a skin-tone modifier


def entries() -> list[Entry]:
    rows = json.loads((DATASET / "emoji-datasource.json").read_text(encoding="utf-8"))
    found: list[Entry] = []
    for artist in ("google-64", "twitter-64"):
        for row in rows:
            items = [(row["image"], row["unified"])]
            items += [
                (v["image"], v["unified"]) for v in (row.get("skin_variations") or {}).values()
            ]
            for file, unified in items:
                tone = any(t in unified.upper().split("-") for t in TONES)
                found.append(Entry(artist, file, unified, family_of(unified), tone))
    return found


def _jpeg(image: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    to_rgb(image).save(buffer, format="JPEG", quality=quality)
    return decode_image(buffer.getvalue(), source="jpeg")


def _border(image: Image.Image) -> Image.Image:
    return ImageOps.expand(to_rgb(image), 6, fill=(0, 0, 0))


def _on_canvas(image: Image.Image) -> Image.Image:
    small = image.resize(
        (round(image.width * 0.6), round(image.height * 0.6)), Image.Resampling.LANCZOS
    )
    canvas = Image.new("RGBA", image.size, (255, 255, 255, 255))
    canvas.alpha_composite(small.convert("RGBA"), (3, image.height - small.height - 2))
    return canvas.convert("RGB")


def _grey(image: Image.Image) -> Image.Image:
    return ImageOps.grayscale(to_rgb(image)).convert("RGB")


def _hue(image: Image.Image) -> Image.Image:
    hsv = np.asarray(to_rgb(image).convert("HSV")).copy()
    hsv[..., 0] = (hsv[..., 0].astype(np.int16) + 64) % 256  # a quarter turn of the hue wheel
    return Image.fromarray(hsv, mode="HSV").convert("RGB")


MORE: dict[str, Callable[[Image.Image], Image.Image]] = {
    "flip horizontal": lambda im: to_rgb(im).transpose(Image.Transpose.FLIP_LEFT_RIGHT),
    "rotate 90°": lambda im: to_rgb(im).transpose(Image.Transpose.ROTATE_90),
    "6 px black border": _border,
    "60% scale, off-centre on canvas": _on_canvas,
    "grayscale": _grey,
    "hue shift 90°": _hue,
    "blur (Gaussian r=1)": lambda im: to_rgb(im).filter(ImageFilter.GaussianBlur(1)),
    "flip + JPEG q=40": lambda im: _jpeg(im.transpose(Image.Transpose.FLIP_LEFT_RIGHT), 40),
    "border + grayscale": lambda im: _grey(_border(im)),
    "canvas + JPEG q=60": lambda im: _jpeg(_on_canvas(im), 60),
}
ALL_ALTERATIONS = {k: v for k, v in ALTERATIONS.items() if k != "none (baseline)"} | MORE


@dataclass
class Hashed:
    """Per image: PDQ variants (8, 4), pHash, dHash (int64), pixel digest, PDQ quality."""

    pdq: np.ndarray
    phash: np.ndarray
    dhash: np.ndarray
    pixels: list[str]
    quality: np.ndarray


def hash_all(images: list[Image.Image]) -> Hashed:
    from mmsearch.encoders.hashes import image_hashes

    pdq, phash, dhash, pixels, quality = [], [], [], [], []
    for image in images:
        content = crop_to_content(image)
        hashes = pdq_hashes(content)
        small = image_hashes(content)
        pdq.append(hashes.variants)
        quality.append(hashes.quality)
        phash.append(small.phash)
        dhash.append(small.dhash)
        pixels.append(pixels_sha256(content))
    return Hashed(
        np.stack(pdq),
        np.array(phash, dtype=np.int64),
        np.array(dhash, dtype=np.int64),
        pixels,
        np.array(quality),
    )


METHODS = ("PDQ dihedral", "PDQ", "pHash", "dHash", "visual", "visual mirrored")
VISUAL_METHODS = ("visual", "visual mirrored")
# The combined rules: PDQ dihedral OR the named visual method, calibrated jointly.
COMBINED = {"PDQ dihedral + visual": "visual", "PDQ dihedral + visual mirrored": "visual mirrored"}
PRODUCT_RULE = "PDQ dihedral + visual mirrored"  # what fingerprints.STRICTNESS stores


MIRROR = mirror_permutation(DescriptorParams())


def stored_vectors(encoder: Encoder, images: list[Image.Image]) -> np.ndarray:
    """The descriptor as moderation stores and compares it: quantised, back to unit rows."""
    return unit_rows(quantise(encoder.encode_images(images)))


def distances(
    method: str, query: Hashed, qvec: np.ndarray, gallery: Hashed, gvec: np.ndarray
) -> np.ndarray:
    """(queries, gallery) distances; visual as 1 - cosine."""
    if method == "PDQ dihedral":
        return hamming(query.pdq[:, :, None, :], gallery.pdq[None, None, :, 0, :]).min(axis=1)
    if method == "PDQ":
        return hamming(query.pdq[:, None, 0, :], gallery.pdq[None, :, 0, :])
    if method == "pHash":
        return hamming_matrix(query.phash, gallery.phash).astype(np.int64)
    if method == "dHash":
        return hamming_matrix(query.dhash, gallery.dhash).astype(np.int64)
    cosine = qvec @ gvec.T
    if method == "visual mirrored":
        cosine = np.maximum(cosine, qvec[:, MIRROR] @ gvec.T)
    return (1.0 - cosine).astype(np.float32)


def take(hashed: Hashed, rows: np.ndarray) -> Hashed:
    return Hashed(
        hashed.pdq[rows],
        hashed.phash[rows],
        hashed.dhash[rows],
        [hashed.pixels[i] for i in rows],
        hashed.quality[rows],
    )


def pair_distances(
    gallery: Hashed, vectors: np.ndarray, family: np.ndarray, block: int = 24
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], np.ndarray, int]:
    """Distances per method of every non-matching pair (i < j, different family, different
    pixels) and of every pair inside a family (the ``(i, j)`` rows returned with them),
    and the count of pixel-identical pairs across families, which are left out."""
    count = len(family)
    pixel_group = np.unique(np.array(gallery.pixels), return_inverse=True)[1]
    negatives: dict[str, list[np.ndarray]] = {m: [] for m in METHODS}
    inside: dict[str, list[np.ndarray]] = {m: [] for m in METHODS}
    pairs: list[np.ndarray] = []
    identical = 0
    for start in range(0, count, block):
        rows = np.arange(start, min(start + block, count))
        part = take(gallery, rows)
        upper = np.arange(count)[None, :] > rows[:, None]
        other = family[None, :] != family[rows][:, None]
        same_pixels = pixel_group[None, :] == pixel_group[rows][:, None]
        identical += int(np.sum(upper & other & same_pixels))
        keep = upper & other & ~same_pixels
        variant = upper & ~other & ~same_pixels
        for method in METHODS:
            found = distances(method, part, vectors[rows], gallery, vectors)
            kind = np.float32 if method in VISUAL_METHODS else np.int16
            negatives[method].append(found[keep].astype(kind))
            inside[method].append(found[variant])
        pairs.append(np.stack(np.nonzero(variant), axis=1) + np.array([start, 0]))
    return (
        {m: np.concatenate(v) for m, v in negatives.items()},
        {m: np.concatenate(v) for m, v in inside.items()},
        np.concatenate(pairs),
        identical,
    )


def fmt(value: float) -> str:
    return f"{value:.3f}"


def rate(value: float) -> str:
    return f"{100 * value:.3f}%"


def threshold_text(method: str, value: float) -> str:
    if method in VISUAL_METHODS:
        return f"cos ≥ {1 - value:.4f}"
    return f"d ≤ {int(value)}"


def time_index(sizes: list[int], radii: list[int], seed: int, queries: int = 200) -> list[str]:
    lines = [
        "| stored hashes | radius | build (s) | lookup, index (ms) | lookup, scan (ms) "
        "| rows found / probes |",
        "| ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    rng = np.random.default_rng(seed)
    for size in sizes:
        stored = rng.integers(0, 2**64, size=(size, 4), dtype=np.uint64)
        started = time.perf_counter()
        index = HashIndex(stored)
        built = time.perf_counter() - started
        for radius in radii:
            probes = []
            for row in rng.choice(size, size=queries, replace=False):
                near = stored[row].copy()
                for bit in rng.choice(256, size=radius, replace=False):
                    near[bit // 64] ^= np.uint64(1) << np.uint64(bit % 64)
                probes.append(near)
            started = time.perf_counter()
            found = sum(len(index.search(probe, radius)[0]) for probe in probes)
            lookup = (time.perf_counter() - started) / queries
            started = time.perf_counter()
            for probe in probes[:20]:
                np.flatnonzero(hamming(stored, probe) <= radius)
            scan = (time.perf_counter() - started) / 20
            lines.append(
                f"| {size:,} | {radius} | {built:.1f} | {1000 * lookup:.2f} | "
                f"{1000 * scan:.1f} | {found}/{queries} |"
            )
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--dataset", type=Path, default=DATASET)
    parser.add_argument("--sample", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--target", type=float, default=0.001)
    parser.add_argument("--cache", type=Path, help="an .npz to keep fingerprints in between runs")
    parser.add_argument("--index-sizes", type=int, nargs="*", default=[100_000, 1_000_000])
    parser.add_argument(
        "--index-only",
        action="store_true",
        help="only time the lookup, at the stored strictness thresholds",
    )
    args = parser.parse_args(argv)
    started = time.perf_counter()
    if args.index_only:
        from mmsearch.moderation.fingerprints import STRICTNESS

        print(f"$ python {shlex.join(['benchmarks/moderation_robustness.py', *sys.argv[1:]])}")
        print(f"machine: {machine()}\n")
        radii = sorted({31, *(level.max_distance for level in STRICTNESS.values())})
        print("\n".join(time_index(args.index_sizes, radii, args.seed)))
        print(f"\ntotal time: {time.perf_counter() - started:.1f} s")
        return

    gallery_entries = entries()
    family = np.array([e.family for e in gallery_entries])
    artist = np.array([e.artist for e in gallery_entries])
    rng = np.random.default_rng(args.seed)
    half = args.sample // 2
    noto = np.flatnonzero(artist == "google-64")
    twemoji = np.flatnonzero(artist == "twitter-64")
    chosen = np.sort(
        np.concatenate(
            [rng.choice(noto, half, replace=False), rng.choice(twemoji, half, replace=False)]
        )
    )
    # Originals whose altered copies choose the combined thresholds; the rest report them.
    calibration_half = np.zeros(len(chosen), dtype=bool)
    calibration_half[rng.permutation(len(chosen))[: len(chosen) // 2]] = True

    encoder = create_encoder("visual")
    gallery, vectors, queries, cached = fingerprinted(
        args, gallery_entries, chosen, encoder, args.cache
    )
    print(f"$ python {shlex.join(['benchmarks/moderation_robustness.py', *sys.argv[1:]])}")
    print(f"machine: {machine()}")
    print(
        f"gallery: {len(family)} images (Noto + Twemoji), {len(set(family))} families; "
        f"PDQ quality < 50 for {int(np.sum(gallery.quality < 50))} images; "
        + ("fingerprints read from the cache" if cached else "fingerprinted")
        + f" in {time.perf_counter() - started:.0f} s"
    )

    negatives, inside, pairs, identical = pair_distances(gallery, vectors, family)
    tone_flag = np.array([e.tone for e in gallery_entries])
    unified = [e.unified.upper() for e in gallery_entries]
    same_artist = artist[pairs[:, 0]] == artist[pairs[:, 1]]
    only_tone = np.array(
        [
            "-".join(p for p in unified[a].split("-") if p not in TONES)
            == "-".join(p for p in unified[b].split("-") if p not in TONES)
            for a, b in pairs
        ]
    )
    kinds = {
        "skin-tone variants of one emoji": same_artist & only_tone,
        "gender variants of one emoji": same_artist
        & ~only_tone
        & ~tone_flag[pairs[:, 0]]
        & ~tone_flag[pairs[:, 1]],
    }
    print(
        f"non-matching pairs: {len(negatives['PDQ']):,} (different emoji; {identical} pairs "
        f"with identical pixels left out); variant pairs: "
        + ", ".join(f"{name} {int(mask.sum()):,}" for name, mask in kinds.items())
    )

    matching: dict[str, dict[str, np.ndarray]] = {m: {} for m in METHODS}
    other_family: dict[str, dict[str, np.ndarray]] = {m: {} for m in METHODS}
    exact: dict[str, float] = {}
    for label in ALL_ALTERATIONS:
        hashed, qvec = queries[label]
        exact[label] = float(
            np.mean([hashed.pixels[k] == gallery.pixels[i] for k, i in enumerate(chosen)])
        )
        for method in METHODS:
            found = distances(method, hashed, qvec, gallery, vectors)
            matching[method][label] = found[np.arange(len(chosen)), chosen]
            others = found.copy()
            others[family[None, :] == family[chosen][:, None]] = (
                np.inf if method in VISUAL_METHODS else 999
            )
            other_family[method][label] = others.min(axis=1)

    calibrations: dict[str, Calibration] = {
        method: calibrate(negatives[method], matching[method], args.target) for method in METHODS
    }

    def split(values: dict[str, np.ndarray], mask: np.ndarray) -> dict[str, np.ndarray]:
        return {label: v[mask] for label, v in values.items()}

    def joint(rule: str, target: float) -> tuple[JointCalibration, dict[str, float]]:
        """The rule calibrated on the calibration half, and its recall on the held-out one."""
        visual = COMBINED[rule]
        found = calibrate_union(
            negatives["PDQ dihedral"],
            negatives[visual],
            split(matching["PDQ dihedral"], calibration_half),
            split(matching[visual], calibration_half),
            target,
        )
        held_out = found.recall_of(
            split(matching["PDQ dihedral"], ~calibration_half),
            split(matching[visual], ~calibration_half),
        )
        return found, held_out

    combined = {rule: joint(rule, args.target) for rule in COMBINED}
    columns = [*METHODS, *COMBINED]

    def recall_cell(column: str, label: str) -> float:
        if column in COMBINED:
            return combined[column][1][label]
        return calibrations[column].recall[label]

    def variant_share(column: str, mask: np.ndarray, level: JointCalibration | None = None) -> str:
        if column in COMBINED:
            rule = level or combined[column][0]
            visual = COMBINED[column]
            hits = rule.matches(inside["PDQ dihedral"][mask], inside[visual][mask])
            return fmt(float(np.mean(hits)))
        return fmt(float(np.mean(inside[column][mask] <= calibrations[column].threshold)))

    print(f"\n### Recall at a false-match rate ≤ {rate(args.target)} between different emoji\n")
    print(
        f"(single methods: recall on all {len(chosen)} originals; combined: on the "
        f"{int((~calibration_half).sum())} held-out originals, thresholds chosen on the other "
        f"{int(calibration_half.sum())})\n"
    )
    print("| alteration | " + " | ".join(columns) + " | exact (same pixels) |")
    print("| --- | " + " | ".join("---:" for _ in columns) + " | ---: |")
    for label in ALL_ALTERATIONS:
        cells = [fmt(recall_cell(c, label)) for c in columns]
        print(f"| {label} | " + " | ".join(cells) + f" | {fmt(exact[label])} |")
    print(
        "| **lowest recall** | "
        + " | ".join(
            f"**{fmt(min(recall_cell(c, label) for label in ALL_ALTERATIONS))}**" for c in columns
        )
        + " | |"
    )
    thresholds = [threshold_text(m, calibrations[m].threshold) for m in METHODS] + [
        f"d ≤ {int(combined[c][0].first_threshold)} or "
        + threshold_text(COMBINED[c], combined[c][0].second_threshold)
        for c in COMBINED
    ]
    print("| threshold | " + " | ".join(thresholds) + " | |")
    rates = [rate(calibrations[m].false_match_rate) for m in METHODS] + [
        rate(combined[c][0].false_match_rate) for c in COMBINED
    ]
    print("| false-match rate, different emoji | " + " | ".join(rates) + " | |")
    for name, mask in kinds.items():
        cells = [variant_share(c, mask) for c in columns]
        print(f"| {name} (share matched) | " + " | ".join(cells) + " | |")

    print("\n### Altered copies that also match some *other* emoji at that threshold\n")
    print("| alteration | " + " | ".join(columns) + " |")
    print("| --- | " + " | ".join("---:" for _ in columns) + " |")
    for label in ALL_ALTERATIONS:
        cells = [
            fmt(float(np.mean(other_family[m][label] <= calibrations[m].threshold)))
            for m in METHODS
        ]
        for rule in COMBINED:
            union = combined[rule][0].matches(
                other_family["PDQ dihedral"][label], other_family[COMBINED[rule]][label]
            )
            cells.append(fmt(float(np.mean(union))))
        print(f"| {label} | " + " | ".join(cells) + " |")

    print(f"\n### Strictness levels: PDQ dihedral alone and {PRODUCT_RULE} (jointly)\n")
    print(
        "| level | target rate | rule | threshold | measured rate | lowest recall, held-out "
        "(alteration) | alterations with recall < 0.9 | skin-tone variants matched "
        "| gender variants matched |"
    )
    print("| --- | ---: | --- | --- | ---: | --- | ---: | ---: | ---: |")
    levels: dict[str, dict[str, float]] = {}
    for level, target in LEVELS.items():
        alone = calibrate(
            negatives["PDQ dihedral"], split(matching["PDQ dihedral"], ~calibration_half), target
        )
        both, held_out = joint(PRODUCT_RULE, target)
        levels[level] = {
            "max_distance": int(both.first_threshold),
            # Rounded up, so the stored threshold admits no pair the calibrated one did not.
            "min_visual_cosine": math.ceil((1 - both.second_threshold) * 10_000) / 10_000,
        }
        rows = [
            ("PDQ dihedral", f"d ≤ {int(alone.threshold)}", alone.false_match_rate, alone.recall),
            (
                "combined",
                f"d ≤ {int(both.first_threshold)} or "
                + threshold_text("visual", both.second_threshold),
                both.false_match_rate,
                held_out,
            ),
        ]
        for rule, text, measured, recall in rows:
            worst = min(recall, key=lambda k: recall[k])
            below = sum(1 for v in recall.values() if v < 0.9)
            if rule == "combined":
                shares = [variant_share(PRODUCT_RULE, mask, both) for mask in kinds.values()]
            else:
                shares = [
                    fmt(float(np.mean(inside["PDQ dihedral"][mask] <= alone.threshold)))
                    for mask in kinds.values()
                ]
            print(
                f"| {level} | {rate(target)} | {rule} | {text} | {rate(measured)} "
                f"| {fmt(recall[worst])} ({worst}) | {below} | {shares[0]} | {shares[1]} |"
            )
    print(f"\nSTRICTNESS thresholds ({PRODUCT_RULE}): {json.dumps(levels)}")

    if args.index_sizes:
        print("\n### Lookup: multi-index hashing vs a scan (synthetic random 256-bit hashes)\n")
        radii = sorted({int(v["max_distance"]) for v in levels.values()})
        print("\n".join(time_index(args.index_sizes, radii, args.seed)))
    print(f"\ntotal time: {time.perf_counter() - started:.1f} s")


def fingerprinted(
    args: argparse.Namespace,
    gallery_entries: list[Entry],
    chosen: np.ndarray,
    encoder: Encoder,
    cache: Path | None,
) -> tuple[Hashed, np.ndarray, dict[str, tuple[Hashed, np.ndarray]], bool]:
    """The gallery's and every alteration's fingerprints and stored vectors, from
    ``cache`` when it was written for the same sample, seed and descriptor."""
    key = f"{args.dataset}|{args.sample}|{args.seed}|{encoder.version}|{list(ALL_ALTERATIONS)}"
    if cache is not None and cache.exists():
        with np.load(cache, allow_pickle=False) as data:
            if str(data["key"]) == key:
                gallery = _unpack(data, "gallery")
                queries = {
                    label: (_unpack(data, f"q{n}"), data[f"q{n}_vectors"])
                    for n, label in enumerate(ALL_ALTERATIONS)
                }
                return gallery, data["gallery_vectors"], queries, True
    images = [
        decode_image((args.dataset / e.artist / e.file).read_bytes(), source=e.file)
        for e in gallery_entries
    ]
    gallery = hash_all(images)
    vectors = stored_vectors(encoder, images)
    queries: dict[str, tuple[Hashed, np.ndarray]] = {}
    for label, alter in ALL_ALTERATIONS.items():
        altered = [alter(images[i]) for i in chosen]
        queries[label] = (hash_all(altered), stored_vectors(encoder, altered))
    if cache is not None:
        arrays: dict[str, np.ndarray] = {"key": np.array(key), "gallery_vectors": vectors}
        arrays |= _pack(gallery, "gallery")
        for n, label in enumerate(ALL_ALTERATIONS):
            arrays |= _pack(queries[label][0], f"q{n}")
            arrays[f"q{n}_vectors"] = queries[label][1]
        np.savez(cache, **arrays)  # pyright: ignore[reportArgumentType]
    return gallery, vectors, queries, False


def _pack(hashed: Hashed, prefix: str) -> dict[str, np.ndarray]:
    return {
        f"{prefix}_pdq": hashed.pdq,
        f"{prefix}_phash": hashed.phash,
        f"{prefix}_dhash": hashed.dhash,
        f"{prefix}_pixels": np.array(hashed.pixels),
        f"{prefix}_quality": hashed.quality,
    }


def _unpack(data: Any, prefix: str) -> Hashed:
    return Hashed(
        data[f"{prefix}_pdq"],
        data[f"{prefix}_phash"],
        data[f"{prefix}_dhash"],
        [str(p) for p in data[f"{prefix}_pixels"]],
        data[f"{prefix}_quality"],
    )


if __name__ == "__main__":
    main()
