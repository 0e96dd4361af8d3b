"""Lines appended to one file by several processes, whole, with rotation by size.

The service's workers (``mmsearch serve --workers N``) all append to the same query
and click logs. Two things go wrong with ordinary file handling there: a buffered
writer may split a long line over several ``write`` calls, which another process's
line can land between; and a size-rotating handler per process (``RotatingFileHandler``)
renames the file under the others, which then keep writing into the renamed file and
rotate it again, losing backups and leaving new lines where readers do not look.

So each line is one ``os.write`` on an ``O_APPEND`` descriptor (the kernel appends it
whole at the end, whoever else writes), rotation happens under a file lock beside the
log and only if the file is still over the limit once the lock is held (another
process may have rotated it already), and before each write a process reopens the
path if it names another file than the one it holds (rotated by someone else).
"""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path

from filelock import FileLock, Timeout

ROTATE_LOCK_TIMEOUT_S = 5.0


def append_line(path: Path, line: str) -> None:
    """Append one line to ``path`` in a single write (created 0600 if missing)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, (line.rstrip("\n") + "\n").encode("utf-8"))
    finally:
        os.close(fd)


class SharedAppendLog:
    """An append-only log file shared by processes, rotated at ``max_bytes`` into
    ``backups`` numbered copies (``.1`` newest); ``backups=0`` never rotates."""

    def __init__(self, path: Path, max_bytes: int, backups: int):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        self.lock_path = path.with_name(f".{path.name}.lock")
        self._fd: int | None = None
        self._inode: int | None = None
        self._mutex = threading.Lock()

    def write(self, line: str) -> None:
        data = (line.rstrip("\n") + "\n").encode("utf-8")
        with self._mutex:
            fd = self._current()
            os.write(fd, data)
            size = os.fstat(fd).st_size
        if self.backups > 0 and size >= self.max_bytes:
            self._rotate()

    def _current(self) -> int:
        """The descriptor of the file the path names now (reopened after a rotation)."""
        try:
            inode: int | None = os.stat(self.path).st_ino
        except FileNotFoundError:
            inode = None
        if self._fd is None or inode != self._inode:
            self._close()
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            self._inode = os.fstat(self._fd).st_ino
        return self._fd

    def _rotate(self) -> None:
        try:
            with FileLock(str(self.lock_path), timeout=ROTATE_LOCK_TIMEOUT_S):
                try:
                    if os.stat(self.path).st_size < self.max_bytes:
                        return  # another process rotated it while this one waited
                except FileNotFoundError:
                    return
                for number in range(self.backups - 1, 0, -1):
                    older = self.path.with_name(f"{self.path.name}.{number}")
                    if older.exists():
                        os.replace(older, self.path.with_name(f"{self.path.name}.{number + 1}"))
                os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
        except Timeout:
            return  # a stuck rotation must not stop logging: the next write tries again

    def _close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = self._inode = None

    def close(self) -> None:
        with self._mutex:
            self._close()
