"""A collection's builds as an operator sees them: list, describe, compare, prune.

The CLI (``mmsearch builds``) and the HTTP API call these same functions, so both
show the same statuses (``governance/lifecycle.py``) and prune by the same rules.
Everything returned is JSON-ready through ``as_dict``.

Pruning is the one write here. It never removes what answers searches or is one
rollback away (live, canary, previous), nor a build still being written (a first ingest
not finished, the staged candidate that ``ingest --stage`` runs fill), and it runs
under the collection's writer lock so that no ingest is writing the build it removes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from mmsearch.builds.history import read_runs
from mmsearch.builds.lifecycle import build_status, protected_builds
from mmsearch.collection_state import CollectionState
from mmsearch.config import Settings
from mmsearch.errors import MMSearchError
from mmsearch.index.open import drop_build_index, open_build_index
from mmsearch.manifest import BUILDING, BuildManifest, manifest_json
from mmsearch.workspace import CollectionDir
from mmsearch.writer_lock import collection_writer

SAMPLE_IDS = 20
WEIGHTS_MARK = "@sha256:"


@dataclass
class BuildSummary:
    build_id: str
    created_at: str | None
    updated_at: str | None
    status: str  # live | canary | previous | candidate | retired | building
    encoders: dict[str, str]  # role -> "spec@short-version"
    items: int
    gate: str | None  # the publish gate's verdict, when one was run
    table_version: int | None
    published_at: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ItemChanges:
    """Items of B against A, by content hash (the record and its image bytes)."""

    added: int = 0
    removed: int = 0
    changed: int = 0
    unchanged: int = 0
    added_ids: list[str] = field(default_factory=list)  # samples, at most SAMPLE_IDS each
    removed_ids: list[str] = field(default_factory=list)
    changed_ids: list[str] = field(default_factory=list)


@dataclass
class BuildDiff:
    a: str
    b: str
    encoders: list[str]
    mapping: list[str]
    schema: list[str]
    items: ItemChanges

    @property
    def same(self) -> bool:
        changes = self.items
        return not (self.encoders or self.mapping or self.schema) and not (
            changes.added or changes.removed or changes.changed
        )

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "same": self.same}


def short_version(version: str) -> str:
    """Enough of an encoder version to tell two apart in a table: the weights' digest
    prefix when there is one (``model@sha256:<hex>``), else the version itself."""
    _, mark, digest = version.partition(WEIGHTS_MARK)
    return digest[:12] if mark else version[:24]


def _summary(build_id: str, manifest: BuildManifest, state: CollectionState) -> BuildSummary:
    gate = manifest.gate
    return BuildSummary(
        build_id=build_id,
        created_at=manifest.created_at,
        updated_at=manifest.updated_at,
        status=build_status(state, manifest.model_copy(update={"build_id": build_id})),
        encoders={
            role: f"{e.spec}@{short_version(e.version or '?')}"
            for role, e in manifest.encoders.items()
        },
        items=manifest.counts.items,
        gate=gate.verdict if gate is not None else None,
        table_version=manifest.table_version,
        published_at=manifest.published_at,
    )


def list_builds(collection: CollectionDir) -> list[BuildSummary]:
    """Every build with a manifest, newest first."""
    state = collection.state()
    found = []
    for build_id in reversed(collection.build_ids()):
        try:
            manifest = collection.manifest(build_id)
        except MMSearchError:
            continue  # a manifest being replaced or damaged: the next listing shows it
        found.append(_summary(build_id, manifest, state))
    return found


def _manifest(collection: CollectionDir, build_id: str) -> BuildManifest:
    return collection.manifest(collection.require_build(build_id))


def describe_build(collection: CollectionDir, build_id: str, runs: int = 10) -> dict[str, Any]:
    """One build in full: its summary, encoders, mapping, schema, sources, the newest
    ``runs`` entries of its history, its publishes and its gate result."""
    manifest = _manifest(collection, build_id)
    history = read_runs(collection, build_id)
    return {
        **_summary(build_id, manifest, collection.state()).as_dict(),
        "state": manifest.state,
        "mmsearch_version": manifest.mmsearch_version,
        "schema_version": manifest.schema_version,
        # As the manifest stores them (the same JSON as before the manifest was typed).
        "encoders_full": manifest_json(manifest.encoders),
        "mapping": manifest_json(manifest.mapping),
        "attributes": manifest_json(manifest.attributes),
        "sources": manifest_json(manifest.sources),
        "counts": manifest_json(manifest.counts),
        "errors": manifest_json(manifest.errors),
        "gate_result": manifest_json(manifest.gate),
        "publishes": manifest_json(manifest.publishes),
        "published_by": manifest.published_by,
        "runs_total": len(history),
        "runs": [entry.as_dict() for entry in history[-runs:]] if runs > 0 else [],
    }


def diff_builds(
    collection: CollectionDir, a: str, b: str, settings: Settings | None = None
) -> BuildDiff:
    """How build ``b`` differs from build ``a``: encoders, mapping, attribute schema, and
    its items against a's (each build read at the version its manifest publishes)."""
    first, second = _manifest(collection, a), _manifest(collection, b)
    return BuildDiff(
        a=a,
        b=b,
        encoders=_encoder_changes(first, second),
        mapping=_mapping_changes(first, second),
        schema=_schema_changes(first, second),
        items=_item_changes(
            _hashes(collection, first, settings), _hashes(collection, second, settings)
        ),
    )


