"""Ingest with ``--executor ray`` against the local executor, on the 20k-text catalog.

Why this exists: the Ray executor is worth its moving parts only if it is no slower on
one machine (and scales past one on a cluster), costs bounded memory, and writes the
very rows the local executor writes. Each executor runs in its own process (so one's
loaded model cannot flatter the other's memory) into its own collection of one
workspace, with the real MiniLM text encoder; then the two collections are compared
through the store protocol.

- **items/s**: catalog rows / wall time of ``Ingestor.run`` (Ray start-up and the
  start of the run's actor pool, models loaded once per actor, included: that is what
  a user waits for);
- **peak RSS**: sampled every 0.2 s: the driver, plus the sum over the Ray processes
  it started (workers and actors; the Ray system processes shown apart);
- **identical output**: ids compared, record hashes equal, text vectors within 1e-5.

The catalog is ``ingest_throughput.text_catalog`` (Cranfield titles and sentences).

Usage::

    python benchmarks/ray_ingest.py                 # 20,000 rows
    python benchmarks/ray_ingest.py --rows 5000
    python benchmarks/ray_ingest.py --quick         # 1,000 rows, a smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ingest_throughput import text_catalog

TOLERANCE = 1e-5
PAGE_SIZE = 2000


def _rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        tree.setdefault(parent, []).append(int(entry.name))
    return tree


def _descendants(root: int) -> list[int]:
    tree, found, todo = _children(), [], [root]
    while todo:
        for child in tree.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _is_worker(pid: int) -> bool:
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return False
    return "default_worker.py" in command or command.startswith("ray::")


class PeakMemory:
    """Peak RSS of this process, and of the sum of its descendants (Ray's processes)."""

    def __init__(self) -> None:
        self.driver = self.workers = self.system = self.total = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            driver = _rss_kb(os.getpid())
            workers = system = 0
            for pid in _descendants(os.getpid()):
                if _is_worker(pid):
                    workers += _rss_kb(pid)
                else:
                    system += _rss_kb(pid)
            self.driver = max(self.driver, driver)
            self.workers = max(self.workers, workers)
            self.system = max(self.system, system)
            self.total = max(self.total, driver + workers + system)


def child(executor: str, catalog: Path, home: Path) -> dict[str, Any]:
    """One ingest in this process; what it took, as JSON for the parent."""
    from mmsearch.config import Settings
    from mmsearch.ingest import IngestOptions, Ingestor

    settings = Settings(home=home, text_encoder="minilm")
    with PeakMemory() as memory:
        tick = time.perf_counter()
        report = Ingestor(settings).run(IngestOptions(catalog, executor, executor=executor))
        took = time.perf_counter() - tick
    return {
        "executor": executor,
        "rows": report.counts["rows"],
        "added": report.counts["added"],
        "failed": report.counts["failed"],
        "seconds": round(took, 2),
        "items_per_s": round(report.counts["rows"] / took, 1),
        "peak_rss_mb": {
            "driver": memory.driver // 1024,
            "ray_workers": memory.workers // 1024,
            "ray_system": memory.system // 1024,
            "total": memory.total // 1024,
        },
        "timings_s": {k: round(v, 1) for k, v in report.timings.items()},
    }


def compare(home: Path) -> dict[str, Any]:
    """The two collections, id by id, through the store protocol."""
    import numpy as np

    from mmsearch.config import Settings
    from mmsearch.index.open import open_build_index
    from mmsearch.index.schema import vector_column
    from mmsearch.workspace import Workspace

    settings = Settings(home=home, text_encoder="minilm")
    workspace = Workspace(home)
    indexes = {}
    for name in ("local", "ray"):
        folder = workspace.collection(name)
        indexes[name] = open_build_index(folder, folder.live_manifest(), settings)
    left_ids = sorted(indexes["local"].scan(["id"]).column("id").to_pylist())
    right_ids = set(indexes["ray"].scan(["id"]).column("id").to_pylist())
    column = vector_column("text")
    mismatches = len(right_ids.symmetric_difference(left_ids))
    worst = 0.0
    for start in range(0, len(left_ids), PAGE_SIZE):
        page = left_ids[start : start + PAGE_SIZE]
        rows = {
            name: {r["id"]: r for r in index.get(page, ["id", "record_sha256", column])}
            for name, index in indexes.items()
        }
        for item_id in page:
            a, b = rows["local"].get(item_id), rows["ray"].get(item_id)
            if a is None or b is None:
                continue  # counted above
            diff = float(np.max(np.abs(np.asarray(a[column]) - np.asarray(b[column]))))
            worst = max(worst, diff)
            if a["record_sha256"] != b["record_sha256"] or diff > TOLERANCE:
                mismatches += 1
    return {"ids_compared": len(left_ids), "max_abs_diff": worst, "mismatches": mismatches}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--quick", action="store_true", help="1,000 rows")
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--child", choices=["local", "ray"], help=argparse.SUPPRESS)
    parser.add_argument("--catalog", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--home", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.catalog, args.home)), flush=True)
        return
    rows = 1000 if args.quick else args.rows
    work = args.work or Path(tempfile.mkdtemp(prefix="mmsearch-ray-ingest-"))
    work.mkdir(parents=True, exist_ok=True)
    catalog = text_catalog(work, rows)
    home = work / f"home-{rows}"
    print(f"{rows:,} rows, {os.cpu_count()} CPUs, workspace {home}", flush=True)
    results = []
    for executor in ("local", "ray"):
        command = [sys.executable, __file__, "--child", executor, "--catalog", str(catalog)]
        done = subprocess.run(
            [*command, "--home", str(home)], check=True, capture_output=True, text=True
        )
        result = json.loads(done.stdout.strip().splitlines()[-1])
        print(json.dumps(result), flush=True)
        results.append(result)
    check = compare(home)
    print(json.dumps(check), flush=True)
    print()
    print("| executor | items | items/s | seconds | peak RSS MB (driver / ray workers / total) |")
    print("| --- | ---: | ---: | ---: | --- |")
    for r in results:
        m = r["peak_rss_mb"]
        print(
            f"| {r['executor']} | {r['rows']:,} | {r['items_per_s']:,.0f} | {r['seconds']:.0f} | "
            f"{m['driver']:,} / {m['ray_workers']:,} / {m['total']:,} |"
        )
    print(
        f"\nidentical output: {check['ids_compared']:,} ids compared, "
        f"max |diff| {check['max_abs_diff']:.2e}, {check['mismatches']} mismatches"
    )


if __name__ == "__main__":
    main()
