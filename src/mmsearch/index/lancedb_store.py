"""LanceDB as a ``StoreBackend``: tables in the collection's ``lancedb/`` folder."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pyarrow as pa

from mmsearch.collection_state import AnnSettings, ann_index
from mmsearch.config import Settings
from mmsearch.index.base import BuildIndex
from mmsearch.index.stores import StoreBackend

if TYPE_CHECKING:
    from mmsearch.collection_state import CollectionState
    from mmsearch.manifest import BuildManifest
    from mmsearch.workspace import CollectionDir


def collection_ann(collection: CollectionDir, settings: Settings | None) -> AnnSettings:
    """The index the collection's builds get (collection.json ``ann`` over the settings)."""
    saved = collection.state().ann if (collection.folder / "collection.json").exists() else None
    return ann_index(settings, saved)


def ann_min_rows(settings: Settings | None) -> int:
    """Below this many rows a vector search is exact (the settings', else the default)."""
    if settings is not None:
        return settings.ann_min_rows
    return int(Settings.model_fields["ann_min_rows"].default)


class LanceStore:
    """Embedded: one table per build, every write a table version readers can pin."""

    name = "lancedb"

    def describe(self, collection: CollectionDir, settings: Settings | None) -> dict[str, str]:
        return {"backend": self.name, "path": str(collection.lancedb_dir)}

    def create(
        self,
        collection: CollectionDir,
        table: str,
        schema: pa.Schema,
        settings: Settings | None,
    ) -> BuildIndex:
        from mmsearch.index.lancedb import LanceBuildIndex

        return LanceBuildIndex.create(
            collection.lancedb_dir,
            table,
            schema,
            ann_min_rows(settings),
            collection_ann(collection, settings),
        )

    def open(
        self,
        collection: CollectionDir,
        manifest: BuildManifest,
        settings: Settings | None,
        version: int | None,
    ) -> BuildIndex:
        from mmsearch.index.lancedb import LanceBuildIndex

        return LanceBuildIndex.open(
            collection.lancedb_dir,
            manifest.table,
            ann_min_rows(settings),
            version,
            collection_ann(collection, settings),
        )

    def drop(
        self, collection: CollectionDir, manifest: BuildManifest, settings: Settings | None
    ) -> None:
        from mmsearch.index.lancedb import LanceBuildIndex

        LanceBuildIndex.drop(collection.lancedb_dir, manifest.table)

    def sync_aliases(
        self,
        collection: CollectionDir,
        state: CollectionState,
        manifests: dict[str, BuildManifest],
        settings: Settings | None,
    ) -> None:
        """LanceDB has no aliases: collection.json is the only record."""


_IMPLEMENTS: type[StoreBackend] = LanceStore  # pyright checks the protocol here
