"""Private files shared by several processes: atomic writes, owner-only modes, file locks.

Keys, the audit trail and the registry are read by service workers while the CLI
writes them. A reader must never see half a file (so writes go to a temp file that is
renamed over the old one), two writers must never interleave (so every write holds a
``filelock.FileLock``), and secrets' hashes must not be readable by other users (so
folders are 0700 and files 0600).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from mmsearch.errors import MMSearchError

LOCK_TIMEOUT_S = 30.0


class LockTimeout(MMSearchError):
    """A governance lock cannot be taken: held too long by another process, or unwritable."""


def private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) and make it owner-only (0700)."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    with contextlib.suppress(OSError):  # a folder owned by someone else stays as it is
        os.chmod(path, 0o700)
    return path


@contextlib.contextmanager
def locked(lock_path: Path, timeout_s: float = LOCK_TIMEOUT_S) -> Iterator[None]:
    """Hold the cross-process lock at ``lock_path``; a clear error if it stays taken."""
    lock = FileLock(str(lock_path), timeout=timeout_s, mode=0o600)
    try:
        private_dir(lock_path.parent)
        lock.acquire()
    except Timeout:
        raise LockTimeout(
            f"Another mmsearch process has held {lock_path.name} for over {timeout_s:.0f} s; "
            "wait for it to finish and try again."
        ) from None
    except OSError as exc:
        raise LockTimeout(
            f"Cannot take the lock {lock_path} ({exc}); check that the workspace folder is "
            "writable by this user."
        ) from exc
    try:
        yield
    finally:
        lock.release()


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # not every platform can open a folder
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_private_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` (mode 0600) so readers see the old or the new file."""
    private_dir(path.parent)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # created 0600
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp, 0o600)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    _fsync_dir(path.parent)


def write_json_private(path: Path, data: Any) -> None:
    text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    write_private_atomic(path, text.encode("utf-8"))


def file_signature(path: Path) -> tuple[int, ...] | None:
    """What changes whenever a file written here changes (None: no file), so a reader
    re-reads it only then. Writes replace the file, so the inode changes even when
    mtime's resolution does not."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return (stat.st_ino, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_size)
