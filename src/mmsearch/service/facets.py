"""Filter controls for a collection: distinct values of small string attributes, numeric ranges.

Computed from the live table's attribute columns only (a columnar read, no vectors)
and cached per build and table version, so the search page gets its filters cheaply
and sees new values after an ingest.
"""

from __future__ import annotations

import threading
from typing import Any

import lancedb
import pyarrow as pa
import pyarrow.compute as pc

from mmsearch.workspace import CollectionDir

MAX_DROPDOWN_VALUES = 50

_CACHE: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
_LOCK = threading.Lock()


def collection_facets(folder: CollectionDir, manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """One entry per attribute: ``{field, column, kind, values | min/max}``."""
    key = (folder.name, manifest["build_id"], int(manifest.get("table_version", 0)))
    with _LOCK:
        if key in _CACHE:
            return _CACHE[key]
    attributes = manifest.get("attributes", [])
    columns = [a["column"] for a in attributes]
    table = (
        lancedb.connect(str(folder.lancedb_dir)).open_table(manifest["table"]).to_lance()
        if columns
        else None
    )
    data = table.to_table(columns=columns) if table is not None else pa.table({})
    facets = [_facet(spec, data.column(spec["column"])) for spec in attributes]
    with _LOCK:
        _CACHE[key] = facets
    return facets


def _facet(spec: dict[str, Any], column: pa.ChunkedArray) -> dict[str, Any]:
    facet: dict[str, Any] = {"field": spec["field"], "column": spec["column"], "kind": spec["kind"]}
    if spec["kind"] in {"int", "float"}:
        bounds = pc.min_max(column)
        facet["min"] = bounds["min"].as_py()
        facet["max"] = bounds["max"].as_py()
    elif spec["kind"] == "bool":
        facet["values"] = [True, False]
    else:
        counts = pc.value_counts(column.drop_null()).to_pylist()
        if len(counts) <= MAX_DROPDOWN_VALUES:
            ordered = sorted(counts, key=lambda c: (-c["counts"], str(c["values"])))
            facet["values"] = [c["values"] for c in ordered]
            facet["counts"] = [c["counts"] for c in ordered]
        else:
            facet["distinct"] = len(counts)
    return facet
