"""Catalog readers: JSONL, CSV, Parquet and image folders, all yielding RawRecord or RowError.

Readers never stop at a bad row: a malformed line becomes a RowError naming the line,
and reading goes on, so one typo cannot block a whole catalog. Every element a source
yields stands for exactly one input row, so no row can go missing without a trace.

Row numbers: JSONL, the physical line; CSV, the physical line where the record starts
(the header is line 1); Parquet, the 1-based row index; image folders, the 1-based index
of the file in path order.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from mmsearch.catalog.csv_source import CsvSource
from mmsearch.catalog.item import RawRecord, RowError
from mmsearch.catalog.lines import UTF8_BOM, physical_lines, utf8_problem
from mmsearch.catalog.parquet_source import ParquetSource
from mmsearch.catalog.source import CatalogSource, Row
from mmsearch.errors import CatalogError

__all__ = [
    "IMAGE_SUFFIXES",
    "MAX_LINE_BYTES",
    "CatalogSource",
    "CsvSource",
    "ImageFolderSource",
    "JsonlSource",
    "ParquetSource",
    "Row",
    "catalog_format",
    "open_catalog",
    "read_catalog",
    "read_csv",
    "read_image_folder",
    "read_jsonl",
    "read_parquet",
]

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"})
MAX_LINE_BYTES = 8 * 1024 * 1024


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


def open_catalog(path: Path) -> CatalogSource:
    """Open a catalog by suffix (a folder means images). A missing file, an unknown format,
    an unreadable CSV header or Parquet schema is a CatalogError here, before any row."""
    if not path.exists():
        raise CatalogError(f"Catalog {path} does not exist.")
    kind = catalog_format(path)
    if kind == "jsonl":
        return JsonlSource(path, MAX_LINE_BYTES)
    if kind == "csv":
        return CsvSource(path, MAX_LINE_BYTES)
    if kind == "parquet":
        return ParquetSource(path)
    return ImageFolderSource(path)


def read_catalog(path: Path) -> Iterator[Row]:
    """Stream a catalog's rows; the format is chosen by suffix (a folder means images)."""
    return open_catalog(path).rows()


def read_jsonl(path: Path) -> Iterator[Row]:
    yield from JsonlSource(path, MAX_LINE_BYTES).rows()


def read_csv(path: Path) -> Iterator[Row]:
    """CSV cells are text; a cell holding several images separates them with '|'."""
    yield from CsvSource(path, MAX_LINE_BYTES).rows()


def read_parquet(path: Path) -> Iterator[Row]:
    yield from ParquetSource(path).rows()


def read_image_folder(path: Path) -> Iterator[Row]:
    yield from ImageFolderSource(path).rows()


class JsonlSource(CatalogSource):
    """One JSON object per line; blank lines are not rows. NaN and Infinity are read as
    the floats they spell (normalise decides what they mean for a field)."""

    format = "jsonl"

    def __init__(self, path: Path, max_line_bytes: int) -> None:
        super().__init__(path)
        self.max_line_bytes = max_line_bytes

    def _lines(self) -> Iterator[tuple[int, bytes | None]]:
        try:
            handle = self.path.open("rb")
        except OSError as exc:
            raise CatalogError(f"Cannot open {self.path}: {exc}") from exc
        with handle:
            for number, raw in physical_lines(handle, self.max_line_bytes):
                if raw is None or raw.strip():
                    yield number, raw

    def count_rows(self) -> int:
        return sum(1 for _ in self._lines())

    def rows(self) -> Iterator[Row]:
        for number, raw in self._lines():
            yield self._row(number, raw)

    def _row(self, number: int, raw: bytes | None) -> Row:
        source = self.source
        if raw is None:
            return RowError(source, number, f"line is over {self.max_line_bytes} bytes")
        if number == 1 and raw.startswith(UTF8_BOM):
            raw = raw[len(UTF8_BOM) :]
        problem = utf8_problem(raw)
        if problem:
            return RowError(source, number, f"line {number} is {problem}")
        try:
            data = json.loads(raw.decode("utf-8"))
        except (ValueError, RecursionError) as exc:  # JSON, digit and depth limits
            return RowError(source, number, f"invalid JSON: {exc}")
        if not isinstance(data, dict):
            return RowError(source, number, f"expected a JSON object, got {type(data).__name__}")
        return RawRecord(source, number, data)


class ImageFolderSource(CatalogSource):
    """One item per image: the id is the relative path (so shoe.jpg and shoe.png differ),
    the title comes from the file name."""

    format = "images"

    def _files(self) -> list[Path]:
        # Anything named like an image that is not a folder is a row (a broken link too):
        # it then fails, with its reason, where the image is read.
        return sorted(
            p for p in self.path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and not p.is_dir()
        )

    def count_rows(self) -> int:
        return len(self._files())

    def rows(self) -> Iterator[Row]:
        for number, file in enumerate(self._files(), start=1):
            relative = file.relative_to(self.path).as_posix()
            title = file.stem.replace("_", " ").replace("-", " ").strip()
            data: dict[str, object] = {
                "id": relative,
                "title": title,
                "image": relative,
                "folder": file.parent.relative_to(self.path).as_posix(),
            }
            yield RawRecord(self.source, number, data)
