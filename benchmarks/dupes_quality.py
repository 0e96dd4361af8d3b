"""`mmsearch dupes`: precision and recall on originals plus altered copies, and its time.

Quality: a seeded sample of Noto emoji (``shared/datasets/emoji/google-64``) is each
altered the seven ways of ``near_duplicates.py`` (flatten, resize, JPEG, crop, small
rotation, brightness, text overlay); every original and copy is one item of one
image. The clusters are what ``mmsearch dupes`` computes (``find_clusters`` over the
moderation fingerprints, as stored at ingest), at each strictness level. A true pair
is two items made from the same original. Reported per level:

- pairs listed (the report's direct matches) and how many join different originals,
  split into variants of one emoji (skin tone, gender: a policy choice) and different
  emoji;
- pairs clustered (every two items in one cluster, which is how a reader acts on a
  cluster): precision and recall against the true pairs;
- clusters that mix originals, mix families, and the most originals in one cluster.

Time: ``find_clusters`` run in full on synthetic fingerprints (random 256-bit PDQ
hashes, eight independent random "variants" each, groups of eight copies with up to
``--flips`` random bits flipped), since only the fingerprints matter to it; wall and CPU
seconds (the CPU figure is the one to read on a shared host) and the process's peak
resident memory so far (sizes run in the order given, the fingerprints included).

Usage::

    python benchmarks/dupes_quality.py --sample 200 --seed 0 --sizes
    python benchmarks/dupes_quality.py --skip-quality --sizes 10000 30000 100000
"""

from __future__ import annotations

import argparse
import hashlib
import resource
import shlex
import sys
import time
from collections import Counter

import numpy as np
from moderation_robustness import entries
from near_duplicates import ALTERATIONS, DATASET, machine
from PIL import Image

from mmsearch.evaluation.duplicates import Linkage, find_clusters
from mmsearch.media.images import decode_image
from mmsearch.moderation.fingerprints import (
    MAX_COLOUR_DIFFERENCE,
    STRICTNESS,
    Fingerprint,
    fingerprint_image,
)
from mmsearch.moderation.hash_index import joins_by_tables
from mmsearch.moderation.pdq import to_hex


def _digest(image: Image.Image) -> str:
    return hashlib.sha256(image.tobytes()).hexdigest()


