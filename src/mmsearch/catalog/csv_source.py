"""CSV catalogs: streamed as bytes, split into records, each record decoded on its own.

Decoding per record means one undecodable byte costs that row only, and the error names
the line it is on. Cells are text; an empty cell is a missing value; a cell holding
several images separates them with '|' (split later, by role).
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mmsearch.catalog.csv_records import CsvSpan, RecordSplitter
from mmsearch.catalog.item import RawRecord, RowError
from mmsearch.catalog.lines import UTF8_BOM, Line, physical_lines, utf8_problem
from mmsearch.catalog.source import CatalogSource, Row
from mmsearch.errors import CatalogError


class CsvSource(CatalogSource):
    """A CSV file whose header has been read and checked (``open_catalog`` does that)."""

    format = "csv"

    def __init__(self, path: Path, max_line_bytes: int) -> None:
        super().__init__(path)
        self.max_line_bytes = max_line_bytes
        # Header names in order; None for a column without a name (its cells are skipped).
        self.columns: list[str | None] = self._read_header()

    @contextmanager
    def _splitter(self) -> Iterator[tuple[RecordSplitter, CsvSpan | None]]:
        try:
            handle = self.path.open("rb")
        except OSError as exc:
            raise CatalogError(f"Cannot open {self.path}: {exc}") from exc
        with handle:
            lines = _without_bom(physical_lines(handle, self.max_line_bytes))
            splitter = RecordSplitter(lines, self.max_line_bytes)
            yield splitter, splitter.next_span(None)

    def rows(self) -> Iterator[Row]:
        if not self.columns:
            return
        _allow_fields_of(self.max_line_bytes)
        parser = _Parser()
        with self._splitter() as (splitter, _header):
            for span in splitter.spans(len(self.columns)):
                yield self._row(span, parser)

    def count_rows(self) -> int:
        if not self.columns:
            return 0
        with self._splitter() as (splitter, _header):
            return sum(1 for _ in splitter.spans(len(self.columns)))

    def _read_header(self) -> list[str | None]:
        with self._splitter() as (_, header):
            if header is None:
                return []  # an empty file: no columns, no rows
            cells = self._header_cells(header)
        while cells and not cells[-1].strip():
            cells.pop()  # a trailing comma in the header is not a column
        if not cells:
            raise CatalogError(f"{self.path}: the CSV header names no column.")
        names: list[str | None] = [cell if cell.strip() else None for cell in cells]
        counts = Counter(name for name in names if name is not None)
        duplicates = [name for name, count in counts.items() if count > 1]
        if duplicates:
            listed = ", ".join(repr(name) for name in duplicates)
            raise CatalogError(
                f"{self.path} names the column(s) {listed} more than once in its header; "
                "rename them so that no column hides another."
            )
        for number, name in enumerate(names, start=1):
            if name is None:
                self.skipped_columns[f"column {number}"] = (
                    "the header cell is empty; the column's cells are not read"
                )
        return names

    def _header_cells(self, header: CsvSpan) -> list[str]:
        """The header must be readable: without it no row can be."""
        problem = header.problem
        if problem is None:
            try:
                return _Parser().parse(header)
            except _NotText as exc:
                problem = str(exc)
            except csv.Error as exc:
                problem = f"unreadable CSV: {exc}"
        raise CatalogError(
            f"{self.path} has no usable CSV header (line {header.first_line}): {problem}"
        )

    def _row(self, span: CsvSpan, parser: _Parser) -> Row:
        source = self.source
        if span.problem is not None:
            reason = span.problem
            also = utf8_problem(span.lines[0]) if span.lines else None
            if also:
                reason += f"; the line is also {also}"
            return RowError(source, span.first_line, reason)
        try:
            cells = parser.parse(span)
        except _NotText as exc:
            return RowError(source, span.first_line, str(exc))
        except csv.Error as exc:
            return RowError(source, span.first_line, f"unreadable CSV row: {exc}")
        if len(cells) != span.cells:
            return RowError(
                source, span.first_line, f"unreadable CSV row: {len(cells)} cells parsed"
            )
        # Cells past the header are empty ones (trailing commas), checked by the splitter.
        named = zip(self.columns, cells[: len(self.columns)], strict=True)
        data = {name: _cell(value) for name, value in named if name is not None}
        return RawRecord(source, span.first_line, data)


class _NotText(ValueError):
    """A record whose bytes are not text; the message names the line and the offset."""


class _Parser:
    """One strict ``csv`` reader for all records of a pass, fed one record at a time
    (the reader starts each record afresh, also after an error)."""

    def __init__(self) -> None:
        self._text = ""
        self._reader = csv.reader(self, strict=True)

    def __iter__(self) -> _Parser:
        return self

    def __next__(self) -> str:
        return self._text

    def parse(self, span: CsvSpan) -> list[str]:
        self._text = _decode(span)
        return next(self._reader)


def _without_bom(lines: Iterator[Line]) -> Iterator[Line]:
    for number, raw in lines:
        if number == 1 and raw is not None and raw.startswith(UTF8_BOM):
            raw = raw[len(UTF8_BOM) :]
        yield number, raw


def _decode(span: CsvSpan) -> str:
    """The record as text, without its final line end."""
    try:
        text = b"".join(span.lines).decode("utf-8")
    except UnicodeDecodeError:
        raise _NotText(_not_text(span)) from None
    if "\x00" in text:
        raise _NotText(_not_text(span))
    if text.endswith("\r\n"):
        return text[:-2]
    return text[:-1] if text.endswith("\n") else text


def _not_text(span: CsvSpan) -> str:
    """Names the first line that is not UTF-8 or holds a NUL byte (a binary or UTF-16
    file, or a corrupted one), with the byte offset, so it can be found and fixed."""
    for number, raw in enumerate(span.lines, start=span.first_line):
        bad = utf8_problem(raw)
        if bad:
            return f"line {number} is {bad}"
        if b"\x00" in raw:
            offset = raw.index(0)
            return (
                f"line {number} holds a NUL byte (byte offset {offset} in the line); "
                "is the file UTF-8 text?"
            )
    return "not UTF-8 text"


def _allow_fields_of(max_bytes: int) -> None:
    """A long description is a legitimate cell; the record bound already limits it."""
    if csv.field_size_limit() < max_bytes:
        csv.field_size_limit(max_bytes)


def _cell(value: str) -> object:
    """Empty cells are missing values."""
    return None if value == "" else value
