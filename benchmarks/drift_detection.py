"""Embedding drift: detection rate on real shifts, false alarms without one, time at 100k.

Real data from ``../shared/datasets`` with the real encoders, through the code the
service runs (``reference_from_vectors`` builds the reference sample of a "live" side,
``mmd_permutation_test`` with its production defaults tests the other side):

- text (MiniLM): Cranfield abstracts vs emoji names (emojibase labels);
- image (``visual`` descriptor): Noto emoji (``google-64``) vs Twemoji (``twitter-64``),
  only emoji both vendors drew themselves (no fallback copies), and the two sides are
  disjoint halves of the emoji ids, so the only difference is the artist.

For each of ``--splits`` seeded random splits of the ids into halves A and B:

- shift: reference = source 1 on A, test = source 2 on B (must fire);
- mix 20%: test = source 1 on B with 20% of it replaced by source 2 (a partial shift);
- no shift: reference = source 1 on A, test = source 1 on B, and the same for source 2
  (must stay quiet: the false-alarm rate).

Then the cost at scale: a real LanceDB build of 100,000 x 384 synthetic unit vectors,
``compute_reference`` (scan + statistics + files) and one ``compare_queries`` (reference
loaded, 2,000 query vectors tested).

Usage::

    python benchmarks/drift_detection.py            # 50 splits (the documented figures)
    python benchmarks/drift_detection.py --quick    # 10 splits, 400 texts per source
    python benchmarks/drift_detection.py --timing-only   # only the cost at 100k vectors
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa

from mmsearch.datasets.cranfield import parse_documents
from mmsearch.datasets.emoji import load_records
from mmsearch.encoders.base import create_encoder, l2_normalise
from mmsearch.index.base import VectorField
from mmsearch.index.open import create_build_index
from mmsearch.index.schema import build_schema, vector_column
from mmsearch.manifest import BuildManifest
from mmsearch.media.images import decode_image
from mmsearch.monitoring.drift import DEFAULT_THRESHOLD, compare_queries, mmd_permutation_test
from mmsearch.monitoring.drift_reference import compute_reference, reference_from_vectors
from mmsearch.workspace import Workspace

DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"
MIX = 0.2


def cranfield_texts(folder: Path) -> list[str]:
    documents, _ = parse_documents(folder / "cran.all.1400")
    return [d["text"] for d in documents]  # the abstract (it usually restates the title)


def emoji_names(folder: Path) -> list[str]:
    records, _ = load_records(folder)
    return sorted({r.name for r in records})


def emoji_images(folder: Path) -> tuple[list[str], dict[str, list[np.ndarray]]]:
    """Per vendor, the image of every emoji both vendors drew themselves."""
    records, _ = load_records(folder)
    files = sorted({r.image for r in records if all(r.has_img.values())})
    encoder = create_encoder("visual")
    vectors = {}
    for vendor in ("google", "twitter"):
        images = [
            decode_image((folder / f"{vendor}-64" / name).read_bytes(), source=name)
            for name in files
        ]
        vectors[vendor] = encoder.encode_images(images)
    return files, vectors


def test_once(reference: np.ndarray, test: np.ndarray) -> float:
    ref = reference_from_vectors([reference], reference.shape[0], reference.shape[1])
    return mmd_permutation_test(ref.sample, test).p_value


def rates(
    first: np.ndarray, second: np.ndarray, splits: int, threshold: float
) -> dict[str, dict[str, float]]:
    """Detection and false-alarm rates over seeded random halves (sources may differ in size)."""
    outcomes: dict[str, list[float]] = {"shift": [], "mix": [], "none_1": [], "none_2": []}
    for split in range(splits):
        rng = np.random.default_rng(1000 + split)
        one, two = rng.permutation(len(first)), rng.permutation(len(second))
        a1, b1 = one[: len(one) // 2], one[len(one) // 2 :]
        a2, b2 = two[: len(two) // 2], two[len(two) // 2 :]
        outcomes["shift"].append(test_once(first[a1], second[b2]))
        mixed = first[b1].copy()
        swap = rng.choice(len(mixed), size=int(MIX * len(mixed)), replace=False)
        mixed[swap] = second[rng.choice(b2, size=swap.size, replace=len(b2) < swap.size)]
        outcomes["mix"].append(test_once(first[a1], mixed))
        outcomes["none_1"].append(test_once(first[a1], first[b1]))
        outcomes["none_2"].append(test_once(second[a2], second[b2]))
    return {
        name: {
            "rate": float(np.mean(np.array(p) < threshold)),
            "median_p": float(np.median(p)),
        }
        for name, p in outcomes.items()
    }


def timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def make_build(home: Path, rows: int, dim: int = 384) -> dict[str, object]:
    """A real LanceDB build of ``rows`` synthetic unit vectors; returns its manifest."""
    rng = np.random.default_rng(0)
    folder = Workspace(home).create_or_open("bench")
    schema = build_schema([], [VectorField(vector_column("text"), dim)])
    index = create_build_index(folder, "build_bench", schema)
    step = 25_000
    for start in range(0, rows, step):
        count = min(step, rows - start)
        block = l2_normalise(rng.normal(size=(count, dim)).astype(np.float32))
        columns = {f.name: pa.nulls(count, f.type) for f in schema}
        columns["id"] = pa.array([f"i{start + i}" for i in range(count)])
        columns[vector_column("text")] = pa.FixedSizeListArray.from_arrays(
            pa.array(block.reshape(-1)), dim
        )
        index.upsert(pa.table(columns, schema=schema))
    return {
        "build_id": "bench",
        "table": "build_bench",
        "table_version": index.version(),
        "encoders": {"text": {"spec": "synthetic", "version": "v1", "dim": dim}},
    }


def _status_mb(field: str) -> float:
    """A /proc/self/status figure (Linux). VmHWM, not ``ru_maxrss``: the latter survives
    fork + exec, so a child would report the parent's (encoder-laden) peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def measure(home: Path) -> dict[str, float]:
    """Run in a fresh process: the peak RSS is then this work's, not the encoders'."""
    manifest = BuildManifest.model_validate_json((home / "manifest.json").read_text())
    folder = Workspace(home).collection("bench")
    rss_mb = _status_mb("VmRSS")
    reference_s = timed(lambda: compute_reference(folder, manifest))
    peak_mb = _status_mb("VmHWM")
    queries = l2_normalise(np.random.default_rng(1).normal(size=(2000, 384)).astype(np.float32))
    test_s = timed(lambda: compare_queries(folder, manifest, {"text": queries}))
    again_s = timed(lambda: compare_queries(folder, manifest, {"text": queries}))
    return {
        "compute_reference_s": reference_s,
        "drift_test_s": test_s,
        "drift_test_again_s": again_s,
        "rss_before_mb": rss_mb,
        "peak_rss_mb": peak_mb,
    }


