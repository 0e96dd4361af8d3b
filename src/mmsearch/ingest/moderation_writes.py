"""Writing moderation decisions into a collection's live build.

A review verdict or a ``policy apply`` changes the moderation columns of stored rows
and nothing else: the rows are read whole (vectors included), their moderation
columns replaced, and written back as one new table version, which the manifest then
publishes, as an item DELETE does. So readers switch to the new decisions at once
(the service opens a new Searcher when the manifest changes), the write is one line
of the build's run history (kind ``moderation``), and ``mmsearch runs revert`` can
undo it like any other write. The caller holds the collection's writer lock.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from mmsearch.builds.history import record_item_write
from mmsearch.clock import utc_now
from mmsearch.config import Settings
from mmsearch.errors import MMSearchError
from mmsearch.filters.expr import InList
from mmsearch.index.base import BuildIndex
from mmsearch.ingest.builds import writable_live_index
from mmsearch.manifest import BuildManifest
from mmsearch.moderation.decisions import (
    DECISION_COLUMN,
    FINGERPRINTS_COLUMN,
    MODERATION_COLUMNS,
    ItemDecision,
    row_values,
)
from mmsearch.workspace import CollectionDir, new_id

# What holds the collection's writer lock around a moderation write: the CLI waits for
# it; the service gives up after a while and answers 409.
Lock = Callable[[], AbstractContextManager[Any]]
WRITE_BATCH_ROWS = 500
# Ids named in the run history line; the counts say how many there were.
IDS_IN_HISTORY = 50


@dataclass(frozen=True)
class DecisionChange:
    """An item's new decision, and its fingerprints when they were computed just now
    (an item stored before the policy was bound has none yet)."""

    decision: ItemDecision | None
    fingerprints: str | None = None


def live_for_moderation(
    collection: CollectionDir, settings: Settings
) -> tuple[BuildManifest, BuildIndex]:
    """The live build for a moderation write; one made before the columns is refused."""
    manifest = collection.live_manifest()
    index, _undone = writable_live_index(collection, manifest, settings)
    if DECISION_COLUMN not in index.schema.names:
        raise MMSearchError(
            f"The live build of '{collection.name}' ({manifest.build_id}) was made before "
            "items could store moderation decisions. Re-ingest its catalog with --new-build "
            "to moderate it."
        )
    return manifest, index


def write_decisions(
    collection: CollectionDir,
    manifest: BuildManifest,
    index: BuildIndex,
    changes: Mapping[str, DecisionChange],
    *,
    actor: str,
) -> int:
    """Store ``changes`` (item id → decision) in the live build; returns the new table
    version. Nothing is written, and the version is unchanged, for no changes."""
    if not changes:
        return index.version()
    started_at, before = utc_now(), index.version()
    ids = list(changes)
    names = index.schema.names
    for start in range(0, len(ids), WRITE_BATCH_ROWS):
        part = ids[start : start + WRITE_BATCH_ROWS]
        rows = index.scan(names, InList("id", tuple(part)))
        if rows.num_rows:
            index.upsert(_with_decisions(rows, changes, index.schema))
    record_item_write(
        collection,
        manifest,
        kind="moderation",
        run_id=new_id("run"),
        actor=actor,
        started_at=started_at,
        finished_at=utc_now(),
        counts={"moderated": len(ids), "items": index.row_count()},
        version_before=before,
        version_after=index.version(),
        items=ids[:IDS_IN_HISTORY],
    )
    return index.version()


def _with_decisions(
    rows: pa.Table, changes: Mapping[str, DecisionChange], schema: pa.Schema
) -> pa.Table:
    """``rows`` with their moderation columns (and new fingerprints) replaced."""
    ids = rows.column("id").to_pylist()
    values = {name: [] for name in MODERATION_COLUMNS}
    fingerprints = rows.column(FINGERPRINTS_COLUMN).to_pylist()
    for position, item_id in enumerate(ids):
        change = changes[item_id]
        for name, value in row_values(change.decision).items():
            values[name].append(value)
        if change.fingerprints is not None:
            fingerprints[position] = change.fingerprints
    for name, column in [*values.items(), (FINGERPRINTS_COLUMN, fingerprints)]:
        position = rows.schema.get_field_index(name)
        rows = rows.set_column(position, name, pa.array(column, schema.field(name).type))
    return rows.cast(schema)
