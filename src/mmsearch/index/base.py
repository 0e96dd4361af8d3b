"""What a search index must do, whatever engine holds it (LanceDB embedded, Milvus later)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import pyarrow as pa

from mmsearch.config import AnnSearch
from mmsearch.filters.expr import Filter


@dataclass(frozen=True)
class Match:
    """One row found by one retriever; ``score`` is higher-is-better for every retriever.

    ``row_id`` is the engine's handle of the row in the version the reader searched
    (LanceDB's ``_rowid``), or None: it lets ``get_found`` read the page's rows without
    a second query by id. It is not part of a match's identity."""

    id: str
    score: float
    row_id: int | None = field(default=None, compare=False)


@dataclass(frozen=True)
class VectorField:
    """A vector column; ``multi`` holds one vector per image of the item (MaxSim search)."""

    column: str
    dim: int
    multi: bool = False


class BuildReader(Protocol):
    """The read part of a build's table(s): what searches, item GETs and reports use.

    Every read that takes a ``filter`` applies it in the engine, before any top-k cut
    (a prefilter), so that access and attribute filters shape the candidates
    themselves. Filters are ``mmsearch.filters`` trees; each engine compiles them to
    its own language and quotes the values itself. A filter the engine cannot apply
    is a ``QueryError`` that names no internal column.

    ``vector_search`` takes the resolved ANN knobs (``collection_state.ann_search``); an
    engine applies those it has and says which in its docstring.

    ``get_found`` reads the rows of matches this reader's searches returned, in their
    order: by row handle where the engine gives one (a single read, no query), else as
    ``get`` by id. It applies no filter: the searches that found them did.

    ``supports_versions`` says whether old versions can be read and restored (LanceDB);
    an engine without them (Milvus) refuses ``content_hashes(old)`` and ``restore(old)``
    with an ``MMSearchError`` saying so, and its readers see the latest rows.
    """

    supports_versions: bool

    @property
    def schema(self) -> pa.Schema: ...

    @property
    def vector_fields(self) -> list[VectorField]: ...

    def row_count(self) -> int: ...

    def content_hashes(self, version: int | None = None) -> dict[str, str]: ...

    def vector_search(
        self,
        column: str,
        vector: np.ndarray,
        k: int,
        filter: Filter | None = None,
        ann: AnnSearch | None = None,
    ) -> list[Match]: ...

    def keyword_search(self, query: str, k: int, filter: Filter | None = None) -> list[Match]: ...

    def get(
        self, ids: list[str], columns: list[str] | None = None, filter: Filter | None = None
    ) -> list[dict[str, Any]]: ...

    def get_found(self, matches: Sequence[Match], columns: list[str]) -> list[dict[str, Any]]: ...

    def count(self, filter: Filter | None = None) -> int: ...

    def scan(self, columns: list[str], filter: Filter | None = None) -> pa.Table: ...

    def version(self) -> int: ...


class BuildWriter(Protocol):
    """The write part: what ingest, item writes, revert and prune use."""

    def upsert(self, rows: pa.Table) -> None: ...

    def delete(self, ids: list[str]) -> None: ...

    def restore(self, version: int) -> None: ...

    def refresh_indexes(self) -> dict[str, Any]: ...

    def prune_versions(self) -> None: ...


class BuildIndex(BuildReader, BuildWriter, Protocol):
    """A build's table(s), read and written: what a store's ``open`` and ``create`` give."""
