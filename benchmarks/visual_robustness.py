"""`visual` descriptor robustness: altered Noto emoji found among all Noto emoji (R@1).

A seeded sample of Noto originals (``shared/datasets/emoji/google-64``) is altered as in
``moderation_robustness.py`` (flip, frame, small on a canvas, grayscale); each altered
copy queries the 3,786 Noto images and R@1 is the share whose own original comes first.
Then colour: a red circle drawn with Pillow against the same circle in other colours
(cosine), the case where orange used to rank first.

Usage::

    python benchmarks/visual_robustness.py --sample 300 --seed 0
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time

import numpy as np
from moderation_robustness import MORE
from near_duplicates import DATASET, load_folder, machine
from PIL import Image, ImageDraw

from mmsearch.encoders.base import create_encoder

ALTERED = ("flip horizontal", "6 px black border", "60% scale, off-centre on canvas", "grayscale")
COLOURS = {
    "red": (220, 30, 30),
    "orange": (255, 140, 0),
    "blue": (30, 60, 220),
    "yellow": (240, 220, 30),
    "green": (30, 180, 60),
    "purple": (150, 30, 200),
}


def circle(colour: tuple[int, int, int]) -> Image.Image:
    image = Image.new("RGBA", (64, 64), (255, 255, 255, 0))
    ImageDraw.Draw(image).ellipse((8, 8, 56, 56), fill=(*colour, 255))
    return image


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="visual descriptor robustness")
    parser.add_argument("--sample", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    print(f"$ python {shlex.join(['benchmarks/visual_robustness.py', *sys.argv[1:]])}")
    print(f"machine: {machine()}\n")
    encoder = create_encoder("visual")
    _, noto = load_folder(DATASET / "google-64")
    gallery = encoder.encode_images(noto)
    rng = np.random.default_rng(args.seed)
    chosen = np.sort(rng.choice(len(noto), size=args.sample, replace=False))
    print(f"encoder: {encoder.version}; gallery {len(noto)} Noto images\n")
    print("| alteration | R@1 |")
    print("| --- | ---: |")
    for label in ALTERED:
        queries = encoder.encode_images([MORE[label](noto[i]) for i in chosen])
        first = np.argmax(queries @ gallery.T, axis=1)
        print(f"| {label} | {float(np.mean(first == chosen)):.3f} |")
    vectors = encoder.encode_images([circle(rgb) for rgb in COLOURS.values()])
    cosines = vectors[0] @ vectors[1:].T
    shown = ", ".join(f"{n} {c:.3f}" for n, c in zip(list(COLOURS)[1:], cosines, strict=True))
    print(f"\nred circle vs the same circle in: {shown}")
    print(f"\ntotal time: {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
