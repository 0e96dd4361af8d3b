"""Rebuild: a build's items re-encoded into a new candidate build (a model upgrade).

A model upgrade must not need the catalog files that fed the build months ago, nor
stop searches: the build keeps what a rebuild needs (each item's texts, attributes,
image locations and checksums), so its rows are streamed out of the source build a
batch at a time, vectors of roles whose encoder (spec and version) did not change are
copied as they are, and the others are encoded again — text from the stored texts,
composed as ingest composes it; images read back from their recorded location and
checked against their sha256. ``live`` keeps answering throughout; the new build is a
candidate, published like any other.

Nothing is lost silently: an item whose image is gone or changed keeps its text side,
is written with the image vectors missing and a record hash no catalog row matches (so
the next ingest of the catalog encodes it again), and is one line of errors.jsonl.

A killed rebuild stays ``building`` (invisible) with a running run record. The same
command resumes it (rows already written are not encoded again); another rebuild
removes it; ingests leave it alone (see ``staging.build_kind``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmsearch.builds.history import append_run, entry_from_summary
from mmsearch.builds.lifecycle import ready_manifest
from mmsearch.builds.run_records import ProgressRecord, RunSummary
from mmsearch.catalog.item import RowError
from mmsearch.catalog.mapping import FieldMapping
from mmsearch.clock import utc_now as now
from mmsearch.config import Settings
from mmsearch.index.base import BuildIndex
from mmsearch.index.open import open_build_index
from mmsearch.index.schema import SCHEMA_VERSION
from mmsearch.ingest.builds import (
    create_build,
    discard_build,
    finish_pending_publish,
    store_reference,
)
from mmsearch.ingest.encoders import EncoderSet
from mmsearch.ingest.rebuild_rows import RowRebuilder
from mmsearch.ingest.remap import RebuildRefused, Remap, plan_remap
from mmsearch.ingest.report import ERRORS_KEPT_IN_REPORT
from mmsearch.ingest.runlog import ERRORS_FILE, RunLog, UnfinishedRun, resume_key, unfinished_runs
from mmsearch.ingest.staging import build_kind, mark_staged, staged_candidate
from mmsearch.manifest import (
    READY,
    BuildManifest,
    EncoderDescription,
    ErrorSummary,
    IndexSummary,
    ManifestCounts,
    RebuildOrigin,
    manifest_json,
)
from mmsearch.workspace import CollectionDir, Workspace, check_collection_name, new_id
from mmsearch.writer_lock import WriterInfo, collection_writer

ProgressCallback = Callable[[int], None]


@dataclass
class RebuildOptions:
    collection: str
    text_encoder: str | None = None
    image_encoder: str | None = None
    mapping: FieldMapping | None = None  # only the roles it sets change
    source_build: str | None = None  # default: the live build
    fetch: bool = False  # download image URLs missing from the cache
    wait: bool = True
    purpose: str = "mmsearch rebuild"


@dataclass
class RebuildReport:
    collection: str
    build_id: str
    source_build: str
    run_id: str
    counts: dict[str, Any]  # items, written, resumed, failed, reused/encoded per role
    errors: list[RowError]
    errors_path: Path | None
    manifest_path: Path | None
    timings: dict[str, float]
    notices: list[str] = field(default_factory=list)
    resumed: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "collection": self.collection,
            "build_id": self.build_id,
            "source_build": self.source_build,
            "run_id": self.run_id,
            "resumed": self.resumed,
            "counts": self.counts,
            "notices": self.notices,
            "errors": [e.as_dict() for e in self.errors[:100]],
            "errors_file": None if self.errors_path is None else str(self.errors_path),
            "manifest": None if self.manifest_path is None else str(self.manifest_path),
            "timings_s": {k: round(v, 4) for k, v in self.timings.items()},
            "publish": f"mmsearch publish -c {self.collection} {self.build_id}",
        }


@dataclass
class _Target:
    build_id: str
    manifest: BuildManifest
    index: BuildIndex
    run_id: str
    key: str
    resumed: UnfinishedRun | None
    notices: list[str]


class Rebuilder:
    """Runs one rebuild of one collection's build, holding the collection's writer lock."""

    def __init__(
        self,
        settings: Settings,
        progress: ProgressCallback | None = None,
        on_wait: Callable[[WriterInfo | None], None] | None = None,
    ):
        self.settings = settings
        self.progress = progress or (lambda done: None)
        self.on_wait = on_wait

    def run(
        self, options: RebuildOptions, on_plan: Callable[[int], None] | None = None
    ) -> RebuildReport:
        """``on_plan(items)`` is called once every refusal is past, before the work starts."""
        check_collection_name(options.collection)
        collection = Workspace(self.settings.home).collection(options.collection)
        with collection_writer(
            collection.folder, purpose=options.purpose, wait=options.wait, on_wait=self.on_wait
        ):
            finish_pending_publish(collection)
            source = self._source(collection, options.source_build)
            remap = plan_remap(source, options.mapping)
            if not (options.text_encoder or options.image_encoder) and not remap.changed:
                # Decided before the models load (that took most of 20 s on a laptop):
                # the same encoder specs and the same mapping leave nothing to do. To
                # re-check the weights behind a spec, name it: then versions are compared.
                raise RebuildRefused(
                    f"Nothing to rebuild: build {source.build_id} already has these "
                    "encoders and this mapping. Name another --text-encoder, --image-encoder "
                    "or --mapping (naming the same encoder re-checks its weights)."
                )
            encoders = EncoderSet.load(encoder_specs(source, options))
            reused = reusable_roles(source, encoders.describe(), remap)
            if set(encoders.describe()) <= reused and not remap.changed:
                raise RebuildRefused(
                    f"Nothing to rebuild: build {source.build_id} already has these "
                    "encoders and this mapping. Name another --text-encoder, --image-encoder "
                    "or --mapping."
                )
            key = resume_key(
                {
                    "rebuild": source.build_id,
                    "table_version": source.table_version,
                    "encoders": manifest_json(encoders.describe()),
                    "mapping": remap.mapping.model_dump(),
                    "fetch": options.fetch,
                }
            )
            target = self._target(collection, source, remap, encoders, reused, key)
            return self._write(
                collection, source, remap, encoders, reused, target, options, on_plan
            )

    def _source(self, collection: CollectionDir, build_id: str | None) -> BuildManifest:
        chosen = build_id or collection.alias("live")
        if chosen is None:
            raise RebuildRefused(
                f"Collection '{collection.name}' has no live build to rebuild; name a ready "
                "build with --from (list them with: mmsearch builds list)."
            )
        manifest = ready_manifest(collection, chosen)
        if manifest.schema_version != SCHEMA_VERSION:
            raise RebuildRefused(
                f"Build {chosen} stores its rows in layout {manifest.schema_version}, "
                f"and a rebuild reads layout {SCHEMA_VERSION}; re-ingest its catalog with "
                "--new-build instead."
            )
        return manifest

    def _target(
        self,
        collection: CollectionDir,
        source: BuildManifest,
        remap: Remap,
        encoders: EncoderSet,
        reused: set[str],
        key: str,
    ) -> _Target:
        """The unfinished rebuild with this key to resume, or a new build. Other unfinished
        rebuilds are removed (this one supersedes them); an ingest's are left to it."""
        notices: list[str] = []
        for build_id in collection.unfinished_builds():
            manifest = collection.manifest(build_id)
            if build_kind(manifest) != "rebuild":
                continue
            match = next((r for r in unfinished_runs(collection, build_id) if r.key == key), None)
            if match is not None:
                index = open_build_index(collection, manifest, self.settings, for_writing=True)
                notices.append(
                    f"resumed the interrupted rebuild {build_id} ({match.rows_done} items done)"
                )
                return _Target(build_id, manifest, index, match.run_id, key, match, notices)
            discard_build(collection, build_id)
            notices.append(f"removed the unfinished rebuild {build_id}: this one replaces it")
        build_id, manifest, index = create_build(
            collection, remap.mapping, remap.specs, encoders, self.settings
        )
        manifest.rebuilt_from = RebuildOrigin(
            build=source.build_id,
            table_version=source.table_version,
            encoders_reused=sorted(reused),
            encoders_re_encoded=sorted(set(encoders.describe()) - reused),
            mapping_changed=remap.changed,
        )
        collection.write_manifest(build_id, manifest)
        return _Target(build_id, manifest, index, new_id("run"), key, None, notices)

    def _write(
        self,
        collection: CollectionDir,
        source: BuildManifest,
        remap: Remap,
        encoders: EncoderSet,
        reused: set[str],
        target: _Target,
        options: RebuildOptions,
        on_plan: Callable[[int], None] | None,
    ) -> RebuildReport:
        source_index = open_build_index(collection, source, self.settings)
        done = {i for i, digest in target.index.content_hashes().items() if digest}
        ids = [i for i in source_index.scan(["id"])["id"].to_pylist() if i not in done]
        started_at = now()
        log = RunLog.start(
            collection.build_dir(target.build_id) / "runs" / target.run_id,
            ProgressRecord(
                run_id=target.run_id,
                build_id=target.build_id,
                kind="rebuild",
                resume_key=target.key,
                started_at=started_at,
                rebuilt_from=source.build_id,
                rows_total=len(ids) + len(done),
            ),
            ERRORS_KEPT_IN_REPORT,
        )
        if on_plan is not None:
            on_plan(len(ids) + len(done))
        self.progress(len(done))
        rows = RowRebuilder(
            self.settings, encoders, remap, reused, target.index.schema, options.fetch
        )
        batch = max(1, self.settings.write_batch_rows)
        try:
            for start in range(0, len(ids), batch):
                part = ids[start : start + batch]
                table, problems = rows.rebuild(source_index, part)
                tick = time.perf_counter()
                target.index.upsert(table)
                rows.timings["write"] += time.perf_counter() - tick
                log.record(problems)
                log.commit(len(done) + start + len(part), rows.counts, target.index.version())
                self.progress(len(part))
        except BaseException:
            if target.index.row_count() == 0:  # nothing to resume: leave no trace
                log.finish("failed")
                discard_build(collection, target.build_id)
            raise
        finally:
            rows.close()
        tick = time.perf_counter()
        index_info = target.index.refresh_indexes()
        rows.timings["index"] = time.perf_counter() - tick
        counts = {**rows.counts, "items": target.index.row_count(), "resumed": len(done)}
        errors_file = str(Path("runs") / target.run_id / ERRORS_FILE)
        manifest = target.manifest
        origin = manifest.rebuilt_from
        assert origin is not None, "a rebuild's build is marked when it is created"
        origin.counts = counts
        manifest.state = READY
        manifest.updated_at = now()
        manifest.counts = ManifestCounts(items=counts["items"], last_run=counts)
        manifest.errors = ErrorSummary(count=counts["failed"], file=errors_file)
        manifest.indexes = IndexSummary.model_validate(index_info)
        manifest.table_version = target.index.version()
        manifest.sources = [s.model_copy(deep=True) for s in source.sources]
        earlier = staged_candidate(collection)
        if earlier is not None and earlier.build_id != target.build_id:
            target.notices.append(
                f"this build is now the staged candidate (ingest --stage adds to it); the "
                f"earlier staged build {earlier.build_id} is kept as a plain candidate"
            )
        mark_staged(collection, target.build_id)  # the candidate to publish; see staging.py
        manifest_path = collection.write_manifest(target.build_id, manifest)  # commit point
        summary = RunSummary(
            run_id=target.run_id,
            kind="rebuild",
            started_at=started_at,
            finished_at=now(),
            rebuilt_from=origin,
            counts=dict(counts),
            errors_file=errors_file,
            timings_s={k: round(v, 4) for k, v in rows.timings.items()},
            table_version=target.index.version(),
        )
        log.finish("done", summary)
        append_run(collection, entry_from_summary(target.build_id, summary))
        target.index.prune_versions()
        target.notices.extend(store_reference(collection, target.build_id, self.settings))
        return RebuildReport(
            collection=collection.name,
            build_id=target.build_id,
            source_build=source.build_id,
            run_id=target.run_id,
            counts=counts,
            errors=log.errors,
            errors_path=log.errors_path,
            manifest_path=manifest_path,
            timings=rows.timings,
            notices=target.notices,
            resumed=target.resumed is not None,
        )


def encoder_specs(source: BuildManifest, options: RebuildOptions) -> dict[str, str]:
    """The source build's encoders by role, with the ones named on this rebuild."""
    specs = {role: d.spec for role, d in source.encoders.items()}
    if options.text_encoder:
        specs["text"] = options.text_encoder
    if options.image_encoder:
        if "image" not in specs:
            raise RebuildRefused(
                f"Build {source.build_id} has no images, so it has no image encoder to "
                "change; drop --image-encoder."
            )
        specs["image"] = options.image_encoder
    return specs


def reusable_roles(
    source: BuildManifest, described: dict[str, EncoderDescription], remap: Remap
) -> set[str]:
    """Roles whose stored vectors the new build can keep: same encoder (spec, version,
    dimension) and, for text, the same text embedded."""
    before = source.encoders
    same = {
        role
        for role, new in described.items()
        if role in before
        and (before[role].spec, before[role].version, before[role].dim)
        == (new.spec, new.version, new.dim)
    }
    if remap.text_changed:
        same.discard("text")
    return same
