"""Hostile catalogs through the whole ingest, one per format: every row read is added,
updated, unchanged or failed, the report adds up exactly, and nothing is dropped without
a line naming it."""

from __future__ import annotations

import io
import json
import math
import zlib
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from mmsearch.catalog.mapping import FieldMapping
from mmsearch.config import Settings
from mmsearch.index.open import open_build_index
from mmsearch.ingest import IngestOptions, Ingestor, IngestReport
from mmsearch.workspace import Workspace

from conftest import save_image, write_jsonl


def ingest(settings: Settings, catalog: Path, **kwargs: object) -> IngestReport:
    return Ingestor(settings).run(IngestOptions(catalog, "shop", **kwargs))


def assert_adds_up(report: IngestReport, rows: int) -> None:
    counts = report.counts
    assert counts["rows"] == rows
    settled = counts["added"] + counts["updated"] + counts["unchanged"] + counts["failed"]
    assert settled == rows, counts
    lines = report.errors_path.read_text().splitlines() if report.errors_path else []
    errors = [json.loads(line) for line in lines]
    assert sum(e["severity"] == "error" for e in errors) == counts["failed"]
    assert sum(e["severity"] == "warning" for e in errors) == counts["warnings"]


def stored(settings: Settings, ids: list[str], column: str) -> dict[str, object]:
    folder = Workspace(settings.home).collection("shop")
    index = open_build_index(folder, folder.live_manifest(), settings)
    return {row["id"]: row[column] for row in index.get(ids, ["id", column])}


def test_csv_unclosed_quote_and_invalid_utf8_cost_one_row_each(settings, tmp_path):
    lines = [b"id,title,price"]
    lines += [f"r{n},item {n},{n}.5".encode() for n in range(2, 3001)]
    lines[3] = b'r4,"unclosed item,4.5'  # line 4
    lines[1999] = b"r2000,caf\xe9 latte,3.5"  # line 2000: Latin-1, not UTF-8
    catalog = tmp_path / "c.csv"
    catalog.write_bytes(b"\n".join(lines) + b"\n")

    report = ingest(settings, catalog)

    assert_adds_up(report, 2999)
    assert report.counts["added"] == 2997 and report.counts["failed"] == 2
    assert sorted(e.row for e in report.errors) == [4, 2000]
    assert "UTF-8" in next(e.reason for e in report.errors if e.row == 2000)
    assert {a.column: a.kind for a in report.attributes} == {"price": "float"}

    again = ingest(settings, catalog)
    assert_adds_up(again, 2999)
    assert again.counts["unchanged"] == 2997 and again.counts["failed"] == 2


def test_csv_short_rows_and_a_text_outlier_in_a_number_column(settings, tmp_path):
    rows = ["id,title,price", *[f"p{n},thing {n},{n}" for n in range(30)]]
    rows[5] = "p4,cheap thing,cheap"
    rows[8] = "p7,too few cells"
    catalog = tmp_path / "c.csv"
    catalog.write_text("\n".join(rows) + "\n", encoding="utf-8")

    report = ingest(settings, catalog)

    assert_adds_up(report, 30)
    assert report.counts["failed"] == 1 and report.errors[0].row == 9
    assert {a.column: a.kind for a in report.attributes} == {"price": "int"}
    assert [(w.row, w.item_id, w.field) for w in report.warnings] == [(6, "p4", "price")]
    assert stored(settings, ["p4", "p5"], "price") == {"p4": None, "p5": 5}


def test_pinned_type_and_required_attribute(settings, tmp_path):
    rows = [{"id": f"a{n}", "title": f"a {n}", "price": n, "brand": "acme"} for n in range(10)]
    rows[3]["price"] = "n/a"
    rows[4].pop("brand")
    catalog = write_jsonl(tmp_path / "c.jsonl", rows)
    mapping = FieldMapping(attributes=["price:float", "brand"], required=["brand"])

    report = ingest(settings, catalog, mapping=mapping)

    assert_adds_up(report, 10)
    assert {a.column: a.kind for a in report.attributes} == {"price": "float", "brand": "string"}
    assert [(e.row, e.field) for e in report.errors] == [(5, "brand")]
    assert [w.item_id for w in report.warnings] == ["a3"]
    assert stored(settings, ["a1"], "price") == {"a1": 1.0}


