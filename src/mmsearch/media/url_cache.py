"""The workspace's cache of fetched image URLs: ``<home>/cache/images/``.

Layout: ``index.sqlite`` maps URL → sha256 of the bytes, ETag, Last-Modified,
content type, size and fetch time; ``blobs/<sha[:2]>/<sha>`` holds the bytes, once
per distinct content however many URLs serve it. SQLite rather than a JSON file
because a catalog can hold millions of URLs and several ingests may share a
workspace: lookups stay indexed and writes are transactional.

Policy: a URL found in the index is not fetched again (catalog images are usually
immutable, versioned URLs, and re-ingesting must not hammer the origin). Asking for
a refresh (``refetch_image_urls``) revalidates with ``If-None-Match`` /
``If-Modified-Since`` and keeps the blob on ``304 Not Modified``.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
from dataclasses import dataclass
from pathlib import Path

from mmsearch.clock import utc_now

_SCHEMA = """
CREATE TABLE IF NOT EXISTS urls (
    url TEXT PRIMARY KEY,
    sha256 TEXT NOT NULL,
    etag TEXT,
    last_modified TEXT,
    content_type TEXT,
    size INTEGER NOT NULL,
    fetched_at TEXT NOT NULL
)
"""


@dataclass(frozen=True)
class CachedUrl:
    url: str
    sha256: str
    etag: str | None
    last_modified: str | None


class UrlCache:
    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.folder / "index.sqlite", timeout=30)
        self._db.execute(_SCHEMA)
        self._db.commit()

    def close(self) -> None:
        self._db.close()

    def lookup(self, url: str) -> CachedUrl | None:
        row = self._db.execute(
            "SELECT sha256, etag, last_modified FROM urls WHERE url = ?", (url,)
        ).fetchone()
        return None if row is None else CachedUrl(url, row[0], row[1], row[2])

    def blob_path(self, sha256: str) -> Path:
        return self.folder / "blobs" / sha256[:2] / sha256

    def read_blob(self, sha256: str) -> bytes | None:
        try:
            return self.blob_path(sha256).read_bytes()
        except OSError:
            return None  # evicted or lost: the caller fetches again

    def store(
        self,
        url: str,
        data: bytes,
        sha256: str,
        *,
        etag: str | None = None,
        last_modified: str | None = None,
        content_type: str | None = None,
    ) -> None:
        path = self.blob_path(sha256)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            try:
                with os.fdopen(handle, "wb") as out:
                    out.write(data)
                os.replace(temporary, path)
            except BaseException:
                Path(temporary).unlink(missing_ok=True)
                raise
        self._db.execute(
            "INSERT OR REPLACE INTO urls VALUES (?, ?, ?, ?, ?, ?, ?)",
            (url, sha256, etag, last_modified, content_type, len(data), utc_now()),
        )
        self._db.commit()
