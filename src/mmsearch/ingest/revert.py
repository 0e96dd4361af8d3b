"""Undo a bad batch: bring a build's table back to the version before one of its runs.

Every ingest run, item PUT and item DELETE is a table version, and the run history
(``ingest/history.py``) records the version each started from. A revert restores that
version as a *new* version (LanceDB keeps the old ones), publishes it in the manifest
(readers pin to the manifest's ``table_version``, so a running service answers from it
on its next request) and appends a ``revert`` entry, which can itself be reverted.

A table version holds every row, so restoring the version before run R also undoes
every write after R. Those runs are listed in the report, never lost silently, and the
caller is told before anything is written (``plan_revert``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from mmsearch.builds.history import append_run, find_run, note_run, read_runs
from mmsearch.builds.lifecycle import build_status
from mmsearch.builds.run_records import RunDetail, RunEntry, RunSummary
from mmsearch.clock import utc_now
from mmsearch.config import Settings
from mmsearch.errors import MMSearchError
from mmsearch.graph.make import remake_after_item_write
from mmsearch.index.open import open_build_index
from mmsearch.ingest.builds import finish_pending_publish, writable_live_index
from mmsearch.manifest import BUILDING, BuildManifest
from mmsearch.workspace import CollectionDir, Workspace, new_id
from mmsearch.writer_lock import collection_writer

SAMPLE_IDS = 20


class RevertRefused(MMSearchError):
    """A revert that cannot be made as asked; nothing was written."""


@dataclass(frozen=True)
class LaterRun:
    """A write after the reverted run whose effect the revert undoes too."""

    run_id: str
    kind: str
    started_at: str | None
    finished_at: str | None


@dataclass
class RevertPlan:
    """What a revert would do, worked out without writing (for the confirmation)."""

    collection: str
    build_id: str
    build_status: str
    run: RunEntry
    restore_version: int
    later_runs: list[LaterRun]


@dataclass
class RevertReport:
    collection: str
    build_id: str
    build_status: str
    run_id: str  # the run that was reverted
    run_kind: str
    revert_id: str  # this revert's own entry in the history: revert it to redo
    restored_version: int  # the table version whose rows the build holds again
    table_version_before: int
    table_version_after: int
    items_before: int
    items_after: int
    restored: int  # ids back in the build (the reverted writes had removed them)
    removed: int  # ids gone again (the reverted writes had added them)
    changed: int  # ids whose content went back to the earlier record
    restored_ids: list[str] = field(default_factory=list)  # samples, at most SAMPLE_IDS each
    removed_ids: list[str] = field(default_factory=list)
    changed_ids: list[str] = field(default_factory=list)
    later_runs: list[LaterRun] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def plan_revert(
    settings: Settings, collection_name: str, run_id: str, *, build_id: str | None = None
) -> RevertPlan:
    """Check a revert can be made and say what it would undo; writes nothing."""
    collection = Workspace(settings.home).collection(collection_name)
    return _plan(collection, run_id, build_id)


def revert_run(
    settings: Settings,
    collection_name: str,
    run_id: str,
    actor: str,
    *,
    build_id: str | None = None,
    wait: bool = True,
) -> RevertReport:
    """Restore the table of the run's build to the version before ``run_id``.

    Without ``build_id`` the run must belong to the live build: reverting a run of another
    build changes nothing searches see, which is rarely what was meant; naming the build
    says it was. Runs under the writer lock, like every write."""
    collection = Workspace(settings.home).collection(collection_name)
    with collection_writer(collection.folder, purpose=f"runs revert {run_id}", wait=wait):
        finish_pending_publish(collection)
        plan = _plan(collection, run_id, build_id)
        return _revert(settings, collection, plan, actor)


def _plan(collection: CollectionDir, run_id: str, build_id: str | None) -> RevertPlan:
    found_build, entry = find_run(collection, run_id)
    manifest = collection.manifest(found_build)
    status = build_status(collection.state(), manifest)
    live = collection.alias("live")
    if build_id is not None and build_id != found_build:
        raise RevertRefused(
            f"Run {run_id} wrote build {found_build} ({status}) of '{collection.name}', not "
            f"build {build_id}. Nothing was reverted; to revert it in its own build, pass "
            f"--build {found_build}."
        )
    if build_id is None and found_build != live:
        raise RevertRefused(
            f"Run {run_id} wrote build {found_build} ({status}), not the live build "
            f"{live or '(none)'} of '{collection.name}', so reverting it would change nothing "
            f"searches see. Nothing was reverted; if that build is what you mean, pass "
            f"--build {found_build}."
        )
    if manifest.state == BUILDING:
        raise RevertRefused(
            f"Build {found_build} of '{collection.name}' is still being built; finish its "
            "ingest (re-run the same command) before reverting its runs."
        )
    if entry.table_version_before is None:
        raise RevertRefused(
            f"Run {run_id} created build {found_build}: before it the build had no rows. "
            f"To stop searching it, roll back to the previous build (mmsearch rollback -c "
            f"{collection.name}); to remove it, see mmsearch builds prune."
        )
    history = read_runs(collection, found_build)
    position = next(n for n, e in enumerate(history) if e.run_id == run_id)
    later = history[position + 1 :]
    undone_by = [e for e in later if e.kind == "revert" and e.detail.reverted_run == run_id]
    if undone_by:
        by = undone_by[-1]
        raise RevertRefused(
            f"Run {run_id} was already reverted by {by.run_id} at {by.finished_at}. To undo "
            f"that revert instead, run: mmsearch runs revert -c {collection.name} {by.run_id}"
            + (f" --build {found_build}" if found_build != live else "")
        )
    return RevertPlan(
        collection.name,
        found_build,
        status,
        entry,
        int(entry.table_version_before),
        [LaterRun(e.run_id, e.kind, e.started_at, e.finished_at) for e in later],
    )


def _revert(
    settings: Settings, collection: CollectionDir, plan: RevertPlan, actor: str
) -> RevertReport:
    manifest = collection.manifest(plan.build_id)
    index, notices = writable_live_index(collection, manifest, settings)
    before = index.version()
    current = index.content_hashes()
    target = _hashes_at(collection, manifest, settings, plan)
    started_at = utc_now()
    index.restore(plan.restore_version)
    after = index.version()
    items = index.row_count()
    # The graph of the restored rows, before the manifest (the readers' commit point).
    remake_after_item_write(collection.build_dir(plan.build_id), manifest, index)
    revert_id = new_id("run")
    restored = sorted(i for i in target if i not in current)
    removed = sorted(i for i in current if i not in target)
    changed = sorted(i for i in target if i in current and current[i] != target[i])
    counts = {
        "restored": len(restored),
        "removed": len(removed),
        "changed": len(changed),
        "items": items,
    }
    later_ids = [run.run_id for run in plan.later_runs]
    summary = RunSummary(
        run_id=revert_id,
        kind="revert",
        actor=actor,
        started_at=started_at,
        finished_at=utc_now(),
        counts=dict(counts),
        table_version=after,
        reverted_run=plan.run.run_id,
        later_runs_undone=later_ids,
    )
    manifest.counts = manifest.counts.model_copy(update={"items": items})
    manifest.table_version = after
    manifest.updated_at = summary.finished_at
    note_run(manifest, summary, before)
    collection.write_manifest(plan.build_id, manifest)  # readers switch to ``after`` here
    append_run(
        collection,
        RunEntry(
            kind="revert",
            run_id=revert_id,
            build_id=plan.build_id,
            started_at=started_at,
            finished_at=summary.finished_at,
            counts=dict(counts),
            table_version_before=before,
            table_version_after=after,
            actor=actor,
            detail=RunDetail(
                reverted_run=plan.run.run_id,
                restored_version=plan.restore_version,
                later_runs_undone=later_ids[:SAMPLE_IDS],
            ),
        ),
    )
    return RevertReport(
        collection=plan.collection,
        build_id=plan.build_id,
        build_status=plan.build_status,
        run_id=plan.run.run_id,
        run_kind=plan.run.kind,
        revert_id=revert_id,
        restored_version=plan.restore_version,
        table_version_before=before,
        table_version_after=after,
        items_before=len(current),
        items_after=items,
        restored=len(restored),
        removed=len(removed),
        changed=len(changed),
        restored_ids=restored[:SAMPLE_IDS],
        removed_ids=removed[:SAMPLE_IDS],
        changed_ids=changed[:SAMPLE_IDS],
        later_runs=plan.later_runs,
        notices=notices,
    )


def _hashes_at(
    collection: CollectionDir, manifest: BuildManifest, settings: Settings, plan: RevertPlan
) -> dict[str, str]:
    """The rows at the version to restore, or a refusal naming why it is gone."""
    at = manifest.model_copy(update={"table_version": plan.restore_version})
    try:
        return open_build_index(collection, at, settings).content_hashes()
    except MMSearchError:
        raise RevertRefused(
            f"Run {plan.run.run_id} cannot be reverted: build {plan.build_id} no longer has "
            f"table version {plan.restore_version}, the one before it (versions older than "
            "7 days are pruned after each ingest). Nothing was changed. To undo it, ingest "
            "the catalog as it was before that run with --sync, or roll back to the "
            f"previous build (mmsearch rollback -c {plan.collection})."
        ) from None
