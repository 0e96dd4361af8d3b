"""A killed ONNX export leaves a hidden staging folder; the next export removes it once it
is old enough not to be another process's export under way."""

from __future__ import annotations

import os
import time
from pathlib import Path

from mmsearch.encoders.onnx_export import STALE_STAGING_S, sweep_stale_staging


def test_old_staging_folders_go_and_young_ones_and_exports_stay(tmp_path: Path) -> None:
    killed = tmp_path / ".onnx-k1ll3d"
    running = tmp_path / ".onnx-running"
    export = tmp_path / "onnx"  # a complete export: never a staging folder
    for folder in (killed, running, export):
        folder.mkdir()
        (folder / "model.onnx").write_bytes(b"\0" * 16)
    old = time.time() - STALE_STAGING_S - 60
    for path in (killed, export):
        os.utime(path, (old, old))
    assert sweep_stale_staging(tmp_path, "onnx") == [killed]
    assert not killed.exists() and running.is_dir() and export.is_dir()
