"""How well do pHash and the ``visual`` descriptor find the original of an altered copy?

Data: the 3,786 Noto emoji of ``shared/datasets/emoji/google-64`` (64x64 RGBA). A
seeded sample of originals is altered six ways (resize to 50%, JPEG q=40, crop 10%,
rotate 5°, brightness +30%, a text overlay); each altered copy is a query against all
3,786 originals, and recall@1 says how often the nearest original is the right one:
by Hamming distance of 64-bit pHash, and by cosine of the ``visual`` vectors (the
offline default image encoder). The unaltered image is the baseline row; every
other alteration also loses the alpha channel (flattened on white, as copies found
in the wild are), so "flatten alpha on white" is the floor the others start from.
A few Noto files have identical pixels; any of them counts as the right answer.
Ties in Hamming distance are common (64 bits, many similar
emoji), so pHash recall@1 counts a tie of n images as 1/n: the expected recall
under random tie-breaking.

It also reports, per alteration, how often the original lies within the default
``dupe_max_distance`` (8 bits) and how often some *other* emoji does: the two sides
of choosing that threshold.

Usage::

    python benchmarks/near_duplicates.py --sample 300 --seed 0
"""

from __future__ import annotations

import argparse
import hashlib
import math
import os
import platform
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFont

from mmsearch.encoders.base import create_encoder
from mmsearch.encoders.hashes import hamming_matrix, image_hashes
from mmsearch.media.images import decode_image, to_rgb

DATASET = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "emoji"
FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf")


def load_folder(
    folder: Path, names: list[str] | None = None
) -> tuple[list[str], list[Image.Image]]:
    names = names or sorted(p.name for p in folder.glob("*.png"))
    images = [decode_image((folder / n).read_bytes(), source=n) for n in names]
    return names, images


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(FONT), size) if FONT.exists() else ImageFont.load_default(size)


def _jpeg(image: Image.Image, quality: int) -> Image.Image:
    import io

    buffer = io.BytesIO()
    to_rgb(image).save(buffer, format="JPEG", quality=quality)
    return decode_image(buffer.getvalue(), source="jpeg")


def _crop(image: Image.Image) -> Image.Image:
    width, height = image.size
    dx, dy = round(width * 0.05), round(height * 0.05)  # 10% of each side in total
    return to_rgb(image).crop((dx, dy, width - dx, height - dy))


def _overlay(image: Image.Image) -> Image.Image:
    rgb = to_rgb(image).copy()
    ImageDraw.Draw(rgb).text((2, rgb.height - 18), "SALE", fill=(220, 0, 0), font=_font(14))
    return rgb


ALTERATIONS: dict[str, Callable[[Image.Image], Image.Image]] = {
    "none (baseline)": lambda im: im,
    "flatten alpha on white": to_rgb,
    "resize 50%": lambda im: to_rgb(im).resize((im.width // 2, im.height // 2), Image.LANCZOS),
    "JPEG q=40": lambda im: _jpeg(im, 40),
    "crop 10%": _crop,
    "rotate 5°": lambda im: to_rgb(im).rotate(5, resample=Image.BICUBIC, fillcolor="white"),
    "brightness +30%": lambda im: ImageEnhance.Brightness(to_rgb(im)).enhance(1.3),
    "text overlay": _overlay,
}


def pixel_groups(images: list[Image.Image]) -> np.ndarray:
    """Group id per image: images with identical pixels (a few Noto files repeat) share one."""
    ids: dict[bytes, int] = {}
    return np.array(
        [ids.setdefault(hashlib.sha256(im.tobytes()).digest(), len(ids)) for im in images]
    )


def phash_recall_at(
    distances: np.ndarray, answer: np.ndarray, k: int, groups: np.ndarray | None = None
) -> float:
    """Expected recall@k under random tie-breaking; any pixel-identical copy counts as right."""
    total = 0.0
    for row, target in zip(distances, answer, strict=True):
        correct = groups == groups[target] if groups is not None else np.arange(len(row)) == target
        own = row[correct].min()
        better = int(np.sum(row < own))
        tied = int(np.sum(row == own))
        tied_correct = int(np.sum(row[correct] == own))
        slots = min(k - better, tied)
        if slots > 0:
            total += 1.0 - math.comb(tied - tied_correct, slots) / math.comb(tied, slots)
    return total / len(answer)


def cosine_recall_at(
    scores: np.ndarray, answer: np.ndarray, k: int, groups: np.ndarray | None = None
) -> float:
    """Recall@k by cosine; scores within 1e-6 of the right one count as ties won."""
    hits = 0
    for row, target in zip(scores, answer, strict=True):
        correct = groups == groups[target] if groups is not None else np.arange(len(row)) == target
        own = row[correct].max()
        hits += int(np.sum(row[~correct] > own + 1e-6) < k)
    return hits / len(answer)


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", type=Path, default=DATASET)
    parser.add_argument("--sample", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-distance", type=int, default=8)
    args = parser.parse_args(argv)

    started = time.perf_counter()
    _names, originals = load_folder(args.dataset / "google-64")
    encoder = create_encoder("visual")
    gallery_hashes = np.array([image_hashes(im).phash for im in originals], dtype=np.int64)
    gallery_vectors = encoder.encode_images(originals)
    rng = np.random.default_rng(args.seed)
    chosen = np.sort(rng.choice(len(originals), size=args.sample, replace=False))
    groups = pixel_groups(originals)

    print(f"$ python {shlex.join(['benchmarks/near_duplicates.py', *sys.argv[1:]])}")
    print(f"machine: {machine()}")
    print(f"gallery: {len(originals)} Noto images; {args.sample} originals (seed {args.seed})\n")
    print(
        f"| alteration | pHash R@1 | visual R@1 | original within d≤{args.max_distance} "
        f"| other emoji within d≤{args.max_distance} | median d to original |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for label, alter in ALTERATIONS.items():
        queries = [alter(originals[i]) for i in chosen]
        hashes = np.array([image_hashes(q).phash for q in queries], dtype=np.int64)
        distances = hamming_matrix(hashes, gallery_hashes).astype(np.int64)
        scores = encoder.encode_images(queries) @ gallery_vectors.T
        own = distances[np.arange(len(chosen)), chosen]
        others = distances.copy()
        others[groups[None, :] == groups[chosen][:, None]] = 99
        print(
            f"| {label} | {phash_recall_at(distances, chosen, 1, groups):.3f} "
            f"| {cosine_recall_at(scores, chosen, 1, groups):.3f} "
            f"| {np.mean(own <= args.max_distance):.3f} "
            f"| {np.mean(others.min(axis=1) <= args.max_distance):.3f} "
            f"| {np.median(own):.0f} |"
        )
    print(f"\ntotal time: {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