def _hashes(
    collection: CollectionDir, manifest: BuildManifest, settings: Settings | None
) -> dict[str, str]:
    if manifest.state == BUILDING:
        return {}  # not published yet: its table holds no visible version
    return open_build_index(collection, manifest, settings).content_hashes()


def _encoder_changes(first: BuildManifest, second: BuildManifest) -> list[str]:
    old, new = first.encoders, second.encoders
    found = []
    for role in sorted(set(old) | set(new)):
        before, after = old.get(role), new.get(role)
        if before is None or after is None:
            found.append(f"{role}: {'only in B' if before is None else 'only in A'}")
            continue
        for key in ("spec", "version", "dim"):
            if getattr(before, key) != getattr(after, key):
                found.append(f"{role} {key}: {getattr(before, key)} -> {getattr(after, key)}")
    return found


def _mapping_changes(first: BuildManifest, second: BuildManifest) -> list[str]:
    old, new = first.mapping.model_dump(), second.mapping.model_dump()
    return [f"{key}: {old[key]} -> {new[key]}" for key in old if old[key] != new[key]]


def _schema_changes(first: BuildManifest, second: BuildManifest) -> list[str]:
    found = []
    if first.schema_version != second.schema_version:
        found.append(f"schema version: {first.schema_version} -> {second.schema_version}")
    old = {s.field: s.kind for s in first.attributes}
    new = {s.field: s.kind for s in second.attributes}
    for name in sorted(set(old) | set(new)):
        if name not in new:
            found.append(f"attribute {name} ({old[name]}): only in A")
        elif name not in old:
            found.append(f"attribute {name} ({new[name]}): only in B")
        elif old[name] != new[name]:
            found.append(f"attribute {name}: {old[name]} -> {new[name]}")
    return found


def _item_changes(first: dict[str, str], second: dict[str, str]) -> ItemChanges:
    added = sorted(i for i in second if i not in first)
    removed = sorted(i for i in first if i not in second)
    changed = sorted(i for i in second if i in first and first[i] != second[i])
    return ItemChanges(
        added=len(added),
        removed=len(removed),
        changed=len(changed),
        unchanged=len(second) - len(added) - len(changed),
        added_ids=added[:SAMPLE_IDS],
        removed_ids=removed[:SAMPLE_IDS],
        changed_ids=changed[:SAMPLE_IDS],
    )


def prune_plan(collection: CollectionDir, keep: int) -> list[str]:
    """The builds ``prune_builds`` would remove, oldest first (nothing is written)."""
    if keep < 0:
        raise MMSearchError(f"--keep must be 0 or more, not {keep}.")
    state = collection.state()
    # The staged candidate is one that successive ``ingest --stage`` runs are still filling.
    protected = protected_builds(state) | ({state.staged} if state.staged else set())
    ready: list[str] = []
    for build_id in reversed(collection.build_ids()):
        try:
            manifest = collection.manifest(build_id)
        except MMSearchError:
            continue  # unreadable: never removed on a guess
        if manifest.state == BUILDING or manifest.pending_live:
            continue  # still being written, or about to go live
        if build_id not in protected:
            ready.append(build_id)
    # The N newest ready builds count protected ones too: "keep 2" keeps live + one more.
    newest = [b for b in reversed(collection.build_ids()) if b in protected or b in ready]
    kept = set(newest[:keep]) | protected
    return sorted(b for b in ready if b not in kept)


def prune_builds(
    collection: CollectionDir,
    keep: int,
    *,
    dry_run: bool = False,
    wait: bool = True,
) -> list[str]:
    """Remove all but the ``keep`` newest ready builds, never live, canary or previous,
    never a build being written; returns the removed (or, dry, removable) build ids.

    The lock is held throughout: an ingest creating or finishing a build waits, and the
    plan is made inside it, so what it decides on is what it removes."""
    if dry_run:
        return prune_plan(collection, keep)
    with collection_writer(collection.folder, purpose=f"builds prune --keep {keep}", wait=wait):
        doomed = prune_plan(collection, keep)
        for build_id in doomed:
            manifest = collection.manifest(build_id)
            if manifest.table:
                drop_build_index(collection, manifest)
            collection.remove_build_files(build_id)
    return doomed
