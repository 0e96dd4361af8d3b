"""Failure budgets shared by processes: N workers must not hand a guesser N budgets."""

from __future__ import annotations

import multiprocessing
import os
import time
from pathlib import Path

from mmsearch.service.shared_buckets import IDLE_S, SharedTokenBuckets

PROCESSES = 4


def _take_many(folder: str, start: float, results: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    budget = SharedTokenBuckets(Path(folder), per_minute=20, burst=5)
    granted = sum(budget.take("ip:203.0.113.9", now=start) == 0.0 for _ in range(10))
    results.put(granted)


def test_processes_charging_one_budget_get_its_burst_between_them(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    start = time.time()
    processes = [
        context.Process(target=_take_many, args=(str(tmp_path), start, results))
        for _ in range(PROCESSES)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=600)  # spawning imports mmsearch: slow on a loaded host
        assert process.exitcode == 0
    granted = [results.get(timeout=5) for _ in processes]
    assert sum(granted) == 5, granted  # one burst in all, not one per process


def test_budget_refills_refunds_and_warns_once_across_instances(tmp_path: Path) -> None:
    first = SharedTokenBuckets(tmp_path, per_minute=60, burst=2)
    second = SharedTokenBuckets(tmp_path, per_minute=60, burst=2)  # another worker
    now = 1_000_000.0
    assert first.take("key:k_1", now=now) == 0.0
    assert second.take("key:k_1", now=now) == 0.0
    wait = first.take("key:k_1", now=now)
    assert 0.9 < wait <= 1.0  # one token a second
    assert second.take("key:k_other", now=now) == 0.0  # names do not share
    assert second.take("key:k_1", now=now + 1.0) == 0.0  # refilled after a second
    first.refund("key:k_1")
    assert second.take("key:k_1", now=now + 1.0) == 0.0  # the refund is seen by the other
    assert first.first_refusal("key:k_1") is True
    assert second.first_refusal("key:k_1") is False  # one audit line per window, all workers
    names = os.listdir(tmp_path)
    assert len(names) == 2 and not any("k_1" in name for name in names)  # hashed names


def test_idle_buckets_are_swept(tmp_path: Path) -> None:
    budget = SharedTokenBuckets(tmp_path, per_minute=20, burst=5)
    budget.take("ip:198.51.100.1")
    budget.take("ip:198.51.100.2")
    old = time.time() - IDLE_S - 60
    stale = tmp_path / sorted(os.listdir(tmp_path))[0]
    os.utime(stale, (old, old))
    assert budget.sweep() == 1
    assert len(os.listdir(tmp_path)) == 1 and not stale.exists()


def test_an_unusable_folder_falls_back_to_this_processes_budget(tmp_path: Path) -> None:
    blocker = tmp_path / "budgets"
    blocker.write_text("a file where the folder should be")
    budget = SharedTokenBuckets(blocker, per_minute=20, burst=2)
    now = 1_000_000.0
    assert [budget.take("ip:192.0.2.7", now=now) == 0.0 for _ in range(3)] == [True, True, False]
