"""Recent query embeddings, kept per collection and encoder role for drift checks.

The query log (``queries.jsonl``) keeps what was asked; this keeps what the encoders
made of it, so drift can be measured without re-embedding old queries (and with the
very model that answered them). Layout::

    <home>/logs/query_vectors/<collection>/<role>/<time_ns>_<pid>_<rand>_<rows>__<build>.npy

Each file is one chunk of float32 rows, written whole to a temp file and renamed, so
several service workers can append side by side and a reader never sees half a
chunk. After each write the oldest chunks of that role are deleted until at most
``max_rows`` vectors remain: the log is bounded whatever the traffic. The build id in
the name lets a reader keep only vectors from builds whose encoder matches live's.

Rows are buffered in memory and written every ``flush_rows`` (16) vectors, at the
latest ``flush_seconds`` (10 s) after the first unwritten one, and on ``flush``/``close``
(service shutdown). Small, prompt chunks are what let ``mmsearch drift`` in another
process see a running service's queries: with 256-row chunks, 70 searches left nothing
on disk. A crash loses at most 10 s of vectors, which a statistical check over
thousands of queries does not notice.
"""

from __future__ import annotations

import os
import re
import tempfile
import threading
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mmsearch.workspace import check_collection_name

MAX_ROWS = 20_000
FLUSH_ROWS = 16
FLUSH_SECONDS = 10.0
_SAFE = re.compile(r"[^A-Za-z0-9_.-]")
_CHUNK = re.compile(r"^(\d+)_(\d+)_([0-9a-f]+)_(\d+)__(.*)\.npy$")


@dataclass(frozen=True)
class _Chunk:
    path: Path
    rows: int
    build_id: str


def _safe(part: str) -> str:
    return _SAFE.sub("_", part)[:100] or "_"


class QueryVectorLog:
    """Append-only, bounded store of query embeddings; thread-safe, multi-process tolerant."""

    def __init__(
        self,
        home: Path,
        *,
        max_rows: int = MAX_ROWS,
        flush_rows: int = FLUSH_ROWS,
        flush_seconds: float = FLUSH_SECONDS,
    ):
        if max_rows < 1 or flush_rows < 1 or flush_seconds <= 0:
            raise ValueError("max_rows, flush_rows and flush_seconds must be positive")
        self.folder = home / "logs" / "query_vectors"
        self.max_rows = max_rows
        self.flush_rows = min(flush_rows, max_rows)
        self.flush_seconds = flush_seconds
        self._pending: dict[tuple[str, str, str], list[np.ndarray]] = {}
        self._lock = threading.Lock()
        # one daemon timer while anything is buffered: a quiet service still writes its
        # last few vectors within flush_seconds, not only at shutdown
        self._timer: threading.Timer | None = None

    def role_dir(self, collection: str, role: str) -> Path:
        check_collection_name(collection)
        return self.folder / collection / _safe(role)

    def record(self, collection: str, build_id: str, vectors: Mapping[str, np.ndarray]) -> None:
        """Buffer one search's embeddings (role → vector, or rows of vectors).

        Non-finite rows are dropped: they would poison every statistic computed later."""
        ready: list[tuple[tuple[str, str, str], np.ndarray]] = []
        with self._lock:
            for role, vector in vectors.items():
                rows = np.atleast_2d(np.asarray(vector, dtype=np.float32))
                if rows.ndim != 2 or rows.shape[1] == 0:
                    continue
                rows = rows[np.isfinite(rows).all(axis=1)]
                if rows.shape[0] == 0:
                    continue
                key = (collection, role, build_id)
                pending = self._pending.setdefault(key, [])
                if pending and pending[0].shape[1] != rows.shape[1]:
                    ready.append((key, np.concatenate(pending)))
                    pending.clear()
                pending.append(rows.copy())
                if sum(p.shape[0] for p in pending) >= self.flush_rows:
                    ready.append((key, np.concatenate(pending)))
                    self._pending.pop(key)
            if self._pending and self._timer is None:
                self._timer = threading.Timer(self.flush_seconds, self._flush_on_timer)
                self._timer.daemon = True
                self._timer.start()
        for key, rows in ready:
            self._write(*key, rows)

    def _flush_on_timer(self) -> None:
        with self._lock:
            self._timer = None
        self.flush()

    def flush(self, collection: str | None = None) -> None:
        """Write buffered rows (of one collection, or all)."""
        with self._lock:
            keys = [k for k in self._pending if collection is None or k[0] == collection]
            ready = [(k, np.concatenate(self._pending.pop(k))) for k in keys]
        for key, rows in ready:
            self._write(*key, rows)

    def close(self) -> None:
        """Write what is buffered and stop the timer (service shutdown)."""
        with self._lock:
            timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
        self.flush()

    def _write(self, collection: str, role: str, build_id: str, rows: np.ndarray) -> None:
        folder = self.role_dir(collection, role)
        folder.mkdir(parents=True, exist_ok=True)
        name = (
            f"{time.time_ns():020d}_{os.getpid()}_{os.urandom(4).hex()}_{rows.shape[0]}"
            f"__{_safe(build_id)}.npy"
        )
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".tmp-", delete=False) as handle:
            np.save(handle, rows.astype(np.float32, copy=False))
        os.replace(handle.name, folder / name)
        self._rotate(folder)

    def _chunks(self, folder: Path) -> list[_Chunk]:
        """Chunks oldest first (names start with the write time)."""
        if not folder.is_dir():
            return []
        found = []
        for path in folder.iterdir():
            match = _CHUNK.match(path.name)
            if match:
                found.append(_Chunk(path, int(match.group(4)), match.group(5)))
        return sorted(found, key=lambda c: c.path.name)

    def _rotate(self, folder: Path) -> None:
        chunks = self._chunks(folder)
        total = sum(c.rows for c in chunks)
        for chunk in chunks:
            if total <= self.max_rows:
                break
            chunk.path.unlink(missing_ok=True)  # another process may have removed it first
            total -= chunk.rows

    def recent(
        self,
        collection: str,
        role: str,
        limit: int = MAX_ROWS,
        builds: Collection[str] | None = None,
    ) -> np.ndarray:
        """Up to ``limit`` newest vectors of a role (newest last), optionally only those
        logged while one of ``builds`` answered; an empty (0, 0) array when none."""
        self.flush(collection)
        wanted = None if builds is None else {_safe(b) for b in builds}
        parts: list[np.ndarray] = []
        have = 0
        dim: int | None = None
        for chunk in reversed(self._chunks(self.role_dir(collection, role))):
            if have >= limit:
                break
            if wanted is not None and chunk.build_id not in wanted:
                continue
            try:
                rows = np.load(chunk.path, allow_pickle=False)
            except (OSError, ValueError):
                continue  # rotated away by another process, or unreadable: skip it
            if rows.ndim != 2 or (dim is not None and rows.shape[1] != dim):
                continue
            dim = rows.shape[1]
            parts.append(rows[-(limit - have) :])
            have += parts[-1].shape[0]
        if not parts:
            return np.zeros((0, 0), dtype=np.float32)
        return np.concatenate(parts[::-1]).astype(np.float32, copy=False)
