"""One writer per collection, across processes and threads.

Every write to a collection read-modify-writes its manifests and aliases, so two
writers at once (a CLI ingest, the service, another worker of the service) would lose
one's changes. They exclude each other with an OS lock (``flock``) on
``<folder>/.writer.lock``: the kernel drops it when its holder exits, even after
``kill -9``, so a crashed writer never blocks the next one.

Next to it, ``.writer.json`` says who holds the lock, so that whoever waits can be told
by whom and since when. It is advisory only: it may be missing for a moment, or left
behind by a killed writer; the OS lock alone decides who writes.

The lock is reentrant within a thread: a writer that holds it may call code that takes
it again for the same folder (the service holds it while the ingest engine, which takes
it itself, runs). Another thread of the same process waits like another process does.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from mmsearch.errors import MMSearchError

LOCK_NAME = ".writer.lock"
HOLDER_NAME = ".writer.json"

log = logging.getLogger("mmsearch.writer_lock")


@dataclass(frozen=True)
class WriterInfo:
    """Who holds a collection's writer lock, as its holder recorded it (for messages)."""

    pid: int
    host: str
    purpose: str
    since: str  # ISO time, UTC

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host} ({self.purpose}), since {self.since}"

    @classmethod
    def current(cls, purpose: str) -> WriterInfo:
        """This process, starting now."""
        since = datetime.now(UTC).isoformat(timespec="seconds")
        return cls(os.getpid(), socket.gethostname(), purpose, since)

    @classmethod
    def from_json(cls, data: Any) -> WriterInfo | None:
        """The recorded holder, or None when the record is not one (half-written, foreign)."""
        if not isinstance(data, dict):
            return None
        pid, host, purpose, since = (data.get(k) for k in ("pid", "host", "purpose", "since"))
        if not isinstance(pid, int) or isinstance(pid, bool):
            return None
        if not (isinstance(host, str) and isinstance(purpose, str) and isinstance(since, str)):
            return None
        return cls(pid, host, purpose, since)


class CollectionBusy(MMSearchError):
    """Another writer holds the collection and the caller chose not to wait (or waited too long)."""

    def __init__(self, message: str, holder: WriterInfo | None = None):
        super().__init__(message)
        self.holder = holder


def lock_path(folder: Path) -> Path:
    return folder / LOCK_NAME


def holder_path(folder: Path) -> Path:
    return folder / HOLDER_NAME


