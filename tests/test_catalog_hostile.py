"""Hostile JSONL and Parquet catalogs, and values that do not fit their attribute.

Readers: every input row is one record or one row error (``count_rows()`` agrees), and
the rows after a bad one land. Normalise: a value that does not fit is a warning on the
item (the attribute stored as missing), or a row error when the attribute is required.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mmsearch.catalog import readers
from mmsearch.catalog.item import Item, RawRecord, RowError
from mmsearch.catalog.mapping import FieldMapping, guess_mapping, nested_fields
from mmsearch.catalog.normalise import (
    NUMERIC_SHARE,
    AttributeSpec,
    infer_attribute_specs,
    normalise_record,
)
from mmsearch.catalog.readers import CatalogSource, Row, open_catalog
from mmsearch.errors import CatalogError


def _read(path: Path) -> tuple[CatalogSource, list[RawRecord], list[RowError]]:
    source = open_catalog(path)
    rows: list[Row] = list(source.rows())
    assert source.count_rows() == len(rows)
    records = [r for r in rows if isinstance(r, RawRecord)]
    errors = [r for r in rows if isinstance(r, RowError)]
    return source, records, errors


def _normalise(
    data: dict[str, object], specs: list[AttributeSpec], mapping: FieldMapping | None = None
) -> Item | RowError:
    mapping = mapping or FieldMapping(id="id", title="title")
    return normalise_record(RawRecord("c.csv", 9, data), mapping, specs, Path("/catalog"))


def _item(result: Item | RowError) -> Item:
    assert isinstance(result, Item), result
    return result


# --- JSONL -----------------------------------------------------------------------------------


def test_jsonl_bad_lines_are_one_error_each_and_blank_lines_are_not_rows(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    path.write_bytes(
        b'\xef\xbb\xbf{"id": 1}\n'  # 1, with a byte order mark
        b"\n"  # 2 blank
        b'{"id": 2, "title": \n'  # 3 invalid JSON
        b'{"id": "\xff"}\n'  # 4 invalid UTF-8
        b"[1, 2]\n"  # 5 not an object
        b"   \r\n"  # 6 blank
        b'{"id": 7}'  # 7, no final newline
    )
    _, records, errors = _read(path)
    assert [r.row for r in records] == [1, 7]
    assert [e.row for e in errors] == [3, 4, 5]
    assert "invalid JSON" in errors[0].reason
    assert errors[1].reason == "line 4 is not valid UTF-8 (byte offset 8 in the line)"
    assert "expected a JSON object, got list" in errors[2].reason


def test_jsonl_nan_and_infinity_are_read_as_floats(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    path.write_text('{"id": 1, "a": NaN, "b": Infinity, "c": -Infinity}\n', encoding="utf-8")
    _, [record], errors = _read(path)
    assert errors == []
    assert math.isnan(record.data["a"])  # type: ignore[arg-type]
    assert (record.data["b"], record.data["c"]) == (math.inf, -math.inf)


def test_jsonl_over_long_line_is_one_error_and_reading_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(readers, "MAX_LINE_BYTES", 40)
    path = tmp_path / "c.jsonl"
    long = json.dumps({"id": 2, "text": "x" * 5000})
    path.write_text(f'{{"id": 1}}\n{long}\n{{"id": 3}}\n', encoding="utf-8")
    _, records, errors = _read(path)
    assert [r.row for r in records] == [1, 3]
    assert [(e.row, e.reason) for e in errors] == [(2, "line is over 40 bytes")]


# --- Parquet ---------------------------------------------------------------------------------


def _hostile_parquet(path: Path) -> Path:
    rows = 6
    table = pa.table(
        {
            "id": [f"p{k}" for k in range(rows)],
            "tags": [["red", "mug"]] * rows,
            "sizes": pa.array([[1, 2]] * rows, pa.list_(pa.int64())),
            "colour": pa.array(["red", "blue"] * 3).dictionary_encode(),
            "dims": pa.array([{"w": 1, "h": 2}] * rows),
            "blob": pa.array([b"\x00\x01"] * rows, pa.binary()),
            "props": pa.array([[("k", "v")]] * rows, pa.map_(pa.string(), pa.string())),
            "variants": pa.array([[{"size": 1}]] * rows),
            "nested": pa.array([[["a"]]] * rows),
        }
    )
    pq.write_table(table, path, row_group_size=4)
    return path


def test_parquet_unsupported_columns_are_reported_once_and_not_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _hostile_parquet(tmp_path / "c.parquet")
    asked: list[object] = []
    iter_batches = pq.ParquetFile.iter_batches

    def spy(self: pq.ParquetFile, *args: object, **kwargs: object) -> object:
        asked.append(kwargs.get("columns"))
        return iter_batches(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(pq.ParquetFile, "iter_batches", spy)
    source, records, errors = _read(path)
    assert source.skipped_columns == {
        "dims": "Parquet type struct<w: int64, h: int64> is not supported; column skipped",
        "blob": "Parquet type binary is not supported; column skipped",
        "props": "Parquet type map<string, string ('props')> is not supported; column skipped",
        "variants": "Parquet type list<element: struct<size: int64>> is not supported; "
        "column skipped",
        "nested": "Parquet type list<element: list<element: string>> is not supported; "
        "column skipped",
    }
    assert asked == [["id", "tags", "sizes", "colour"]]
    assert errors == []
    assert [r.row for r in records] == [1, 2, 3, 4, 5, 6]
    assert records[1].data == {
        "id": "p1",
        "tags": ["red", "mug"],
        "sizes": [1, 2],
        "colour": "blue",
    }


def test_parquet_with_no_readable_column_still_yields_every_row(tmp_path: Path) -> None:
    path = tmp_path / "c.parquet"
    groups = pa.array([["a"], ["b", "c"]], pa.large_list(pa.string()))
    dims = pa.array([{"w": 1}, {"w": 2}])
    pq.write_table(pa.table({"dims": dims}), path)
    source, records, errors = _read(path)
    assert list(source.skipped_columns) == ["dims"]
    assert ([r.data for r in records], errors) == ([{}, {}], [])
    pq.write_table(pa.table({"dims": dims, "groups": groups}), path)
    _, records, _ = _read(path)
    assert [r.data for r in records] == [{"groups": ["a"]}, {"groups": ["b", "c"]}]


def test_parquet_na_in_a_mostly_numeric_text_column_is_a_float_with_a_warning(
    tmp_path: Path,
) -> None:
    path = tmp_path / "c.parquet"
    prices = [f"{k}.5" for k in range(19)] + ["N/A"]
    titles = [f"Item {k}" for k in range(20)]
    pq.write_table(pa.table({"id": list(range(20)), "title": titles, "price": prices}), path)
    _, records, _ = _read(path)
    specs = infer_attribute_specs((r.data for r in records), ["price"])
    assert specs == [AttributeSpec("price", "price", "float")]
    mapping = FieldMapping(id="id", title="title", attributes=["price"])
    items = [_item(normalise_record(r, mapping, specs, Path("/c"))) for r in records]
    warned = [(i.row, w.field, w.item_id, w.reason) for i in items for w in i.warnings]
    assert warned == [(20, "price", "19", "expected a number, got 'N/A'; stored as missing")]
    assert items[19].attributes == {"price": None}
    assert items[0].attributes == {"price": 0.5}


def test_parquet_nan_float_is_a_warning_not_a_silent_null(tmp_path: Path) -> None:
    path = tmp_path / "c.parquet"
    data = {"id": ["a", "b", "c"], "title": ["A", "B", "C"], "price": [1.5, math.nan, 2.0]}
    pq.write_table(pa.table(data), path)
    _, records, _ = _read(path)
    specs = infer_attribute_specs((r.data for r in records), ["price"])
    assert specs[0].kind == "float"
    item = _item(normalise_record(records[1], FieldMapping(id="id", title="title"), specs, "/"))
    [warning] = item.warnings
    assert (warning.row, warning.field, warning.severity) == (2, "price", "warning")
    assert warning.reason == "expected a finite number, got nan; stored as missing"


def test_parquet_duplicate_column_names_refuse_the_file(tmp_path: Path) -> None:
    path = tmp_path / "c.parquet"
    table = pa.Table.from_arrays([pa.array([1]), pa.array([2])], names=["id", "id"])
    pq.write_table(table, path)
    with pytest.raises(CatalogError, match="'id'"):
        open_catalog(path)


def test_parquet_value_python_cannot_hold_is_an_error_for_that_row_only(tmp_path: Path) -> None:
    path = tmp_path / "c.parquet"
    when = pa.array([0, 253_402_300_800_000, 0], pa.timestamp("ms"))  # the middle is year 10000
    pq.write_table(pa.table({"id": ["a", "b", "c"], "when": when}), path)
    _, records, errors = _read(path)
    assert [r.row for r in records] == [1, 3]
    assert [(e.row, e.field) for e in errors] == [(2, "when")]


# --- attribute types: inference, pins, warnings, required ------------------------------------


def test_cheap_among_csv_prices_stays_float_and_warns(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    prices = [f"{k}.25" for k in range(1, 12)] + ["cheap"]
    path.write_text(
        "id,title,price\n" + "".join(f"{k},Mug {k},{p}\n" for k, p in enumerate(prices)),
        encoding="utf-8",
    )
    _, records, _ = _read(path)
    specs = infer_attribute_specs((r.data for r in records), ["price"])
    assert specs[0].kind == "float"
    results = [_normalise(r.data, specs) for r in records]
    items = [_item(r) for r in results]
    assert [w.reason for i in items for w in i.warnings] == [
        "expected a number, got 'cheap'; stored as missing"
    ]
    assert items[-1].attributes == {"price": None}
    assert items[0].attributes == {"price": 1.25}


@pytest.mark.parametrize(
    ("values", "kind"),
    [
        (["1", "2", "3", "4", "5", "6", "7", "8", "9", "x"], "int"),  # 90 %: numeric
        (["1", "2", "3", "4", "5", "6", "7", "8", "x", "y"], "string"),  # 80 %: text
        (["12.5", "N/A", *["3"] * 9], "float"),
        ([1.5, math.nan, math.inf, math.nan], "float"),  # non-finite floats do not vote
        (["nan", "inf", "1"], "string"),  # nor do they as words
        ([True, False, True], "bool"),
        (["true", "false"], "bool"),  # CSV spells booleans as text
        (["true", "maybe"], "string"),
        (["7"], "int"),  # one value decides alone, as before
        (["cheap"], "string"),
    ],
)
def test_one_outlier_does_not_decide_the_kind(values: list[object], kind: str) -> None:
    [spec] = infer_attribute_specs([{"a": v} for v in values], ["a"])
    assert spec.kind == kind
    assert NUMERIC_SHARE == 0.9


@pytest.mark.parametrize("value", [math.nan, math.inf, "nan", "-Infinity", "inf"])
def test_non_finite_numbers_are_warnings(value: object) -> None:
    specs = [AttributeSpec("price", "price", "float")]
    item = _item(_normalise({"id": "p1", "title": "Mug", "price": value}, specs))
    assert item.attributes == {"price": None}
    [warning] = item.warnings
    assert "expected a finite number" in warning.reason


def test_nested_value_in_an_attribute_is_a_warning() -> None:
    specs = [AttributeSpec("colour", "colour", "string")]
    item = _item(_normalise({"id": "p1", "title": "Mug", "colour": {"en": "red"}}, specs))
    assert item.attributes == {"colour": None}
    [warning] = item.warnings
    assert warning.reason == "expected a single value, got an object; stored as missing"


def test_pinned_float_on_an_all_int_column() -> None:
    mapping = FieldMapping(id="id", title="title", attributes=["price:float"])
    assert (mapping.attributes, mapping.types) == (["price"], {"price": "float"})
    sample = [{"id": k, "title": "Mug", "price": k} for k in range(5)]
    specs = infer_attribute_specs(sample, mapping.attributes or [], mapping.types)
    assert specs == [AttributeSpec("price", "price", "float")]
    item = _item(_normalise(sample[3], specs, mapping))
    assert item.attributes == {"price": 3.0}
    assert type(item.attributes["price"]) is float


def test_required_attribute_missing_or_unfit_is_a_row_error() -> None:
    mapping = FieldMapping(id="id", title="title", attributes=["price"], required=["price"])
    specs = [AttributeSpec("price", "price", "float")]
    for data in ({"id": "p1", "title": "Mug"}, {"id": "p1", "title": "Mug", "price": "  "}):
        error = _normalise(data, specs, mapping)
        assert isinstance(error, RowError)
        assert (error.reason, error.field, error.item_id, error.severity) == (
            "required attribute missing",
            "price",
            "p1",
            "error",
        )
    error = _normalise({"id": "p2", "title": "Mug", "price": "cheap"}, specs, mapping)
    assert isinstance(error, RowError)
    assert error.reason == "required attribute: expected a number, got 'cheap'"
    assert error.row == 9


def test_warnings_do_not_change_the_content_hash() -> None:
    specs = [AttributeSpec("price", "price", "float")]
    warned = _item(_normalise({"id": "p1", "title": "Mug", "price": "cheap"}, specs))
    clean = _item(_normalise({"id": "p1", "title": "Mug", "price": None}, specs))
    assert warned.warnings and not clean.warnings
    assert warned.content_sha256() == clean.content_sha256()


def test_nested_fields_are_reported_when_no_role_takes_them() -> None:
    sample: list[dict[str, object]] = [
        {"id": 1, "title": "Mug", "meta": {"a": 1}, "labels": ["x"], "variants": [{"s": 1}]},
        {"id": 2, "title": "Cup", "images": ["a.jpg"], "price": 2, "mixed": "plain"},
        {"id": 3, "title": "Bowl", "mixed": [1]},
    ]
    mapping = guess_mapping(sample, FieldMapping(images=["images"]))
    assert mapping.attributes == ["price", "mixed"]
    assert nested_fields(sample, mapping) == {
        "meta": "nested object; not stored (attributes must be single values)",
        "labels": "list value; not stored (name it with --text-field to search it as text)",
        "variants": "list of objects; not stored (attributes must be single values)",
    }
    with_text = mapping.model_copy(update={"text": ["labels"]})
    assert "labels" not in nested_fields(sample, with_text)
