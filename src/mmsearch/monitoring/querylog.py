"""The query log and the click log: what was asked, what was shown, what was clicked.

Both are JSON Lines under ``<home>/logs/``. The query log (``queries.jsonl``) rotates
by size and holds every result page served: query id, text, has_image, filters,
build, latency and the shown ids. The click log (``clicks.jsonl``) uses the format
``mmsearch.ranking.clicks`` reads for ranker training and evaluation: one line per
click with ``query``, ``shown`` (ids in display order), ``clicked``, ``where`` and
``at``, plus ``query_id``, ``position``, ``collection`` and ``build_id`` to join it
back to the query log. Pages nobody clicked are in the query log only; a page
clicked twice gives two lines. Clicks on image-only queries have no query text, which
that format requires, so they go to ``image_clicks.jsonl`` with the same fields.

Every worker process of a service appends to the same files: each line is one write on
an append-only descriptor, and the query log rotates under a file lock
(``monitoring/shared_append.py``), so lines stay whole and none go astray.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mmsearch.clock import utc_now
from mmsearch.monitoring.shared_append import SharedAppendLog, append_line

RECENT_QUERIES = 10_000
TAIL_BYTES = 8 * 1024 * 1024


@dataclass
class QueryRecord:
    query_id: str
    collection: str
    build_id: str
    text: str | None
    has_image: bool
    filters: str | None
    latency_ms: float
    hit_ids: list[str]
    request_id: str | None = None
    ts: str = field(default_factory=utc_now)
    key_id: str | None = None  # the API key that searched (never its secret)
    # The API's structured filters as the caller sent them (``filters`` holds the
    # caller's ``where`` text); never the filter the store was given.
    structured_filters: dict[str, Any] | None = None
    # "live" or "canary": the alias whose build answered (the build itself is build_id).
    routed: str = "live"
    fallback: bool = False  # a signal was dropped and the answer came from what was left
    encoder_failures: int = 0  # query encoders that failed on this search


class QueryLog:
    """Appends one JSON line per search to a size-rotated file; remembers recent queries."""

    def __init__(self, path: Path, max_bytes: int, backups: int):
        self.path = path
        self._file = SharedAppendLog(path, max_bytes, backups)
        self._recent: OrderedDict[str, QueryRecord] = OrderedDict()
        self._lock = threading.Lock()

    def write(self, record: QueryRecord) -> None:
        line = json.dumps(asdict(record), ensure_ascii=False, default=str)
        self._file.write(line)
        with self._lock:
            self._recent[record.query_id] = record
            while len(self._recent) > RECENT_QUERIES:
                self._recent.popitem(last=False)

    def recent(self, query_id: str) -> QueryRecord | None:
        """A query served lately: from memory, else from the log file's tail.

        The file matters with several worker processes: the click may reach another
        worker than the search did.
        """
        with self._lock:
            found = self._recent.get(query_id)
        return found if found is not None else self._from_file(query_id)

    def _from_file(self, query_id: str) -> QueryRecord | None:
        try:
            with self.path.open("rb") as handle:
                handle.seek(0, 2)
                handle.seek(max(0, handle.tell() - TAIL_BYTES))
                tail = handle.read().decode("utf-8", errors="replace")
        except OSError:
            return None
        needle = f'"query_id": "{query_id}"'
        for line in reversed(tail.splitlines()):
            if needle in line:
                try:
                    return QueryRecord(**json.loads(line))
                except (json.JSONDecodeError, TypeError):
                    return None
        return None

    def close(self) -> None:
        self._file.close()


@dataclass
class ClickRecord:
    """One click, in the line format of ``mmsearch.ranking.clicks`` plus join keys."""

    query: str | None
    shown: list[str]
    clicked: str
    where: str | None
    query_id: str
    position: int | None
    collection: str
    build_id: str
    at: str = field(default_factory=utc_now)


class ClickLog:
    """Appends clicks as JSON lines, each in one append-only write: whole lines whatever
    other threads and processes append at the same time."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.image_path = path.with_name("image_" + path.name)

    def append(self, record: ClickRecord) -> Path:
        target = self.path if (record.query or "").strip() else self.image_path
        append_line(target, json.dumps(asdict(record), ensure_ascii=False))
        return target
