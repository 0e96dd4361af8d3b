"""The embedded default index: one LanceDB table per build, in the collection's folder.

Filters arrive as ``mmsearch.filters`` trees, are compiled by ``lance_filter.to_lance_sql``
and applied with ``prefilter=True``, so that access and attribute filters shape the
candidate set itself, never a post-filtered top-k. Each upsert is a new table version,
so a bad batch can be undone. Exact vector search is used until a column holds
``ann_min_rows`` vectors; then an IVF-HNSW index is built.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

os.environ.setdefault("LANCE_LOG", "error")  # keep Rust-side notices out of CLI output

import lance
import lancedb
import numpy as np
import pyarrow as pa
from lancedb.index import FTS, BTree, IvfHnswSq, IvfPq

from mmsearch.collection_state import AnnSettings
from mmsearch.config import AnnSearch, Settings
from mmsearch.errors import MMSearchError, QueryError
from mmsearch.filters.expr import Filter, InList, all_of
from mmsearch.filters.nnf import CANNOT_APPLY
from mmsearch.index.base import BuildIndex, Match, VectorField
from mmsearch.index.lance_filter import to_lance_sql
from mmsearch.index.schema import KEYWORD_COLUMN, vector_field_of

logging.getLogger("lance").setLevel(logging.ERROR)
log = logging.getLogger("mmsearch.index")
# Without a request's or a collection's ANN knobs (``collection_state.ann_search``), the
# settings' defaults. Re-scoring exactly the k rows the quantised index ranks first (x1)
# restores true cosine scores and the exact order among them; at 100k composed MiniLM
# vectors x1 instead of x4 took recall@10 from 0.988 to 0.976 and the vector search from
# 43 to 30 ms p50, and ef 300 brought recall back to 0.986 (docs/BENCHMARKS.md).
DEFAULT_ANN = AnnSearch(
    nprobes=Settings.model_fields["ann_nprobes"].default,
    refine_factor=Settings.model_fields["ann_refine_factor"].default,
    ef=Settings.model_fields["ann_ef"].default,
)
KEEP_EVERY_VERSION = timedelta(days=36_500)
PRUNE_VERSIONS_OLDER_THAN = timedelta(days=7)


class LanceBuildIndex:
    """A build's table. Opened by name; created once with the build's schema."""

    supports_versions = True  # every write is a table version; readers pin one

    def __init__(
        self,
        table: Any,
        vectors: list[VectorField],
        ann_min_rows: int,
        ann_index: AnnSettings | None = None,
    ):
        self._table = table
        self._vectors = vectors
        self._ann_min_rows = ann_min_rows
        self._ann_index = ann_index or AnnSettings(index_type="ivf_hnsw_sq")
        self._ann_cache: frozenset[str] | None = None
        self._snapshot: lance.LanceDataset | None = None
        self._schema: pa.Schema | None = None
        self._version: int | None = None

    @classmethod
    def create(
        cls,
        db_dir: Path,
        table_name: str,
        schema: pa.Schema,
        ann_min_rows: int,
        ann_index: AnnSettings | None = None,
    ) -> LanceBuildIndex:
        db = lancedb.connect(str(db_dir))
        table = db.create_table(table_name, schema=schema, mode="create")
        return cls(table, _vector_fields(schema), ann_min_rows, ann_index)

    @classmethod
    def open(
        cls,
        db_dir: Path,
        table_name: str,
        ann_min_rows: int,
        version: int | None = None,
        ann_index: AnnSettings | None = None,
    ) -> LanceBuildIndex:
        """The table at its latest version, or read-only at ``version`` (what a manifest
        names), so that readers never see the rows of a run that has not finished."""
        db = lancedb.connect(str(db_dir))
        try:
            table = db.open_table(table_name)
        except (ValueError, FileNotFoundError) as exc:
            raise MMSearchError(f"The index table {table_name} is missing in {db_dir}.") from exc
        if version is not None and version != table.version:
            try:
                table.checkout(version)
            except Exception as exc:  # lance: ValueError/OSError for a version it no longer has
                # Reading the latest instead could show rows of a run that never finished.
                log.debug("checkout of %s version %s failed: %s", table_name, version, exc)
                raise MMSearchError(
                    f"The index table {table_name} no longer has version {version}, the one "
                    "its build's manifest publishes. Re-ingest the catalog with --new-build "
                    "to rebuild the collection."
                ) from None
        return cls(table, _vector_fields(table.schema), ann_min_rows, ann_index)

    @staticmethod
    def drop(db_dir: Path, table_name: str) -> None:
        db = lancedb.connect(str(db_dir))
        # connect() is typed as the abstract DBConnection; a local directory opens a
        # LanceDBConnection, whose drop_table takes ignore_missing
        db.drop_table(table_name, ignore_missing=True)  # pyright: ignore[reportCallIssue]

    @property
    def schema(self) -> pa.Schema:
        if self._schema is None:
            self._schema = self._dataset().schema
        return self._schema

    def _dataset(self) -> lance.LanceDataset:
        """The Lance dataset at the table's version, opened once and kept until a write.

        Reads go to it directly: LanceDB's Python query builder asks the table for its
        schema several times per search (a round trip into Rust each), which made up
        a third of a keyword search's time. Readers are pinned to a version, and this
        object's own writes drop the snapshot, so it never shows stale rows."""
        if self._snapshot is None:
            self._snapshot = self._table.to_lance()
        return self._snapshot

    def _written(self) -> None:
        self._snapshot, self._schema, self._ann_cache, self._version = None, None, None, None

    @property
    def vector_fields(self) -> list[VectorField]:
        return list(self._vectors)

    def scan(self, columns: list[str], filter: Filter | None = None) -> pa.Table:
        """Every row passing ``filter``, only ``columns`` (duplicate finding, facets)."""
        where = self._sql(filter)
        dataset = self._dataset()
        if where is None:
            return dataset.to_table(columns=columns)
        return self._checked(lambda: dataset.to_table(columns=columns, filter=where), where)

    def row_count(self) -> int:
        return int(self._dataset().count_rows())

    def count(self, filter: Filter | None = None) -> int:
        """Rows passing ``filter`` (all rows without one)."""
        where = self._sql(filter)
        if where is None:
            return self.row_count()
        return int(self._checked(lambda: self._dataset().count_rows(filter=where), where))

    def version(self) -> int:
        """The table's version, read once and kept until this object writes: the table
        sees no other process's writes (no read consistency interval), and asking Lance
        costs about 0.4 ms, which the hot index (index/hot) pays on every read."""
        if self._version is None:
            self._version = int(self._table.version)
        return self._version

    def content_hashes(self, version: int | None = None) -> dict[str, str]:
        """id → record hash of every row (at ``version`` if given), read as two columns only."""
        dataset = self._dataset()
        if version is not None and version != dataset.version:
            dataset = dataset.checkout_version(version)
        data = dataset.to_table(columns=["id", "record_sha256"])
        return dict(zip(data["id"].to_pylist(), data["record_sha256"].to_pylist(), strict=True))

    def restore(self, version: int) -> None:
        """Make ``version`` the latest again (a new version with its rows): undoes the
        writes of a run that was abandoned or refused."""
        if version != self.version():
            self._table.restore(version)
            self._written()

    def upsert(self, rows: pa.Table) -> None:
        if rows.num_rows == 0:
            return
        (
            self._table.merge_insert("id")
            .when_matched_update_all()
            .when_not_matched_insert_all()
            .execute(rows)
        )
        self._written()

    def delete(self, ids: list[str]) -> None:
        if ids:
            self._table.delete(to_lance_sql(InList("id", tuple(ids)), self.schema))
            self._written()

    def refresh_indexes(self) -> dict[str, Any]:
        """Bring the keyword, id and vector indexes up to date with the rows."""
        existing = {index.columns[0]: index for index in self._table.list_indices()}
        created: list[str] = []
        rows = self.row_count()
        if "id" not in existing:
            self._table.create_index("id", config=BTree())
            created.append("id:btree")
        if KEYWORD_COLUMN not in existing:
            self._table.create_index(KEYWORD_COLUMN, config=FTS(stem=True, remove_stop_words=True))
            created.append(f"{KEYWORD_COLUMN}:fts")
        kind = self._ann_index.index_type
        for vector in self._vectors:
            if kind != "flat" and vector.column not in existing and rows >= self._ann_min_rows:
                self._table.create_index(vector.column, config=self._index_config())
                created.append(f"{vector.column}:{kind}")
        if existing:
            # Folds new rows into the indexes that already existed. It prunes no versions:
            # readers stay pinned to the published one until the manifest names a new one.
            self._table.optimize(cleanup_older_than=KEEP_EVERY_VERSION)
        self._written()
        names = sorted({index.columns[0] for index in self._table.list_indices()})
        return {"created": created, "indexed_columns": names, "rows": rows}

    def _index_config(self) -> IvfHnswSq | IvfPq:
        """The collection's vector index: IVF-PQ, or IVF-HNSW-SQ with its graph settings."""
        if self._ann_index.index_type == "ivf_pq":
            return IvfPq(distance_type="cosine")
        config = IvfHnswSq(distance_type="cosine")
        if self._ann_index.m is not None:
            config.m = self._ann_index.m
        if self._ann_index.ef_construction is not None:
            config.ef_construction = self._ann_index.ef_construction
        return config

    def prune_versions(self) -> None:
        """Delete table versions older than a week, never the latest: called once the
        manifest publishes the latest, so no reader is pinned to what goes."""
        self._table.to_lance().cleanup_old_versions(older_than=PRUNE_VERSIONS_OLDER_THAN)

    def ann_columns(self) -> list[str]:
        vector_columns = {v.column for v in self._vectors}
        return sorted(
            i.columns[0] for i in self._table.list_indices() if i.columns[0] in vector_columns
        )

    def vector_search(
        self,
        column: str,
        vector: np.ndarray,
        k: int,
        filter: Filter | None = None,
        ann: AnnSearch | None = None,
    ) -> list[Match]:
        """Exact below ``ann_min_rows`` or with ``ann.exact``; else the ANN index with
        ``ann``'s nprobes, refine factor and ef (``DEFAULT_ANN`` fills what it leaves)."""
        knobs = ann.over(DEFAULT_ANN) if ann is not None else DEFAULT_ANN
        nearest: dict[str, Any] = {
            "column": column,
            "q": np.asarray(vector, dtype=np.float32),
            "k": k,
            "metric": "cosine",
        }
        if knobs.exact:
            nearest["use_index"] = False
        elif column in self._ann_indexed():
            # The quantised index reports approximate distances; re-scoring the shortlist
            # exactly restores true cosine distances (and the exact order).
            nearest |= {"nprobes": knobs.nprobes, "refine_factor": knobs.refine_factor}
            found = vector_field_of(self.schema.field(column))
            if knobs.ef is not None and not (found is not None and found.multi):
                # HNSW must keep at least as many candidates as it returns. A multivector
                # column (one vector per image) is searched for more rows than k, by a
                # number Lance does not expose, so its HNSW list keeps Lance's default.
                nearest["ef"] = max(knobs.ef, k * (knobs.refine_factor or 1))
        where = self._sql(filter)
        data = self._checked(
            lambda: self._dataset().to_table(
                columns=["id"],
                nearest=nearest,
                filter=where,
                prefilter=where is not None,
                with_row_id=True,
            ),
            where,
        )
        return [
            Match(item_id, 1.0 - float(distance), row_id)
            for item_id, distance, row_id in zip(
                data["id"].to_pylist(),
                data["_distance"].to_pylist(),
                data["_rowid"].to_pylist(),
                strict=True,
            )
        ]

    def _ann_indexed(self) -> frozenset[str]:
        if self._ann_cache is None:
            self._ann_cache = frozenset(self.ann_columns())
        return self._ann_cache

    def keyword_search(self, query: str, k: int, filter: Filter | None = None) -> list[Match]:
        where = self._sql(filter)
        data = self._checked(
            lambda: self._dataset().to_table(
                columns=["id"],
                full_text_query={"query": query, "columns": [KEYWORD_COLUMN]},
                filter=where,
                prefilter=where is not None,
                limit=k,
                with_row_id=True,
            ),
            where,
        )
        return [
            Match(item_id, float(score), row_id)
            for item_id, score, row_id in zip(
                data["id"].to_pylist(),
                data["_score"].to_pylist(),
                data["_rowid"].to_pylist(),
                strict=True,
            )
        ]

    def get(
        self, ids: list[str], columns: list[str] | None = None, filter: Filter | None = None
    ) -> list[dict[str, Any]]:
        """Rows by id, in the order asked; ``filter`` further restricts them (pinned items)."""
        if not ids:
            return []
        combined = all_of(InList("id", tuple(dict.fromkeys(ids))), filter)
        where = self._sql(combined)
        wanted = list(dict.fromkeys(["id", *columns])) if columns else None
        data = self._checked(
            lambda: self._dataset().to_table(columns=wanted, filter=where, limit=len(ids)),
            where if filter is not None else None,
        )
        by_id = {row["id"]: row for row in data.to_pylist()}
        return [by_id[i] for i in ids if i in by_id]

    def get_found(self, matches: Sequence[Match], columns: list[str]) -> list[dict[str, Any]]:
        """The rows of this reader's matches, read by ``_rowid`` in one take instead of a
        second ``id IN (...)`` query; matches without a row id are looked up by id."""
        handles = {m.id: m.row_id for m in matches if m.row_id is not None}
        wanted = list(dict.fromkeys(["id", *columns]))
        by_id: dict[str, dict[str, Any]] = {}
        if handles:
            # The snapshot the searches read, so each handle still names the same row.
            taken = self._dataset()._take_rows(list(dict.fromkeys(handles.values())), wanted)
            by_id = {row["id"]: row for row in taken.to_pylist()}
        missing = [m.id for m in matches if m.id not in by_id]
        if missing:
            by_id.update((row["id"], row) for row in self.get(missing, wanted))
        return [by_id[m.id] for m in matches if m.id in by_id]

    def _sql(self, filter: Filter | None) -> str | None:
        return None if filter is None else to_lance_sql(filter, self.schema)

    @staticmethod
    def _checked(call: Any, where: str | None) -> Any:
        """Run a store call; a filter LanceDB refuses is a QueryError without its internals."""
        try:
            return call()
        except Exception as exc:  # lance raises ValueError/RuntimeError with a parser message
            if where is None:
                raise
            log.debug("LanceDB refused the filter %s: %s", where, exc)
            raise QueryError(CANNOT_APPLY) from None


def _vector_fields(schema: pa.Schema) -> list[VectorField]:
    """Single-vector and multivector (one vector per image) columns alike."""
    return [found for field in schema if (found := vector_field_of(field)) is not None]


# The store implements the BuildIndex protocol; pyright checks this assignment.
_IMPLEMENTS: type[BuildIndex] = LanceBuildIndex
