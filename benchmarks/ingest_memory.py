"""Peak memory of ``mmsearch ingest`` on a catalog of large camera photos.

Why this exists: a catalog of product photos straight from a camera (36 megapixels,
a few MB each as JPEG) is ordinary input, yet each such image is about 140 MB once
decoded. Whether an ingest holds a handful of them or a whole batch decides whether
it fits on a small machine. This script measures that as a user would meet it: the
real ``mmsearch ingest`` command, at default settings, in its own process.

What it reports:

* peak RSS of the ingest process tree (``/proc/<pid>/status`` polled every 50 ms,
  children included), its own ``VmHWM`` (the kernel's high-water mark, which no
  polling interval can miss) and ``ru_maxrss`` from ``wait4``;
* wall time, items per second, and the counts the ingest prints with ``--json``;
* a baseline: the peak RSS of a process that only loads the default encoders and
  encodes one small image and one text. ``peak - baseline`` is what the pipeline
  itself holds above the models, the part that grows with image size and batch;
* the goal (peak under 1.5 GB by default) and PASS or FAIL.

Images are generated once and cached in ``--work``: smooth gradients, shapes, thin
lines and mild noise, so that they compress like photos rather than like flat
colour. They are written by worker processes, so that this process stays small:
``ru_maxrss`` of a child also counts what its parent held when it was started.
No network is used.

Usage::

    python benchmarks/ingest_memory.py
    python benchmarks/ingest_memory.py --rows 40 --distinct 4 --work /tmp/ingest-mem --keep
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import IO, Any

# 7360x4912 is a common full-frame sensor, nominally "36 megapixels" (36.15 exactly);
# other --megapixels values scale it with the same 3:2 aspect ratio.
REFERENCE_SIZE = (7360, 4912)
REFERENCE_MEGAPIXELS = 36.0
JPEG_QUALITY = 90
COLLECTION = "photos"
POLL_SECONDS = 0.05
SUBJECTS = ("harbour", "market", "workshop", "garden", "street", "studio", "kitchen", "forest")

BASELINE_CODE = textwrap.dedent(
    """
    from PIL import Image
    from mmsearch.config import Settings
    from mmsearch.encoders.base import create_encoder

    settings = Settings()
    text = create_encoder(settings.text_encoder)
    image = create_encoder(settings.image_encoder)
    text.encode_texts(["photo 1 of a harbour at dusk"])
    image.encode_images([Image.new("RGB", (256, 192), (120, 140, 160))])
    """
)


@dataclass
class Usage:
    """What was seen of one child process (and its descendants) while it ran."""

    returncode: int
    wall_s: float
    peak_tree_rss: int  # bytes, largest polled sum of VmRSS over the process tree
    hwm: int  # bytes, the main process's VmHWM as last read before it exited
    ru_maxrss: int  # bytes, from wait4
    stdout: str
    stderr: str
    samples: int
    timeline: list[tuple[float, int]] = field(default_factory=list)
    aborted_at: int | None = None  # bytes of RSS at which the run was stopped, if it was

    @property
    def peak(self) -> int:
        return max(self.peak_tree_rss, self.hwm, self.ru_maxrss)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not Path("/proc/self/status").exists():
        print("This benchmark reads /proc/<pid>/status and needs Linux.", file=sys.stderr)
        return 2
    temporary = args.work is None
    work = Path(args.work or tempfile.mkdtemp(prefix="mmsearch-ingest-mem-")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    home = Path(tempfile.mkdtemp(prefix="home-", dir=work))
    try:
        return run(args, work, home)
    finally:
        if not args.keep:
            shutil.rmtree(work if temporary else home, ignore_errors=True)
        else:
            print(f"\nkept: {work}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200, help="catalog rows (default 200)")
    parser.add_argument(
        "--distinct", type=int, default=10, help="distinct image files the rows cycle over"
    )
    parser.add_argument(
        "--megapixels", type=float, default=36.0, help="size of each image (default 36: 7360x4912)"
    )
    parser.add_argument(
        "--work", type=Path, default=None, help="folder for the cached images (default: temporary)"
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the work folder and the ingest home"
    )
    parser.add_argument("--goal-mb", type=float, default=1500.0, help="peak RSS goal in MB")
    parser.add_argument(
        "--abort-above-mb",
        type=float,
        default=0.0,
        help="stop the ingest once its RSS passes this, to spare the host an out-of-memory kill "
        "(default: 4x the goal, at most 75%% of the memory available at the start)",
    )
    parser.add_argument("--timeline", action="store_true", help="print RSS samples over time")
    args = parser.parse_args(argv)
    if args.rows < 1 or args.distinct < 1 or args.megapixels <= 0:
        parser.error("--rows and --distinct must be at least 1 and --megapixels positive")
    return args


def run(args: argparse.Namespace, work: Path, home: Path) -> int:
    size = image_size(args.megapixels)
    tick = time.perf_counter()
    images = ensure_images(work / "images", size, args.distinct)
    generated_s = time.perf_counter() - tick
    catalog = write_catalog(work, images, args.rows)
    total_mb = sum(path.stat().st_size for path in images) / 1e6
    print(f"images:   {len(images)} distinct JPEGs of {size[0]}x{size[1]} ", end="")
    print(
        f"({size[0] * size[1] / 1e6:.1f} MP, q{JPEG_QUALITY}, {total_mb / len(images):.1f} MB each)"
    )
    print(f"          ready in {generated_s:.1f} s, in {images[0].parent}")
    print(f"catalog:  {args.rows} rows in {catalog}")

    baseline = measure([sys.executable, "-c", BASELINE_CODE], cwd=work)
    if baseline.returncode != 0:
        print(f"baseline failed (exit {baseline.returncode}):\n{baseline.stderr}", file=sys.stderr)
        return 1

    command = [str(mmsearch_command()), "ingest", str(catalog), "-c", COLLECTION]
    command += ["--home", str(home), "--json"]
    guard = args.abort_above_mb * 1e6 or min(4 * args.goal_mb * 1e6, 0.75 * available_memory())
    ingest = measure(command, cwd=work, abort_above=int(guard))
    report(args, baseline, ingest)
    return 0 if ingest.returncode == 0 and ingest.peak < args.goal_mb * 1e6 else 1


def image_size(megapixels: float) -> tuple[int, int]:
    """3:2 size of about ``megapixels``; exactly 7360x4912 at the default of 36."""
    scale = math.sqrt(megapixels / REFERENCE_MEGAPIXELS)
    # Whole JPEG blocks (16 px at 4:2:0 subsampling), as camera sizes are.
    width = max(16, round(REFERENCE_SIZE[0] * scale / 16) * 16)
    height = max(16, round(REFERENCE_SIZE[1] * scale / 16) * 16)
    return width, height


def ensure_images(folder: Path, size: tuple[int, int], count: int) -> list[Path]:
    """The cached images, generating those that are missing in worker processes."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [
        folder / f"photo-{size[0]}x{size[1]}-q{JPEG_QUALITY}-{i:03d}.jpg" for i in range(count)
    ]
    missing = [(path, i) for i, path in enumerate(paths) if not path.exists()]
    if missing:
        # Each worker holds a few full frames at once; more workers than cores or than
        # the memory allows would only swap.
        frame = size[0] * size[1] * 4
        by_memory = max(1, int(available_memory() * 0.5 // (frame * 6)))
        workers = max(1, min(len(missing), os.cpu_count() or 1, by_memory))
        print(f"generating {len(missing)} images with {workers} worker(s) ...", flush=True)
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
            jobs = [pool.submit(write_photo, path, size, seed) for path, seed in missing]
            for job in jobs:
                job.result()
    return paths


def write_photo(path: Path, size: tuple[int, int], seed: int) -> None:
    """Write one photo-like JPEG; runs in a worker process (see the module docstring)."""
    from mmsearch.datasets.photos import photo_like

    image = photo_like(size, seed)
    tmp = path.with_suffix(".tmp")
    image.save(tmp, format="JPEG", quality=JPEG_QUALITY)
    tmp.replace(path)  # never leave a half-written file behind for the next run


def write_catalog(work: Path, images: list[Path], rows: int) -> Path:
    """JSONL rows cycling over the images; paths relative to the catalog's folder."""
    catalog = work / f"catalog-{rows}-{len(images)}-{images[0].stem.split('-')[1]}.jsonl"
    with catalog.open("w", encoding="utf-8") as handle:
        for i in range(rows):
            image = images[i % len(images)]
            row = {
                "id": f"p{i}",
                "title": f"photo {i} of the {SUBJECTS[i % len(SUBJECTS)]}, frame {i % 97}",
                "image": image.relative_to(work).as_posix(),
            }
            handle.write(json.dumps(row) + "\n")
    return catalog


def mmsearch_command() -> Path:
    """The installed entry point of this interpreter's environment."""
    path = Path(sys.executable).parent / "mmsearch"
    if not path.exists():
        raise SystemExit(f"no mmsearch entry point next to {sys.executable}; pip install -e .")
    return path


def measure(command: list[str], *, cwd: Path, abort_above: int = 0) -> Usage:
    """Run ``command``, polling the RSS of its process tree until it exits.

    With ``abort_above`` (bytes), the tree is killed once its RSS passes it: a run far
    over the goal has failed already, and letting it grow would end in the kernel's
    out-of-memory killer picking some process of its own choice.
    """
    tick = time.perf_counter()
    process = subprocess.Popen(
        command,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    # Pipes are drained by threads so that a chatty child never blocks on a full pipe.
    out: list[str] = []
    err: list[str] = []
    readers = [
        threading.Thread(target=drain, args=(process.stdout, out), daemon=True),
        threading.Thread(target=drain, args=(process.stderr, err), daemon=True),
    ]
    for reader in readers:
        reader.start()
    peak_tree, hwm, samples = 0, 0, 0
    aborted_at: int | None = None
    timeline: list[tuple[float, int]] = []
    while True:
        # wait4 with WNOHANG reaps the child and hands back its own rusage, which
        # RUSAGE_CHILDREN would mix with every other child this script has run.
        pid, status, rusage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            break
        tree = sum(rss_of(p) for p in process_tree(process.pid))
        hwm = max(hwm, status_value(process.pid, "VmHWM"))
        peak_tree = max(peak_tree, tree)
        samples += 1
        if abort_above and tree > abort_above and aborted_at is None:
            aborted_at = tree
            for pid in process_tree(process.pid):
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
        timeline.append((time.perf_counter() - tick, tree))
        time.sleep(POLL_SECONDS)
    wall = time.perf_counter() - tick
    process.returncode = os.waitstatus_to_exitcode(status)
    for reader in readers:
        reader.join()
    return Usage(
        returncode=process.returncode,
        wall_s=wall,
        peak_tree_rss=peak_tree,
        hwm=hwm,
        ru_maxrss=rusage.ru_maxrss * 1024,  # KiB on Linux
        stdout="".join(out),
        stderr="".join(err),
        samples=samples,
        timeline=timeline,
        aborted_at=aborted_at,
    )


def drain(stream: IO[str] | None, sink: list[str]) -> None:
    if stream is not None:
        sink.append(stream.read())


def process_tree(root: int) -> list[int]:
    """``root`` and all its descendants that are alive now."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # The command name may contain spaces and parentheses; fields follow the last ')'.
        parent = int(stat[stat.rindex(")") + 2 :].split()[1])
        children.setdefault(parent, []).append(int(entry))
    tree, stack = [], [root]
    while stack:
        pid = stack.pop()
        tree.append(pid)
        stack.extend(children.get(pid, []))
    return tree


def rss_of(pid: int) -> int:
    return status_value(pid, "VmRSS")


def status_value(pid: int, key: str) -> int:
    """A field of ``/proc/<pid>/status`` in bytes; 0 once the process is gone."""
    return kib_field(f"/proc/{pid}/status", key)


def available_memory() -> int:
    return kib_field("/proc/meminfo", "MemAvailable") or 4 * 1024**3


def kib_field(path: str, key: str) -> int:
    """A ``key: <n> kB`` line of a /proc file, in bytes; 0 when absent or unreadable."""
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def ingest_counts(stdout: str) -> dict[str, Any]:
    """The ingest's own ``--json`` report, or what could be salvaged from it."""
    try:
        report = json.loads(stdout)
    except json.JSONDecodeError:
        return {"unparsed_stdout": stdout[-2000:]}
    if not isinstance(report, dict):
        return {"report": report}
    keep = ("collection", "build_id", "new_build", "counts", "timings_s")
    summary = {key: report[key] for key in keep if key in report}
    if "errors" in report:
        summary["errors"] = len(report["errors"])
    return summary or report


def report(args: argparse.Namespace, baseline: Usage, ingest: Usage) -> None:
    mb = 1e6
    print()
    print(
        f"baseline (default encoders loaded, 1 image + 1 text encoded): {baseline.peak / mb:.0f} MB"
    )
    print(f"  (polled {baseline.peak_tree_rss / mb:.0f}, VmHWM {baseline.hwm / mb:.0f}, ", end="")
    print(f"ru_maxrss {baseline.ru_maxrss / mb:.0f} MB; {baseline.wall_s:.1f} s)")
    print(f"ingest:   exit {ingest.returncode}, {ingest.wall_s:.1f} s wall, ", end="")
    print(f"{args.rows / ingest.wall_s:.2f} items/s ({ingest.samples} RSS samples)")
    print(f"  peak RSS, polled process tree : {ingest.peak_tree_rss / mb:8.0f} MB")
    print(f"  peak RSS, VmHWM               : {ingest.hwm / mb:8.0f} MB")
    print(f"  peak RSS, ru_maxrss (wait4)   : {ingest.ru_maxrss / mb:8.0f} MB")
    overhead = ingest.peak - baseline.peak
    print(f"  peak (largest of the three)   : {ingest.peak / mb:8.0f} MB")
    print(f"  pipeline overhead above models: {overhead / mb:8.0f} MB ", end="")
    print(f"(peak / baseline = {ingest.peak / max(baseline.peak, 1):.1f}x)")
    print(f"  ingest report: {json.dumps(ingest_counts(ingest.stdout), sort_keys=True)}")
    if ingest.aborted_at is not None:
        print(f"  STOPPED at {ingest.aborted_at / mb:.0f} MB RSS (--abort-above-mb); ", end="")
        print("the figures above are a lower bound of what the full run would need")
    elif ingest.returncode != 0:
        print(f"  ingest stderr (tail):\n{textwrap.indent(ingest.stderr[-3000:], '    ')}")
    if args.timeline:
        for at, rss in ingest.timeline[:: max(1, len(ingest.timeline) // 60)]:
            print(f"    t={at:7.2f} s  rss={rss / mb:7.0f} MB")
    verdict = "PASS" if ingest.returncode == 0 and ingest.peak < args.goal_mb * mb else "FAIL"
    print(f"goal: peak RSS under {args.goal_mb:.0f} MB -> {verdict}")


if __name__ == "__main__":
    sys.exit(main())
