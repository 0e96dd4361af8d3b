"""A run's records on disk: its progress (rewritten after every committed chunk), its
row errors and warnings (appended as they are found) and, at the end, its summary.

The progress record is what makes a run resumable and a crash explainable: it names
the build, the catalog's hash and everything that decides which rows the run writes
(the resume key), the rows read so far and the table version of the last commit.
A run whose record still says "running" was interrupted; the same command finds it
and resumes, anything else abandons it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from mmsearch.builds.run_records import (
    ProgressRecord,
    RunState,
    RunSummary,
    load_record,
)
from mmsearch.catalog.item import RowError
from mmsearch.clock import utc_now
from mmsearch.errors import MMSearchError
from mmsearch.workspace import CollectionDir, read_json, write_json_atomic

RUNNING: RunState = "running"
PROGRESS_FILE = "progress.json"
SUMMARY_FILE = "run.json"
ERRORS_FILE = "errors.jsonl"


def resume_key(parts: dict[str, Any]) -> str:
    """A hash of everything that decides what a run writes: same key, same rows."""
    canonical = json.dumps(parts, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


@dataclass
class UnfinishedRun:
    """A run whose progress record still says "running": it was interrupted."""

    run_id: str
    record: ProgressRecord

    @property
    def key(self) -> str:
        return self.record.resume_key

    @property
    def rows_done(self) -> int:
        return self.record.rows_done


def read_progress(path: Path) -> ProgressRecord:
    """A run's progress record, or an error naming the file and the field that does not fit
    (``FileNotFoundError`` when there is none)."""
    return load_record(
        ProgressRecord,
        read_json(path),
        path,
        "progress record",
        "Remove the run's folder to abandon the run (the next write starts afresh).",
    )


def unfinished_runs(collection: CollectionDir, build_id: str) -> list[UnfinishedRun]:
    """The build's interrupted runs. A record that cannot be parsed at all is skipped (it
    cannot be resumed either); one that parses but does not fit the model is an error,
    since skipping a running record would leave its half-written rows unexplained."""
    runs_dir = collection.build_dir(build_id) / "runs"
    if not runs_dir.is_dir():
        return []
    found = []
    for path in sorted(runs_dir.glob(f"*/{PROGRESS_FILE}")):
        try:
            data = read_json(path)
        except (FileNotFoundError, MMSearchError):
            continue
        if isinstance(data, dict) and data.get("state") == RUNNING:
            found.append(UnfinishedRun(path.parent.name, read_progress(path)))
    return found


def close_run(
    collection: CollectionDir, build_id: str, run_id: str, state: RunState, why: str
) -> None:
    """Mark an interrupted run as no longer resumable (abandoned or discarded)."""
    path = collection.build_dir(build_id) / "runs" / run_id / PROGRESS_FILE
    try:
        record = read_progress(path)
    except (FileNotFoundError, MMSearchError):
        return
    record.state = state
    record.closed_at = utc_now()
    record.why = why
    write_json_atomic(path, record.saved_json())


@dataclass
class RunLog:
    """The records of the run being made; errors stream to disk, the first few stay in memory.

    A dry run's log has no folder (and no progress record): it keeps the first problems
    and writes nothing."""

    folder: Path | None
    progress: ProgressRecord | None
    keep: int
    errors: list[RowError] = field(default_factory=list)
    warnings: list[RowError] = field(default_factory=list)
    _handle: TextIO | None = None

    @classmethod
    def start(cls, folder: Path, progress: ProgressRecord, keep: int) -> RunLog:
        folder.mkdir(parents=True, exist_ok=True)
        progress.state = RUNNING
        progress.updated_at = utc_now()
        log = cls(folder, progress, keep)
        # A resumed run reads every row again, so its errors are found again: start afresh.
        log._handle = (folder / ERRORS_FILE).open("w", encoding="utf-8")
        log._save()
        return log

    @classmethod
    def in_memory(cls, keep: int) -> RunLog:
        return cls(None, None, keep)

    @property
    def errors_path(self) -> Path | None:
        return None if self.folder is None else self.folder / ERRORS_FILE

    def record(self, problems: list[RowError]) -> None:
        """Append row errors and warnings in row order; they are flushed with each commit."""
        for problem in sorted(problems, key=lambda p: (p.source, p.row)):
            if self._handle is not None:
                self._handle.write(json.dumps(problem.as_dict(), ensure_ascii=False) + "\n")
            kept = self.warnings if problem.severity == "warning" else self.errors
            if len(kept) < self.keep:
                kept.append(problem)

    def commit(
        self, rows_done: int, counts: Mapping[str, int | dict[str, int]], table_version: int | None
    ) -> None:
        """After a chunk is in the table: the record names exactly what is there."""
        if self.progress is None or self._handle is None:
            return
        self._handle.flush()
        self.progress.rows_done = rows_done
        self.progress.counts = dict(counts)
        self.progress.table_version = table_version
        self.progress.updated_at = utc_now()
        self._save()

    def finish(self, state: RunState, summary: RunSummary | None = None) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
        if self.folder is None or self.progress is None:
            return
        self.progress.state = state
        self.progress.updated_at = utc_now()
        self._save()
        if summary is not None:
            write_json_atomic(self.folder / SUMMARY_FILE, summary.saved_json())

    def _save(self) -> None:
        if self.folder is not None and self.progress is not None:
            write_json_atomic(self.folder / PROGRESS_FILE, self.progress.saved_json())