def quality(sample: int, seed: int) -> None:
    noto = [e for e in entries() if e.artist == "google-64"]
    files = sorted({e.file: e.family for e in noto}.items())
    rng = np.random.default_rng(seed)
    chosen = [files[i] for i in np.sort(rng.choice(len(files), size=sample, replace=False))]
    started = time.perf_counter()
    prints: list[Fingerprint] = []
    origin: list[int] = []
    family: list[str] = []
    ids: list[str] = []
    for number, (file, fam) in enumerate(chosen):
        original = decode_image((DATASET / "google-64" / file).read_bytes(), source=file)
        for label, alter in ALTERATIONS.items():
            image = alter(original)
            prints.append(fingerprint_image(image, _digest(image)))
            origin.append(number)
            family.append(fam)
            ids.append(f"{number:04d}:{label}")
    # Different code points drawn with identical pixels are one picture: their copies are
    # true pairs (no image method could tell them apart, nor should it).
    same_as: dict[str, int] = {}
    baseline = list(ALTERATIONS).index("none (baseline)")
    copies = len(ALTERATIONS)
    picture_of = [
        same_as.setdefault(prints[n * copies + baseline].pixels_sha256, n) for n in range(sample)
    ]
    origin = [picture_of[o] for o in origin]
    counts = Counter(origin)
    true_pairs = sum(n * (n - 1) // 2 for n in counts.values())
    print(
        f"collection: {sample} originals (seed {seed}, {len(set(family))} families) x "
        f"{copies} items each (the original and {copies - 1} altered copies) = {len(ids)} "
        f"items ({len(counts)} distinct pictures); fingerprinted in "
        f"{time.perf_counter() - started:.1f} s; true pairs "
        f"{true_pairs:,}\n"
    )
    print(
        "| grouping | level | d ≤ | clusters | pure clusters | pairs listed | listed, other "
        "original: variant / different emoji | pairs clustered | precision | recall | "
        "clusters mixing originals / different emoji | most originals in a cluster | "
        "time (s) |"
    )
    print("| --- | --- |" + " ---: |" * 11)
    row_of = {item: n for n, item in enumerate(ids)}
    items = np.arange(len(ids), dtype=np.int64)
    positions = np.zeros(len(ids), dtype=np.int64)
    rules: list[tuple[str, Linkage, float | None]] = [
        ("single (before)", "single", None),
        ("star", "star", None),
        ("star + colour (now)", "star", MAX_COLOUR_DIFFERENCE),
    ]
    for name, linkage, colour in rules:
        for level in STRICTNESS.values():
            began = time.perf_counter()
            clusters = find_clusters(
                ids,
                items,
                positions,
                prints,
                max_distance=level.max_distance,
                max_colour_difference=colour,
                linkage=linkage,
            )
            seconds = time.perf_counter() - began
            listed = [(row_of[p.a], row_of[p.b]) for c in clusters for p in c.pairs]
            other = [(a, b) for a, b in listed if origin[a] != origin[b]]
            variant = sum(family[a] == family[b] for a, b in other)
            clustered = true = 0
            mixing = mixing_families = most = 0
            for cluster in clusters:
                rows = [row_of[item] for item in cluster.ids]
                counts = Counter(origin[r] for r in rows)
                clustered += len(rows) * (len(rows) - 1) // 2
                true += sum(n * (n - 1) // 2 for n in counts.values())
                most = max(most, len(counts))
                mixing += len(counts) > 1
                mixing_families += len({family[r] for r in rows}) > 1
            pure = 1 - mixing / max(len(clusters), 1)
            print(
                f"| {name} | {level.name} | {level.max_distance} | {len(clusters)} | "
                f"{pure:.3f} | {len(listed):,} | {variant:,} / {len(other) - variant:,} | "
                f"{clustered:,} | {true / max(clustered, 1):.3f} | {true / true_pairs:.3f} | "
                f"{mixing} / {mixing_families} | {most} | {seconds:.2f} |"
            )


def synthetic(count: int, flips: int, rng: np.random.Generator) -> list[Fingerprint]:
    """``count`` fingerprints in groups of eight near copies (random hashes)."""
    groups = -(-count // 8)
    base = rng.integers(0, 2**63, size=(groups, 8, 4), dtype=np.int64).view(np.uint64)
    base ^= rng.integers(0, 2, size=(groups, 8, 4)).astype(np.uint64) << np.uint64(63)
    out: list[Fingerprint] = []
    for n in range(count):
        variants = base[n // 8].copy()
        if n % 8:
            bits = rng.choice(256, size=int(rng.integers(1, flips + 1)), replace=False)
            mask = np.zeros(4, dtype=np.uint64)
            for bit in bits:
                mask[bit // 64] |= np.uint64(1) << np.uint64(bit % 64)
            variants ^= mask
        hexes = tuple(to_hex(v) for v in variants)
        digest = f"{n:064x}"
        out.append(Fingerprint(digest, digest, hexes[0], hexes, 100, 0, 0, 64, 64))
    return out


def timing(sizes: list[int], flips: int, seed: int, levels: list[str]) -> None:
    """``find_clusters`` run in full on synthetic fingerprints: wall and CPU time, memory."""
    print(
        "\n| fingerprints | level | d ≤ | path | dupes time, wall (s) | CPU (s) | "
        "process peak RSS so far (MiB) | clusters |"
    )
    print("| ---: | --- | ---: | --- | ---: | ---: | ---: | ---: |")
    rng = np.random.default_rng(seed)
    for count in sizes:
        prints = synthetic(count, flips, rng)
        for name in levels:
            level = STRICTNESS[name]
            tables = joins_by_tables(count, level.max_distance)
            wall, cpu = time.perf_counter(), time.process_time()
            clusters = find_clusters(
                [str(n) for n in range(count)],
                np.arange(count, dtype=np.int64),
                np.zeros(count, dtype=np.int64),
                prints,
                max_distance=level.max_distance,
            )
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            print(
                f"| {count:,} | {level.name} | {level.max_distance} | "
                f"{'multi-index self-join' if tables else 'scan per image'} | {wall:.1f} | "
                f"{cpu:.1f} | {peak:,.0f} | {len(clusters):,} |",
                flush=True,
            )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="mmsearch dupes: precision, recall, time")
    parser.add_argument("--sample", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sizes", type=int, nargs="*", default=[10_000, 100_000])
    parser.add_argument("--levels", nargs="*", default=["strict"], choices=list(STRICTNESS))
    parser.add_argument("--flips", type=int, default=30)
    parser.add_argument("--skip-quality", action="store_true")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    print(f"$ python {shlex.join(['benchmarks/dupes_quality.py', *sys.argv[1:]])}")
    print(f"machine: {machine()}\n")
    if not args.skip_quality:
        quality(args.sample, args.seed)
    if args.sizes:
        timing(args.sizes, args.flips, args.seed, args.levels)
    print(f"\ntotal time: {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
