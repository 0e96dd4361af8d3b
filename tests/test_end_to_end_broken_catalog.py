"""A broken catalog through the real CLI in a subprocess, with the real MiniLM model: the
good rows land, each bad one is reported with its row and reason, and ``--strict`` fails.

Apart from test_end_to_end.py's demo workspace, so that the two files' processes can run
on different test workers."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from mmsearch.sample_data import SAMPLE_EMOJI_DIR, sample_catalog_path
from test_end_to_end import mmsearch

pytestmark = pytest.mark.integration


def test_broken_catalog_ingests_good_rows_and_reports_bad_ones(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    rows = sample_catalog_path().read_text(encoding="utf-8").splitlines()[:12]
    for row in rows:
        name = json.loads(row)["image"]
        shutil.copy(SAMPLE_EMOJI_DIR / name, images / Path(name).name)
    (images / "empty.png").write_bytes(b"")
    whole = (SAMPLE_EMOJI_DIR / json.loads(rows[0])["image"]).read_bytes()
    (images / "truncated.png").write_bytes(whole[: len(whole) // 2])
    broken = [
        '{"id": "bad-json", "name": ',
        json.dumps({"name": "no id", "image": "images/empty.png"}),
        json.dumps({"id": "zero", "name": "zero bytes", "image": "images/empty.png"}),
        json.dumps({"id": "half", "name": "truncated", "image": "images/truncated.png"}),
        json.dumps({"id": "gone", "name": "missing", "image": "images/missing.png"}),
        json.dumps({"id": "weird", "name": {"en": "object"}, "image": "images/empty.png"}),
    ]
    catalog = tmp_path / "catalog.jsonl"
    catalog.write_text("\n".join(rows + broken) + "\n", encoding="utf-8")
    home = tmp_path / "ws"

    completed = mmsearch("ingest", str(catalog), "-c", "broken", "--json", home=home)
    report = json.loads(completed.stdout)
    assert report["counts"]["added"] == 12
    assert report["counts"]["failed"] == 6
    errors = [json.loads(line) for line in Path(report["errors_file"]).read_text().splitlines()]
    assert [e["row"] for e in errors] == [13, 14, 15, 16, 17, 18]
    assert {e["item_id"] for e in errors} == {None, "zero", "half", "gone", "weird"}
    assert all(e["reason"] for e in errors)

    strict = mmsearch("ingest", str(catalog), "-c", "broken", "--strict", home=home, check=False)
    assert strict.returncode == 1
