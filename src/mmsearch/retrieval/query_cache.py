"""An LRU cache of query embeddings.

Popular queries repeat (the same text typed by many users, the same "search with
this image" click), and embedding is the most expensive stage of a text search on a
CPU. Keys include the encoder spec *and* its version, so a changed model never
answers with vectors of the old one; images are keyed by a digest of their pixels.
The cache is thread-safe because the HTTP service runs searches in a thread pool.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from PIL import Image

CacheKey = tuple[str, str, str, str]


@dataclass(frozen=True)
class CacheStats:
    hits: int
    misses: int
    size: int
    capacity: int


def text_key(spec: str, version: str, text: str) -> CacheKey:
    return (spec, version, "text", text)


def image_key(spec: str, version: str, image: Image.Image) -> CacheKey:
    """Digest of mode, size and pixels: equal pictures share a key whatever their file format."""
    digest = hashlib.sha256(f"{image.mode}:{image.size}".encode())
    digest.update(image.tobytes())
    return (spec, version, "image", digest.hexdigest())


class QueryEmbeddingCache:
    """Least-recently-used map from (encoder spec, version, modality, query) to a vector."""

    def __init__(self, capacity: int):
        self.capacity = max(0, capacity)
        self._entries: OrderedDict[CacheKey, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self._hits = 0
        self._misses = 0

    def get(self, key: CacheKey) -> np.ndarray | None:
        with self._lock:
            vector = self._entries.get(key)
            if vector is None:
                self._misses += 1
                return None
            self._entries.move_to_end(key)
            self._hits += 1
            return vector

    def put(self, key: CacheKey, vector: np.ndarray) -> None:
        if self.capacity == 0:
            return
        frozen = np.array(vector, dtype=np.float32, copy=True)
        frozen.setflags(write=False)  # shared between requests: nobody may change it
        with self._lock:
            self._entries[key] = frozen
            self._entries.move_to_end(key)
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)

    def stats(self) -> CacheStats:
        with self._lock:
            return CacheStats(self._hits, self._misses, len(self._entries), self.capacity)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
