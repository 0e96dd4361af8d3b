"""Opening and creating a build's index: the one door from the rest of mmsearch to a store.

Callers get a ``BuildIndex`` (the protocol in ``index/base.py``) and never import a
store's client library. New builds go to the store ``settings.backend`` names
(LanceDB in the workspace, or Milvus at ``settings.milvus_uri``); existing builds are
opened by what their manifest's ``store`` records, whatever the settings say now.
The manifest records Milvus's address but never its token, which always comes from
the environment (``MMSEARCH_MILVUS_TOKEN`` or ``MMSEARCH_MILVUS_TOKEN_FILE``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import pyarrow as pa

from mmsearch.collection_state import CollectionState
from mmsearch.config import Settings
from mmsearch.errors import MMSearchError
from mmsearch.index.base import BuildIndex
from mmsearch.manifest import BuildManifest
from mmsearch.workspace import CollectionDir

if TYPE_CHECKING:
    from mmsearch.index.milvus_client import MilvusConnection

DEFAULT_BACKEND = "lancedb"
BACKENDS = ("lancedb", "milvus")
ALIASES = ("live", "canary", "previous")
log = logging.getLogger("mmsearch.index")


def _ann_min_rows(settings: Settings | None) -> int:
    if settings is not None:
        return settings.ann_min_rows
    return int(Settings.model_fields["ann_min_rows"].default)


def store_description(
    collection: CollectionDir, settings: Settings | None = None
) -> dict[str, str]:
    """What a new build's manifest records under ``store`` (never a token)."""
    if settings is not None and settings.backend == "milvus":
        return {"backend": "milvus", "uri": settings.milvus_uri, "index": settings.milvus_index}
    return {"backend": DEFAULT_BACKEND, "path": str(collection.lancedb_dir)}


def backend_of(manifest: BuildManifest) -> str:
    return manifest.store.backend


def milvus_connection(settings: Settings | None, uri: str | None = None, index: str | None = None):
    """The Milvus address (the manifest's when given), token and index settings."""
    from mmsearch.index.milvus_client import MilvusConnection

    settings = settings if settings is not None else Settings()
    token = settings.milvus_token.get_secret_value() if settings.milvus_token else None
    if token is None and settings.milvus_token_file is not None:
        try:
            token = settings.milvus_token_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise MMSearchError(
                f"Cannot read the Milvus token file {settings.milvus_token_file} ({exc.strerror}); "
                "fix MMSEARCH_MILVUS_TOKEN_FILE or set MMSEARCH_MILVUS_TOKEN."
            ) from None
    return MilvusConnection(
        uri=uri or settings.milvus_uri,
        token=token,
        index=index or settings.milvus_index,
        index_params=dict(settings.milvus_index_params),
        search_params=dict(settings.milvus_search_params),
        tenant_partitions=settings.milvus_tenant_partitions,
        image_layout=settings.milvus_image_layout,
        exact_filter_rows=settings.milvus_exact_filter_rows,
        flush=settings.milvus_flush,
        index_wait_s=settings.milvus_index_wait_s,
    )


def _manifest_connection(manifest: BuildManifest, settings: Settings | None) -> MilvusConnection:
    store = manifest.store
    return milvus_connection(settings, store.uri, store.index)


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
    backend = _check_backend(manifest)
    version = None if for_writing else manifest.table_version
    if backend == "milvus":
        from mmsearch.index.milvus import MilvusBuildIndex

        connection = _manifest_connection(manifest, settings)
        return MilvusBuildIndex.open(connection, manifest.table, version)
    from mmsearch.index.lancedb import LanceBuildIndex

    return LanceBuildIndex.open(
        collection.lancedb_dir, manifest.table, _ann_min_rows(settings), version
    )


def drop_build_index(
    collection: CollectionDir, manifest: BuildManifest, settings: Settings | None = None
) -> None:
    """Remove a build's table (a build that never became visible, or was refused)."""
    if _check_backend(manifest) == "milvus":
        from mmsearch.index.milvus import MilvusBuildIndex

        MilvusBuildIndex.drop(_manifest_connection(manifest, settings), manifest.table)
        return
    from mmsearch.index.lancedb import LanceBuildIndex

    LanceBuildIndex.drop(collection.lancedb_dir, manifest.table)


def _check_backend(manifest: BuildManifest) -> str:
    backend = backend_of(manifest)
    if backend not in BACKENDS:
        raise MMSearchError(
            f"Build {manifest.build_id} uses the store '{backend}', which this "
            f"installation of mmsearch cannot open (it has: {', '.join(BACKENDS)})."
        )
    return backend


def create_build_index(
    collection: CollectionDir, table: str, schema: pa.Schema, settings: Settings | None = None
) -> BuildIndex:
    """A new, empty table for a build, with the build's schema, in ``settings.backend``."""
    if settings is not None and settings.backend == "milvus":
        from mmsearch.index.milvus import MilvusBuildIndex

        return MilvusBuildIndex.create(milvus_connection(settings), table, schema)
    from mmsearch.index.lancedb import LanceBuildIndex

    return LanceBuildIndex.create(collection.lancedb_dir, table, schema, _ann_min_rows(settings))


def sync_aliases(
    collection: CollectionDir, state: CollectionState, settings: Settings | None = None
) -> None:
    """Point the store's own aliases (live, canary, previous) where collection.json does.

    collection.json stays the truth: LanceDB has no aliases (nothing to do); on Milvus,
    each alias of the collection (``alias_name``) is created, moved or dropped on every
    server a build of the collection lives on, so tools reading Milvus directly follow
    the switches. Best effort: a failure is logged as a warning and the switch stands."""
    try:
        _sync_aliases(collection, state, settings)
    except Exception as exc:  # the switch is already made; the aliases only mirror it
        log.warning("Could not update the Milvus aliases of '%s': %s", collection.name, exc)


def _sync_aliases(
    collection: CollectionDir, state: CollectionState, settings: Settings | None
) -> None:
    manifests = {}
    for build_id in collection.build_ids():
        try:
            manifest = collection.manifest(build_id)
        except MMSearchError:
            continue
        if backend_of(manifest) == "milvus":
            manifests[build_id] = manifest
    if not manifests:
        return
    from mmsearch.index.milvus_client import alias_name, point_aliases

    aliases = {
        "live": state.aliases.live,
        "previous": state.aliases.previous,
        "canary": state.canary.build_id if state.canary is not None else None,
    }
    uris = {str(m.store.uri) for m in manifests.values()}
    for uri in sorted(uris):
        wanted: dict[str, str | None] = {}
        for alias in ALIASES:
            manifest = manifests.get(aliases.get(alias) or "")
            on_server = manifest is not None and manifest.store.uri == uri
            name = alias_name(collection.name, str(collection.folder.resolve()), alias)
            wanted[name] = manifest.table if on_server and manifest else None
        tables = [m.table for m in manifests.values() if m.store.uri == uri]
        point_aliases(milvus_connection(settings, uri), wanted, tables)
