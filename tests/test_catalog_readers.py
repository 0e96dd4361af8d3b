from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from mmsearch.catalog import readers
from mmsearch.catalog.item import RawRecord, RowError
from mmsearch.catalog.readers import (
    Row,
    catalog_format,
    read_catalog,
    read_csv,
    read_image_folder,
    read_jsonl,
    read_parquet,
)
from mmsearch.errors import CatalogError


def _records(rows: list[Row]) -> list[RawRecord]:
    return [r for r in rows if isinstance(r, RawRecord)]


def _errors(rows: list[Row]) -> list[RowError]:
    return [r for r in rows if isinstance(r, RowError)]


def _image(path: Path, colour: str = "red") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (4, 4), colour).save(path)
    return path


# --- format and dispatch ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("c.jsonl", "jsonl"),
        ("c.ndjson", "jsonl"),
        ("c.JSONL", "jsonl"),
        ("c.csv", "csv"),
        ("c.parquet", "parquet"),
    ],
)
def test_catalog_format_by_suffix(tmp_path: Path, name: str, kind: str) -> None:
    assert catalog_format(tmp_path / name) == kind


def test_catalog_format_of_a_folder_is_images(tmp_path: Path) -> None:
    assert catalog_format(tmp_path) == "images"


@pytest.mark.parametrize("name", ["c.json", "c.xlsx", "catalog"])
def test_unknown_suffix_raises(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_text("{}", encoding="utf-8")
    with pytest.raises(CatalogError, match="format"):
        read_catalog(path)


def test_missing_catalog_raises(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="does not exist"):
        read_catalog(tmp_path / "absent.jsonl")


def test_read_catalog_dispatches_on_suffix(tmp_path: Path) -> None:
    jsonl = tmp_path / "c.jsonl"
    jsonl.write_text('{"id": 1}\n', encoding="utf-8")
    csv_path = tmp_path / "c.csv"
    csv_path.write_text("id\n7\n", encoding="utf-8")
    assert [r.data for r in _records(list(read_catalog(jsonl)))] == [{"id": 1}]
    assert [r.data for r in _records(list(read_catalog(csv_path)))] == [{"id": "7"}]


# --- JSONL -----------------------------------------------------------------------------------


def test_jsonl_bad_lines_become_row_errors_with_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    lines = [
        '{"id": "a", "title": "A"}',  # 1
        "",  # 2 blank
        '{"id": "b", "title": ',  # 3 malformed
        "[1, 2]",  # 4 not an object
        "   ",  # 5 blank
        '{"id": "c", "title": "C"}',  # 6
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    rows = list(read_jsonl(path))

    assert [(r.row, r.data["id"]) for r in _records(rows)] == [(1, "a"), (6, "c")]
    errors = _errors(rows)
    assert [e.row for e in errors] == [3, 4]
    assert "invalid JSON" in errors[0].reason
    assert "JSON object" in errors[1].reason
    assert "list" in errors[1].reason
    assert all(e.source == str(path) for e in errors)


def test_jsonl_scalar_line_is_a_row_error(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    path.write_text('"just text"\n{"id": 1}\n', encoding="utf-8")
    rows = list(read_jsonl(path))
    assert [e.row for e in _errors(rows)] == [1]
    assert "str" in _errors(rows)[0].reason
    assert [r.row for r in _records(rows)] == [2]


def test_jsonl_invalid_utf8_is_a_row_error(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    path.write_bytes(b'{"id": 1}\n{"id": "\xff\xfe"}\n{"id": 3}\n')
    rows = list(read_jsonl(path))
    assert [r.row for r in _records(rows)] == [1, 3]
    assert [e.row for e in _errors(rows)] == [2]


def test_jsonl_number_too_long_to_parse_is_a_row_error(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    path.write_text('{"id": 1}\n{"id": 2, "n": ' + "1" * 5000 + '}\n{"id": 3}\n')
    rows = list(read_jsonl(path))
    assert [r.row for r in _records(rows)] == [1, 3]
    assert [e.row for e in _errors(rows)] == [2]


def test_jsonl_too_deeply_nested_line_is_a_row_error(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    nested = "[" * 100_000 + "]" * 100_000
    path.write_text('{"id": 1}\n{"id": 2, "n": ' + nested + '}\n{"id": 3}\n')
    rows = list(read_jsonl(path))
    assert [r.row for r in _records(rows)] == [1, 3]
    assert [e.row for e in _errors(rows)] == [2]


def test_jsonl_without_trailing_newline_and_crlf(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    path.write_bytes(b'{"id": 1}\r\n{"id": 2}')
    rows = list(read_jsonl(path))
    assert [r.data for r in _records(rows)] == [{"id": 1}, {"id": 2}]
    assert _errors(rows) == []


def test_jsonl_keeps_nested_values(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    record = {"id": "x", "tags": ["a", "b"], "meta": {"k": 1}, "price": 2.5, "ok": True}
    path.write_text(json.dumps(record) + "\n", encoding="utf-8")
    [row] = list(read_jsonl(path))
    assert isinstance(row, RawRecord)
    assert row.data == record


def test_jsonl_overlong_line_is_a_row_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(readers, "MAX_LINE_BYTES", 32)
    path = tmp_path / "c.jsonl"
    path.write_text('{"id": 1}\n{"id": 2, "text": "' + "x" * 64 + '"}\n{"id": 3}\n')
    rows = list(read_jsonl(path))
    assert [r.row for r in _records(rows)] == [1, 3]
    [error] = _errors(rows)
    assert error.row == 2
    assert "32 bytes" in error.reason


# --- CSV -------------------------------------------------------------------------------------


def test_csv_rows_are_numbered_by_line_and_cells_kept_as_text(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text("id,title,price\n1,Mug,9.5\n2,Cup,3\n", encoding="utf-8")
    rows = list(read_csv(path))
    assert [(r.row, r.data) for r in _records(rows)] == [
        (2, {"id": "1", "title": "Mug", "price": "9.5"}),
        (3, {"id": "2", "title": "Cup", "price": "3"}),
    ]


def test_csv_pipe_cell_stays_text_so_titles_keep_their_bars(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text("id,title,images\n1,Foo | Bar,a.jpg| b.jpg |\n", encoding="utf-8")
    records = _records(list(read_csv(path)))
    assert records[0].data["title"] == "Foo | Bar"
    assert records[0].data["images"] == "a.jpg| b.jpg |"  # split by role, in normalise


def test_csv_empty_cells_are_none(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text('id,title,price\n1,,\n2,"",\n', encoding="utf-8")
    records = _records(list(read_csv(path)))
    assert records[0].data == {"id": "1", "title": None, "price": None}
    assert records[1].data == {"id": "2", "title": None, "price": None}


def test_csv_short_row_is_a_row_error(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text("id,title,price\n1,Mug,3\n2\n3,Cup,4\n", encoding="utf-8")
    rows = list(read_csv(path))
    assert [r.row for r in _records(rows)] == [2, 4]
    [error] = _errors(rows)
    assert (error.row, error.reason) == (3, "row has 1 cell, the header has 3 cells")


def test_csv_row_with_too_many_cells_is_a_row_error(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text("id,title\n1,Mug\n2,Cup,extra,more\n3,Bowl\n", encoding="utf-8")
    rows = list(read_csv(path))
    assert [r.data["id"] for r in _records(rows)] == ["1", "3"]
    [error] = _errors(rows)
    assert error.row == 3
    assert error.reason == "row has 4 cells, the header has 2 cells"


def test_csv_byte_order_mark_is_not_part_of_the_first_header(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_bytes("id,title\n1,Café\n".encode("utf-8-sig"))
    [record] = _records(list(read_csv(path)))
    assert record.data == {"id": "1", "title": "Café"}


def test_csv_quoted_cells_keep_commas(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text('id,title\n1,"Mug, blue"\n', encoding="utf-8")
    [record] = _records(list(read_csv(path)))
    assert record.data["title"] == "Mug, blue"


def test_csv_blank_header_column_is_reported_and_not_read(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text("id,,title\n1,x,Mug\n", encoding="utf-8")
    source = readers.open_catalog(path)
    assert list(source.skipped_columns) == ["column 2"]
    [record] = _records(list(source.rows()))
    assert record.data == {"id": "1", "title": "Mug"}


def test_empty_csv_yields_nothing(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text("", encoding="utf-8")
    assert list(read_csv(path)) == []


def test_csv_with_only_a_header_yields_nothing(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text("id,title\n", encoding="utf-8")
    assert list(read_csv(path)) == []


# --- Parquet ---------------------------------------------------------------------------------


def test_parquet_rows_are_numbered_from_one_with_plain_values(tmp_path: Path) -> None:
    path = tmp_path / "c.parquet"
    table = pa.table(
        {
            "id": ["a", "b", "c"],
            "price": [1.5, None, 3.0],
            "count": pa.array([1, 2, 3], pa.int64()),
            "tags": [["x"], [], ["y", "z"]],
            "released": [dt.date(2024, 1, 2), dt.date(2023, 5, 6), None],
            "updated": [dt.datetime(2024, 1, 2, 3, 4, 5), None, None],
        }
    )
    pq.write_table(table, path, row_group_size=2)
    rows = list(read_parquet(path))
    assert _errors(rows) == []
    records = _records(rows)
    assert [r.row for r in records] == [1, 2, 3]
    assert records[0].data == {
        "id": "a",
        "price": 1.5,
        "count": 1,
        "tags": ["x"],
        "released": "2024-01-02",
        "updated": "2024-01-02T03:04:05",
    }
    assert records[1].data["price"] is None
    assert records[2].data["released"] is None
    assert type(records[0].data["count"]) is int


def test_parquet_decimal_values_are_plain_scalars(tmp_path: Path) -> None:
    path = tmp_path / "c.parquet"
    prices = pa.array([Decimal("9.99")], pa.decimal128(10, 2))
    pq.write_table(pa.table({"id": ["a"], "price": prices}), path)
    [record] = _records(list(read_parquet(path)))
    price = record.data["price"]
    assert isinstance(price, int | float | str)
    assert float(price) == pytest.approx(9.99)


def test_unreadable_parquet_raises_catalog_error(tmp_path: Path) -> None:
    path = tmp_path / "c.parquet"
    path.write_bytes(b"not parquet at all")
    with pytest.raises(CatalogError, match="Parquet"):
        list(read_parquet(path))


# --- image folders ---------------------------------------------------------------------------


def test_image_folder_yields_one_record_per_image(tmp_path: Path) -> None:
    _image(tmp_path / "red_shoe-01.jpg")
    _image(tmp_path / "bags" / "blue-bag.png")
    _image(tmp_path / "bags" / "leather" / "Brown_Bag.JPEG")
    (tmp_path / "notes.txt").write_text("not an image", encoding="utf-8")
    (tmp_path / "bags" / "catalog.csv").write_text("id\n", encoding="utf-8")
    (tmp_path / "folder.jpg").mkdir()

    rows = list(read_image_folder(tmp_path))
    assert _errors(rows) == []
    by_id = {r.data["id"]: r.data for r in _records(rows)}
    shoe, bag, brown = "red_shoe-01.jpg", "bags/blue-bag.png", "bags/leather/Brown_Bag.JPEG"
    assert set(by_id) == {shoe, bag, brown}
    assert by_id[shoe]["title"] == "red shoe 01"
    assert by_id[shoe]["image"] == shoe
    assert by_id[bag]["title"] == "blue bag"
    assert by_id[bag]["folder"] == "bags"
    assert by_id[brown]["image"] == brown
    assert by_id[brown]["folder"] == "bags/leather"


def test_image_folder_same_stem_different_suffix_gives_two_ids(tmp_path: Path) -> None:
    _image(tmp_path / "shoe.jpg")
    _image(tmp_path / "shoe.png")
    ids = [r.data["id"] for r in _records(list(read_image_folder(tmp_path)))]
    assert ids == ["shoe.jpg", "shoe.png"]


def test_image_folder_rows_are_numbered_from_one_in_path_order(tmp_path: Path) -> None:
    for name in ("b.png", "a.png", "c/d.png"):
        _image(tmp_path / name)
    rows = _records(list(read_image_folder(tmp_path)))
    ids = [(r.row, r.data["id"]) for r in rows]
    assert ids == [(1, "a.png"), (2, "b.png"), (3, "c/d.png")]
    assert all(r.source == str(tmp_path) for r in rows)


def test_image_folder_id_keeps_dots_in_folder_names(tmp_path: Path) -> None:
    _image(tmp_path / "v1.2" / "photo.webp")
    [record] = _records(list(read_image_folder(tmp_path)))
    assert record.data["id"] == "v1.2/photo.webp"


def test_empty_image_folder_yields_nothing(tmp_path: Path) -> None:
    (tmp_path / "readme.md").write_text("x", encoding="utf-8")
    assert list(read_catalog(tmp_path)) == []
