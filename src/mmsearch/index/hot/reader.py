"""``HotReader``: a build's searches answered in memory, beside the durable store.

Why: each LanceDB query (keyword or vector) costs more than an in-process index's
whole hybrid search (docs/BENCHMARKS.md, "Hybrid query speed"). The hot reader reads
one version of a build from the durable reader once (ids, vector columns, keyword
text, the columns filters can name, ACLs included, and the columns a results page
shows) and answers ``vector_search``, ``keyword_search``, ``get_found`` and ``count``
from memory; everything else (``get``, ``scan``, content hashes, writes) goes to the
durable reader, which stays the truth.

Staleness: every read first compares the durable reader's ``version()`` with the
version the memory was built from. After an upsert, delete or restore (through this
reader or the durable one) they differ, and the memory is rebuilt from the new version
before the read is answered, so a stale index never serves. With ``background`` the
memory is built on a thread of its own instead (at 100k rows the HNSW graph takes
minutes on a loaded host) and the durable reader answers until it is ready: a
server's first search after a new build or manifest does not wait for it. A filter naming a column
the memory does not hold is answered by the durable reader, with the same result.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from mmsearch.config import AnnSearch
from mmsearch.filters.expr import ACL_COLUMN, Filter
from mmsearch.filters.nnf import column_kind
from mmsearch.index.base import BuildIndex, Match, VectorField
from mmsearch.index.hot.mask import MaskCompiler, Unresident
from mmsearch.index.hot.text import KeywordIndex
from mmsearch.index.hot.vectors import MultiVectors, SingleVectors, vector_index
from mmsearch.index.lance_filter import to_lance_sql
from mmsearch.index.schema import KEYWORD_COLUMN

log = logging.getLogger("mmsearch.index")
# Long texts no filter names in practice: kept out of the filter table (a filter on
# them is answered by the durable store).
UNFILTERED_TEXT = frozenset({KEYWORD_COLUMN, "texts_json", "image_text", "image_fingerprints"})


@dataclass
class HotState:
    """One version of a build, in memory. Immutable once built: readers share it."""

    version: int
    ids: list[str]
    row_of: dict[str, int]
    masks: MaskCompiler
    vectors: dict[str, SingleVectors | MultiVectors]
    keyword: KeywordIndex | None
    page: pa.Table
    build_seconds: float = 0.0
    sizes: dict[str, int] = field(default_factory=dict)


def filter_columns(schema: pa.Schema) -> list[str]:
    """The columns the hot index holds for filters: every scalar column but long texts,
    and the ACL list."""
    names = [
        f.name for f in schema if column_kind(f.type) is not None and f.name not in UNFILTERED_TEXT
    ]
    if ACL_COLUMN in schema.names:
        names.append(ACL_COLUMN)
    return names


class HotReader:
    """A ``BuildIndex`` whose searches run in memory over the durable reader's rows.

    ``page_columns``: the columns ``get_found`` serves from memory (a results page's);
    a request for others goes to the durable reader. ``hnsw_min_rows``: from this many
    rows a single-vector column gets a faiss HNSW graph; below, search is exact.
    ``background``: build (and rebuild) on a thread while the durable reader answers."""

    def __init__(
        self,
        durable: BuildIndex,
        page_columns: Sequence[str] = (),
        hnsw_min_rows: int = 50_000,
        background: bool = False,
    ):
        self._durable = durable
        self.supports_versions = durable.supports_versions
        self._page_columns = list(dict.fromkeys(["id", *page_columns]))
        self._hnsw_min_rows = hnsw_min_rows
        self._state: HotState | None = None
        self._lock = threading.Lock()
        self._background = background
        self._building: threading.Thread | None = None
        self._failed_version: int | None = None  # a background build that failed: not retried
        if background:
            self._start_build()
        else:
            self.current()

    # --- the memory, kept at the durable version ------------------------------------------

    def current(self) -> HotState:
        """The memory of the durable reader's current version, rebuilt if it moved
        (waiting for a background build that is under way)."""
        if self._background:
            self.wait_ready()
        version = self._durable.version()
        state = self._state
        if state is not None and state.version == version:
            return state
        with self._lock:
            state = self._state
            if state is None or state.version != version:
                state = self._build(version)
                self._state = state
        return state

    def _ready(self) -> HotState | None:
        """The memory of the durable version, or None while a background build makes it
        (the caller then asks the durable reader)."""
        if not self._background:
            return self.current()
        version = self._durable.version()
        state = self._state
        if state is not None and state.version == version:
            return state
        if self._failed_version != version:
            self._start_build()
        return None

    def _start_build(self) -> None:
        with self._lock:
            if self._building is not None and self._building.is_alive():
                return
            self._building = threading.Thread(
                target=self._build_latest, name="mmsearch-hot-index", daemon=True
            )
            self._building.start()

    def _build_latest(self) -> None:
        version = self._durable.version()
        try:
            self._state = self._build(version)
        except Exception:  # the durable reader keeps answering; the cause is logged
            self._failed_version = version
            log.exception("The hot index of version %d could not be built", version)

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Wait for a background build under way; whether the memory is current."""
        building = self._building
        if building is not None:
            building.join(timeout)
        state = self._state
        return state is not None and state.version == self._durable.version()

    def _build(self, version: int) -> HotState:
        tick = time.perf_counter()
        schema = self._durable.schema
        vectors = self._durable.vector_fields
        filters = filter_columns(schema)
        page = [c for c in self._page_columns if c in schema.names]
        keyword = [KEYWORD_COLUMN] if KEYWORD_COLUMN in schema.names else []
        columns = ["id", *filters, *page, *keyword, *(v.column for v in vectors)]
        wanted = list(dict.fromkeys(columns))
        # One chunk per column: Arrow's take over a many-chunk (list or string) column
        # copies the whole column first, which cost a results page 7-17 ms at 100k rows.
        table = self._durable.scan(wanted).combine_chunks()
        if self._durable.version() != version:  # written meanwhile: read the new version
            return self._build(self._durable.version())
        ids = [str(i) for i in table["id"].to_pylist()]
        state = HotState(
            version=version,
            ids=ids,
            row_of={item_id: row for row, item_id in enumerate(ids)},
            masks=MaskCompiler(table.select(filters)),
            vectors={
                v.column: vector_index(v, table[v.column], self._hnsw_min_rows) for v in vectors
            },
            keyword=KeywordIndex(table[KEYWORD_COLUMN].to_pylist()) if keyword else None,
            page=table.select(page),
        )
        state.build_seconds = time.perf_counter() - tick
        state.sizes = _sizes(state)
        log.info(
            "hot index built: %d rows, version %d, %.1f s, %.1f MB",
            len(ids),
            version,
            state.build_seconds,
            sum(state.sizes.values()) / 1e6,
        )
        return state

    def memory(self) -> dict[str, Any]:
        """Bytes the memory holds, per part, and per item (reported by benchmarks)."""
        state = self.current()
        total = sum(state.sizes.values())
        return {
            "rows": len(state.ids),
            "bytes": state.sizes,
            "total_bytes": total,
            "bytes_per_item": total / max(len(state.ids), 1),
            "build_seconds": round(state.build_seconds, 3),
        }

    def _allowed(self, state: HotState, filter: Filter | None) -> np.ndarray | None:
        """The rows ``filter`` accepts; raises ``Unresident`` for a column not held.
        The durable store's compiler checks the tree first, so a filter it refuses is
        the same ``QueryError`` here."""
        if filter is None:
            return None
        return state.masks.mask(filter, self._check)

    def _check(self, filter: Filter) -> None:
        to_lance_sql(filter, self._durable.schema)

    # --- BuildReader --------------------------------------------------------------------

    @property
    def schema(self) -> pa.Schema:
        return self._durable.schema

    @property
    def vector_fields(self) -> list[VectorField]:
        return self._durable.vector_fields

    def version(self) -> int:
        return self._durable.version()

    def row_count(self) -> int:
        state = self._ready()
        return self._durable.row_count() if state is None else len(state.ids)

    def count(self, filter: Filter | None = None) -> int:
        state = self._ready()
        if state is None:
            return self._durable.count(filter)
        try:
            allowed = self._allowed(state, filter)
        except Unresident:
            return self._durable.count(filter)
        return len(state.ids) if allowed is None else int(allowed.sum())

    def vector_search(
        self,
        column: str,
        vector: np.ndarray,
        k: int,
        filter: Filter | None = None,
        ann: AnnSearch | None = None,
    ) -> list[Match]:
        """Exact with ``ann.exact`` or below ``hnsw_min_rows``; else HNSW with ``ann.ef``
        (the IVF knobs, nprobes and refine factor, have no meaning here)."""
        state = self._ready()
        index = state.vectors.get(column) if state is not None else None
        try:
            allowed = self._allowed(state, filter) if state is not None else None
        except Unresident:
            allowed, index = None, None
        if index is None:
            return _plain(self._durable.vector_search(column, vector, k, filter, ann))
        knobs = ann or AnnSearch()
        found = index.search(vector, k, allowed, bool(knobs.exact), knobs.ef)
        ids = state.ids if state is not None else []
        return [Match(ids[row], score, row) for row, score in found]

    def keyword_search(self, query: str, k: int, filter: Filter | None = None) -> list[Match]:
        state = self._ready()
        if state is None:
            return _plain(self._durable.keyword_search(query, k, filter))
        try:
            allowed = self._allowed(state, filter)
        except Unresident:
            return _plain(self._durable.keyword_search(query, k, filter))
        if state.keyword is None:
            return _plain(self._durable.keyword_search(query, k, filter))
        found = state.keyword.search(query, k, allowed)
        return [Match(state.ids[row], score, row) for row, score in found]

    def get_found(self, matches: Sequence[Match], columns: list[str]) -> list[dict[str, Any]]:
        """From memory where every column is held; a match's row handle is checked
        against its id, so a handle from another version is looked up by id instead."""
        state = self._ready()
        wanted = list(dict.fromkeys(["id", *columns]))
        if state is None or not set(wanted) <= set(state.page.schema.names):
            return self._durable.get_found(_plain(matches), columns)
        rows: list[int] = []
        for match in matches:
            row = match.row_id
            if row is None or not 0 <= row < len(state.ids) or state.ids[row] != match.id:
                row = state.row_of.get(match.id)
            if row is not None:
                rows.append(row)
        if not rows:
            return []
        return state.page.select(wanted).take(pa.array(rows, type=pa.int64())).to_pylist()

    def get(
        self, ids: list[str], columns: list[str] | None = None, filter: Filter | None = None
    ) -> list[dict[str, Any]]:
        return self._durable.get(ids, columns, filter)

    def scan(self, columns: list[str], filter: Filter | None = None) -> pa.Table:
        return self._durable.scan(columns, filter)

    def content_hashes(self, version: int | None = None) -> dict[str, str]:
        return self._durable.content_hashes(version)

    # --- BuildWriter: the durable store is written; the next read rebuilds -------------

    def upsert(self, rows: pa.Table) -> None:
        self._durable.upsert(rows)

    def delete(self, ids: list[str]) -> None:
        self._durable.delete(ids)

    def restore(self, version: int) -> None:
        self._durable.restore(version)

    def refresh_indexes(self) -> dict[str, Any]:
        return self._durable.refresh_indexes()

    def prune_versions(self) -> None:
        self._durable.prune_versions()


def _plain(matches: Sequence[Match]) -> list[Match]:
    """Matches without the durable store's row handles (they are not this reader's)."""
    return [Match(m.id, m.score) for m in matches]


def _sizes(state: HotState) -> dict[str, int]:
    sizes = {
        "filter_columns": int(state.masks.table.nbytes),
        "page_columns": int(state.page.nbytes),
        "ids": sum(len(i) + 57 for i in state.ids) + len(state.row_of) * 100,
    }
    for column, index in state.vectors.items():
        sizes[column] = index.nbytes()
    if state.keyword is not None:
        sizes["keyword"] = state.keyword.nbytes()
    return sizes


_IMPLEMENTS: type[BuildIndex] = HotReader  # pyright checks the protocol here
