"""What a search index must do, whatever engine holds it (LanceDB embedded, Milvus later)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pyarrow as pa

from mmsearch.filters.expr import Filter


@dataclass(frozen=True)
class Match:
    """One row found by one retriever; ``score`` is higher-is-better for every retriever."""

    id: str
    score: float


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
        self, column: str, vector: np.ndarray, k: int, filter: Filter | None = None
    ) -> list[Match]: ...

    def keyword_search(self, query: str, k: int, filter: Filter | None = None) -> list[Match]: ...

    def get(
        self, ids: list[str], columns: list[str] | None = None, filter: Filter | None = None
    ) -> list[dict[str, Any]]: ...

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
