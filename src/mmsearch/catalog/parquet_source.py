"""Parquet catalogs: columns are checked against the Arrow schema before any row is read.

A column whose type has no single-value form an attribute could hold (structs, maps,
binary, lists of anything but strings or integers, ...) is listed once in
``skipped_columns`` with its type and never read, instead of vanishing row by row.
Rows are read in batches, so memory stays bounded for any file size.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime
from datetime import time as dt_time
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

from mmsearch.catalog.item import RawRecord, RowError
from mmsearch.catalog.source import CatalogSource, Row
from mmsearch.errors import CatalogError

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.parquet as pq

BATCH_ROWS = 4096


def column_problem(arrow_type: pa.DataType) -> str | None:
    """Why a column of this type is not read, or None when it is supported."""
    import pyarrow as pa

    if _is_scalar(arrow_type):
        return None
    if pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type):
        value = arrow_type.value_type
        if pa.types.is_dictionary(value):
            value = value.value_type
        if _is_text(value) or pa.types.is_integer(value):
            return None  # text lists, image lists, ACL groups
    return f"Parquet type {arrow_type} is not supported; column skipped"


def _is_text(arrow_type: pa.DataType) -> bool:
    import pyarrow as pa

    is_view = getattr(pa.types, "is_string_view", None)
    return (
        pa.types.is_string(arrow_type)
        or pa.types.is_large_string(arrow_type)
        or bool(is_view and is_view(arrow_type))
    )


def _is_scalar(arrow_type: pa.DataType) -> bool:
    import pyarrow as pa

    if pa.types.is_dictionary(arrow_type):
        return _is_scalar(arrow_type.value_type)
    checks = (
        pa.types.is_integer,
        pa.types.is_floating,
        pa.types.is_boolean,
        pa.types.is_decimal,
        pa.types.is_date,
        pa.types.is_time,
        pa.types.is_timestamp,
        pa.types.is_null,
    )
    return _is_text(arrow_type) or any(check(arrow_type) for check in checks)


class ParquetSource(CatalogSource):
    """A Parquet file whose schema has been read; only supported columns are read."""

    format = "parquet"

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        parquet = self._open()
        try:
            schema = parquet.schema_arrow
            self._row_count = parquet.metadata.num_rows
        finally:
            parquet.close()
        names = list(schema.names)
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise CatalogError(
                f"{path} has more than one column named {', '.join(map(repr, duplicates))}; "
                "rename them so that no column hides another."
            )
        self.columns: list[str] = []
        for field in schema:
            problem = column_problem(field.type)
            if problem is None:
                self.columns.append(field.name)
            else:
                self.skipped_columns[field.name] = problem

    def _open(self) -> pq.ParquetFile:
        import pyarrow.parquet as pq

        try:
            return pq.ParquetFile(self.path)
        except Exception as exc:  # pyarrow raises ArrowInvalid, OSError, ...
            raise CatalogError(f"{self.path} is not a readable Parquet file: {exc}") from exc

    def count_rows(self) -> int:
        return self._row_count

    def rows(self) -> Iterator[Row]:
        if not self.columns:  # nothing readable, yet every row is still one row
            for row in range(1, self._row_count + 1):
                yield RawRecord(self.source, row, {})
            return
        parquet = self._open()
        try:
            done = 0
            for batch in parquet.iter_batches(batch_size=BATCH_ROWS, columns=self.columns):
                yield from self._batch_rows(batch, done)
                done += batch.num_rows
        finally:
            parquet.close()

    def _batch_rows(self, batch: pa.RecordBatch, done: int) -> Iterator[Row]:
        columns: dict[str, list[object]] = {}
        failures: dict[int, tuple[str, str]] = {}
        for name, column in zip(batch.schema.names, batch.columns, strict=True):
            try:
                columns[name] = column.to_pylist()
            except Exception:  # a value Python cannot hold, e.g. a date past year 9999
                columns[name] = _values_one_by_one(name, column, failures)
        for index in range(batch.num_rows):
            row = done + index + 1
            if index in failures:
                field, reason = failures[index]
                yield RowError(self.source, row, reason, field=field)
                continue
            data = {name: _plain(values[index]) for name, values in columns.items()}
            yield RawRecord(self.source, row, data)


def _values_one_by_one(
    name: str, column: pa.Array, failures: dict[int, tuple[str, str]]
) -> list[object]:
    values: list[object] = []
    for index in range(len(column)):
        try:
            values.append(column[index].as_py())
        except Exception as exc:
            values.append(None)
            failures.setdefault(index, (name, f"value cannot be read: {exc}"))
    return values


def _plain(value: object) -> object:
    """Arrow types without a JSON twin become the scalar a JSONL catalog would hold."""
    if isinstance(value, datetime | date | dt_time):
        return value.isoformat()
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value
