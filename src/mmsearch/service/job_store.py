"""Ingest job records in the workspace, so every worker process sees every job.

With ``mmsearch serve --workers N`` a job is started by whichever worker took the
request and runs on that worker's thread, while its status is polled through any
worker. So each job is a small JSON file, ``<home>/jobs/<job id>.json`` (owner-only,
replaced atomically: a reader sees the old record or the new one, never half), written
by the one process that runs the job when it is queued, starts, waits for the writer
lock, advances (at most every ``PROGRESS_EVERY_S``) and ends.

A record also names the process running it (``worker_pid``). A job whose process is
gone while its record still says queued or running was cut off by a stop or a crash:
readers report it as failed with that reason instead of showing it running forever.
Only the newest ``MAX_JOBS_KEPT`` finished records are kept.
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mmsearch.clock import utc_now_us
from mmsearch.governance.storage import private_dir, write_private_atomic
from mmsearch.processes import pid_alive

JobStatus = Literal["queued", "running", "succeeded", "failed"]
MAX_JOBS_KEPT = 200
PROGRESS_EVERY_S = 0.5
# Ids the service makes (``job-<stamp>-<hex>``); anything else never becomes a path.
_JOB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$")
INTERRUPTED = "interrupted: the server process running this job stopped before it ended"


class Job(BaseModel):
    """One ingest job as every worker sees it (and as ``/v1/jobs`` shows it)."""

    model_config = ConfigDict(extra="ignore")

    id: str
    collection: str
    catalog: str
    status: JobStatus = "queued"
    processed: int = 0
    total: int | None = None
    created_at: str = Field(default_factory=utc_now_us)  # orders jobs of one second
    started_at: str | None = None
    finished_at: str | None = None
    report: dict[str, Any] | None = None
    error: str | None = None
    key_id: str = "local"  # who started it, for the audit trail and who may see it
    waiting_for_writer: bool = False  # another writer holds the collection; the job waits
    worker_pid: int = Field(default_factory=os.getpid)  # the process that runs it

    @property
    def active(self) -> bool:
        return self.status in ("queued", "running")

    def as_dict(self) -> dict[str, Any]:
        data = self.model_dump(exclude={"worker_pid"})
        data["progress"] = round(min(self.processed / self.total, 1.0), 4) if self.total else None
        return data


def valid_job_id(job_id: str) -> bool:
    return bool(_JOB_ID.match(job_id))


class JobStore:
    """The job records of one workspace (``<home>/jobs``)."""

    def __init__(self, home: Path):
        self.folder = home / "jobs"

    def _path(self, job_id: str) -> Path:
        if not valid_job_id(job_id):
            raise ValueError(f"not a job id: {job_id!r}")
        return self.folder / f"{job_id}.json"

    def save(self, job: Job) -> None:
        private_dir(self.folder)
        write_private_atomic(self._path(job.id), job.model_dump_json(indent=1).encode("utf-8"))

    def load(self, job_id: str) -> Job | None:
        """The job's record (an interrupted one reported as failed); None if there is none."""
        if not valid_job_id(job_id):
            return None
        return self._read(self._path(job_id))

    def _read(self, path: Path) -> Job | None:
        try:
            job = Job.model_validate_json(path.read_bytes())
        except (OSError, ValidationError):
            return None  # gone meanwhile (pruned), or not a record: no job
        if job.active and not pid_alive(job.worker_pid):
            job = job.model_copy(update={"status": "failed", "error": job.error or INTERRUPTED})
        return job

    def all(self) -> list[Job]:
        """Every record, newest first."""
        if not self.folder.is_dir():
            return []
        jobs = [job for path in self.folder.glob("*.json") if (job := self._read(path)) is not None]
        return sorted(jobs, key=lambda job: (job.created_at, job.id), reverse=True)

    def prune(self, keep: int = MAX_JOBS_KEPT) -> None:
        """Remove the oldest finished records beyond ``keep``; active ones always stay."""
        jobs = self.all()
        finished = [job for job in jobs if not job.active]
        room = max(0, keep - (len(jobs) - len(finished)))
        for job in finished[room:]:
            with contextlib.suppress(OSError, ValueError):
                self._path(job.id).unlink()
