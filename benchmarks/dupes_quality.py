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

Time: ``find_clusters`` run in full on synthetic fingerprints (``moderation.synthetic``:
random 256-bit PDQ hashes with eight random "variants", groups of eight copies with up
to the radius in random bits flipped, some turned, mixed with as many random codes),
since only the fingerprints matter to it; wall and CPU seconds (the CPU figure is the
one to read on a shared host) and the process's peak resident memory so far. With
``--pairs-sizes``, the near-pair step alone on the same kind of codes: the exact
multi-index self-join against the approximate IVF one (``moderation.neighbour_index``),
its recall of the exact pairs and of the planted pairs (index-only: no image is read).

Usage::

    python benchmarks/dupes_quality.py --sample 200 --seed 0 --sizes
    python benchmarks/dupes_quality.py --skip-quality --sizes 10000 30000 100000
    python benchmarks/dupes_quality.py --skip-quality --sizes --pairs-sizes 100000 --radii 32
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
from mmsearch.moderation.hash_index import HashIndex, joins_by_tables
from mmsearch.moderation.neighbour_index import (
    NeighbourIndex,
    choose_method,
    exact_join_seconds,
)
from mmsearch.moderation.synthetic import PlantedCodes, planted_codes


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


def synthetic(codes: PlantedCodes) -> list[Fingerprint]:
    """Fingerprints carrying the planted codes (no colour layout, no descriptor)."""
    words = np.ascontiguousarray(codes.variants[:, :, ::-1]).astype(">u8")
    text = words.tobytes().hex()
    count, kinds = codes.variants.shape[:2]
    out: list[Fingerprint] = []
    for n in range(count):
        at = n * kinds * 64
        hexes = tuple(text[at + 64 * k : at + 64 * (k + 1)] for k in range(kinds))
        digest = f"{n:064x}"
        out.append(Fingerprint(digest, digest, hexes[0], hexes, 100, 0, 0, 64, 64))
    return out


def timing(sizes: list[int], seed: int, levels: list[str]) -> None:
    """``find_clusters`` run in full on synthetic fingerprints: wall and CPU time, memory."""
    print(
        "\n| fingerprints | level | d ≤ | near pairs | dupes time, wall (s) | CPU (s) | "
        "process peak RSS so far (MiB) | clusters |"
    )
    print("| ---: | --- | ---: | --- | ---: | ---: | ---: | ---: |")
    for count in sizes:
        for name in levels:
            level = STRICTNESS[name]
            prints = synthetic(planted_codes(count, level.max_distance, seed))
            choice = choose_method(count, level.max_distance)
            wall, cpu = time.perf_counter(), time.process_time()
            clusters = find_clusters(
                [str(n) for n in range(count)],
                np.arange(count, dtype=np.int64),
                np.zeros(count, dtype=np.int64),
                prints,
                max_distance=level.max_distance,
            )
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            del prints
            print(
                f"| {count:,} | {level.name} | {level.max_distance} | {choice.method} | "
                f"{wall:.1f} | {cpu:.1f} | {_peak_mib():,.0f} | {len(clusters):,} |",
                flush=True,
            )


