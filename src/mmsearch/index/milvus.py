"""The Milvus index: a build's rows in a Milvus server or cluster (``MMSEARCH_BACKEND=milvus``).

One ``MilvusClient`` per address, so a Milvus Lite server on a local port and a real
cluster are used the same way. Layout (``milvus_schema``): an item collection with
BM25 full-text search; images either on the item row as an Array of Structs searched
by embedding list (Milvus >= 2.6.4) or in an image collection searched with group-by
on the item id (either way the best image scores the item, as LanceDB's MaxSim does);
a hidden ``_tenant`` partition key for one-group ACLs. Filters are compiled by
``milvus_filter`` and passed as the search's own ``filter``, a prefilter, with the
caller's partition hint (``tenant_hint``) added.

Milvus keeps no table versions. The nearest real thing is kept here: a write counter
in the collection's properties (``mmsearch.version``), bumped by every upsert and
delete, so the manifest's ``table_version`` and the ingest protocol still say which
writes were published. Readers always see the latest rows (a run in progress is
visible as it commits); reading or restoring an older version is refused with an
error that says revert needs LanceDB (``supports_versions`` is False).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from mmsearch.config import AnnSearch
from mmsearch.errors import MMSearchError, QueryError
from mmsearch.filters.expr import And, Filter, InList, Visible, all_of
from mmsearch.filters.nnf import CANNOT_APPLY
from mmsearch.index.base import BuildIndex, Match, VectorField
from mmsearch.index.milvus_client import (
    MilvusConnection,
    MilvusRequestError,
    MilvusStoreError,
    collection_name,
    is_lite,
    store_error,
)
from mmsearch.index.milvus_filter import MilvusExpr, to_milvus_expr
from mmsearch.index.milvus_schema import (
    LAYOUT_PROPERTY,
    PK_COLUMN,
    ROWS,
    SCHEMA_PROPERTY,
    SHARED_TENANT,
    SLOT_COLUMN,
    SPARSE_COLUMN,
    STRUCT,
    STRUCT_FIELD,
    TENANT_COLUMN,
    TENANT_PROPERTY,
    VERSION_PROPERTY,
    add_image_struct,
    add_struct_indexes,
    decode_schema,
    encode_schema,
    from_struct,
    image_rows,
    image_schema,
    images_layout,
    index_params,
    item_fields,
    item_row,
    milvus_schema,
    struct_search,
    struct_value,
    vector_fields,
    with_tenant,
)
from mmsearch.index.schema import ACL_COLUMN, KEYWORD_COLUMN

log = logging.getLogger("mmsearch.index")
WRITE_BATCH = 512
SCAN_BATCH = 1_000
MAX_FILTERED_EF = 2_048
MAX_QUERY_WINDOW = 16_384  # Milvus's largest offset + limit of one query
CONSISTENCY = "Strong"  # a search right after a write sees it (ingest publishes, then reads)
IMAGES_SUFFIX = "_images"
LITE_ANALYSER: dict[str, Any] = {"tokenizer": "standard"}
ENGLISH_ANALYSER: dict[str, Any] = {"type": "english"}  # stemming + stop words, like tantivy's


class VersionsUnsupported(MMSearchError):
    """Milvus keeps only the latest rows of a build."""


class MilvusBuildIndex:
    """A build's item (and image) collections in Milvus."""

    supports_versions = False

    def __init__(
        self,
        connection: MilvusConnection,
        name: str,
        schema: pa.Schema,
        tenant: bool = False,
        layout: str = ROWS,
    ):
        self._conn = connection
        self._tenant = tenant
        self._layout = layout
        self._client = connection.client()
        self._name = name
        self._images = name + IMAGES_SUFFIX
        self._schema = schema
        self._vectors = vector_fields(schema)
        self._multi = [v.column for v in self._vectors if v.multi]
        self._image_schema = image_schema(schema)
        self._templated = not is_lite(self._client)
        if not self._templated:  # Milvus Lite has no MVCC timestamps; pymilvus warns per scan
            logging.getLogger("pymilvus.client.iterator.query_iterator").setLevel(logging.ERROR)

    @classmethod
    def create(
        cls, connection: MilvusConnection, table: str, schema: pa.Schema
    ) -> MilvusBuildIndex:
        client = connection.client()
        name = collection_name(table)
        if client.has_collection(name):
            raise MMSearchError(f"Milvus already has a collection {name}; drop it or rebuild.")
        lite = is_lite(client)
        items = item_fields(schema)
        keyword = KEYWORD_COLUMN in schema.names
        analyser = (LITE_ANALYSER if lite else ENGLISH_ANALYSER) if keyword else None
        partitions = connection.tenant_partitions if ACL_COLUMN in schema.names else 0
        tenant = partitions > 0
        multi = [v for v in vector_fields(schema) if v.multi]
        layout = images_layout(client, connection.image_layout) if multi else ROWS
        properties = {
            VERSION_PROPERTY: "0",
            SCHEMA_PROPERTY: encode_schema(schema),
            TENANT_PROPERTY: str(partitions),
            LAYOUT_PROPERTY: layout,
        }
        buckets = {"num_partitions": partitions} if tenant else {}
        item_schema = milvus_schema(client, items, primary="id", analyser=analyser, tenant=tenant)
        item_index = index_params(
            client, items, connection.index, connection.index_params, keyword=keyword
        )
        if multi and layout == STRUCT:
            add_image_struct(client, item_schema, multi)
            add_struct_indexes(item_index, multi, connection.index_params)
        try:
            client.create_collection(
                name,
                schema=item_schema,
                index_params=item_index,
                consistency_level=CONSISTENCY,
                properties=properties,
                **buckets,
            )
            kept = client.describe_collection(name).get("properties") or {}
            if SCHEMA_PROPERTY not in kept:
                raise MMSearchError(
                    f"Milvus at {connection.uri} did not keep the properties of {name} (the "
                    "build's schema and write counter live there); Milvus Lite 2.5 drops "
                    "them. Use Milvus, or Milvus Lite 3.x (milvus-lite server)."
                )
            images = list(image_schema(schema))
            if multi and layout == ROWS:
                client.create_collection(
                    name + IMAGES_SUFFIX,
                    schema=milvus_schema(
                        client, images, primary=PK_COLUMN, analyser=None, tenant=tenant
                    ),
                    index_params=index_params(
                        client, images, connection.index, connection.index_params, keyword=False
                    ),
                    consistency_level=CONSISTENCY,
                    **buckets,
                )
        except BaseException:
            # A refused index (or schema) can leave a created collection behind.
            try:
                cls.drop(connection, table)
            except MMSearchError as exc:
                log.warning("could not drop the half-made Milvus collection %s: %s", name, exc)
            raise
        return cls(connection, name, schema, tenant=tenant, layout=layout)

    @classmethod
    def open(
        cls, connection: MilvusConnection, table: str, version: int | None = None
    ) -> MilvusBuildIndex:
        client = connection.client()
        name = collection_name(table)
        if not client.has_collection(name):
            raise MMSearchError(
                f"The Milvus collection {name} is missing at {connection.uri}. Re-ingest the "
                "catalog with --new-build to rebuild the collection."
            )
        properties = client.describe_collection(name).get("properties") or {}
        if SCHEMA_PROPERTY not in properties:
            raise MMSearchError(
                f"The Milvus collection {name} at {connection.uri} has no mmsearch schema "
                "property: it was not made by mmsearch, or its server drops collection "
                "properties (Milvus Lite 2.5). Re-ingest the catalog with --new-build."
            )
        index = cls(
            connection,
            name,
            decode_schema(properties[SCHEMA_PROPERTY]),
            tenant=int(properties.get(TENANT_PROPERTY, 0)) > 0,
            layout=properties.get(LAYOUT_PROPERTY, ROWS),
        )
        index.ensure_loaded()
        if version is not None and version != index.version():
            # No snapshots in Milvus: the latest rows answer (see the module docstring).
            log.debug("%s: manifest names version %s, serving %s", name, version, index.version())
        return index

    def ensure_loaded(self) -> None:
        """Load the build's collections where they are not loaded.

        A collection is searchable only while loaded, and loading is server state, not
        data: Milvus Lite with a file URI starts every process with its collections
        released, and a Milvus server forgets loads on restart or after a release. So
        whoever opens a build loads it (a no-op, one call per collection, when it is)."""
        for target in self._targets():
            state = self._client.get_load_state(target).get("state")
            if getattr(state, "name", str(state)) != "Loaded":
                log.info("loading the Milvus collection %s", target)
                self._client.load_collection(target)

    def _targets(self) -> list[str]:
        """The build's collections: items, and images in the rows layout."""
        return [self._name, *([self._images] if self._multi and not self._struct else [])]

    @staticmethod
    def drop(connection: MilvusConnection, table: str) -> None:
        client = connection.client()
        name = collection_name(table)
        for target in (name, name + IMAGES_SUFFIX):
            if client.has_collection(target):
                try:
                    aliases = client.list_aliases(target).get("aliases", [])
                except MilvusRequestError:  # a server without aliases (Milvus Lite 2.5)
                    aliases = []
                for alias in aliases:
                    client.drop_alias(alias)
                client.drop_collection(target)

    @property
    def collection(self) -> str:
        """The Milvus collection holding the item rows (for operators and tests)."""
        return self._name

    # --- what the protocol asks ----------------------------------------------------

    @property
    def schema(self) -> pa.Schema:
        return self._schema

    @property
    def vector_fields(self) -> list[VectorField]:
        return list(self._vectors)

    def version(self) -> int:
        properties = self._client.describe_collection(self._name).get("properties") or {}
        return int(properties.get(VERSION_PROPERTY, 0))

    def _bump(self) -> None:
        version = str(self.version() + 1)
        self._client.alter_collection_properties(self._name, {VERSION_PROPERTY: version})

    def row_count(self) -> int:
        return self.count(None)

    def count(self, filter: Filter | None = None) -> int:
        expr = self._expr(filter, self._schema)
        rows = self._checked(
            lambda: self._client.query(
                self._name, output_fields=["count(*)"], **self._filter_args(expr)
            ),
            expr,
        )
        return int(rows[0]["count(*)"]) if rows else 0

    def content_hashes(self, version: int | None = None) -> dict[str, str]:
        self._refuse_old(version, "read the rows of")
        data = self.scan(["id", "record_sha256"])
        return dict(zip(data["id"].to_pylist(), data["record_sha256"].to_pylist(), strict=True))

    def restore(self, version: int) -> None:
        self._refuse_old(version, "restore")

    def _refuse_old(self, version: int | None, what: str) -> None:
        if version is not None and version != self.version():
            raise VersionsUnsupported(
                f"Milvus keeps only the latest rows of a build, so mmsearch cannot {what} "
                f"version {version} of {self._name} (it is at {self.version()}). Reverting "
                "runs needs the LanceDB backend; re-ingest the catalog with --new-build to "
                "build the collection afresh."
            )

    def upsert(self, rows: pa.Table) -> None:
        if rows.num_rows == 0:
            return
        items = [f.name for f in item_fields(self._schema) if f.name in rows.column_names]
        for start in range(0, rows.num_rows, WRITE_BATCH):
            part = rows.slice(start, WRITE_BATCH)
            data = [item_row(r, self._tenant) for r in part.select(items).to_pylist()]
            if self._struct:
                full = part.to_pylist()
                for row, source in zip(data, full, strict=True):
                    row[STRUCT_FIELD] = struct_value(source, self._multi)
            self._client.upsert(self._name, data)
            if self._multi and not self._struct:
                full = part.to_pylist()
                self._delete_images([r["id"] for r in full])
                images = [
                    image
                    for row in full
                    for image in image_rows(row, self._image_schema, self._multi, self._tenant)
                ]
                for offset in range(0, len(images), WRITE_BATCH):
                    self._client.insert(self._images, images[offset : offset + WRITE_BATCH])
        self._bump()

    def delete(self, ids: list[str]) -> None:
        if not ids:
            return
        self._client.delete(self._name, ids=list(ids))
        self._delete_images(list(ids))
        self._bump()

    @property
    def _struct(self) -> bool:
        return bool(self._multi) and self._layout == STRUCT

    def _delete_images(self, ids: list[str]) -> None:
        if self._multi and ids and not self._struct:
            expr = self._expr(InList("id", tuple(ids)), self._image_schema)
            assert expr is not None
            self._client.delete(self._images, **self._filter_args(expr))

    def refresh_indexes(self) -> dict[str, Any]:
        """Seal what a run wrote and wait for its index, so searches use the indexes.

        Milvus indexes rows once their segment is sealed; rows still in the growing
        segment (Milvus Lite: the memtable, up to 128 MB) are searched by brute force,
        which at 10k rows made every search ~15x slower (300 vs 20 ms p50). One flush
        per run, not per write batch, keeps segments large on a cluster; waiting for
        the index before the run publishes means the first searches of a new build are
        served by it. ``flush="server"`` leaves both to the server (its auto-flush), for
        clusters where many writers share the flush rate limit.
        """
        if self._conn.flush == "run":
            for target in self._targets():
                self._client.flush(target)
            self.wait_for_indexes(self._conn.index_wait_s)
        names = sorted([KEYWORD_COLUMN, *(v.column for v in self._vectors)])
        return {"created": [], "indexed_columns": names, "rows": self.row_count()}

    def index_states(self) -> list[dict[str, Any]]:
        """``describe_index`` of every index of the build (rows indexed, pending, state)."""
        out = []
        for target in self._targets():
            for name in self._client.list_indexes(target):
                out.append({"collection": target, **self._client.describe_index(target, name)})
        return out

    def wait_for_indexes(self, timeout_s: float) -> bool:
        """Poll ``describe_index`` until no index has rows pending (True), or until
        ``timeout_s`` (False, with a warning: the build is still correct, its newest
        rows are searched by brute force until Milvus has indexed them)."""
        deadline = time.monotonic() + timeout_s
        pause = 0.05
        while True:
            states = self.index_states()
            failed = [s for s in states if str(s.get("state")) == "Failed"]
            if failed:
                raise MilvusStoreError(
                    f"Milvus failed to build the index {failed[0].get('index_name')} of "
                    f"{failed[0]['collection']}: {failed[0].get('fail_reason') or 'no reason'}"
                )
            if all(_indexed(state) for state in states):
                return True
            if time.monotonic() >= deadline:
                pending = sum(int(s.get("pending_index_rows") or 0) for s in states)
                log.warning(
                    "%s: Milvus had not indexed %d rows after %.0f s; publishing anyway "
                    "(those rows are searched without the index until it has)",
                    self._name,
                    pending,
                    timeout_s,
                )
                return False
            time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
            pause = min(1.0, pause * 2)

    def prune_versions(self) -> None:
        """Nothing to prune: Milvus keeps no old versions."""

    def vector_search(
        self,
        column: str,
        vector: np.ndarray,
        k: int,
        filter: Filter | None = None,
        ann: AnnSearch | None = None,
    ) -> list[Match]:
        """HNSW search; ``ann`` is accepted for the protocol and not applied: the walk's
        ``ef`` follows k and what the filter removes (``vector_request``), and Milvus
        indexes have no IVF partitions or refine step."""
        if column not in {v.column for v in self._vectors}:
            raise QueryError(f"This collection has no vector field {column}.")
        widen = 1.0
        if filter is not None and self._conn.exact_filter_rows > 0:
            exact = self._exact_search(column, vector, k, filter)
            if exact is not None:
                return exact
            # The walk's depth follows what the filter removes, so it needs the real
            # count: the probe's bound would send every wide filter to the deepest walk.
            widen = self.row_count() / max(1, self.count(filter))
        target, schema, request = self.vector_request(column, vector, k, widen)
        expr = self._expr(filter, schema)
        hits = self._checked(
            lambda: self._client.search(
                target, limit=k, output_fields=["id"], **request, **self._filter_args(expr)
            ),
            expr,
        )
        return [Match(h["entity"]["id"], float(h["distance"])) for h in hits[0]]

    def vector_request(
        self, column: str, vector: np.ndarray, k: int, widen: float = 1.0
    ) -> tuple[str, pa.Schema, dict[str, Any]]:
        """Where a vector search goes, the schema its filter is compiled on, and the
        search arguments: images as an embedding list on the item collection (struct
        layout), or grouped by item on the image collection (rows layout). ``widen`` is
        how many rows there are per row the filter keeps."""
        query = np.asarray(vector, dtype=np.float32)
        if column in self._multi and self._struct:
            params = self._search_params(k, widen, kind="hnsw", metric="MAX_SIM_COSINE")
            return self._name, self._schema, struct_search(column, query, params)
        request = {
            "data": [query.tolist()],
            "anns_field": column,
            "search_params": self._search_params(k, widen),
        }
        if column in self._multi:
            return self._images, self._image_schema, {**request, "group_by_field": "id"}
        return self._name, self._schema, request

    def _search_params(
        self, k: int, widen: float = 1.0, kind: str | None = None, metric: str = "COSINE"
    ) -> dict[str, Any]:
        params = search_params(kind or self._conn.index, k, self._conn.search_params, widen)
        return {"metric_type": metric, "params": params}

    def _exact_search(
        self, column: str, vector: np.ndarray, k: int, filter: Filter
    ) -> list[Match] | None:
        """Cosine against every item the filter keeps, or None when it keeps more than
        ``exact_filter_rows``. A graph walk under a filter that keeps few rows, far
        from the query, finds few of them or none (measured on Milvus Lite: 5 matching
        items of 10k, none returned at k=10). A bounded query of ids tells whether there
        are too many, without a count (on Milvus Lite a count reads every kept row)."""
        limit = self._conn.exact_filter_rows
        # Images in their own collection are read once the items are known to be few.
        images_apart = column in self._multi and not self._struct
        first = ["id"] if images_apart else [column]
        if limit + 1 > MAX_QUERY_WINDOW:  # too many for one query: count, then read all
            if self.count(filter) > limit:
                return None
            rows = self._rows(first, filter, limit=None)
        else:
            # Ids first: a filter that keeps too many rows costs their ids, not vectors
            # (20k items: p50 0.6x the count-then-read path, p95 unchanged; reading the
            # vectors in the probe gave p50 0.4x but p95 1.4-1.8x; docs/MILVUS.md).
            rows = self._rows(["id"], filter, limit=limit + 1)
            if len(rows) > limit:
                return None
            if rows and not images_apart:
                rows = self._rows(first, filter, limit=len(rows))
        if images_apart:
            images = self._images_of([r["id"] for r in rows], [column])
            rows = [{"id": r["id"], column: images.get(r["id"], {}).get(column)} for r in rows]
        rows = [r for r in rows if r.get(column)]
        if not rows:
            return []
        query = np.asarray(vector, dtype=np.float32)
        query = query / (np.linalg.norm(query) or 1.0)
        if column in self._multi:
            sizes = [len(r[column]) for r in rows]
            stacked = np.asarray([v for r in rows for v in r[column]], dtype=np.float32)
        else:
            sizes = [1] * len(rows)
            stacked = np.asarray([r[column] for r in rows], dtype=np.float32)
        norms = np.linalg.norm(stacked, axis=1)
        cosines = stacked @ query / np.where(norms > 0, norms, 1.0)
        best = np.maximum.reduceat(cosines, np.cumsum([0, *sizes[:-1]]))
        order = np.argsort(-best, kind="stable")[:k]
        return [Match(rows[i]["id"], float(best[i])) for i in order]

    def keyword_search(self, query: str, k: int, filter: Filter | None = None) -> list[Match]:
        if not query.strip() or KEYWORD_COLUMN not in self._schema.names:
            return []
        expr = self._expr(filter, self._schema)
        hits = self._checked(
            lambda: self._client.search(
                self._name,
                data=[query],
                anns_field=SPARSE_COLUMN,
                limit=k,
                search_params={"metric_type": "BM25"},
                output_fields=["id"],
                **self._filter_args(expr),
            ),
            expr,
        )
        # Milvus Lite reports -score as the distance; Milvus the score itself.
        matches = [Match(h["entity"]["id"], abs(float(h["distance"]))) for h in hits[0]]
        return [m for m in matches if m.score > 0]

    def get(
        self, ids: list[str], columns: list[str] | None = None, filter: Filter | None = None
    ) -> list[dict[str, Any]]:
        if not ids:
            return []
        wanted = columns or self._schema.names
        unique = list(dict.fromkeys(ids))
        rows = self._rows(wanted, all_of(InList("id", tuple(unique)), filter), limit=len(unique))
        by_id = {row["id"]: row for row in rows}
        return [by_id[i] for i in ids if i in by_id]

    def get_found(self, matches: Sequence[Match], columns: list[str]) -> list[dict[str, Any]]:
        """Milvus has no row handles to read by: the rows are looked up by id."""
        return self.get([match.id for match in matches], columns)

    def scan(self, columns: list[str], filter: Filter | None = None) -> pa.Table:
        rows = self._rows(columns, filter, limit=None)
        schema = pa.schema([self._schema.field(c) for c in columns])
        return pa.Table.from_pylist([{c: r.get(c) for c in columns} for r in rows], schema=schema)

    # --- helpers ---------------------------------------------------------------------

    def _rows(self, columns: list[str], filter: Filter | None, limit: int | None) -> list[dict]:
        """Rows with ``columns`` (image vectors reassembled per item, in catalog order)."""
        multi = [c for c in columns if c in self._multi]
        plain = list(dict.fromkeys(["id", *(c for c in columns if c not in self._multi)]))
        if multi and self._struct:
            plain.append(STRUCT_FIELD)
        expr = self._expr(filter, self._schema)
        rows = self._checked(lambda: self._query(self._name, plain, expr, limit), expr)
        if multi and self._struct:
            for row in rows:
                for column in multi:
                    row[column] = from_struct(row.get(STRUCT_FIELD), column)
        elif multi and rows:
            images = self._images_of([r["id"] for r in rows], multi)
            for row in rows:
                for column in multi:
                    row[column] = images.get(row["id"], {}).get(column)
        return [{c: _plain(r.get(c)) for c in dict.fromkeys(["id", *columns])} for r in rows]

    def _images_of(self, ids: list[str], columns: list[str]) -> dict[str, dict[str, list]]:
        out: dict[str, dict[str, list]] = {}
        for start in range(0, len(ids), SCAN_BATCH):
            part = ids[start : start + SCAN_BATCH]
            expr = self._expr(InList("id", tuple(part)), self._image_schema)
            found = self._query(self._images, ["id", SLOT_COLUMN, *columns], expr, None)
            for row in sorted(found, key=lambda r: (r["id"], r[SLOT_COLUMN])):
                slot = out.setdefault(row["id"], {c: [] for c in columns})
                for column in columns:
                    slot[column].append(_plain(row[column]))
        return out

    def _query(self, name: str, fields: list[str], expr: MilvusExpr | None, limit: int | None):
        if limit is not None:
            return self._client.query(
                name, output_fields=fields, limit=limit, **self._filter_args(expr)
            )
        iterator = self._client.query_iterator(
            name, batch_size=SCAN_BATCH, output_fields=fields, **self._filter_args(expr)
        )
        out: list[dict] = []
        try:
            while batch := iterator.next():
                out.extend(dict(row) for row in batch)
        except Exception as exc:  # the iterator's calls bypass the guarded client
            raise store_error(exc, self._conn.uri, f"query {name}") from exc
        finally:
            iterator.close()
        return out

    def _expr(self, filter: Filter | None, schema: pa.Schema) -> MilvusExpr | None:
        if filter is None:
            return None
        if self._tenant:
            hinted = all_of(filter, tenant_hint(filter))
            if hinted is None:  # an empty AND: every row
                return None
            filter, schema = hinted, with_tenant(schema)
        return to_milvus_expr(filter, schema, templated=self._templated)

    @staticmethod
    def _filter_args(expr: MilvusExpr | None) -> dict[str, Any]:
        if expr is None:
            return {"filter": ""}
        if expr.params:
            return {"filter": expr.text, "filter_params": expr.params}
        return {"filter": expr.text}

    @staticmethod
    def _checked(call: Any, expr: MilvusExpr | None) -> Any:
        """Run a Milvus call; a filter the server refuses is a QueryError without internals.
        A server that cannot serve the collection is its own error, filter or not."""
        try:
            return call()
        except MilvusStoreError:
            raise
        except Exception as exc:  # MilvusRequestError with the parser's message
            if expr is None:
                raise
            log.debug("Milvus refused the filter %s: %s", expr.text, exc)
            raise QueryError(CANNOT_APPLY) from None


