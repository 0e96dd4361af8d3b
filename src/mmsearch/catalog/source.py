"""The one surface every catalog format offers: its rows, and how many there are.

Each element ``rows()`` yields stands for exactly one input row, read or not, so an
ingest can account for every row: ``count_rows()`` says up front how many will come.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from mmsearch.catalog.item import RawRecord, RowError

Row = RawRecord | RowError


class CatalogSource:
    """A catalog opened for reading; ``rows()`` starts from the top on every call.

    ``skipped_columns`` names the columns that will never reach a row (a Parquet type that
    is not supported, a CSV column without a header name), with the reason, so they can be
    reported once rather than dropped unnoticed.
    """

    format: str = ""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.skipped_columns: dict[str, str] = {}

    @property
    def source(self) -> str:
        """How rows name their catalog in RawRecord/RowError."""
        return str(self.path)

    def rows(self) -> Iterator[Row]:
        raise NotImplementedError

    def count_rows(self) -> int:
        """How many elements ``rows()`` yields, found without parsing the rows."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.path!s})"
