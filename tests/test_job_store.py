"""Ingest job records in the workspace: what any worker reads back."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

from mmsearch.service.job_store import INTERRUPTED, Job, JobStore


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_record_reads_back_as_written_and_owner_only(tmp_path: Path) -> None:
    store = JobStore(tmp_path)
    job = Job(id="job-1", collection="shop", catalog="/data/c.jsonl", key_id="k_1")
    job.status, job.processed, job.total = "running", 3, 10
    store.save(job)
    found = store.load("job-1")
    assert found is not None and found.as_dict() == job.as_dict()
    assert found.as_dict()["progress"] == 0.3
    assert stat.S_IMODE((tmp_path / "jobs" / "job-1.json").stat().st_mode) == 0o600
    assert "worker_pid" not in found.as_dict()  # the API does not show process ids


def test_a_job_whose_process_is_gone_reads_as_interrupted(tmp_path: Path) -> None:
    store = JobStore(tmp_path)
    store.save(Job(id="job-gone", collection="shop", catalog="c", worker_pid=_dead_pid()))
    store.save(Job(id="job-here", collection="shop", catalog="c", worker_pid=os.getpid()))
    gone, here = store.load("job-gone"), store.load("job-here")
    assert gone is not None and gone.status == "failed" and gone.error == INTERRUPTED
    assert here is not None and here.status == "queued" and here.error is None


def test_ids_that_are_no_job_id_never_become_paths(tmp_path: Path) -> None:
    store = JobStore(tmp_path)
    (tmp_path / "secret.json").write_text("{}")
    for bad in ("../secret", "..", "a/b", "", "x" * 101):
        assert store.load(bad) is None


def test_prune_keeps_the_newest_finished_and_every_active_job(tmp_path: Path) -> None:
    store = JobStore(tmp_path)
    for n in range(6):
        job = Job(id=f"job-{n}", collection="c", catalog="c", created_at=f"2026-01-0{n + 1}")
        job.status = "running" if n == 0 else "succeeded"  # the oldest is still running
        store.save(job)
    store.prune(keep=3)
    assert [job.id for job in store.all()] == ["job-5", "job-4", "job-0"]


def test_jobs_started_within_one_second_list_newest_first(tmp_path: Path) -> None:
    """Ids sort by second then by chance; the start time to the microsecond decides."""
    store = JobStore(tmp_path)
    first = Job(id="job-20260101T000000-ffffff", collection="c", catalog="c")
    second = Job(id="job-20260101T000000-000000", collection="c", catalog="c")
    assert first.created_at < second.created_at
    for job in (first, second):
        store.save(job)
    assert [job.id for job in store.all()] == [second.id, first.id]
