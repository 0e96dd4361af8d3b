"""Image → image across drawing styles: find the Noto emoji drawn by another artist.

Each of the 3,786 Twemoji images (``twitter-64``) is a query; the answer is the Noto
image (``google-64``) with the same file name, among all 3,786 Noto images. This is
the hard case for image search without a learned model: same object, different
artist. Recall@1 and @10 for the ``visual`` descriptor (cosine) and, for reference,
pHash and dHash (Hamming, expected recall under random tie-breaking); a random
ranking is the floor (k / 3,786).

Where the dataset marks ``has_img_twitter`` false, the Twemoji file is a copy of
another vendor's picture; those pairs are reported separately because they are
not a cross-artist task.

Usage::

    python benchmarks/emoji_cross_artist.py
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from near_duplicates import (
    DATASET,
    cosine_recall_at,
    load_folder,
    machine,
    phash_recall_at,
)

from mmsearch.encoders.base import create_encoder
from mmsearch.encoders.hashes import hamming_matrix, image_hashes


def own_artwork(dataset: Path) -> set[str]:
    """File names whose Twemoji picture is Twitter's own drawing (not a fallback copy)."""
    records = json.loads((dataset / "emoji-datasource.json").read_text(encoding="utf-8"))
    names: set[str] = set()
    for record in records:
        for entry in [record, *(record.get("skin_variations") or {}).values()]:
            if entry.get("has_img_twitter") and entry.get("image"):
                names.add(entry["image"])
    return names


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", type=Path, default=DATASET)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    names, noto = load_folder(args.dataset / "google-64")
    _, twemoji = load_folder(args.dataset / "twitter-64", names)
    answer = np.arange(len(names))
    own = own_artwork(args.dataset)
    subsets = {
        "all pairs": np.ones(len(names), dtype=bool),
        "Twitter's own drawings": np.array([n in own for n in names]),
    }

    encoder = create_encoder("visual")
    scores = encoder.encode_images(twemoji) @ encoder.encode_images(noto).T
    distances = {}
    for kind in ("phash", "dhash"):
        gallery = np.array([getattr(image_hashes(im), kind) for im in noto], dtype=np.int64)
        queries = np.array([getattr(image_hashes(im), kind) for im in twemoji], dtype=np.int64)
        distances[kind] = hamming_matrix(queries, gallery).astype(np.int64)

    print(f"$ python {shlex.join(['benchmarks/emoji_cross_artist.py', *sys.argv[1:]])}")
    print(f"machine: {machine()}")
    print(f"gallery: {len(names)} Noto images; queries: the Twemoji image of each\n")
    print("| queries | n | method | R@1 | R@10 |")
    print("| --- | ---: | --- | ---: | ---: |")
    for label, mask in subsets.items():
        n = int(mask.sum())
        if label != "all pairs" and n == len(names):
            continue  # every Twemoji picture is Twitter's own: the subset is the whole set
        rows = [
            ("visual (cosine)", lambda k, m=mask: cosine_recall_at(scores[m], answer[m], k)),
            (
                "pHash (Hamming)",
                lambda k, m=mask: phash_recall_at(distances["phash"][m], answer[m], k),
            ),
            (
                "dHash (Hamming)",
                lambda k, m=mask: phash_recall_at(distances["dhash"][m], answer[m], k),
            ),
            ("random", lambda k: k / len(names)),
        ]
        for method, recall in rows:
            print(f"| {label} | {n} | {method} | {recall(1):.3f} | {recall(10):.3f} |")
    print(f"\ntotal time: {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
