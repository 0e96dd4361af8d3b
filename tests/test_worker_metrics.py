"""Metrics of several workers: live gauges of a worker that died leave the sums."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from mmsearch.monitoring.metrics import mark_dead_workers


def test_a_dead_workers_live_gauges_go_and_everything_else_stays(tmp_path: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    dead, alive = child.pid, os.getpid()
    names = [
        f"gauge_livesum_{dead}.db",
        f"gauge_livemostrecent_{dead}.db",
        f"counter_{dead}.db",  # what it counted still counts
        f"gauge_mostrecent_{dead}.db",  # not a live mode: kept
        f"gauge_livesum_{alive}.db",
    ]
    for name in names:
        (tmp_path / name).write_bytes(b"")
    assert mark_dead_workers(tmp_path) == [dead]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [f"counter_{dead}.db", f"gauge_mostrecent_{dead}.db", f"gauge_livesum_{alive}.db"]
    )
    assert mark_dead_workers(tmp_path) == []
