"""Opening and creating a build's index: the one door from the rest of mmsearch to a store.

Callers get a ``BuildIndex`` (the protocol in ``index/base.py``) and never import a
store's client library. New builds go to the store ``settings.backend`` names;
existing builds are opened by what their manifest's ``store`` records, whatever the
settings say now. Which engine that is, is the store registry's business
(``index/stores.py``): nothing here knows a store by name.
"""

from __future__ import annotations

import logging

import pyarrow as pa

from mmsearch.collection_state import CollectionState
from mmsearch.config import Settings
from mmsearch.errors import MMSearchError
from mmsearch.index.base import BuildIndex
from mmsearch.index.stores import store_backend
from mmsearch.manifest import BuildManifest
from mmsearch.workspace import CollectionDir

log = logging.getLogger("mmsearch.index")


def _new_store(settings: Settings | None) -> str:
    return settings.backend if settings is not None else "lancedb"


def store_description(
    collection: CollectionDir, settings: Settings | None = None
) -> dict[str, str]:
    """What a new build's manifest records under ``store`` (never a token)."""
    return store_backend(_new_store(settings)).describe(collection, settings)


def backend_of(manifest: BuildManifest) -> str:
    return manifest.store.backend


def open_build_index(
    collection: CollectionDir,
    manifest: BuildManifest,
    settings: Settings | None = None,
    *,
    for_writing: bool = False,
) -> BuildIndex:
    """The index of the build ``manifest`` describes (its table in the collection's store).

    LanceDB readers see the table version the manifest names, so the rows of a run that
    has not finished (or was killed) stay invisible; writers get the latest version.
    Milvus keeps no versions: readers see the latest rows (see ``index/milvus.py``)."""
    version = None if for_writing else manifest.table_version
    backend = store_backend(backend_of(manifest), manifest.build_id)
    return backend.open(collection, manifest, settings, version)


def drop_build_index(
    collection: CollectionDir, manifest: BuildManifest, settings: Settings | None = None
) -> None:
    """Remove a build's table (a build that never became visible, or was refused)."""
    store_backend(backend_of(manifest), manifest.build_id).drop(collection, manifest, settings)


def create_build_index(
    collection: CollectionDir, table: str, schema: pa.Schema, settings: Settings | None = None
) -> BuildIndex:
    """A new, empty table for a build, with the build's schema, in ``settings.backend``."""
    return store_backend(_new_store(settings)).create(collection, table, schema, settings)


def sync_aliases(
    collection: CollectionDir, state: CollectionState, settings: Settings | None = None
) -> None:
    """Point each store's own aliases (live, canary, previous) where collection.json does.

    collection.json stays the truth; each store that holds builds of the collection
    mirrors it (LanceDB has no aliases; Milvus moves its aliases). Best effort: a
    failure is logged as a warning and the switch stands."""
    try:
        by_store: dict[str, dict[str, BuildManifest]] = {}
        for build_id in collection.build_ids():
            try:
                manifest = collection.manifest(build_id)
            except MMSearchError:
                continue
            by_store.setdefault(backend_of(manifest), {})[build_id] = manifest
        for name, manifests in sorted(by_store.items()):
            store_backend(name).sync_aliases(collection, state, manifests, settings)
    except Exception as exc:  # the switch is already made; the aliases only mirror it
        log.warning("Could not update the store aliases of '%s': %s", collection.name, exc)
