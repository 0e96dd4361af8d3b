"""Moderation latency per image: 200 images checked against a 1,000-image banned list.

Data: the emoji of ``shared/datasets/emoji``. The banned list is a seeded sample of
1,000 Noto emoji in a folder, installed as a policy (``PolicyStore.install``: every
banned image fingerprinted once and cached). The queries are 100 altered copies of
banned emoji (mirrored, on an 8 px white frame, PNG) and 100 Twemoji of emoji that are
not on the list. Each query goes through ``moderation.evaluate.moderate`` as
``mmsearch moderate`` and ``POST /v1/moderate`` run it: bytes → bounded decode → crop
→ PDQ with its eight variants → lookup; its per-image time is the ``ms`` the report
carries. The lookup alone (``BannedList.match`` on a ready fingerprint) is timed apart.
The policy's strictness is given on the command line (standard: d ≤ 85; strict: d ≤ 39).

Usage::

    python benchmarks/moderate_latency.py --strictness standard --seed 0
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

from mmsearch.moderation.evaluate import moderate
from mmsearch.moderation.fingerprints import fingerprint_bytes
from mmsearch.moderation.store import PolicyStore

DATASET = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "emoji"


def altered(data: bytes) -> bytes:
    """Mirrored, on a white canvas with an 8-pixel frame, as PNG."""
    image = Image.open(io.BytesIO(data)).convert("RGBA").transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    canvas = Image.new("RGBA", (image.width + 16, image.height + 16), (255, 255, 255, 255))
    canvas.alpha_composite(image, (8, 8))
    out = io.BytesIO()
    canvas.convert("RGB").save(out, "PNG")
    return out.getvalue()


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--dataset", type=Path, default=DATASET)
    parser.add_argument("--banned", type=int, default=1000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--strictness", default="standard")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    noto = sorted((args.dataset / "google-64").glob("*.png"))
    twemoji = {p.name: p for p in (args.dataset / "twitter-64").glob("*.png")}
    rng = random.Random(args.seed)
    banned = rng.sample(noto, args.banned)
    banned_names = {p.name for p in banned}
    half = args.queries // 2
    copies = [(f"altered {p.name}", altered(p.read_bytes())) for p in rng.sample(banned, half)]
    others = sorted(name for name in twemoji if name not in banned_names)
    clean = [(f"other {n}", twemoji[n].read_bytes()) for n in rng.sample(others, half)]

    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    )
    print(f"$ python {' '.join(['benchmarks/moderate_latency.py', *(argv or sys.argv[1:])])}")
    with tempfile.TemporaryDirectory() as temporary:
        root = Path(temporary)
        folder = root / "src" / "banned"
        folder.mkdir(parents=True)
        for path in banned:
            shutil.copy(path, folder / path.name)
        policy_file = root / "src" / "policy.toml"
        policy_file.write_text(
            'version = 1\n[[rules]]\nid = "banned"\naction = "block"\n'
            f'[rules.banned_images]\nfolder = "banned"\nstrictness = "{args.strictness}"\n',
            encoding="utf-8",
        )
        store = PolicyStore(root / "home")
        started = time.perf_counter()
        store.install("bench", policy_file)
        install_s = time.perf_counter() - started
        started = time.perf_counter()
        policy = store.load("bench")  # what a CLI run pays: read + sha256 every file, cache hits
        load_s = time.perf_counter() - started
        threshold = policy.banned["banned"].max_distance
        print(
            f"banned list: {len(policy.banned['banned'])} images, strictness {args.strictness} "
            f"(PDQ d <= {threshold}); install (fingerprint all) {install_s:.2f} s, "
            f"load from cache {load_s * 1000:.0f} ms"
        )

        started = time.perf_counter()
        moderate([policy], [copies[0]])
        first_ms = (time.perf_counter() - started) * 1000
        print(f"first image in the process (warm-up, not counted below): {first_ms:.0f} ms")

        report = moderate([policy], [*copies, *clean])
        times = [image.ms for image in report.images]
        hit = {d.image for d in report.decisions}
        found = sum(source in hit for source, _ in copies)
        wrong = sum(source in hit for source, _ in clean)
        lookups: list[float] = []
        banned_list = policy.banned["banned"]
        for source, data in [*copies, *clean]:
            fingerprint = fingerprint_bytes(data, source=source)
            started = time.perf_counter()
            banned_list.match(fingerprint)
            lookups.append((time.perf_counter() - started) * 1000)
    print(
        f"per image (decode + fingerprint + lookup), {len(times)} images: "
        f"p50 {percentile(times, 0.5):.2f} ms, p95 {percentile(times, 0.95):.2f} ms, "
        f"mean {statistics.fmean(times):.2f} ms, max {max(times):.2f} ms"
    )
    print(
        f"lookup alone: p50 {percentile(lookups, 0.5):.3f} ms, "
        f"p95 {percentile(lookups, 0.95):.3f} ms"
    )
    print(
        f"altered banned copies matched: {found}/{len(copies)}; "
        f"emoji not on the list matched: {wrong}/{len(clean)}"
    )


if __name__ == "__main__":
    main()
