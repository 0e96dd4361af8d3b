"""Hostile CSV catalogs: every input row comes out as exactly one record or one row error.

Each test checks the full accounting: ``count_rows()`` equals what ``rows()`` yields,
the numbers of records and errors, the lines the errors name, and that the rows after a
broken one still land.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mmsearch.catalog import csv_records, readers
from mmsearch.catalog.item import RawRecord, RowError
from mmsearch.catalog.readers import CatalogSource, Row, open_catalog
from mmsearch.errors import CatalogError

HEADER = b"id,title,price"


def _read(path: Path) -> tuple[CatalogSource, list[RawRecord], list[RowError]]:
    source = open_catalog(path)
    rows: list[Row] = list(source.rows())
    assert source.count_rows() == len(rows)
    assert list(source.rows()) == rows  # rows() starts again from the top
    records = [r for r in rows if isinstance(r, RawRecord)]
    errors = [r for r in rows if isinstance(r, RowError)]
    assert len(records) + len(errors) == len(rows)
    return source, records, errors


def _csv(path: Path, lines: list[bytes], newline: bytes = b"\n") -> Path:
    path.write_bytes(newline.join(lines) + newline)
    return path


def _rows(count: int) -> list[bytes]:
    """A header and ``count`` good rows; data row k is on line k + 1."""
    return [HEADER] + [f"{k},Item {k},{k}.5".encode() for k in range(1, count + 1)]


# --- unclosed quotes -------------------------------------------------------------------------


def test_unclosed_quote_costs_one_row_in_a_small_file(tmp_path: Path) -> None:
    lines = _rows(25)
    lines[6] = b'6,"Mug with a quote that never closes,6.5'  # line 7
    _, records, errors = _read(_csv(tmp_path / "c.csv", lines))
    assert len(records) == 24
    [error] = errors
    assert error.row == 7
    assert error.reason.startswith("unclosed quote")
    assert "end of the file" in error.reason
    assert [r.row for r in records] == [n for n in range(2, 27) if n != 7]
    assert records[5].data == {"id": "7", "title": "Item 7", "price": "7.5"}


def test_unclosed_quote_and_late_bad_utf8_in_2999_rows(tmp_path: Path) -> None:
    lines = _rows(2999)
    lines[3] = b'3,"Broken,3.5'  # line 4
    lines[1999] = b"1999,Caf\xe9 au lait,1999.5"  # line 2000
    _, records, errors = _read(_csv(tmp_path / "c.csv", lines))
    assert len(records) == 2997
    assert [e.row for e in errors] == [4, 2000]
    assert errors[0].reason.startswith("unclosed quote")
    assert errors[1].reason == "line 2000 is not valid UTF-8 (byte offset 8 in the line)"
    landed = {r.row for r in records}
    assert {3, 5, 1999, 2001, 3000} <= landed
    assert records[-1].data["id"] == "2999"


def test_unclosed_quote_stops_at_the_line_bound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(csv_records, "MAX_RECORD_LINES", 5)
    lines = [b"id,description", b'1,"starts here', *[f"{k},x".encode() for k in range(2, 9)]]
    lines.append(b'9,closes late"')  # a quote in an unquoted cell is a literal character
    _, records, errors = _read(_csv(tmp_path / "c.csv", lines))
    [error] = errors
    assert error.row == 2
    assert "within 5 lines" in error.reason
    assert [r.row for r in records] == list(range(3, 11))
    assert records[-1].data == {"id": "9", "description": 'closes late"'}


def test_multi_line_record_with_the_wrong_cell_count_is_an_unclosed_quote(
    tmp_path: Path,
) -> None:
    lines = [HEADER, b'1,"Mug,1.5', b"2,Cup,2.5", b'3,Bowl",3.5,extra', b"4,Jug,4.5"]
    _, records, errors = _read(_csv(tmp_path / "c.csv", lines))
    assert [e.row for e in errors] == [2, 4]
    assert errors[0].reason.startswith("unclosed quote")
    assert "line 4 gives 4 cells" in errors[0].reason
    assert errors[1].reason == "row has 4 cells, the header has 3 cells"
    assert [r.row for r in records] == [3, 5]


def test_quote_closing_into_the_right_cell_count_is_one_multi_line_cell(tmp_path: Path) -> None:
    # Indistinguishable from a real multi-line cell, so it is read as one.
    lines = [HEADER, b'1,"Mug,1.5', b'2,Bowl",3.5', b"4,Jug,4.5"]
    _, records, errors = _read(_csv(tmp_path / "c.csv", lines))
    assert errors == []
    assert [(r.row, r.data["title"]) for r in records] == [(2, "Mug,1.5\n2,Bowl"), (4, "Jug")]


# --- text that is not UTF-8 ------------------------------------------------------------------


def test_bad_utf8_on_line_2_costs_only_that_row(tmp_path: Path) -> None:
    lines = _rows(40)
    lines[1] = b"1,\xff\xfe broken,1.5"
    _, records, errors = _read(_csv(tmp_path / "c.csv", lines))
    [error] = errors
    assert (error.row, error.reason) == (2, "line 2 is not valid UTF-8 (byte offset 2 in the line)")
    assert [r.row for r in records] == list(range(3, 42))


def test_bad_utf8_past_the_first_megabyte_names_its_line(tmp_path: Path) -> None:
    filler = "x" * 500
    lines = [HEADER] + [f"{k},{filler},{k}".encode() for k in range(1, 3001)]
    lines[2500] = b"2500,\xc3(," + b"1"  # line 2501: a lead byte without its follower
    _, records, errors = _read(_csv(tmp_path / "c.csv", lines))
    assert [e.row for e in errors] == [2501]
    assert "byte offset 5" in errors[0].reason
    assert len(records) == 2999


def test_bad_utf8_inside_a_multi_line_cell_names_the_inner_line(tmp_path: Path) -> None:
    lines = [HEADER, b'1,"Mug', b'in \xff blue",1.5', b"2,Cup,2.5"]
    _, records, errors = _read(_csv(tmp_path / "c.csv", lines))
    [error] = errors
    assert error.row == 2
    assert error.reason == "line 3 is not valid UTF-8 (byte offset 3 in the line)"
    assert [r.row for r in records] == [4]  # the cell's second line is not read as a row


def test_bad_utf8_in_the_header_refuses_the_file(tmp_path: Path) -> None:
    path = _csv(tmp_path / "c.csv", [b"id,t\xefitle", b"1,Mug"])
    with pytest.raises(CatalogError, match=r"header \(line 1\).*not valid UTF-8"):
        open_catalog(path)


def test_nul_byte_in_a_cell_is_a_row_error(tmp_path: Path) -> None:
    lines = [HEADER, b"1,Mu\x00g,1.5", b"2,Cup,2.5"]
    _, records, errors = _read(_csv(tmp_path / "c.csv", lines))
    [error] = errors
    assert error.row == 2
    assert "NUL byte (byte offset 4" in error.reason
    assert [r.row for r in records] == [3]


# --- cell counts and quoting -----------------------------------------------------------------


def test_row_with_too_few_cells_is_a_row_error(tmp_path: Path) -> None:
    lines = [HEADER, b"1,Mug,1.5", b"2,Cup", b"3,Bowl,3.5"]
    _, records, errors = _read(_csv(tmp_path / "c.csv", lines))
    [error] = errors
    assert (error.row, error.reason) == (3, "row has 2 cells, the header has 3 cells")
    assert [r.row for r in records] == [2, 4]


def test_row_with_too_many_cells_is_a_row_error(tmp_path: Path) -> None:
    lines = [HEADER, b"1,Mug,1.5,extra", b"2,Cup,2.5"]
    _, records, errors = _read(_csv(tmp_path / "c.csv", lines))
    [error] = errors
    assert (error.row, error.reason) == (2, "row has 4 cells, the header has 3 cells")
    assert [r.row for r in records] == [3]


def test_trailing_empty_cells_are_accepted(tmp_path: Path) -> None:
    lines = [HEADER + b",", b"1,Mug,1.5,,", b"2,Cup,2.5", b'3,Bowl,3.5,""']
    source, records, errors = _read(_csv(tmp_path / "c.csv", lines))
    assert source.skipped_columns == {}
    assert [r.row for r in records] == [2, 3]
    assert records[0].data == {"id": "1", "title": "Mug", "price": "1.5"}
    [error] = errors  # a quoted empty cell is written on purpose: it counts
    assert error.row == 4


def test_stray_quote_inside_an_unquoted_cell_is_kept_as_written(tmp_path: Path) -> None:
    lines = [HEADER, b'1,15.6" laptop,999', b'2,"Mug" handle,2.5', b"3,Cup,3.5"]
    _, records, errors = _read(_csv(tmp_path / "c.csv", lines))
    assert records[0].data["title"] == '15.6" laptop'
    [error] = errors
    assert error.row == 3
    assert error.reason.startswith("malformed quoting")
    assert "' '" in error.reason
    assert [r.row for r in records] == [2, 4]


def test_legit_multi_line_cell_is_one_record_named_by_its_first_line(tmp_path: Path) -> None:
    lines = [
        b"id,title,description",
        b'1,Mug,"Blue mug.',
        b"",
        b'Dishwasher safe, ""stackable"".",',
        b"2,Cup,Plain",
    ]
    path = _csv(tmp_path / "c.csv", lines)
    path.write_bytes(path.read_bytes().replace(b'"",\n', b'"\n'))
    _, records, errors = _read(path)
    assert errors == []
    assert [r.row for r in records] == [2, 5]
    assert records[0].data["description"] == 'Blue mug.\n\nDishwasher safe, "stackable".'


def test_crlf_line_endings(tmp_path: Path) -> None:
    lines = [HEADER, b'1,"Mug,\r\nblue",1.5', b"2,Cup,2.5", b""]
    _, records, errors = _read(_csv(tmp_path / "c.csv", lines, newline=b"\r\n"))
    assert errors == []
    assert [(r.row, r.data["title"], r.data["price"]) for r in records] == [
        (2, "Mug,\r\nblue", "1.5"),
        (4, "Cup", "2.5"),
    ]


def test_byte_order_mark_is_not_part_of_the_first_column(tmp_path: Path) -> None:
    path = _csv(tmp_path / "c.csv", [b"\xef\xbb\xbf" + HEADER, b"1,Caf\xc3\xa9,1"])
    _, records, errors = _read(path)
    assert errors == []
    assert records[0].data == {"id": "1", "title": "Café", "price": "1"}


def test_blank_lines_are_not_rows(tmp_path: Path) -> None:
    lines = [HEADER, b"", b"1,Mug,1.5", b"   ", b"", b"2,Cup,2.5", b""]
    _, records, errors = _read(_csv(tmp_path / "c.csv", lines))
    assert errors == []
    assert [r.row for r in records] == [3, 6]


def test_header_only_and_empty_files_have_no_rows(tmp_path: Path) -> None:
    header_only = _read(_csv(tmp_path / "h.csv", [HEADER]))
    empty = tmp_path / "e.csv"
    empty.write_bytes(b"")
    assert header_only[1:] == ([], [])
    assert _read(empty)[1:] == ([], [])


def test_duplicate_header_names_refuse_the_file(tmp_path: Path) -> None:
    path = _csv(tmp_path / "c.csv", [b"id,title,price,title,id", b"1,a,2,b,3"])
    with pytest.raises(CatalogError, match="'id', 'title'"):
        open_catalog(path)


def test_empty_header_names_are_reported_as_skipped_columns(tmp_path: Path) -> None:
    path = _csv(tmp_path / "c.csv", [b"id,,title, ,price", b"1,x,Mug,y,2"])
    source, records, errors = _read(path)
    assert set(source.skipped_columns) == {"column 2", "column 4"}
    assert records[0].data == {"id": "1", "title": "Mug", "price": "2"}
    assert errors == []


def test_header_without_names_refuses_the_file(tmp_path: Path) -> None:
    path = _csv(tmp_path / "c.csv", [b", ,", b"1,Mug,2"])
    with pytest.raises(CatalogError, match="names no column"):
        open_catalog(path)


def test_unclosed_quote_in_the_header_refuses_the_file(tmp_path: Path) -> None:
    path = _csv(tmp_path / "c.csv", [b'id,"title,price', b"1,Mug,2"])
    with pytest.raises(CatalogError, match="unclosed quote"):
        open_catalog(path)


def test_over_long_line_is_a_row_error_and_reading_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(readers, "MAX_LINE_BYTES", 64)
    lines = [HEADER, b"1,Mug,1.5", b"2," + b"x" * 200 + b",2.5", b"3,Cup,3.5"]
    _, records, errors = _read(_csv(tmp_path / "c.csv", lines))
    [error] = errors
    assert (error.row, error.reason) == (3, "line is over 64 bytes")
    assert [r.row for r in records] == [2, 4]


def test_count_rows_does_not_parse_cells(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _csv(tmp_path / "c.csv", [*_rows(3), b'4,"open,4'])
    source = open_catalog(path)

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("count_rows parsed a record")

    monkeypatch.setattr("mmsearch.catalog.csv_source._Parser.parse", refuse)
    assert source.count_rows() == 4