def scale_timing(rows: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        (home / "manifest.json").write_text(json.dumps(make_build(home, rows)))
        child = subprocess.run(
            [sys.executable, __file__, "--measure", str(home)],
            check=True,
            capture_output=True,
            text=True,
        )
    return {"rows": rows, **json.loads(child.stdout.strip().splitlines()[-1])}


def print_scale(scale: dict[str, float]) -> None:
    print(
        f"At {scale['rows']:,} x 384 (LanceDB build): compute_reference "
        f"{scale['compute_reference_s']:.2f} s; drift test (reference loaded, 2,000 queries) "
        f"{scale['drift_test_s']:.2f} s (again {scale['drift_test_again_s']:.2f} s); "
        f"peak RSS of a fresh process {scale['peak_rss_mb']:.0f} MB "
        f"({scale['rss_before_mb']:.0f} MB before compute_reference)"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", type=Path, default=DATASETS)
    parser.add_argument("--splits", type=int, default=50)
    parser.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD)
    parser.add_argument("--rows", type=int, default=100_000, help="vectors for the timing")
    parser.add_argument("--quick", action="store_true", help="10 splits, 400 texts per source")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--timing-only", action="store_true", help="only the cost at --rows")
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure:
        print(json.dumps(measure(args.measure)))
        return
    if args.timing_only:
        print_scale(scale_timing(args.rows))
        return
    splits = 10 if args.quick else args.splits
    started = time.perf_counter()

    cranfield = cranfield_texts(args.datasets / "cranfield")
    names = emoji_names(args.datasets / "emoji")
    if args.quick:
        cranfield, names = cranfield[:400], names[:400]
    minilm = create_encoder("minilm")
    tick = time.perf_counter()
    text_a, text_b = minilm.encode_texts(cranfield), minilm.encode_texts(names)
    encode_text_s = time.perf_counter() - tick
    tick = time.perf_counter()
    files, images = emoji_images(args.datasets / "emoji")
    encode_image_s = time.perf_counter() - tick

    tick = time.perf_counter()
    found = {
        "text (MiniLM): Cranfield vs emoji names": rates(text_a, text_b, splits, args.threshold),
        "image (visual): Noto vs Twemoji": rates(
            images["google"], images["twitter"], splits, args.threshold
        ),
    }
    tests_s = time.perf_counter() - tick
    scale = scale_timing(args.rows)

    print(f"$ python benchmarks/drift_detection.py {shlex.join(argv or sys.argv[1:])}".rstrip())
    print(f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    print(
        f"{len(cranfield)} Cranfield texts, {len(names)} emoji names, {len(files)} emoji per "
        f"artist; {splits} random splits; drift when p < {args.threshold:g}"
    )
    print(f"encoding: texts {encode_text_s:.1f} s, images {encode_image_s:.1f} s")
    print()
    print("| vectors | shift detected | 20% mix detected | false alarms (source 1 / 2) |")
    print("| --- | --- | --- | --- |")
    for label, r in found.items():
        print(
            f"| {label} | {r['shift']['rate']:.0%} (median p {r['shift']['median_p']:.4f}) "
            f"| {r['mix']['rate']:.0%} (median p {r['mix']['median_p']:.4f}) "
            f"| {r['none_1']['rate']:.0%} / {r['none_2']['rate']:.0%} "
            f"(median p {r['none_1']['median_p']:.2f} / {r['none_2']['median_p']:.2f}) |"
        )
    tests = 4 * splits * len(found)
    print(f"\n{tests} tests in {tests_s:.1f} s ({1000 * tests_s / tests:.0f} ms per test)")
    print()
    print_scale(scale)
    print(f"total {time.perf_counter() - started:.0f} s")
    if args.json:
        args.json.write_text(json.dumps({"rates": found, "scale": scale}, indent=2))


if __name__ == "__main__":
    main()
