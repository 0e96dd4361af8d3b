"""Catalog readers: JSONL, CSV, Parquet and image folders, all yielding RawRecord or RowError.

Readers never stop at a bad row: a malformed line becomes a RowError naming the
line, and reading goes on, so one typo cannot block a whole catalog.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from datetime import date, datetime
from datetime import time as dt_time
from decimal import Decimal
from pathlib import Path

from mmsearch.catalog.item import RawRecord, RowError
from mmsearch.errors import CatalogError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"})
MAX_LINE_BYTES = 8 * 1024 * 1024

Row = RawRecord | RowError


def catalog_format(path: Path) -> str:
    if path.is_dir():
        return "images"
    suffix = path.suffix.lower()
    formats = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".parquet": "parquet"}
    if suffix in formats:
        return formats[suffix]
    raise CatalogError(
        f"Cannot tell the format of {path}: "
        "use a .jsonl, .csv or .parquet file, or a folder of images."
    )


def read_catalog(path: Path) -> Iterator[Row]:
    """Stream a catalog's rows; the format is chosen by suffix (a folder means images)."""
    if not path.exists():
        raise CatalogError(f"Catalog {path} does not exist.")
    readers = {
        "jsonl": read_jsonl,
        "csv": read_csv,
        "parquet": read_parquet,
        "images": read_image_folder,
    }
    return readers[catalog_format(path)](path)


def read_jsonl(path: Path) -> Iterator[Row]:
    source = str(path)
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if len(raw) > MAX_LINE_BYTES:
                yield RowError(source, number, f"line is over {MAX_LINE_BYTES} bytes")
                continue
            if not raw.strip():
                continue
            try:
                data = json.loads(raw)
            except (ValueError, RecursionError) as exc:  # JSON, encoding, digit and depth limits
                yield RowError(source, number, f"invalid JSON: {exc}")
                continue
            if not isinstance(data, dict):
                yield RowError(source, number, f"expected a JSON object, got {type(data).__name__}")
                continue
            yield RawRecord(source, number, data)


def read_csv(path: Path) -> Iterator[Row]:
    """CSV cells are text; a cell holding several images separates them with '|'."""
    source = str(path)
    try:
        handle = path.open(newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise CatalogError(f"Cannot open {path}: {exc}") from exc
    with handle:
        reader = csv.DictReader(handle)
        try:
            fieldnames = reader.fieldnames
        except (csv.Error, UnicodeDecodeError) as exc:
            raise CatalogError(f"{path} is not a readable CSV file: {exc}") from exc
        if not fieldnames:
            return
        while True:
            try:
                record = next(reader)
            except StopIteration:
                return
            except (csv.Error, UnicodeDecodeError) as exc:
                yield RowError(source, reader.line_num, f"unreadable CSV row: {exc}")
                continue
            row = reader.line_num
            extra = record.pop(None, None)  # type: ignore[call-overload]
            if extra:
                yield RowError(source, row, f"row has {len(extra)} more cells than the header")
                continue
            data = {key: _csv_cell(value) for key, value in record.items() if key}
            yield RawRecord(source, row, data)


def _csv_cell(value: str | None) -> object:
    """Empty cells are missing values; image cells are split on '|' later, by role."""
    if value is None or value == "":
        return None
    return value


def read_parquet(path: Path) -> Iterator[Row]:
    import pyarrow.parquet as pq

    source = str(path)
    try:
        parquet = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises ArrowInvalid, OSError, ...
        raise CatalogError(f"{path} is not a readable Parquet file: {exc}") from exc
    row = 0
    for batch in parquet.iter_batches(batch_size=4096):
        for data in batch.to_pylist():
            row += 1
            yield RawRecord(source, row, {k: _plain(v) for k, v in data.items()})


def _plain(value: object) -> object:
    """Arrow types without a JSON twin become the scalar a JSONL catalog would hold."""
    if isinstance(value, datetime | date | dt_time):
        return value.isoformat()
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


def read_image_folder(path: Path) -> Iterator[Row]:
    """One item per image: the id is the relative path (so shoe.jpg and shoe.png differ),
    the title comes from the file name."""
    source = str(path)
    files = sorted(
        p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and not p.is_dir()
    )
    for number, file in enumerate(files, start=1):
        relative = file.relative_to(path).as_posix()
        title = file.stem.replace("_", " ").replace("-", " ").strip()
        data: dict[str, object] = {
            "id": relative,
            "title": title,
            "image": relative,
            "folder": file.parent.relative_to(path).as_posix(),
        }
        yield RawRecord(source, number, data)
