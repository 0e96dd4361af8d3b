"""An ingest's image bytes: local files inside their roots, URLs through the fetcher.

The bytes are read once per item, hashed (the item's content hash covers its images)
and kept until the item's batch is encoded; a dry run only checks that they decode.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from mmsearch.catalog.item import Item
from mmsearch.config import Settings
from mmsearch.media.fetch import FetchPolicy, ImageFetcher
from mmsearch.media.images import ImageLimits, decode_image, read_image_bytes
from mmsearch.media.paths import is_url


class ItemImages:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.limits = ImageLimits(settings.max_image_bytes, settings.max_image_pixels)
        self._fetcher: ImageFetcher | None = None

    @property
    def fetcher(self) -> ImageFetcher:
        """Created on the first image URL, so local-only catalogs never open the URL cache."""
        if self._fetcher is None:
            cache_dir = Path(self.settings.home) / "cache" / "images"
            self._fetcher = ImageFetcher(cache_dir, FetchPolicy.from_settings(self.settings))
        return self._fetcher

    def read(self, item: Item) -> list[bytes]:
        """Every image's bytes, and their sha256 set on the item; a missing, refused or
        oversized image raises ``ImageError`` (the row fails)."""
        loaded = [
            self.fetcher.fetch(path).data
            if is_url(path)
            else read_image_bytes(Path(path), self.limits)
            for path in item.images
        ]
        item.image_sha256 = [hashlib.sha256(data).hexdigest() for data in loaded]
        return loaded

    def check_decodes(self, blobs: list[bytes], paths: list[str]) -> None:
        """Dry run: would these images decode? (At the bounded size: cheap.)"""
        for blob, path in zip(blobs, paths, strict=True):
            decode_image(
                blob, source=path, limits=self.limits, max_side=self.settings.ingest_image_max_side
            ).close()

    def close(self) -> None:
        if self._fetcher is not None:
            self._fetcher.close()
            self._fetcher = None
