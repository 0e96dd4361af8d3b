"""Filter controls for a collection: distinct values of small string attributes, numeric ranges.

Computed from the live table's attribute columns only (a columnar read, no vectors)
and cached per build, table version and filter, so the search page gets its filters
cheaply and sees new values after an ingest. The optional filter (typically what the
caller may see) is applied by the store, so facets never reveal values of items the
caller cannot find.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from mmsearch.config import Settings
from mmsearch.filters.expr import Filter
from mmsearch.index.base import BuildIndex
from mmsearch.index.open import open_build_index
from mmsearch.manifest import AttributeDescription, BuildManifest
from mmsearch.workspace import CollectionDir

MAX_DROPDOWN_VALUES = 50
MAX_CACHED = 256

_CACHE: OrderedDict[tuple[str, str, int, Filter | None], list[dict[str, Any]]] = OrderedDict()
_LOCK = threading.Lock()


def collection_facets(
    source: BuildIndex | CollectionDir,
    manifest: BuildManifest,
    filter: Filter | None = None,
    settings: Settings | None = None,
) -> list[dict[str, Any]]:
    """One entry per attribute: ``{field, column, kind, values | min/max}``, over the rows
    that pass ``filter`` (all rows without one).

    ``source`` is the build's open index (the service passes its Searcher's) or the
    collection folder, from which the build of ``manifest`` is opened.
    """
    collection = manifest.collection or str(getattr(source, "name", ""))
    key = (collection, manifest.build_id, manifest.table_version or 0, filter)
    with _LOCK:
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key]
    attributes = manifest.attributes
    columns = [a.column for a in attributes]
    data = pa.table({})
    if columns:
        index = (
            open_build_index(source, manifest, settings)
            if isinstance(source, CollectionDir)
            else source
        )
        data = index.scan(columns, filter)
    facets = [_facet(spec, data.column(spec.column)) for spec in attributes]
    with _LOCK:
        _CACHE[key] = facets
        while len(_CACHE) > MAX_CACHED:
            _CACHE.popitem(last=False)
    return facets


def _facet(spec: AttributeDescription, column: pa.ChunkedArray) -> dict[str, Any]:
    facet: dict[str, Any] = {"field": spec.field, "column": spec.column, "kind": spec.kind}
    if spec.kind in {"int", "float"}:
        # pyarrow.compute defines its kernels at import time, so pyright cannot see them.
        bounds = pc.min_max(column)  # pyright: ignore[reportAttributeAccessIssue]
        facet["min"] = bounds["min"].as_py()
        facet["max"] = bounds["max"].as_py()
    elif spec.kind == "bool":
        facet["values"] = [True, False]
    else:
        # pyarrow.compute defines its kernels at import time, so pyright cannot see them.
        counts = pc.value_counts(column.drop_null()).to_pylist()  # pyright: ignore[reportAttributeAccessIssue]
        if len(counts) <= MAX_DROPDOWN_VALUES:
            ordered = sorted(counts, key=lambda c: (-c["counts"], str(c["values"])))
            facet["values"] = [c["values"] for c in ordered]
            facet["counts"] = [c["counts"] for c in ordered]
        else:
            facet["distinct"] = len(counts)
    return facet
