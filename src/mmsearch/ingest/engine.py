"""Ingest: catalog rows → validated items → images → vectors → a build's table.

Every input row is accounted for: it lands (added or updated), is skipped as
unchanged, or becomes one line of the run's errors.jsonl — and the run checks that
these add up. Rows are written in committed chunks, each a table version, with a
progress record after each; readers keep seeing the version the manifest names until
the run completes, so a killed run changes nothing visible, and running the same
command again resumes it without encoding again the rows it had written. One writer
holds a collection at a time, across processes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import cast

from mmsearch.builds.history import append_run, entry_from_summary, note_run
from mmsearch.builds.run_records import ProgressRecord, RunOptions, RunSource, RunSummary
from mmsearch.catalog.item import Item, RawRecord, RowError
from mmsearch.catalog.mapping import FieldMapping
from mmsearch.catalog.normalise import normalise_record
from mmsearch.clock import utc_now as now
from mmsearch.config import Settings
from mmsearch.errors import ImageError, MMSearchError
from mmsearch.graph.make import make_build_graph
from mmsearch.graph.store import has_graph
from mmsearch.index.base import BuildIndex
from mmsearch.index.open import open_build_index
from mmsearch.ingest.builds import (
    create_build,
    discard_build,
    encoder_differences,
    finish_pending_publish,
    publish_new_build,
    refuse,
    remove_if_empty,
    store_reference,
    writable_live_index,
)
from mmsearch.ingest.encoders import EncoderSet
from mmsearch.ingest.executors import ChunkExecutor, create_executor
from mmsearch.ingest.item_images import ItemImages
from mmsearch.ingest.moderating import bound_moderation
from mmsearch.ingest.pipeline import Pending
from mmsearch.ingest.planning import IngestPlan
from mmsearch.ingest.report import (
    ERRORS_KEPT_IN_REPORT,
    IngestOptions,
    IngestReport,
    check_accounting,
    new_counts,
)
from mmsearch.ingest.runlog import (
    ERRORS_FILE,
    RunLog,
    UnfinishedRun,
    resume_key,
    unfinished_runs,
)
from mmsearch.ingest.sources import catalog_sha256
from mmsearch.ingest.staging import (
    Staging,
    build_kind,
    kept_unfinished,
    mark_staged,
    missed_by_candidate,
    plan_run,
    seed_candidate,
    seeded_version,
    settle_stage,
    stage_notices,
)
from mmsearch.ingest.write_access import NOT_WRITABLE, WriteAccess
from mmsearch.manifest import READY, BuildManifest, ErrorSummary, IndexSummary, ManifestCounts
from mmsearch.workspace import CollectionDir, Workspace, check_collection_name, new_id
from mmsearch.writer_lock import WriterInfo, collection_writer

SAMPLE_ROWS = 1000
PROGRESS_EVERY_ROWS = 64
ProgressCallback = Callable[[int], None]


@dataclass
class _Target:
    build_id: str
    manifest: BuildManifest | None  # None in a dry run, which writes no manifest
    index: BuildIndex
    new_build: bool
    visible_version: int | None
    run_id: str
    resumed: UnfinishedRun | None
    notices: list[str] = field(default_factory=list)


@dataclass
class _RunState:
    """Row bookkeeping of one run."""

    known_before: dict[str, str]  # what readers see: decides added / updated / unchanged
    known_now: dict[str, str]  # what the table holds: rows an interrupted attempt wrote
    counts: dict[str, int] = field(default_factory=new_counts)
    seen: dict[str, int] = field(default_factory=dict)
    catalog_ids: set[str] = field(default_factory=set)
    rows_without_id: int = 0
    writing: bool = True
    unreported: int = 0
    # A restricted writer (None: unrestricted) and the stored ids it may write, as the
    # store selected them with its access node when the run started.
    access: WriteAccess | None = None
    writable: set[str] = field(default_factory=set)


class Ingestor:
    """Runs one ingest of one catalog into one collection."""

    def __init__(
        self,
        settings: Settings,
        progress: ProgressCallback | None = None,
        image_progress: ProgressCallback | None = None,
        on_wait: Callable[[WriterInfo | None], None] | None = None,
    ):
        self.settings = settings
        self.progress = progress or (lambda done: None)
        # Images embedded: the figure that bounds ingest with a CLIP encoder.
        self.image_progress = image_progress or (lambda done: None)
        self.on_wait = on_wait
        self.images = ItemImages(settings)
        self._staging: Staging | None = None  # set per run by _run

    def close(self) -> None:
        self.images.close()

    def run(
        self, options: IngestOptions, on_plan: Callable[[IngestPlan], None] | None = None
    ) -> IngestReport:
        """Plan (every argument and schema problem raises here), then ingest.

        ``on_plan`` is called once the plan stands and before the work starts: the CLI
        starts its progress bar there, with the row total, so errors never show one."""
        try:
            return self._run(options, on_plan or (lambda plan: None))
        finally:
            self.close()

    def _run(self, options: IngestOptions, on_plan: Callable[[IngestPlan], None]) -> IngestReport:
        check_collection_name(options.collection)
        if options.writer_groups is not None and (options.new_build or options.stage):
            raise MMSearchError(
                "A key bound by ACL groups may not start a new or staged build: it would "
                "replace items of other groups. Update the live build instead."
            )
        workspace = Workspace(self.settings.home)
        if options.dry_run:
            found = workspace.find(options.collection)
            plan, self._staging = plan_run(self.settings, options, found)
            if self._staging is not None and plan.live is None and self._staging.copy_from:
                plan = replace(plan, live=self._staging.copy_from)  # what the copy would hold
            on_plan(plan)
            return self._dry_run(plan, options, found)
        folder = workspace.folder_of(options.collection)
        with collection_writer(
            folder, purpose=options.purpose, wait=options.wait, on_wait=self.on_wait
        ):
            existing = workspace.find(options.collection)
            if existing is not None:
                finish_pending_publish(existing)
            plan, self._staging = plan_run(self.settings, options, existing)
            encoders = EncoderSet.load(plan.encoder_specs)
            if self._staging is not None:
                plan = settle_stage(plan, self._staging, encoders.describe())
            elif plan.live is not None:
                differences = encoder_differences(plan.live, encoders.describe())
                if differences:
                    raise refuse(options.collection, differences)
            on_plan(plan)
            collection = workspace.create_or_open(options.collection)
            try:
                report = self._write(plan, options, collection, encoders)
            except BaseException:
                if existing is None:
                    remove_if_empty(collection)
                raise
            if existing is None and not report.committed:
                remove_if_empty(collection)
            if self._staging is not None and report.committed and report.build_id:
                report.staged = True
                report.notices.extend(
                    stage_notices(options.collection, report.build_id, self._staging)
                )
            elif report.committed and report.ingested + report.counts["removed"]:
                missed = missed_by_candidate(collection, report.build_id or "")
                report.notices.extend([missed] if missed else [])
            return report

    # -- writing -------------------------------------------------------------------------

    def _write(
        self,
        plan: IngestPlan,
        options: IngestOptions,
        collection: CollectionDir,
        encoders: EncoderSet,
    ) -> IngestReport:
        timings: dict[str, float] = dict.fromkeys(
            ("read", "decode", "encode_text", "encode_image", "write", "index"), 0.0
        )
        source_info = {
            "path": str(plan.catalog),
            "format": plan.source.format,
            "sha256": catalog_sha256(plan.source, plan.catalog),
        }
        key = resume_key(
            {
                "source": source_info,
                "mapping": plan.mapping.model_dump(),
                "specs": [vars(spec) for spec in plan.specs],
                "encoders": plan.encoder_specs,
                "images_root": [str(root) for root in plan.images_root.roots],
                "sync": options.sync,
                "strict": options.strict,
                "ocr": self.settings.ocr,
                # A run is resumed only by the writer that started it.
                **(
                    {"writer_groups": sorted(options.writer_groups)}
                    if options.writer_groups is not None
                    else {}
                ),
            }
        )
        moderation = bound_moderation(collection, self.settings)  # before any build exists
        target = self._target(collection, plan, encoders, key)
        if moderation is not None:
            moderation.check_columns(collection.name, target.index.schema.names)
        state = _RunState(
            known_before=(
                {}
                if target.visible_version is None
                else target.index.content_hashes(target.visible_version)
            ),
            known_now={},
        )
        state.known_now = (
            target.index.content_hashes() if target.resumed is not None else state.known_before
        )
        self._restrict(options, collection, target.index, state)
        started_at = now()
        log = RunLog.start(
            collection.build_dir(target.build_id) / "runs" / target.run_id,
            ProgressRecord(
                run_id=target.run_id,
                build_id=target.build_id,
                resume_key=key,
                started_at=started_at,
                source=RunSource.model_validate(source_info),
                rows_total=plan.total_rows,
                table_version_visible=target.visible_version,
                options=RunOptions(sync=options.sync, strict=options.strict),
            ),
            ERRORS_KEPT_IN_REPORT,
        )
        chunks = create_executor(
            options.executor,
            self.settings,
            encoders,
            target.index.schema,
            target.run_id,
            timings,
            ray_address=options.ray_address,
            moderation=moderation,
        )
        try:
            self._ingest_rows(plan, options, target, state, log, chunks, timings)
        except BaseException:
            if target.new_build and target.index.row_count() == 0:
                log.finish("failed")
                discard_build(collection, target.build_id)
            raise
        finally:
            chunks.close()
        removed = self._sync(options, target, state)
        if options.strict and state.counts["failed"]:
            return self._refuse_strict(plan, options, collection, target, state, log, timings)
        tick = time.perf_counter()
        index_info = target.index.refresh_indexes()
        timings["index"] += time.perf_counter() - tick
        check_accounting(state.counts)
        counts = {**state.counts, "items": target.index.row_count()}
        if target.new_build and counts["items"] == 0:
            log.finish("failed")
            discard_build(collection, target.build_id)
            target.notices.append("no row landed, so no build was created")
            return self._report(plan, options, target, counts, log, timings, None, False)
        build_dir = collection.build_dir(target.build_id)
        changed = counts["added"] + counts["updated"] + len(removed)
        if (
            target.manifest is not None
            and (target.manifest.mapping.entities or target.manifest.mapping.entity_text_fields)
            and (changed or not has_graph(build_dir))
        ):
            # Remade whole, before the commit point: the new manifest's readers find it.
            tick = time.perf_counter()
            make_build_graph(build_dir, target.manifest, target.index)
            timings["graph"] = time.perf_counter() - tick
        summary = RunSummary(
            run_id=target.run_id,
            started_at=started_at,
            finished_at=now(),
            resumed=target.resumed is not None,
            source=RunSource.model_validate(source_info),
            mapping=plan.mapping,
            counts=dict(counts),
            skipped_fields=plan.skipped_fields,
            timings_s={k: round(v, 4) for k, v in timings.items()},
            errors_file=str(Path("runs") / target.run_id / ERRORS_FILE),
            table_version=target.index.version(),
            removed_ids_sample=removed[:20],
        )
        manifest = target.manifest
        assert manifest is not None, "only a dry run has no manifest, and it writes nothing"
        manifest.state = READY
        manifest.updated_at = now()
        manifest.counts = ManifestCounts(items=counts["items"], last_run=counts)
        manifest.errors = ErrorSummary(count=counts["failed"], file=summary.errors_file)
        manifest.indexes = IndexSummary.model_validate(index_info)
        manifest.table_version = target.index.version()
        note_run(manifest, summary, target.visible_version)  # the log gets it once committed
        going_live = target.new_build and self._staging is None
        if going_live:
            manifest.pending_live = True
        elif self._staging is not None:  # named first: a crash before the commit names a
            mark_staged(collection, target.build_id)  # building build, which no one uses
        manifest_path = collection.write_manifest(target.build_id, manifest)  # commit point
        append_run(collection, entry_from_summary(target.build_id, summary))
        if going_live:
            publish_new_build(collection, target.build_id, options.purpose)
        log.finish("done", summary)
        target.index.prune_versions()  # only now does the manifest name the latest version
        if target.new_build:
            target.notices.extend(store_reference(collection, target.build_id, self.settings))
        return self._report(plan, options, target, counts, log, timings, manifest_path, True)

    def _target(
        self, collection: CollectionDir, plan: IngestPlan, encoders: EncoderSet, key: str
    ) -> _Target:
        """The build to write: the one the plan updates (live, or the staged candidate), an
        unfinished one of this kind of run to resume, or a new one.

        An unfinished build is resumed only by a run of its own kind with the same resume
        key: a staged copy of live is never finished and published by a plain --new-build
        of the same catalog, and an interrupted rebuild is kept for ``mmsearch rebuild``."""
        notices: list[str] = list(self._staging.notices) if self._staging else []
        kind = "ingest" if self._staging is None else "stage"
        if plan.live is not None:
            build_id = plan.live.build_id
            runs = unfinished_runs(collection, build_id)
            resumed = next((run for run in runs if run.key == key), None)
            index, undone = writable_live_index(
                collection, plan.live, self.settings, resumed.run_id if resumed else ""
            )
            notices.extend(undone)
            visible = (
                plan.live.table_version if plan.live.table_version is not None else index.version()
            )
            notices.extend(kept_unfinished(collection))
            run_id = resumed.run_id if resumed else new_id("run")
            return _Target(build_id, plan.live, index, False, visible, run_id, resumed, notices)
        for build_id in collection.unfinished_builds():
            manifest = collection.manifest(build_id)
            if build_kind(manifest) == "rebuild":
                notices.append(
                    f"the unfinished rebuild {build_id} is kept; re-run its mmsearch rebuild "
                    "command to resume it"
                )
                continue
            match = next((r for r in unfinished_runs(collection, build_id) if r.key == key), None)
            if match is not None and build_kind(manifest) == kind:
                index = open_build_index(collection, manifest, self.settings, for_writing=True)
                notices.append(
                    f"resumed the interrupted first ingest of build {build_id} "
                    f"({match.rows_done} rows had been read)"
                )
                visible = seeded_version(manifest)
                return _Target(
                    build_id, manifest, index, True, visible, match.run_id, match, notices
                )
            discard_build(collection, build_id)
            notices.append(f"removed the unfinished build {build_id} of an interrupted ingest")
        build_id, manifest, index = create_build(
            collection, plan.mapping, plan.specs, encoders, self.settings
        )
        visible = None
        if self._staging is not None:
            visible = seed_candidate(
                collection, manifest, index, self._staging.copy_from, self.settings
            )
        return _Target(build_id, manifest, index, True, visible, new_id("run"), None, notices)

    def _ingest_rows(
        self,
        plan: IngestPlan,
        options: IngestOptions,
        target: _Target,
        state: _RunState,
        log: RunLog,
        chunks: ChunkExecutor | None,
        timings: dict[str, float],
    ) -> None:
        """Read every row; commit a chunk when it is full by rows or by image bytes."""
        raw_budget = self.settings.ingest_memory_mb * 1024 * 1024 // 2
        pending: list[Pending] = []
        problems: list[RowError] = []
        rows_in_chunk = pending_bytes = 0
        tick = time.perf_counter()
        for row in plan.source.rows():
            state.counts["rows"] += 1
            rows_in_chunk += 1
            found = self._settle(row, plan, state, problems)
            if found is None:
                self._advance(state, 1)
            else:
                pending.append(found)
                pending_bytes += found.raw_bytes
            if rows_in_chunk >= self.settings.write_batch_rows or pending_bytes >= raw_budget:
                timings["read"] += time.perf_counter() - tick
                self._commit(options, target, state, log, chunks, pending, problems)
                pending, problems, rows_in_chunk, pending_bytes = [], [], 0, 0
                tick = time.perf_counter()
        timings["read"] += time.perf_counter() - tick
        self._commit(options, target, state, log, chunks, pending, problems)
        self._advance(state, 0, flush=True)

    def _settle(
        self,
        row: RawRecord | RowError,
        plan: IngestPlan,
        state: _RunState,
        problems: list[RowError],
    ) -> Pending | None:
        """Decide a row's fate short of encoding; None unless it must be encoded."""
        if isinstance(row, RowError):
            state.rows_without_id += 1
            return _failed(state, problems, row)
        result = normalise_record(row, plan.mapping, plan.specs, plan.images_root)
        if isinstance(result, RowError):
            if result.item_id:
                state.catalog_ids.add(result.item_id)
            else:
                state.rows_without_id += 1
            return _failed(state, problems, result)
        state.catalog_ids.add(result.id)
        if result.id in state.seen:
            reason = f"duplicate id: row {state.seen[result.id]} has the same id; kept that one"
            error = RowError(result.source, result.row, reason, plan.mapping.id, result.id)
            return _failed(state, problems, error)
        state.seen[result.id] = result.row
        if state.access is not None and not _may_write(result, state.access, state):
            error = RowError(result.source, result.row, NOT_WRITABLE, None, result.id)
            return _failed(state, problems, error)
        problems.extend(result.warnings)
        state.counts["warnings"] += len(result.warnings)
        result.ocr = self.settings.ocr and bool(result.images)
        blobs = self._read_images(result, plan.mapping, state, problems)
        if blobs is None:
            return None
        digest = result.content_sha256()
        if state.known_before.get(result.id) == digest:
            state.counts["unchanged"] += 1
            return None
        if state.known_now.get(result.id) == digest:  # written before the interruption
            state.counts["resumed"] += 1
            state.counts["updated" if result.id in state.known_before else "added"] += 1
            return None
        return Pending(result, blobs)

    def _commit(
        self,
        options: IngestOptions,
        target: _Target,
        state: _RunState,
        log: RunLog,
        chunks: ChunkExecutor | None,
        pending: list[Pending],
        problems: list[RowError],
    ) -> None:
        if options.strict and state.counts["failed"]:
            state.writing = False  # the run will be refused: encode nothing more
        if pending and chunks is not None and state.writing:
            before = len(problems)

            def on_batch(items: int, images: int) -> None:
                self._advance(state, items)
                if images:
                    self.image_progress(images)

            table, written = chunks.encode(pending, problems, on_batch)
            state.counts["failed"] += len(problems) - before
            if table is not None:
                tick = time.perf_counter()
                target.index.upsert(table)
                chunks.timings["write"] += time.perf_counter() - tick
            for item in written:
                state.counts["updated" if item.id in state.known_before else "added"] += 1
        elif pending:
            for entry in pending:  # dry run, or a refused strict run: what would land
                if chunks is None and not self._decodes(entry, problems):
                    state.counts["failed"] += 1
                    continue
                state.counts["updated" if entry.item.id in state.known_before else "added"] += 1
            self._advance(state, len(pending))
        log.record(problems)
        log.commit(state.counts["rows"], state.counts, target.index.version())

    def _decodes(self, entry: Pending, problems: list[RowError]) -> bool:
        """Dry run: would this item's images decode? (At the bounded size: cheap.)"""
        item = entry.item
        try:
            self.images.check_decodes(entry.blobs, item.images)
        except ImageError as exc:
            problems.append(RowError(item.source, item.row, str(exc), "image", item.id))
            return False
        return True

    def _advance(self, state: _RunState, rows: int, *, flush: bool = False) -> None:
        state.unreported += rows
        if state.unreported and (flush or state.unreported >= PROGRESS_EVERY_ROWS):
            self.progress(state.unreported)
            state.unreported = 0

    def _sync(self, options: IngestOptions, target: _Target, state: _RunState) -> list[str]:
        """--sync: remove items the catalog no longer has; never on a partial id list."""
        if not options.sync:
            return []
        if state.rows_without_id:
            target.notices.append(
                f"--sync removed nothing: {state.rows_without_id} rows have no readable id, so "
                "the catalog's id list is incomplete; fix them and run again"
            )
            return []
        gone = sorted(
            i
            for i in state.known_before
            if i not in state.catalog_ids and (state.access is None or i in state.writable)
        )
        state.counts["removed"] = len(gone)
        if (
            state.writing
            and not options.dry_run
            and not (options.strict and state.counts["failed"])
        ):
            # A restricted writer removes only what it may see: the store selects those.
            present = (
                target.index.content_hashes()
                if state.access is None
                else state.access.writable_ids(target.index)
            )
            target.index.delete([i for i in present if i not in state.catalog_ids])
        return gone

    def _restrict(
        self,
        options: IngestOptions,
        collection: CollectionDir | None,
        index: BuildIndex | None,
        state: _RunState,
    ) -> None:
        """Bind the run to a restricted writer's groups: which stored ids it may write is
        asked of the store once, with the writer's access node in the query."""
        if options.writer_groups is None:
            return
        default = (
            collection.default_access(self.settings.default_access)
            if collection is not None
            else self.settings.default_access
        )
        state.access = WriteAccess(frozenset(options.writer_groups), default == "public")
        if index is not None and (state.known_before or state.known_now):
            state.writable = state.access.writable_ids(index)

    def _refuse_strict(
        self,
        plan: IngestPlan,
        options: IngestOptions,
        collection: CollectionDir,
        target: _Target,
        state: _RunState,
        log: RunLog,
        timings: dict[str, float],
    ) -> IngestReport:
        """--strict with failed rows: undo every write, as if the run never happened."""
        log.finish("refused")
        if target.new_build:
            discard_build(collection, target.build_id)
        elif target.visible_version is not None:
            target.index.restore(target.visible_version)
        target.notices.append(
            f"--strict: {state.counts['failed']} rows failed, so nothing was written"
        )
        counts = {**state.counts, "items": _items(collection)}
        return self._report(plan, options, target, counts, log, timings, None, False)

    def _dry_run(
        self, plan: IngestPlan, options: IngestOptions, collection: CollectionDir | None
    ) -> IngestReport:
        """Everything but the writes: row errors, image decodes, what would change."""
        known = {}
        live_index = None
        if plan.live is not None and collection is not None:
            live_index = open_build_index(collection, plan.live, self.settings)
            known = live_index.content_hashes()
        state = _RunState(known_before=known, known_now=known, writing=False)
        self._restrict(options, collection, live_index, state)
        timings: dict[str, float] = dict.fromkeys(("read", "decode"), 0.0)
        target = _Target(
            plan.live.build_id if plan.live else "",
            plan.live,
            cast(BuildIndex, _NoIndex()),
            plan.live is None,
            None,
            "dry-run",
            None,
        )
        log = RunLog.in_memory(ERRORS_KEPT_IN_REPORT)
        self._ingest_rows(plan, options, target, state, log, None, timings)
        self._sync(options, target, state)
        check_accounting(state.counts)
        counts = {**state.counts, "items": len(known)}
        report = self._report(plan, options, target, counts, log, timings, None, False)
        report.build_id = plan.live.build_id if plan.live else None
        return report

    def _report(
        self,
        plan: IngestPlan,
        options: IngestOptions,
        target: _Target,
        counts: dict[str, int],
        log: RunLog,
        timings: dict[str, float],
        manifest_path: Path | None,
        committed: bool,
    ) -> IngestReport:
        return IngestReport(
            collection=options.collection,
            build_id=target.build_id or None,
            run_id=target.run_id,
            new_build=target.new_build,
            mapping=plan.mapping,
            attributes=plan.specs,
            counts=counts,
            errors=log.errors,
            warnings=log.warnings,
            errors_path=log.errors_path,
            manifest_path=manifest_path,
            timings=timings,
            skipped_fields=plan.skipped_fields,
            notices=target.notices,
            dry_run=options.dry_run,
            committed=committed,
            resumed=target.resumed is not None,
        )

    def _read_images(
        self, item: Item, mapping: FieldMapping, state: _RunState, problems: list[RowError]
    ) -> list[bytes] | None:
        """Read image bytes (for hashing); a missing, refused or oversized image fails the row."""
        try:
            return self.images.read(item)
        except ImageError as exc:
            field_name = mapping.images[0] if len(mapping.images) == 1 else "image"
            error = RowError(item.source, item.row, str(exc), field_name, item.id)
            return _failed(state, problems, error)


def _may_write(item: Item, access: WriteAccess, state: _RunState) -> bool:
    """Whether a restricted writer may store this row: not over a stored item it cannot
    see, and labelled (its own groups when the row names none) so that it still sees it.

    Checked before the row is compared with what is stored, so that neither "unchanged"
    nor any message tells the writer that a hidden item exists."""
    stored = item.id in state.known_before or item.id in state.known_now
    if stored and item.id not in state.writable:
        return False
    item.acl = access.label(item.acl)
    return access.may_label(item.acl)


def _failed(state: _RunState, problems: list[RowError], error: RowError) -> None:
    state.counts["failed"] += 1
    problems.append(error)
    return None


def _items(collection: CollectionDir) -> int:
    live = collection.alias("live")
    if live is None:
        return 0
    return collection.manifest(live).counts.items


class _NoIndex:
    """The dry run's stand-in for a table: it writes nothing, so it has no versions."""

    def version(self) -> int:
        return 0
