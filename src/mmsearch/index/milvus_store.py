"""Milvus as a ``StoreBackend``: a build's collections on the server its manifest names.

The manifest records Milvus's address and index type but never its token, which always
comes from the environment (``MMSEARCH_MILVUS_TOKEN`` or ``MMSEARCH_MILVUS_TOKEN_FILE``).
pymilvus is imported only when a Milvus build is created, opened or dropped.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pyarrow as pa

from mmsearch.config import Settings
from mmsearch.errors import MMSearchError
from mmsearch.index.base import BuildIndex
from mmsearch.index.stores import StoreBackend

if TYPE_CHECKING:
    from mmsearch.collection_state import CollectionState
    from mmsearch.index.milvus_client import MilvusConnection
    from mmsearch.manifest import BuildManifest
    from mmsearch.workspace import CollectionDir

ALIASES = ("live", "canary", "previous")


def milvus_connection(
    settings: Settings | None, uri: str | None = None, index: str | None = None
) -> MilvusConnection:
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
    return milvus_connection(settings, manifest.store.uri, manifest.store.index)


class MilvusStore:
    """A server (or Milvus Lite): no table versions; aliases mirror collection.json."""

    name = "milvus"

    def describe(self, collection: CollectionDir, settings: Settings | None) -> dict[str, str]:
        settings = settings if settings is not None else Settings()
        return {"backend": self.name, "uri": settings.milvus_uri, "index": settings.milvus_index}

    def create(
        self,
        collection: CollectionDir,
        table: str,
        schema: pa.Schema,
        settings: Settings | None,
    ) -> BuildIndex:
        from mmsearch.index.milvus import MilvusBuildIndex

        return MilvusBuildIndex.create(milvus_connection(settings), table, schema)

    def open(
        self,
        collection: CollectionDir,
        manifest: BuildManifest,
        settings: Settings | None,
        version: int | None,
    ) -> BuildIndex:
        from mmsearch.index.milvus import MilvusBuildIndex

        return MilvusBuildIndex.open(
            _manifest_connection(manifest, settings), manifest.table, version
        )

    def drop(
        self, collection: CollectionDir, manifest: BuildManifest, settings: Settings | None
    ) -> None:
        from mmsearch.index.milvus import MilvusBuildIndex

        MilvusBuildIndex.drop(_manifest_connection(manifest, settings), manifest.table)

    def sync_aliases(
        self,
        collection: CollectionDir,
        state: CollectionState,
        manifests: dict[str, BuildManifest],
        settings: Settings | None,
    ) -> None:
        """Each alias of the collection (``alias_name``) is created, moved or dropped on
        every server a build of the collection lives on, so tools reading Milvus
        directly follow the switches."""
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


_IMPLEMENTS: type[StoreBackend] = MilvusStore  # pyright checks the protocol here
