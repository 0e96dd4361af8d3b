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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from mmsearch.catalog.item import RowError
from mmsearch.clock import utc_now
from mmsearch.workspace import CollectionDir, read_json, write_json_atomic

RUNNING = "running"
PROGRESS_FILE = "progress.json"
ERRORS_FILE = "errors.jsonl"


def resume_key(parts: dict[str, Any]) -> str:
    """A hash of everything that decides what a run writes: same key, same rows."""
    canonical = json.dumps(parts, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


@dataclass
class UnfinishedRun:
    run_id: str
    record: dict[str, Any]

    @property
    def key(self) -> str:
        return str(self.record.get("resume_key", ""))

    @property
    def rows_done(self) -> int:
        return int(self.record.get("rows_done", 0))


def unfinished_runs(collection: CollectionDir, build_id: str) -> list[UnfinishedRun]:
    runs_dir = collection.build_dir(build_id) / "runs"
    if not runs_dir.is_dir():
        return []
    found = []
    for path in sorted(runs_dir.glob(f"*/{PROGRESS_FILE}")):
        try:
            record = read_json(path)
        except Exception:  # a record we cannot read cannot be resumed either
            continue
        if isinstance(record, dict) and record.get("state") == RUNNING:
            found.append(UnfinishedRun(path.parent.name, record))
    return found


def close_run(collection: CollectionDir, build_id: str, run_id: str, state: str, why: str) -> None:
    """Mark an interrupted run as no longer resumable (abandoned or discarded)."""
    path = collection.build_dir(build_id) / "runs" / run_id / PROGRESS_FILE
    try:
        record = read_json(path)
    except Exception:
        return
    record.update({"state": state, "closed_at": utc_now(), "why": why})
    write_json_atomic(path, record)


@dataclass
class RunLog:
    """The records of the run being made; errors stream to disk, the first few stay in memory.

    A dry run's log has no folder: it keeps the first problems and writes nothing."""

    folder: Path | None
    base: dict[str, Any]
    keep: int
    errors: list[RowError] = field(default_factory=list)
    warnings: list[RowError] = field(default_factory=list)
    _handle: TextIO | None = None

    @classmethod
    def start(cls, folder: Path, base: dict[str, Any], keep: int) -> RunLog:
        folder.mkdir(parents=True, exist_ok=True)
        log = cls(folder, {**base, "state": RUNNING, "updated_at": utc_now()}, keep)
        # A resumed run reads every row again, so its errors are found again: start afresh.
        log._handle = (folder / ERRORS_FILE).open("w", encoding="utf-8")
        write_json_atomic(folder / PROGRESS_FILE, log.base)
        return log

    @classmethod
    def in_memory(cls, keep: int) -> RunLog:
        return cls(None, {}, keep)

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

    def commit(self, rows_done: int, counts: dict[str, int], table_version: int | None) -> None:
        """After a chunk is in the table: the record names exactly what is there."""
        if self.folder is None or self._handle is None:
            return
        self._handle.flush()
        self.base.update(
            {
                "rows_done": rows_done,
                "counts": dict(counts),
                "table_version": table_version,
                "updated_at": utc_now(),
            }
        )
        write_json_atomic(self.folder / PROGRESS_FILE, self.base)

    def finish(self, state: str, summary: dict[str, Any] | None = None) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
        if self.folder is None:
            return
        self.base.update({"state": state, "updated_at": utc_now()})
        write_json_atomic(self.folder / PROGRESS_FILE, self.base)
        if summary is not None:
            write_json_atomic(self.folder / "run.json", summary)