def near_pairs(
    sizes: list[int], seed: int, radii: list[int], exact_up_to: int, sample: int
) -> None:
    """The near-pair step alone on planted codes: the exact multi-index self-join against
    the approximate IVF one (time, and recall of the exact pairs), index-only.

    Beyond ``exact_up_to`` codes the exact join is only estimated, and where ``sample`` is
    smaller than the count only the first ``sample`` codes are queried (against the whole
    index): their time is scaled to all codes (marked "est.") and the planted pairs are
    those with a sampled side."""
    print(
        "\n| codes | radius | exact pairs | exact: path, CPU (s) | approximate IVF: "
        "build, pairs CPU (s) | IVF pairs | recall of exact pairs | planted pairs found "
        "| peak RSS so far (MiB) |"
    )
    print("| ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |")
    for count in sizes:
        for radius in radii:
            codes = planted_codes(count, radius, seed)
            began = time.process_time()
            index = NeighbourIndex(codes.variants[:, 0])
            built = time.process_time() - began
            queried = min(count, sample)
            began = time.process_time()
            approximate = _pair_set(index.pairs_within(codes.variants, radius, queried=queried))
            searched = (time.process_time() - began) * count / queried
            searched_text = f"{searched:.1f}" if queried == count else f"{searched:.0f} est."
            del index
            planted = _planted_pairs(codes, radius)
            found_text = f"{_share(planted, approximate):.4f}"
            if queried < count:
                # A pair with one side queried is searched from that side only; one with
                # both is searched from both, as in a full run.
                one = {(a, b) for a, b in planted if (a < queried) != (b < queried)}
                both = {(a, b) for a, b in planted if a < queried and b < queried}
                found_text = (
                    f"{_share(both, approximate):.4f} of {len(both):,} with both sides queried "
                    f"({_share(one, approximate):.4f} with one)"
                )
            if count <= exact_up_to:
                path = "tables" if joins_by_tables(count, radius) else "scan"
                began = time.process_time()
                exact = _pair_set(
                    HashIndex(codes.variants[:, 0]).pairs_within(codes.variants, radius)
                )
                exact_text = f"{path}, {time.process_time() - began:.1f}"
                recall = f"{len(exact & approximate) / max(len(exact), 1):.4f}"
                exact_count = f"{len(exact):,}"
            else:
                estimate = exact_join_seconds(count, radius)
                exact_text = f"not run (estimated {estimate:,.0f})"
                recall, exact_count = "n/a", "n/a"
            print(
                f"| {count:,} | {radius} | {exact_count} | {exact_text} | {built:.1f}, "
                f"{searched_text} | {len(approximate):,} | {recall} | {found_text} | "
                f"{_peak_mib():,.0f} |",
                flush=True,
            )


def _share(wanted: set[tuple[int, int]], found: set[tuple[int, int]]) -> float:
    return len(wanted & found) / max(len(wanted), 1)


def _pair_set(found: tuple[np.ndarray, ...]) -> set[tuple[int, int]]:
    first, second = found[0], found[1]
    low, high = np.minimum(first, second), np.maximum(first, second)
    return set(zip(low.tolist(), high.tolist(), strict=True))


def _planted_pairs(codes: PlantedCodes, radius: int) -> set[tuple[int, int]]:
    """Pairs of one planted group within ``radius`` (by any variant of either side)."""
    order = np.argsort(codes.group, kind="stable")
    groups = codes.group[order]
    starts = np.flatnonzero(np.r_[True, groups[1:] != groups[:-1]])
    pairs: set[tuple[int, int]] = set()
    for start, stop in zip(starts, np.r_[starts[1:], len(order)], strict=True):
        if groups[start] < 0:
            continue
        rows = np.sort(order[start:stop])
        words = codes.variants[rows]
        distance = np.bitwise_count(words[:, None, :, :] ^ words[None, :, None, 0, :]).sum(-1)
        best = distance.min(axis=2)
        best = np.minimum(best, best.T)
        for a, b in zip(*np.nonzero(np.triu(best <= radius, k=1)), strict=True):
            pairs.add((int(rows[a]), int(rows[b])))
    return pairs


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="mmsearch dupes: precision, recall, time")
    parser.add_argument("--sample", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sizes", type=int, nargs="*", default=[10_000, 100_000])
    parser.add_argument("--levels", nargs="*", default=["strict"], choices=list(STRICTNESS))
    parser.add_argument(
        "--pairs-sizes",
        type=int,
        nargs="*",
        default=[],
        help="code counts for the near-pair step alone (exact vs approximate IVF)",
    )
    parser.add_argument("--radii", type=int, nargs="*", default=[STRICTNESS["strict"].max_distance])
    parser.add_argument(
        "--exact-up-to", type=int, default=100_000, help="run the exact join up to this count"
    )
    parser.add_argument(
        "--query-sample",
        type=int,
        default=10**9,
        help="query only this many codes of each size (time scaled to all)",
    )
    parser.add_argument("--skip-quality", action="store_true")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    print(f"$ python {shlex.join(['benchmarks/dupes_quality.py', *sys.argv[1:]])}")
    print(f"machine: {machine()}\n")
    if not args.skip_quality:
        quality(args.sample, args.seed)
    if args.pairs_sizes:
        near_pairs(args.pairs_sizes, args.seed, args.radii, args.exact_up_to, args.query_sample)
    if args.sizes:
        timing(args.sizes, args.seed, args.levels)
    print(f"\ntotal time: {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
