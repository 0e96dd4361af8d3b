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
rate is within the target), and recall per alteration is read at it. PDQ is also
calibrated at the three strictness levels stored in ``moderation/fingerprints.py``.
Then the multi-index lookup (``moderation.hash_index``) is timed against a scan on
synthetic random 256-bit hashes (index timing only: random hashes spread evenly over
the buckets, real ones cluster somewhat more).

Usage::

    python benchmarks/moderation_robustness.py --sample 400 --seed 0
"""

from __future__ import annotations

import argparse
import io
import json
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from near_duplicates import ALTERATIONS, DATASET, machine
from PIL import Image, ImageFilter, ImageOps

from mmsearch.encoders.base import create_encoder
from mmsearch.encoders.hashes import hamming_matrix
from mmsearch.media.images import decode_image, to_rgb
from mmsearch.moderation.calibration import Calibration, calibrate
from mmsearch.moderation.content import crop_to_content, pixels_sha256
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


METHODS = ("PDQ dihedral", "PDQ", "pHash", "dHash", "visual")


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
    return (1.0 - qvec @ gvec.T).astype(np.float32)


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
            kind = np.float32 if method == "visual" else np.int16
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
    if method == "visual":
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
    images = [
        decode_image((args.dataset / e.artist / e.file).read_bytes(), source=e.file)
        for e in gallery_entries
    ]
    family = np.array([e.family for e in gallery_entries])
    encoder = create_encoder("visual")
    gallery = hash_all(images)
    vectors = encoder.encode_images(images)
    print(f"$ python {shlex.join(['benchmarks/moderation_robustness.py', *sys.argv[1:]])}")
    print(f"machine: {machine()}")
    print(
        f"gallery: {len(images)} images (Noto + Twemoji), {len(set(family))} families; "
        f"PDQ quality < 50 for {int(np.sum(gallery.quality < 50))} images; "
        f"fingerprinted in {time.perf_counter() - started:.0f} s"
    )

    negatives, inside, pairs, identical = pair_distances(gallery, vectors, family)
    tone_flag = np.array([e.tone for e in gallery_entries])
    artist = np.array([e.artist for e in gallery_entries])
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

    rng = np.random.default_rng(args.seed)
    half = args.sample // 2
    noto = np.flatnonzero(artist == "google-64")
    twemoji = np.flatnonzero(artist == "twitter-64")
    chosen = np.sort(
        np.concatenate(
            [rng.choice(noto, half, replace=False), rng.choice(twemoji, half, replace=False)]
        )
    )
    matching: dict[str, dict[str, np.ndarray]] = {m: {} for m in METHODS}
    other_family: dict[str, dict[str, np.ndarray]] = {m: {} for m in METHODS}
    exact: dict[str, float] = {}
    for label, alter in ALL_ALTERATIONS.items():
        altered = [alter(images[i]) for i in chosen]
        hashed = hash_all(altered)
        qvec = encoder.encode_images(altered)
        exact[label] = float(
            np.mean([hashed.pixels[k] == gallery.pixels[i] for k, i in enumerate(chosen)])
        )
        for method in METHODS:
            found = distances(method, hashed, qvec, gallery, vectors)
            matching[method][label] = found[np.arange(len(chosen)), chosen]
            others = found.copy()
            others[family[None, :] == family[chosen][:, None]] = (
                np.inf if method == "visual" else 999
            )
            other_family[method][label] = others.min(axis=1)

    calibrations: dict[str, Calibration] = {
        method: calibrate(negatives[method], matching[method], args.target) for method in METHODS
    }
    print(f"\n### Recall at a false-match rate ≤ {rate(args.target)} between different emoji\n")
    print("| alteration | " + " | ".join(METHODS) + " | exact (same pixels) |")
    print("| --- | " + " | ".join("---:" for _ in METHODS) + " | ---: |")
    for label in ALL_ALTERATIONS:
        cells = [fmt(calibrations[m].recall[label]) for m in METHODS]
        print(f"| {label} | " + " | ".join(cells) + f" | {fmt(exact[label])} |")
    print(
        "| **lowest recall** | "
        + " | ".join(f"**{fmt(min(calibrations[m].recall.values()))}**" for m in METHODS)
        + " | |"
    )
    print(
        "| threshold | "
        + " | ".join(threshold_text(m, calibrations[m].threshold) for m in METHODS)
        + " | |"
    )
    print(
        "| false-match rate, different emoji | "
        + " | ".join(rate(calibrations[m].false_match_rate) for m in METHODS)
        + " | |"
    )
    for name, mask in kinds.items():
        cells = [fmt(float(np.mean(inside[m][mask] <= calibrations[m].threshold))) for m in METHODS]
        print(f"| {name} (share matched) | " + " | ".join(cells) + " | |")

    print("\n### Altered copies that also match some *other* emoji at that threshold\n")
    print("| alteration | " + " | ".join(METHODS) + " |")
    print("| --- | " + " | ".join("---:" for _ in METHODS) + " |")
    for label in ALL_ALTERATIONS:
        cells = [
            fmt(float(np.mean(other_family[m][label] <= calibrations[m].threshold)))
            for m in METHODS
        ]
        print(f"| {label} | " + " | ".join(cells) + " |")

    print("\n### PDQ (dihedral) strictness levels\n")
    print(
        "| level | target rate | threshold | measured rate | lowest recall (alteration) "
        "| alterations with recall < 0.9 | skin-tone variants matched | gender variants matched |"
    )
    print("| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: |")
    levels: dict[str, int] = {}
    for level, target in LEVELS.items():
        level_cal = calibrate(negatives["PDQ dihedral"], matching["PDQ dihedral"], target)
        levels[level] = int(level_cal.threshold)
        worst = min(level_cal.recall, key=lambda k: level_cal.recall[k])
        below = sum(1 for v in level_cal.recall.values() if v < 0.9)
        shares = [
            fmt(float(np.mean(inside["PDQ dihedral"][mask] <= level_cal.threshold)))
            for mask in kinds.values()
        ]
        measured = rate(level_cal.false_match_rate)
        print(
            f"| {level} | {rate(target)} | d ≤ {int(level_cal.threshold)} | {measured} "
            f"| {fmt(level_cal.recall[worst])} ({worst}) | {below} | {shares[0]} | {shares[1]} |"
        )
    print(f"\nSTRICTNESS thresholds: {json.dumps(levels)}")

    if args.index_sizes:
        print("\n### Lookup: multi-index hashing vs a scan (synthetic random 256-bit hashes)\n")
        radii = sorted({levels["strict"], levels["standard"], levels["loose"]})
        print("\n".join(time_index(args.index_sizes, radii, args.seed)))
    print(f"\ntotal time: {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
