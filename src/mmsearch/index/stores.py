"""The store registry: each storage engine is a ``StoreBackend`` registered by name.

``index/open.py`` asks the registry for the backend a build's manifest names (or, for
a new build, the one ``settings.backend`` names) and never branches on a store's name,
so adding a store touches ``index/`` only: write its ``BuildIndex`` and its
``StoreBackend``, and add one line to ``STORES``. Entries are ``module:attribute``
paths imported on first use, so a store's client library (pymilvus) is loaded only by
processes that open one of its builds.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Protocol

import pyarrow as pa

from mmsearch.errors import MMSearchError

if TYPE_CHECKING:
    from mmsearch.collection_state import CollectionState
    from mmsearch.config import Settings
    from mmsearch.index.base import BuildIndex
    from mmsearch.manifest import BuildManifest
    from mmsearch.workspace import CollectionDir


class StoreBackend(Protocol):
    """Creates, opens and drops the builds of one storage engine."""

    name: str

    def describe(self, collection: CollectionDir, settings: Settings | None) -> dict[str, str]:
        """What a new build's manifest records under ``store`` (never a secret)."""
        ...

    def create(
        self,
        collection: CollectionDir,
        table: str,
        schema: pa.Schema,
        settings: Settings | None,
    ) -> BuildIndex:
        """A new, empty table for a build."""
        ...

    def open(
        self,
        collection: CollectionDir,
        manifest: BuildManifest,
        settings: Settings | None,
        version: int | None,
    ) -> BuildIndex:
        """The build's table; readers see ``version`` where the engine keeps versions."""
        ...

    def drop(
        self, collection: CollectionDir, manifest: BuildManifest, settings: Settings | None
    ) -> None:
        """Remove the build's table."""
        ...

    def sync_aliases(
        self,
        collection: CollectionDir,
        state: CollectionState,
        manifests: dict[str, BuildManifest],
        settings: Settings | None,
    ) -> None:
        """Mirror collection.json's aliases into the engine, for the builds it holds."""
        ...


STORES: dict[str, str] = {
    "lancedb": "mmsearch.index.lancedb_store:LanceStore",
    "milvus": "mmsearch.index.milvus_store:MilvusStore",
}
_LOADED: dict[str, StoreBackend] = {}


def store_names() -> list[str]:
    return sorted(STORES)


def store_backend(name: str, build_id: str | None = None) -> StoreBackend:
    """The registered backend called ``name``; a clear error for any other name."""
    if name not in STORES:
        owner = f"Build {build_id} uses" if build_id else "The setting names"
        raise MMSearchError(
            f"{owner} the store '{name}', which this installation of mmsearch cannot "
            f"open (it has: {', '.join(store_names())})."
        )
    if name not in _LOADED:
        module, _, attribute = STORES[name].partition(":")
        backend: StoreBackend = getattr(importlib.import_module(module), attribute)()
        _LOADED[name] = backend
    return _LOADED[name]
