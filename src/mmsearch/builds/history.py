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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

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
KINDS = ("ingest", "item_put", "item_delete", "revert")
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


@dataclass
class RunEntry:
    """One write to one build, as ``runs list`` shows it and ``runs revert`` uses it."""

    kind: str  # ingest | item_put | item_delete | revert
    run_id: str
    build_id: str
    started_at: str | None
    finished_at: str | None
    counts: dict[str, int] = field(default_factory=dict)
    source: dict[str, Any] | None = None
    table_version_before: int | None = None  # None: the run created the build
    table_version_after: int | None = None
    actor: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)  # item ids, reverted run, ...
    legacy: bool = False  # read from an old manifest's run list, not from the log

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunEntry:
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)


@dataclass(frozen=True)
class RunContext:
    """What the caller of an ingest knows and the engine does not: why it runs, for whom."""

    kind: str = "ingest"
    actor: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


_CONTEXT: ContextVar[RunContext | None] = ContextVar("mmsearch_run_context", default=None)


@contextlib.contextmanager
def recording(kind: str, actor: str | None = None, **detail: Any) -> Iterator[None]:
    """Label the ingest runs started inside (an item PUT goes through the ingestor, which
    cannot tell it from a catalog ingest); applies to this thread or task only."""
    if kind not in KINDS:
        raise ValueError(f"unknown run kind {kind!r}")
    token = _CONTEXT.set(RunContext(kind, actor, dict(detail)))
    try:
        yield
    finally:
        _CONTEXT.reset(token)


def current_context() -> RunContext:
    return _CONTEXT.get() or RunContext()


def history_path(collection: CollectionDir, build_id: str) -> Path:
    return collection.build_dir(build_id) / HISTORY_FILE


# -- the manifest's view -----------------------------------------------------------------


def note_run(manifest: BuildManifest, summary: dict[str, Any], version_before: int | None) -> None:
    """Record a finished run in the manifest without growing it.

    ``summary`` gains ``kind``, ``actor`` and ``table_version_before`` (so its run.json
    and log entry agree); the manifest keeps it as ``last_run``, a compact tail of
    ``RUNS_IN_MANIFEST`` runs, and the newest distinct catalog files as ``sources``
    (item writes add none: their catalog is a temporary one-line file)."""
    context = current_context()
    summary.setdefault("kind", context.kind)
    summary.setdefault("actor", context.actor)
    summary.setdefault("table_version_before", version_before)
    manifest.last_run = {k: v for k, v in summary.items() if k != "mapping"}
    compact = RunRecord.model_validate({k: summary[k] for k in _COMPACT_KEYS if k in summary})
    manifest.runs = [*manifest.runs, compact][-RUNS_IN_MANIFEST:]
    source = summary.get("source")
    if summary["kind"] == "ingest" and isinstance(source, dict) and source.get("path"):
        kept = [s for s in manifest.sources if s.path != source["path"]]
        kept.append(SourceRecord.model_validate({**source, "run_id": summary.get("run_id")}))
        manifest.sources = kept[-SOURCES_IN_MANIFEST:]
    else:
        manifest.sources = manifest.sources[-SOURCES_IN_MANIFEST:]


def entry_from_summary(build_id: str, summary: dict[str, Any]) -> RunEntry:
    """The log entry of a run the engine summarised (after ``note_run``)."""
    context = current_context()
    return RunEntry(
        kind=str(summary.get("kind", context.kind)),
        run_id=str(summary["run_id"]),
        build_id=build_id,
        started_at=summary.get("started_at"),
        finished_at=summary.get("finished_at"),
        counts=dict(summary.get("counts") or {}),
        source=summary.get("source"),
        table_version_before=summary.get("table_version_before"),
        table_version_after=summary.get("table_version"),
        actor=summary.get("actor", context.actor),
        detail={
            **context.detail,
            **(
                {"removed_ids_sample": summary["removed_ids_sample"][:SAMPLE_IDS]}
                if summary.get("removed_ids_sample")
                else {}
            ),
        },
    )


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
    line = json.dumps(data, ensure_ascii=False, default=str, separators=(",", ":"))
    if len(line.encode("utf-8")) > MAX_ENTRY_BYTES:  # a huge source path or detail list
        data["detail"] = {"truncated": True}
        data["source"] = {k: str(v)[:512] for k, v in (entry.source or {}).items()}
        line = json.dumps(data, ensure_ascii=False, default=str, separators=(",", ":"))
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
    if not path.is_file():
        return []
    entries = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            data = json.loads(line)
        except json.JSONDecodeError:
            continue  # a torn last line: the append was cut short by a crash
        if isinstance(data, dict) and data.get("run_id") and data.get("build_id"):
            entries.append(RunEntry.from_dict(data))
    return entries


def _from_manifest(collection: CollectionDir, build_id: str, run: RunRecord) -> RunEntry:
    """A run recorded only by an old manifest (or its tail): the version before it is in
    the run's progress.json, which every ingest since resumable runs writes."""
    before = run.table_version_before
    if before is None and "table_version_before" not in run.model_fields_set:
        progress = collection.build_dir(build_id) / "runs" / run.run_id / "progress.json"
        with contextlib.suppress(FileNotFoundError, MMSearchError):
            found = read_json(progress)
            if isinstance(found, dict):
                before = found.get("table_version_visible")
    return RunEntry(
        kind=run.kind,
        run_id=run.run_id,
        build_id=build_id,
        started_at=run.started_at,
        finished_at=run.finished_at,
        counts=dict(run.counts),
        source=None if run.source is None else run.source.as_json(),
        table_version_before=before,
        table_version_after=run.table_version,
        actor=run.actor,
        legacy=True,
    )


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
