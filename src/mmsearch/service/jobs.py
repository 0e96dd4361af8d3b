"""Background ingest jobs with progress, for ``POST /v1/collections/{name}/ingest``.

Jobs run one at a time on a single worker thread: ingest is CPU- and disk-bound.
Each job holds its collection's writer lock, so it waits, however long, for a CLI
ingest or another worker writing the same collection; ``waiting_for_writer`` shows
that it does, since its progress stands still meanwhile. Progress is the Ingestor's
own callback (rows read), against the row count of the plan (the total the CLI shows),
set when the job starts rather than in the request that submits it.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from mmsearch.catalog.mapping import FieldMapping
from mmsearch.clock import utc_now
from mmsearch.errors import MMSearchError
from mmsearch.ingest import IngestOptions, Ingestor
from mmsearch.service.errors import Forbidden, NotFound
from mmsearch.service.state import ServiceState
from mmsearch.workspace import new_id
from mmsearch.writer_lock import WriterInfo

JobStatus = Literal["queued", "running", "succeeded", "failed"]
MAX_JOBS_KEPT = 200


@dataclass
class Job:
    id: str
    collection: str
    catalog: str
    status: JobStatus = "queued"
    processed: int = 0
    total: int | None = None
    created_at: str = field(default_factory=utc_now)
    started_at: str | None = None
    finished_at: str | None = None
    report: dict[str, Any] | None = None
    error: str | None = None
    key_id: str = "local"  # who started it, for the audit trail
    waiting_for_writer: bool = False  # another writer holds the collection; the job waits

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["progress"] = round(min(self.processed / self.total, 1.0), 4) if self.total else None
        return data


class JobManager:
    def __init__(self, state: ServiceState):
        self.state = state
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mmsearch-ingest")

    def submit(
        self,
        collection: str,
        catalog: Path,
        mapping: FieldMapping | None = None,
        images_root: Path | None = None,
        job_id: str | None = None,
        key_id: str = "local",
        *,
        new_build: bool = False,
        sync: bool = False,
        strict: bool = False,
        stage: bool = False,
        writer_groups: frozenset[str] | None = None,
    ) -> Job:
        """Queue an ingest; ``writer_groups``: the ACL groups of a restricted writer, which
        writes only items it can see (ingest/write_access.py), None for an unrestricted one.

        A restricted writer may not start a new or staged build: that build would hold only
        its catalog and, once live, drop every item of the other groups."""
        if writer_groups is not None and (new_build or stage):
            raise Forbidden(
                "A key bound by ACL groups may not start a new or staged build; "
                "ingest into the live build instead."
            )
        job = Job(job_id or new_id("job"), collection, str(catalog), key_id=key_id)
        self.state.audit(key_id, "ingest.submit", collection=collection, detail=job.id)
        with self._lock:
            self._jobs[job.id] = job
            while len(self._jobs) > MAX_JOBS_KEPT:
                oldest = next(iter(self._jobs))
                if self._jobs[oldest].status in ("queued", "running"):
                    break
                del self._jobs[oldest]
        options = IngestOptions(
            catalog,
            collection,
            mapping or FieldMapping(),
            images_root,
            new_build=new_build,
            sync=sync,
            strict=strict,
            stage=stage,
            purpose=f"ingest job {job.id}",
            writer_groups=writer_groups,
        )
        self._pool.submit(self._run, job, options)
        return job

    def _run(self, job: Job, options: IngestOptions) -> None:
        job.status, job.started_at = "running", utc_now()

        def advance(rows: int) -> None:
            job.processed += rows

        def waiting(_holder: WriterInfo | None) -> None:
            job.waiting_for_writer = True

        try:
            purpose = f"ingest job {job.id}"
            with self.state.writer(job.collection, purpose=purpose, on_wait=waiting):
                job.waiting_for_writer = False
                report = Ingestor(self.state.settings, progress=advance).run(
                    options, on_plan=lambda plan: setattr(job, "total", plan.total_rows)
                )
            job.report = self._as_seen_by(report.as_dict(), options)
            failed = report.counts["failed"]
            if options.strict and failed:
                job.error, job.status = f"{failed} rows failed (strict): nothing written", "failed"
            else:
                job.status = "succeeded"
        except MMSearchError as exc:
            job.error, job.status = str(exc), "failed"
        except Exception as exc:  # a job must always end in a state the caller can see
            job.error, job.status = f"unexpected error: {exc}", "failed"
        finally:
            job.waiting_for_writer = False
            job.finished_at = utc_now()
            self.state.forget(job.collection)
            counts = (job.report or {}).get("counts")
            self.state.audit(
                job.key_id,
                "ingest",
                collection=job.collection,
                counts=counts,
                outcome="ok" if job.status == "succeeded" else "failed",
                detail=job.id if job.error is None else f"{job.id}: {job.error}"[:500],
            )

    def _as_seen_by(self, report: dict[str, Any], options: IngestOptions) -> dict[str, Any]:
        """A restricted writer's report counts only the items it may see: the total would
        tell it how many items of other groups the collection holds."""
        if options.writer_groups is None:
            return report
        try:
            searcher = self.state.searcher(options.collection)
            items = searcher.index.count(searcher.access_for(options.writer_groups))
        except MMSearchError:  # no live build (nothing landed): nothing to count
            items = 0
        return {**report, "counts": {**report["counts"], "items": items}}

    def get(self, job_id: str) -> Job:
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            raise NotFound(f"No ingest job '{job_id}' (jobs are kept until the server restarts).")
        return job

    def list(self) -> list[Job]:
        with self._lock:
            return list(reversed(self._jobs.values()))  # insertion order: newest first

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
