"""Background ingest jobs with progress, for ``POST /v1/collections/{name}/ingest``.

Jobs run one at a time on a single worker thread: ingest is CPU- and disk-bound.
Each job holds its collection's writer lock, so it waits, however long, for a CLI
ingest or another worker writing the same collection; ``waiting_for_writer`` shows
that it does, since its progress stands still meanwhile. Progress is the Ingestor's
own callback (rows read), against the row count of the plan (the total the CLI shows),
set when the job starts rather than in the request that submits it.

Each worker process runs the jobs it accepted, and saves their records in the
workspace (``service/job_store.py``) as they change, so status, progress and result
can be read through any worker; this process's own running jobs are answered from
memory, where progress is fresher than the saved record.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from mmsearch.catalog.mapping import FieldMapping
from mmsearch.clock import utc_now
from mmsearch.errors import MMSearchError
from mmsearch.ingest import IngestOptions, Ingestor
from mmsearch.service.errors import Forbidden, NotFound
from mmsearch.service.job_store import MAX_JOBS_KEPT, PROGRESS_EVERY_S, Job, JobStore
from mmsearch.service.state import ServiceState
from mmsearch.workspace import new_id
from mmsearch.writer_lock import WriterInfo

__all__ = ["Job", "JobManager"]
log = logging.getLogger("mmsearch.service")


class JobManager:
    def __init__(self, state: ServiceState):
        self.state = state
        self.store = JobStore(state.settings.home)
        self._jobs: dict[str, Job] = {}  # the jobs this process runs (or ran lately)
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mmsearch-ingest")

    def _save(self, job: Job) -> None:
        """Write the job's record for the other workers; a failure to write is logged
        (this process still answers for it) rather than failing the job."""
        try:
            self.store.save(job)
        except OSError:
            log.exception("cannot save the record of ingest job %s", job.id)

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
        job = Job(
            id=job_id or new_id("job"), collection=collection, catalog=str(catalog), key_id=key_id
        )
        self.state.audit(key_id, "ingest.submit", collection=collection, detail=job.id)
        self._save(job)
        with self._lock:
            self._jobs[job.id] = job
            while len(self._jobs) > MAX_JOBS_KEPT:
                oldest = next(iter(self._jobs))
                if self._jobs[oldest].active:
                    break
                del self._jobs[oldest]
        try:
            self.store.prune()
        except OSError:
            log.exception("cannot prune old ingest job records")
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
        self._save(job)
        saved_at = time.monotonic()

        def advance(rows: int) -> None:
            nonlocal saved_at
            job.processed += rows
            if time.monotonic() - saved_at >= PROGRESS_EVERY_S:
                self._save(job)
                saved_at = time.monotonic()

        def waiting(_holder: WriterInfo | None) -> None:
            job.waiting_for_writer = True
            self._save(job)

        def planned(total_rows: int) -> None:
            job.total = total_rows
            self._save(job)

        try:
            purpose = f"ingest job {job.id}"
            with self.state.writer(job.collection, purpose=purpose, on_wait=waiting):
                job.waiting_for_writer = False
                report = Ingestor(self.state.settings, progress=advance).run(
                    options, on_plan=lambda plan: planned(plan.total_rows)
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
            self._save(job)
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
        """A job started through any worker: this process's own from memory, else its record."""
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            job = self.store.load(job_id)
        if job is None:
            raise NotFound(f"No ingest job '{job_id}'.")
        return job

    def list(self) -> list[Job]:
        """Every worker's jobs, newest first (this process's own as it holds them now)."""
        with self._lock:
            own = dict(self._jobs)
        jobs = [own.pop(job.id, job) for job in self.store.all()]
        jobs += own.values()  # records that could not be written
        jobs.sort(key=lambda job: (job.created_at, job.id), reverse=True)
        return jobs[:MAX_JOBS_KEPT]

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
