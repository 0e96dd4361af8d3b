"""Server memory while searching with huge query images (security point 4).

Why this exists: a PNG of 6300x6300 pixels (under the 40-megapixel limit) compresses
to about 150 KB, yet decoded at full size it is 160 MB, and the server used to hold
it (and copies of it) for the whole search: one such search raised a server from
712 MB to 1,319 MB, six at once to 3.8 GB, and glibc kept that memory afterwards.
Query images are now decoded to ``ingest_image_max_side`` under a process-wide pixel
budget, and freed heap pages are trimmed; the goal is that six concurrent searches
raise the server's peak RSS by under 300 MB and that it comes back down.

What it does: ingests the sample catalog into a temporary workspace; starts
``mmsearch serve`` on 127.0.0.1 (rate limits off); warms it with one small image
search; then sends one search with the 6300x6300 PNG, and then N (6) at once,
sampling the server's ``VmRSS`` from ``/proc/<pid>/status`` every 0.1 s. It reports
the baseline, the peak increase over it, and the RSS a few seconds after each phase.

``--source DIR`` runs the server from another checkout's ``src`` folder, which is how
the "before" figures are made: ``git archive <commit> src | tar -x -C /tmp/old``, then
``--source /tmp/old/src``. Linux only (``/proc``).

Usage::

    python benchmarks/query_image_memory.py
    python benchmarks/query_image_memory.py --source /tmp/old/src --concurrent 6
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import shlex
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from PIL import Image, ImageDraw

from mmsearch.config import Settings
from mmsearch.ingest import IngestOptions, Ingestor
from mmsearch.sample_data import sample_catalog_path

COLLECTION = "shop"
SAMPLE_S = 0.1
SETTLE_S = 3.0


def huge_png(side: int) -> bytes:
    """A ``side`` x ``side`` RGB PNG of flat bands: tens of megapixels in ~150 KB."""
    image = Image.new("RGB", (side, side), (240, 240, 235))
    draw = ImageDraw.Draw(image)
    for x in range(0, side, 450):
        draw.rectangle((x, 0, x + 300, side - 1 - x), fill=(200, (x * 7) % 255, 40))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=9)
    return buffer.getvalue()


def small_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (30, 60, 200)).save(buffer, format="PNG")
    return buffer.getvalue()


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return 0.0


class Sampler:
    """VmRSS of one process every ``SAMPLE_S`` seconds, in a background thread."""

    def __init__(self, pid: int):
        self.pid = pid
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.samples.append(rss_mb(self.pid))
            except OSError:
                return
            self._stop.wait(SAMPLE_S)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@contextmanager
def serve(home: Path, source: Path | None) -> Iterator[tuple[str, int]]:
    """``mmsearch serve`` in its own process; yields its URL and pid once it is ready."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "MMSEARCH_HOME": str(home), "MMSEARCH_RATE_LIMIT_PER_MINUTE": "0"}
    if source is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(source), env.get("PYTHONPATH")]))
    command = [sys.executable, "-m", "mmsearch", "serve", "--port", str(port)]
    server = subprocess.Popen(
        [*command, "--log-level", "warning"], env=env, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(1200):
            if server.poll() is not None:
                raise SystemExit("the server exited while starting")
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        yield url, server.pid
    finally:
        server.terminate()
        server.wait(timeout=30)


def image_search(url: str, data: bytes) -> tuple[int, float]:
    started = time.perf_counter()
    response = httpx.post(
        f"{url}/v1/collections/{COLLECTION}/search",
        files={"image": ("query.png", data, "image/png")},
        data={"query": '{"k": 5}'},
        timeout=300,
    )
    return response.status_code, time.perf_counter() - started


def phase(url: str, pid: int, data: bytes, concurrent: int, baseline: float) -> dict[str, object]:
    """``concurrent`` searches at once; peak and settled RSS over ``baseline``."""
    results: list[tuple[int, float]] = []
    lock = threading.Lock()

    def one() -> None:
        outcome = image_search(url, data)
        with lock:
            results.append(outcome)

    with Sampler(pid) as sampler:
        threads = [threading.Thread(target=one) for _ in range(concurrent)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        time.sleep(SETTLE_S)
    after = rss_mb(pid)
    statuses: dict[int, int] = {}
    for status, _ in results:
        statuses[status] = statuses.get(status, 0) + 1
    return {
        "concurrent": concurrent,
        "peak_increase_mb": max(sampler.samples) - baseline,
        "after_increase_mb": after - baseline,
        "after_mb": after,
        "statuses": statuses,
        "slowest_s": max(seconds for _, seconds in results),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--side", type=int, default=6300, help="query image side, pixels")
    parser.add_argument("--concurrent", type=int, default=6)
    parser.add_argument("--source", type=Path, help="run the server from this src folder")
    parser.add_argument("--label", default=None, help="name of this run in the output")
    args = parser.parse_args(argv)
    if not Path("/proc/self/status").exists():
        raise SystemExit("this benchmark reads /proc/<pid>/status: Linux only")

    print(f"command: {shlex.join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]])}")
    print(
        f"machine: {platform.platform()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, 1 uvicorn worker"
    )
    data = huge_png(args.side)
    print(f"query image: {args.side}x{args.side} PNG, {len(data) / 1024:.0f} KB")
    with tempfile.TemporaryDirectory(prefix="mmsearch-qimg-") as tmp:
        home = Path(tmp) / "workspace"
        settings = Settings(home=home)
        report = Ingestor(settings).run(IngestOptions(sample_catalog_path(), COLLECTION))
        print(f"collection: {report.counts['items']} items (sample catalog)")
        with serve(home, args.source) as (url, pid):
            for _ in range(3):  # load the encoders and open the table
                status, _ = image_search(url, small_png())
                if status != 200:
                    raise SystemExit(f"warm-up search failed with {status}")
            time.sleep(SETTLE_S)
            baseline = rss_mb(pid)
            label = args.label or ("source " + str(args.source) if args.source else "this tree")
            print(f"\nserver ({label}): baseline RSS after warm-up {baseline:.0f} MB\n")
            print(
                "| searches at once | peak RSS increase | RSS after (increase) | statuses |", end=""
            )
            print(" slowest |")
            print("| ---: | ---: | ---: | --- | ---: |")
            for concurrent in (1, args.concurrent):
                row = phase(url, pid, data, concurrent, baseline)
                statuses = ", ".join(f"{n}x {s}" for s, n in sorted(row["statuses"].items()))  # type: ignore[attr-defined]
                print(
                    f"| {concurrent} | {row['peak_increase_mb']:.0f} MB | "
                    f"{row['after_mb']:.0f} MB ({row['after_increase_mb']:+.0f} MB) | "
                    f"{statuses} | {row['slowest_s']:.1f} s |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