def test_jsonl_nan_infinity_nested_and_broken_lines(settings, tmp_path):
    lines = [json.dumps({"id": f"j{n}", "title": f"j {n}", "price": n + 0.5}) for n in range(10)]
    lines[2] = '{"id": "j2", "title": "j 2", "price": NaN}'
    lines[3] = '{"id": "j3", "title": "j 3", "price": Infinity}'
    lines[4] = '{"id": "j4", "title": "j 4", "price": 1.5, "dims": {"w": 3}}'
    lines[5] = '{"id": "j5", "title": '
    lines[6] = b'{"id": "j6", "title": "caf\xe9"}'.decode("latin-1")
    catalog = tmp_path / "c.jsonl"
    catalog.write_bytes(
        "\n".join(lines[:6]).encode()
        + b'\n{"id": "j6", "title": "caf\xe9"}\n'
        + "\n".join(lines[7:]).encode()
        + b"\n"
    )

    report = ingest(settings, catalog)

    assert_adds_up(report, 10)
    assert sorted(e.row for e in report.errors) == [6, 7]
    assert sorted(w.item_id for w in report.warnings) == ["j2", "j3"]
    assert "dims" in report.skipped_fields
    prices = stored(settings, ["j2", "j3", "j8"], "price")
    assert prices["j2"] is None and prices["j3"] is None and math.isclose(prices["j8"], 8.5)


def test_parquet_unsupported_columns_are_reported_and_outliers_warned(settings, tmp_path):
    count = 40
    table = pa.table(
        {
            "id": [f"q{n}" for n in range(count)],
            "title": [f"part {n}" for n in range(count)],
            "price": ["N/A" if n == 7 else f"{n}.25" for n in range(count)],
            "weight": [float("nan") if n == 3 else n * 1.5 for n in range(count)],
            "dims": [{"w": n, "h": n + 1} for n in range(count)],
            "thumb": [b"\x00\x01" for _ in range(count)],
            "parts": [[{"k": "v"}] for _ in range(count)],
            "tags": [["steel", "bolt"] for _ in range(count)],
        }
    )
    catalog = tmp_path / "c.parquet"
    pq.write_table(table, catalog)

    report = ingest(settings, catalog, mapping=FieldMapping(text=["tags"]))

    assert_adds_up(report, count)
    assert report.counts["added"] == count
    assert set(report.skipped_fields) == {"dims", "thumb", "parts"}
    assert "struct" in report.skipped_fields["dims"]
    kinds = {a.column: a.kind for a in report.attributes}
    assert kinds == {"price": "float", "weight": "float"}
    assert sorted((w.item_id, w.field) for w in report.warnings) == [
        ("q3", "weight"),
        ("q7", "price"),
    ]


def test_image_folder_with_a_corrupt_file_a_bomb_and_a_huge_photo(settings, tmp_path):
    folder = tmp_path / "photos"
    save_image(folder / "red.png", (200, 10, 10))
    (folder / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    bomb = io.BytesIO()
    Image.new("L", (1, 1)).save(bomb, format="PNG")
    data = bytearray(bomb.getvalue())
    data[16:24] = (100_000).to_bytes(4, "big") + (100_000).to_bytes(4, "big")  # IHDR size
    data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, "big")  # a valid chunk CRC
    (folder / "bomb.png").write_bytes(bytes(data))
    Image.new("RGB", (6000, 4000), (20, 120, 40)).save(folder / "huge.jpg", quality=80)

    report = ingest(settings, folder)

    assert_adds_up(report, 4)
    assert report.counts["added"] == 2 and report.counts["failed"] == 2
    assert {Path(e.item_id).name for e in report.errors} == {"corrupt.jpg", "bomb.png"}
    assert any("pixels" in e.reason for e in report.errors)