def search_params(
    kind: str, k: int, configured: dict[str, Any], widen: float = 1.0
) -> dict[str, Any]:
    """The index's search parameters (the configured ones over the defaults). Under a
    filter, HNSW's candidate list grows with ``widen``, the rows per row the filter
    keeps (up to ``MAX_FILTERED_EF``): the walk only counts the candidates that pass."""
    params: dict[str, Any] = {}
    if kind == "hnsw":
        params["ef"] = max(64, 2 * k)
    elif kind.startswith("ivf"):
        params["nprobe"] = 32
    params.update(configured)
    if kind == "hnsw" and widen > 1.0:
        base = int(params["ef"])
        params["ef"] = max(base, min(MAX_FILTERED_EF, math.ceil(base * widen)))
    return params


def tenant_hint(filter: Filter) -> Filter | None:
    """The partitions a caller's access node allows, as a filter Milvus prunes by.

    A row visible under ``Visible(groups)`` has a NULL acl (bucket ``""``), several
    groups (``""``) or one group that is the caller's, so ``_tenant in groups + [""]``
    is implied by the access node and never changes which rows match; it only lets
    Milvus skip the other tenants' partitions. Access nodes under OR/NOT imply nothing.
    """
    parts = filter.parts if isinstance(filter, And) else (filter,)
    hints: list[Filter] = [
        InList(TENANT_COLUMN, tuple(sorted({*part.groups, SHARED_TENANT})))
        for part in parts
        if isinstance(part, Visible)
    ]
    return all_of(*hints)


def _indexed(state: dict[str, Any]) -> bool:
    """An index with nothing left to build (``describe_index``'s counts and state)."""
    pending = int(state.get("pending_index_rows") or 0)
    total, done = int(state.get("total_rows") or 0), int(state.get("indexed_rows") or 0)
    return pending == 0 and done >= total and str(state.get("state", "Finished")) == "Finished"


def _plain(value: Any) -> Any:
    """Python values as LanceDB's rows hold them (lists, not numpy or protobuf types)."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, list | tuple):
        if value and type(value[0]) is float:  # a vector: its items are plain already
            return list(value)
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


# The store implements the BuildIndex protocol; pyright checks this assignment.
_IMPLEMENTS: type[BuildIndex] = MilvusBuildIndex