def read_holder(folder: Path) -> WriterInfo | None:
    """Who the sidecar says holds the lock; None if nobody recorded it or it is unreadable.

    A stale record (its writer was killed) is returned as it is: only the OS lock tells
    whether anyone holds the collection, so call this only after failing to take it."""
    try:
        data = json.loads(holder_path(folder).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return WriterInfo.from_json(data)


@contextlib.contextmanager
def collection_writer(
    folder: Path,
    *,
    purpose: str,
    wait: bool = True,
    timeout_s: float | None = None,
    on_wait: Callable[[WriterInfo | None], None] | None = None,
) -> Iterator[None]:
    """Hold the collection's writer lock for the duration of the block.

    ``purpose`` is what this writer does, shown to those who wait for it. When another
    writer holds the lock: ``wait=False`` raises ``CollectionBusy`` at once; otherwise
    ``on_wait`` is called once with the recorded holder and the call waits, for at most
    ``timeout_s`` seconds (None: as long as it takes) before raising ``CollectionBusy``.
    A thread that already holds the lock re-enters it without waiting.
    """
    lock = _lock_for(folder)
    if lock.is_locked:  # this thread holds it already: a nested write
        lock.acquire()
        try:
            yield
        finally:
            lock.release()
        return
    _acquire(lock, folder, wait=wait, timeout_s=timeout_s, on_wait=on_wait)
    while not _holds_current_file(lock, folder):
        # The file was unlinked (remove_unused_folder) while this writer waited on it:
        # holding it excludes nobody, so take the lock again on the file now at the path.
        lock.release()
        lock = _lock_for(folder)
        _acquire(lock, folder, wait=wait, timeout_s=timeout_s, on_wait=on_wait)
    try:
        _write_holder(folder, WriterInfo.current(purpose))
        yield
    finally:
        _remove_holder(folder)  # before the release, so the next holder's record stays
        lock.release()


def remove_unused_folder(folder: Path) -> bool:
    """Remove a collection folder that holds nothing but its writer lock files.

    A first ingest that fails (every row refused, an error before its first build)
    leaves the folder its lock was taken in: ``collections`` would then list nothing,
    but a later ``mmsearch`` sees a collection folder with no collection in it. The
    folder goes only while no one else writes it (the lock is taken without waiting),
    and a writer that was waiting on the removed lock file takes the lock again on a new
    one (see ``collection_writer``). True when the folder was removed."""
    if not folder.is_dir():
        return False
    lock = _lock_for(folder)
    if lock.is_locked or not _try_acquire(lock, folder, blocking=False, timeout_s=0.0):
        return False  # held by this thread or by another writer: it is in use
    try:
        entries = list(folder.iterdir())
        if any(not entry.name.startswith(".writer") or entry.is_dir() for entry in entries):
            return False
        for entry in entries:
            entry.unlink(missing_ok=True)
        folder.rmdir()
        return True
    except OSError:
        return False
    finally:
        lock.release()


def _holds_current_file(lock: FileLock, folder: Path) -> bool:
    """Whether the file this lock holds is still the one at ``folder/.writer.lock``."""
    fd = getattr(lock._context, "lock_file_fd", None)  # filelock keeps no public handle
    if fd is None:
        return True
    try:
        held, current = os.fstat(fd), os.stat(lock_path(folder))
    except OSError:
        return False
    return (held.st_dev, held.st_ino) == (current.st_dev, current.st_ino)


def _lock_for(folder: Path) -> FileLock:
    """The process-wide lock object for this folder.

    One instance per path (``is_singleton``) makes nested holds in one thread count up
    instead of deadlocking; per-thread hold state (``thread_local``) makes every other
    thread open its own descriptor, which ``flock`` then excludes like another process.
    Every call must pass the same options: a singleton refuses differing ones.
    """
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _unusable(folder, exc) from exc
    return FileLock(str(lock_path(folder)), thread_local=True, is_singleton=True)


def _acquire(
    lock: FileLock,
    folder: Path,
    *,
    wait: bool,
    timeout_s: float | None,
    on_wait: Callable[[WriterInfo | None], None] | None,
) -> None:
    """Take the lock at once if free; otherwise refuse, or tell ``on_wait`` and wait."""
    if _try_acquire(lock, folder, blocking=False, timeout_s=0.0):
        return
    if not wait:
        holder = read_holder(folder)
        raise CollectionBusy(_busy_message(folder, holder, waited_s=None), holder)
    if on_wait is not None:
        on_wait(read_holder(folder))
    limit = -1.0 if timeout_s is None else max(timeout_s, 0.0)
    if _try_acquire(lock, folder, blocking=True, timeout_s=limit):
        return
    holder = read_holder(folder)
    raise CollectionBusy(_busy_message(folder, holder, waited_s=limit), holder)


def _try_acquire(lock: FileLock, folder: Path, *, blocking: bool, timeout_s: float) -> bool:
    """One attempt (or one bounded wait): True when held, False when another writer has it."""
    try:
        lock.acquire(timeout=timeout_s, blocking=blocking)
    except Timeout:
        return False
    except OSError as exc:
        raise _unusable(folder, exc) from exc
    return True


def _busy_message(folder: Path, holder: WriterInfo | None, *, waited_s: float | None) -> str:
    who = holder.describe() if holder else "another writer (not yet recorded)"
    head = f"Collection '{folder.name}' is being written by {who}"
    if waited_s is None:
        return f"{head}; try again when it finishes, or run without --no-wait to wait for it."
    return f"{head}; waited {waited_s:g} s for it. Try again when it finishes."


def _unusable(folder: Path, exc: OSError) -> MMSearchError:
    return MMSearchError(
        f"Cannot take the writer lock of {folder} ({exc}); check that the folder is writable "
        "by this user."
    )


def _write_holder(folder: Path, info: WriterInfo) -> None:
    """Record the holder via a temp file and a rename, so a reader never sees half of it.

    The record only improves messages, so failing to write it does not stop the write."""
    temp: str | None = None
    try:
        fd, temp = tempfile.mkstemp(dir=folder, prefix=f"{HOLDER_NAME}.")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(asdict(info), handle)
        os.replace(temp, holder_path(folder))
    except OSError as exc:
        if temp is not None:
            with contextlib.suppress(OSError):
                os.unlink(temp)
        log.warning("cannot record the writer of %s: %s", folder, exc)


def _remove_holder(folder: Path) -> None:
    with contextlib.suppress(OSError):
        holder_path(folder).unlink(missing_ok=True)
