"""Opening and creating a build's index: the one door from the rest of mmsearch to a store.

Callers get a ``BuildIndex`` (the protocol in ``index/base.py``) and never import a
store's client library, so a second engine (Milvus) plugs in here, chosen by the
manifest's ``store.backend``, without touching search, ranking, ingest or the service.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from mmsearch.config import Settings
from mmsearch.errors import MMSearchError
from mmsearch.index.base import BuildIndex
from mmsearch.workspace import CollectionDir

DEFAULT_BACKEND = "lancedb"


def _ann_min_rows(settings: Settings | None) -> int:
    if settings is not None:
        return settings.ann_min_rows
    return int(Settings.model_fields["ann_min_rows"].default)


def store_description(collection: CollectionDir) -> dict[str, str]:
    """What a new build's manifest records under ``store``."""
    return {"backend": DEFAULT_BACKEND, "path": str(collection.lancedb_dir)}


def open_build_index(
    collection: CollectionDir,
    manifest: dict[str, Any],
    settings: Settings | None = None,
    *,
    for_writing: bool = False,
) -> BuildIndex:
    """The index of the build ``manifest`` describes (its table in the collection's store).

    Readers see the table version the manifest names, so the rows of a run that has
    not finished (or was killed) stay invisible; writers get the latest version."""
    _check_backend(manifest)
    from mmsearch.index.lancedb import LanceBuildIndex

    version = None if for_writing else manifest.get("table_version")
    return LanceBuildIndex.open(
        collection.lancedb_dir, manifest["table"], _ann_min_rows(settings), version
    )


def drop_build_index(collection: CollectionDir, manifest: dict[str, Any]) -> None:
    """Remove a build's table (a build that never became visible, or was refused)."""
    _check_backend(manifest)
    from mmsearch.index.lancedb import LanceBuildIndex

    LanceBuildIndex.drop(collection.lancedb_dir, manifest["table"])


def _check_backend(manifest: dict[str, Any]) -> None:
    backend = (manifest.get("store") or {}).get("backend", DEFAULT_BACKEND)
    if backend != DEFAULT_BACKEND:
        raise MMSearchError(
            f"Build {manifest.get('build_id')} uses the store '{backend}', which this "
            f"installation of mmsearch cannot open (it has: {DEFAULT_BACKEND})."
        )


def create_build_index(
    collection: CollectionDir, table: str, schema: pa.Schema, settings: Settings | None = None
) -> BuildIndex:
    """A new, empty table for a build, with the build's schema."""
    from mmsearch.index.lancedb import LanceBuildIndex

    return LanceBuildIndex.create(collection.lancedb_dir, table, schema, _ann_min_rows(settings))
