"""Token buckets shared by every worker process of a workspace.

Two budgets live here. Key checks are charged per client address and per key id named,
before argon2 runs (``service/access.py``); with ``serve --workers N`` the request
budget per key (``MMSEARCH_RATE_LIMIT_PER_MINUTE``) is too. Kept in each process's
memory, N workers would give a caller N budgets: with uvicorn handing connections to
whichever worker accepts, about N times the requests (or guesses) per minute. So each
budget is a token bucket in a tiny file, ``<folder>/<sha256 of the name>``, read and
rewritten under an exclusive ``flock`` on that file: every worker charges the same
bucket, so the bound is the configured one whatever the worker count.

This costs a file open, lock, read and write (tens of microseconds) per charge. Key
checks pay it only when they are about to run argon2 (hundreds of milliseconds) or
carry a malformed or wrong secret; requests pay it only with several workers (one
worker keeps its request budget in memory). Buckets untouched for ``IDLE_S`` are
removed now and then, so the folder stays small. The bucket names are hashed: the
folder does not list the addresses or keys that called.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from mmsearch.governance.storage import private_dir

log = logging.getLogger("mmsearch.security")
IDLE_S = 600.0  # the least time a bucket is left alone before its file may go
SWEEP_EVERY = 256  # new buckets created by this process between sweeps


@dataclass
class Bucket:
    """One token bucket: its tokens at ``updated``, and when a refusal was last warned of."""

    tokens: float
    updated: float
    warned_at: float = 0.0

    def take(self, now: float, per_minute: int, burst: int) -> float:
        """Refill to ``now``, then take a token: 0.0 when one was there, else the seconds
        until one will be."""
        rate = per_minute / 60.0
        self.tokens = min(float(burst), self.tokens + (now - self.updated) * rate)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / rate

    def encode(self) -> bytes:
        return f"{self.tokens:.6f} {self.updated:.6f} {self.warned_at:.6f}".encode()

    @classmethod
    def decode(cls, raw: bytes, burst: float, now: float) -> Bucket:
        try:
            tokens, updated, warned_at = (float(part) for part in raw.decode().split())
        except (UnicodeDecodeError, ValueError):
            return cls(burst, now)  # new, or unreadable: a full bucket
        return cls(min(tokens, burst), min(updated, now), warned_at)


class SharedTokenBuckets:
    """Token buckets by name (``ip:<address>``, ``key:<id>``): ``per_minute`` refill,
    ``burst`` capacity; the same interface as the in-process ``RateLimiter``."""

    def __init__(self, folder: Path, per_minute: int, burst: int):
        self.folder = folder
        self.per_minute = per_minute
        self.burst = burst
        self._created = 0
        self._lock = threading.Lock()
        self._folder_ready = False
        # A bucket left alone this long is full again, so its file may go.
        self.idle_s = max(IDLE_S, 60.0 * burst / per_minute) if per_minute > 0 else IDLE_S
        self._memory: dict[str, Bucket] = {}  # used only when the folder cannot be
        self._warned = False

    def _path(self, who: str) -> Path:
        return self.folder / hashlib.sha256(who.encode()).hexdigest()[:40]

    @contextlib.contextmanager
    def _bucket(self, who: str, now: float) -> Iterator[Bucket]:
        """The bucket, locked against every other process and thread, written back after;
        this process's own when the folder cannot be used (a read-only workspace): the
        checks go on, bounded per worker as they would be without sharing."""
        try:
            fd = self._open(who)
        except OSError as exc:
            if not self._warned:
                self._warned = True
                log.error("failure budgets per worker: cannot use %s (%s)", self.folder, exc)
            with self._lock:
                bucket = self._memory.setdefault(who, Bucket(float(self.burst), now))
                if len(self._memory) > 10_000:  # forget idle callers rather than grow forever
                    self._memory = {who: bucket}
                yield bucket
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            raw = os.pread(fd, 128, 0)
            if not raw:
                self._note_created()
            bucket = Bucket.decode(raw, float(self.burst), now)
            yield bucket
            data = bucket.encode()
            with contextlib.suppress(OSError):  # a full disk: the charge is lost, not the check
                os.pwrite(fd, data, 0)
                os.ftruncate(fd, len(data))
        finally:
            os.close(fd)  # releases the lock

    def _open(self, who: str) -> int:
        if not self._folder_ready:
            private_dir(self.folder)
            self._folder_ready = True
        return os.open(self._path(who), os.O_RDWR | os.O_CREAT, 0o600)

    def take(self, who: str, now: float | None = None) -> float:
        """0.0 when the attempt may go on, else the seconds until a token is available."""
        if self.per_minute <= 0:
            return 0.0
        now = time.time() if now is None else now
        with self._bucket(who, now) as bucket:
            return bucket.take(now, self.per_minute, self.burst)

    def refund(self, who: str) -> None:
        """Give back a token taken for an attempt that turned out fine (a key that verified)."""
        with self._bucket(who, time.time()) as bucket:
            bucket.tokens = min(float(self.burst), bucket.tokens + 1.0)

    def first_refusal(self, who: str, window_s: float = 60.0) -> bool:
        """True once per window per name across all workers: one audit line per flood."""
        now = time.time()
        with self._bucket(who, now) as bucket:
            if now - bucket.warned_at < window_s:
                return False
            bucket.warned_at = now
            return True

    def _note_created(self) -> None:
        with self._lock:
            self._created += 1
            due = self._created % SWEEP_EVERY == 0
        if due:
            self.sweep()

    def sweep(self, now: float | None = None) -> int:
        """Remove buckets nobody touched for ``idle_s`` (full again by then); how many."""
        cutoff = (time.time() if now is None else now) - self.idle_s
        removed = 0
        with contextlib.suppress(OSError), os.scandir(self.folder) as entries:
            for entry in entries:
                with contextlib.suppress(OSError):
                    if entry.is_file() and entry.stat().st_mtime < cutoff:
                        os.unlink(entry.path)
                        removed += 1
        return removed
