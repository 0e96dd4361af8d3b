"""An item's images read back from where they were ingested from, for a rebuild.

A build keeps each image's location (a local path, or a URL whose bytes the workspace
cache keeps by sha256) and its sha256, not its pixels. A rebuild reads the image
again and checks the sha256: a file that was edited or replaced since is not the image
the item was indexed with, and encoding it would silently change the item, so it is
an error for that item instead. URLs come from the cache; the network is used only
when the operator asks (``--fetch``), so a rebuild never depends on a remote host.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from mmsearch.config import Settings
from mmsearch.errors import ImageError
from mmsearch.ingest.item_images import ItemImages
from mmsearch.media.images import read_image_bytes
from mmsearch.media.paths import is_url
from mmsearch.media.url_cache import UrlCache


class StoredImages:
    """Reads stored rows' images; ``load`` raises ImageError naming the image and the fix."""

    def __init__(self, settings: Settings, fetch: bool = False):
        self.settings = settings
        self.fetch = fetch
        self.cache_dir = Path(settings.home) / "cache" / "images"
        self._cache: UrlCache | None = None
        self._images = ItemImages(settings)  # the same limits and fetcher as an ingest

    def load(self, row: dict[str, Any]) -> list[bytes]:
        paths = list(row.get("images") or [])
        digests = list(row.get("image_sha256") or [])
        if len(paths) != len(digests):
            raise ImageError(
                f"the build records {len(paths)} images but {len(digests)} checksums for this "
                "item; re-ingest it from the catalog"
            )
        return [self._one(path, digest) for path, digest in zip(paths, digests, strict=True)]

    def _one(self, path: str, digest: str) -> bytes:
        if not is_url(path):
            data = read_image_bytes(Path(path), self._images.limits)
        else:
            data = self._cached(digest)
            if data is None:
                if not self.fetch:
                    raise ImageError(
                        f"{path}: not in the image cache ({self.cache_dir}); pass --fetch to "
                        "download it again"
                    )
                data = self._images.fetcher.fetch(path).data
        found = hashlib.sha256(data).hexdigest()
        if found != digest:
            raise ImageError(
                f"{path}: the image changed since it was ingested (sha256 {digest[:12]}…, now "
                f"{found[:12]}…); re-ingest the catalog to index the new image"
            )
        return data

    def _cached(self, digest: str) -> bytes | None:
        if self._cache is None:
            if not (self.cache_dir / "index.sqlite").is_file():
                return None
            self._cache = UrlCache(self.cache_dir)
        return self._cache.read_blob(digest)

    def close(self) -> None:
        if self._cache is not None:
            self._cache.close()
            self._cache = None
        self._images.close()
