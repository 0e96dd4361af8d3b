"""Every write to a build, one line each, in a bounded append-only log beside its manifest.

``builds/<build>/runs.jsonl`` gets one entry per ingest run, item PUT, item DELETE and
revert: who, when, what it counted, and the table versions before and after it. Those
versions are what ``mmsearch runs revert`` restores, so the log is the only record
that must outlive the manifest's "latest run" view.

Why a log of its own: the manifest is rewritten by every write, and item writes are
frequent, so run lists in it grew (and were rewritten) with every PUT. The manifest
now keeps only ``last_run`` and a short ``runs`` tail (``RUNS_IN_MANIFEST``, for
readers of the old layout); ``sources`` keeps the newest distinct catalog files.

Bound: when ``runs.jsonl`` passes ``MAX_LOG_BYTES`` it is renamed ``runs.jsonl.1``
(replacing the previous backup) and a new file starts, so a build's history never
takes more than about ``2 * MAX_LOG_BYTES`` (each entry is capped near
``MAX_ENTRY_BYTES``): at 512 KiB that is the last ~1,500-3,000 writes. Appends happen
under the collection's writer lock, so no two writers interleave lines; a torn last
line (a crash mid-append) is skipped by readers.

Each line is a ``RunEntry`` (``builds/run_records.py``): the run's kind, counters,
catalog source, versions, actor and a typed ``detail`` (items written, the run a
revert undid). A JSON line that does not fit is an error naming the file, the line and
the field, never skipped: a revert must not miss a run.

Manifests written before this log existed still read: their ``runs`` entries are
merged in (oldest first), with the version before each run taken from its
``progress.json``.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import get_args

from mmsearch.builds.run_records import (
    ProgressRecord,
    RunDetail,
    RunEntry,
    RunKind,
    RunSource,
    RunSummary,
    load_record,
)
from mmsearch.errors import MMSearchError
from mmsearch.manifest import BuildManifest, RunRecord, SourceRecord
from mmsearch.workspace import CollectionDir, read_json

HISTORY_FILE = "runs.jsonl"
BACKUP_SUFFIX = ".1"
MAX_LOG_BYTES = 512 * 1024
MAX_ENTRY_BYTES = 4096
RUNS_IN_MANIFEST = 5
SOURCES_IN_MANIFEST = 10
SAMPLE_IDS = 20
KINDS: tuple[RunKind, ...] = get_args(RunKind)
_COMPACT_KEYS = (
    "run_id",
    "kind",
    "started_at",
    "finished_at",
    "resumed",
    "source",
    "counts",
    "table_version_before",
    "table_version",
    "actor",
)


class RunNotFound(MMSearchError):
    """No build of the collection recorded the run id."""


@dataclass(frozen=True)
class RunContext:
    """What the caller of an ingest knows and the engine does not: why it runs, for whom."""

    kind: RunKind = "ingest"
    actor: str | None = None
    detail: RunDetail = field(default_factory=RunDetail)


_CONTEXT: ContextVar[RunContext | None] = ContextVar("mmsearch_run_context", default=None)


@contextlib.contextmanager
def recording(
    kind: RunKind, actor: str | None = None, items: list[str] | None = None
) -> Iterator[None]:
    """Label the ingest runs started inside (an item PUT goes through the ingestor, which
    cannot tell it from a catalog ingest); applies to this thread or task only."""
    if kind not in KINDS:
        raise ValueError(f"unknown run kind {kind!r}")
    token = _CONTEXT.set(RunContext(kind, actor, RunDetail(items=items)))
    try:
        yield
    finally:
        _CONTEXT.reset(token)


def current_context() -> RunContext:
    return _CONTEXT.get() or RunContext()


def history_path(collection: CollectionDir, build_id: str) -> Path:
    return collection.build_dir(build_id) / HISTORY_FILE


# -- the manifest's view -----------------------------------------------------------------


def note_run(manifest: BuildManifest, summary: RunSummary, version_before: int | None) -> None:
    """Record a finished run in the manifest without growing it.

    ``summary`` gains ``kind``, ``actor`` and ``table_version_before`` where the writer
    left them out (so its run.json and log entry agree); the manifest keeps it as
    ``last_run``, a compact tail of ``RUNS_IN_MANIFEST`` runs, and the newest distinct
    catalog files as ``sources`` (item writes add none: their catalog is a temporary
    one-line file)."""
    context = current_context()
    given = summary.model_fields_set
    if "kind" not in given:
        summary.kind = context.kind
    if "actor" not in given:
        summary.actor = context.actor
    if "table_version_before" not in given:
        summary.table_version_before = version_before
    saved = summary.saved_json()
    manifest.last_run = {k: v for k, v in saved.items() if k != "mapping"}
    compact = RunRecord.model_validate({k: saved[k] for k in _COMPACT_KEYS if k in saved})
    manifest.runs = [*manifest.runs, compact][-RUNS_IN_MANIFEST:]
    source = summary.source
    if summary.kind == "ingest" and source is not None and source.path:
        kept = [s for s in manifest.sources if s.path != source.path]
        kept.append(SourceRecord.model_validate({**source.model_dump(), "run_id": summary.run_id}))
        manifest.sources = kept[-SOURCES_IN_MANIFEST:]
    else:
        manifest.sources = manifest.sources[-SOURCES_IN_MANIFEST:]


def entry_from_summary(build_id: str, summary: RunSummary) -> RunEntry:
    """The log entry of a run the engine summarised (after ``note_run``, or a rebuild's)."""
    context = current_context()
    given = summary.model_fields_set
    sample = summary.removed_ids_sample[:SAMPLE_IDS] or None
    return RunEntry(
        kind=summary.kind or context.kind,
        run_id=summary.run_id,
        build_id=build_id,
        started_at=summary.started_at,
        finished_at=summary.finished_at,
        counts=dict(summary.counts),
        source=summary.source,
        table_version_before=summary.table_version_before,
        table_version_after=summary.table_version,
        actor=summary.actor if "actor" in given else context.actor,
        detail=context.detail.model_copy(update={"removed_ids_sample": sample}),
    )


def record_item_write(
    collection: CollectionDir,
    manifest: BuildManifest,
    *,
    kind: RunKind,
    run_id: str,
    actor: str | None,
    started_at: str,
    finished_at: str,
    counts: dict[str, int],
    version_before: int,
    version_after: int,
    items: list[str],
) -> RunSummary:
    """Record a write that changed items of a build in place (an item delete, a
    moderation verdict): the manifest's table version, time and ``last_run``, written
    first, then the log line that ``runs revert`` reads.

    One helper, so that every in-place writer records the same things in the same
    order; the caller holds the collection's writer lock."""
    summary = RunSummary(
        run_id=run_id,
        kind=kind,
        actor=actor,
        started_at=started_at,
        finished_at=finished_at,
        counts=dict(counts),
        table_version=version_after,
    )
    manifest.table_version = version_after
    manifest.updated_at = finished_at
    note_run(manifest, summary, version_before)
    collection.write_manifest(manifest.build_id, manifest)
    append_run(
        collection,
        RunEntry(
            kind=kind,
            run_id=run_id,
            build_id=manifest.build_id,
            started_at=started_at,
            finished_at=finished_at,
            counts=dict(counts),
            table_version_before=version_before,
            table_version_after=version_after,
            actor=actor,
            detail=RunDetail(items=items),
        ),
    )
    return summary


# -- the log -------------------------------------------------------------------------------


def append_run(collection: CollectionDir, entry: RunEntry) -> RunEntry:
    """Append one entry to its build's log, rotating first when the file is full.

    Callers hold the collection's writer lock and call this after the manifest write
    that made the run visible: a crash in between loses the log line, but the run is
    still in the manifest's tail, which ``read_runs`` merges."""
    path = history_path(collection, entry.build_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = _encode(entry)
    with contextlib.suppress(FileNotFoundError):
        if path.stat().st_size + len(line) > MAX_LOG_BYTES:
            os.replace(path, path.with_name(path.name + BACKUP_SUFFIX))
    with path.open("ab") as handle:
        handle.write(line)
        handle.flush()
        os.fsync(handle.fileno())
    return entry


def _encode(entry: RunEntry) -> bytes:
    data = entry.as_dict()
    data.pop("legacy", None)
    line = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    if len(line.encode("utf-8")) > MAX_ENTRY_BYTES:  # a huge source path or detail list
        data["detail"] = RunDetail(truncated=True).model_dump(mode="json")
        source = entry.source
        data["source"] = (
            None
            if source is None
            else RunSource(
                **{k: v[:512] for k, v in source.model_dump().items() if v is not None}
            ).model_dump(mode="json")
        )
        line = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return (line + "\n").encode("utf-8")


def read_runs(collection: CollectionDir, build_id: str) -> list[RunEntry]:
    """Every run the build still records, oldest first (newest last).

    Old manifests' run lists and the manifest's tail (a run whose log line a crash lost)
    come first where the log lacks them; a run id seen twice keeps its log entry."""
    path = history_path(collection, build_id)
    logged = [*_read_file(path.with_name(path.name + BACKUP_SUFFIX)), *_read_file(path)]
    logged_ids = {entry.run_id for entry in logged}
    try:
        runs = collection.manifest(build_id).runs
    except MMSearchError:
        runs = []
    legacy = [
        _from_manifest(collection, build_id, run)
        for run in runs
        if run.run_id and run.run_id not in logged_ids
    ]
    newest: dict[str, int] = {}
    merged = [*legacy, *logged]
    for position, entry in enumerate(merged):
        newest[entry.run_id] = position
    return [entry for position, entry in enumerate(merged) if newest[entry.run_id] == position]


def _read_file(path: Path) -> list[RunEntry]:
    """The entries of one log file. A line that is not JSON is the torn last line of an
    append a crash cut short and is skipped; a JSON line that is not an entry is an
    error naming the file and line, since skipping it could hide a run from a revert."""
    if not path.is_file():
        return []
    entries = []
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    for number, line in enumerate(lines, start=1):
        try:
            data = json.loads(line)
        except json.JSONDecodeError:
            continue
        where = f"{path}, line {number},"
        advice = "Move that line to another file to read the rest of the history."
        entries.append(load_record(RunEntry, data, where, "run history", advice))
    return entries


def _from_manifest(collection: CollectionDir, build_id: str, run: RunRecord) -> RunEntry:
    """A run recorded only by an old manifest (or its tail): the version before it is in
    the run's progress.json, which every ingest since resumable runs writes."""
    before = run.table_version_before
    if before is None and "table_version_before" not in run.model_fields_set:
        progress = collection.build_dir(build_id) / "runs" / run.run_id / "progress.json"
        with contextlib.suppress(FileNotFoundError, MMSearchError):
            found = load_record(ProgressRecord, read_json(progress), progress, "progress record")
            before = found.table_version_visible
    data = {
        "kind": run.kind,
        "run_id": run.run_id,
        "build_id": build_id,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "counts": run.counts,
        "source": None if run.source is None else run.source.as_json(),
        "table_version_before": before,
        "table_version_after": run.table_version,
        "actor": run.actor,
        "legacy": True,
    }
    manifest_path = collection.build_dir(build_id) / "manifest.json"
    return load_record(RunEntry, data, manifest_path, "run list of the manifest")


def find_run(collection: CollectionDir, run_id: str) -> tuple[str, RunEntry]:
    """The build that recorded ``run_id`` and its entry (newest builds searched first)."""
    for build_id in reversed(collection.build_ids()):
        for entry in read_runs(collection, build_id):
            if entry.run_id == run_id:
                return build_id, entry
    raise RunNotFound(
        f"No build of collection '{collection.name}' recorded a run {run_id!r}. List the "
        f"runs with: mmsearch runs list -c {collection.name}"
    )
