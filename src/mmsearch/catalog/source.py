"""The one surface every catalog format offers: its rows, and how many there are.

Each element ``rows()`` yields stands for exactly one input row, read or not, so an
ingest can account for every row: ``count_rows()`` says up front how many will come.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from mmsearch.catalog.item import RawRecord, RowError
from mmsearch.catalog.mapping import FieldMapping

Row = RawRecord | RowError


class CatalogSource:
    """A catalog opened for reading; ``rows()`` starts from the top on every call.

    ``skipped_columns`` names the columns that will never reach a row (a Parquet type that
    is not supported, a CSV column without a header name), with the reason, so they can be
    reported once rather than dropped unnoticed.
    """

    format: str = ""
    # A format whose rows always have the same fields (PDF pages) names their roles here;
    # the user's mapping still wins. None: roles are guessed from the rows.
    default_mapping: FieldMapping | None = None
    # How many first rows the planner samples (None: its default). A format whose rows
    # are costly to read and whose types are fixed samples only a few.
    sample_rows: int | None = None

    def __init__(self, path: Path) -> None:
        self.path = path
        self.skipped_columns: dict[str, str] = {}

    @property
    def source(self) -> str:
        """How rows name their catalog in RawRecord/RowError."""
        return str(self.path)

    @property
    def image_roots(self) -> tuple[Path, ...]:
        """Folders the source itself writes images into (page renders), beside the
        catalog's own image roots."""
        return ()

    def rows(self) -> Iterator[Row]:
        raise NotImplementedError

    def count_rows(self) -> int:
        """How many elements ``rows()`` yields, found without parsing the rows."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.path!s})"
