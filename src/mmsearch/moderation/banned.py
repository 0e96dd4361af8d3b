"""One banned-image rule's list: fingerprints computed once, looked up through ``HashIndex``.

A banned folder may hold thousands of images, and decoding them for every request would
cost more than the request. Each file's fingerprint is cached beside the policy
(``<name>.fingerprints.json``) under the sha256 of its bytes, so a file that did not
change is only read and hashed, and one that changed is fingerprinted again. Listed
hashes (PDQ hex from a hash-sharing list) have no bytes or pixels: they can only match
"near". Exact means what it means in ``fingerprints``: the same bytes or the same
decoded pixels after cropping, whatever the PDQ distance.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from mmsearch.errors import ImageError
from mmsearch.media.images import ImageLimits, read_image_bytes
from mmsearch.moderation.fingerprints import Fingerprint, fingerprint_bytes
from mmsearch.moderation.hash_index import HashIndex
from mmsearch.moderation.pdq import MIN_QUALITY, from_hex, hamming
from mmsearch.moderation.policy import BannedImages, PolicyError

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp", ".tif", ".tiff"})
MAX_FOLDER_IMAGES = 200_000
# At most this many banned images are reported per rule and image: the closest ones.
MAX_HITS = 5

HitKind = Literal["exact", "near"]


@dataclass(frozen=True)
class BannedHit:
    label: str  # the banned file (relative to its folder) or "hash #N"
    pdq: str
    distance: int
    kind: HitKind


@dataclass
class BannedList:
    labels: list[str]
    pdq: list[str]
    max_distance: int
    by_sha256: dict[str, int] = field(default_factory=dict)
    by_pixels: dict[str, int] = field(default_factory=dict)
    index: HashIndex | None = None

    def __post_init__(self) -> None:
        if self.pdq:
            self.index = HashIndex(np.stack([from_hex(text) for text in self.pdq]))

    def __len__(self) -> int:
        return len(self.labels)

    def match(self, query: Fingerprint) -> list[BannedHit]:
        """Banned images that ``query`` matches, exact ones first, then by distance.

        A near match needs a query hash of at least PDQ's ``MIN_QUALITY``: a nearly
        featureless image (a flat colour) is close to every other one.
        """
        words = query.variant_words()
        exact = {
            row
            for row in (self.by_sha256.get(query.sha256), self.by_pixels.get(query.pixels_sha256))
            if row is not None
        }
        found: dict[int, BannedHit] = {}
        for row in exact:
            distance = int(hamming(words, from_hex(self.pdq[row])[None, :]).min())
            found[row] = BannedHit(self.labels[row], self.pdq[row], distance, "exact")
        if self.index is not None and query.pdq_quality >= MIN_QUALITY:
            rows, distances = self.index.search(words, self.max_distance)
            for row, distance in zip(rows.tolist(), distances.tolist(), strict=True):
                if row not in found:
                    found[row] = BannedHit(self.labels[row], self.pdq[row], int(distance), "near")
        ordered = sorted(found.values(), key=lambda hit: (hit.kind != "exact", hit.distance))
        return ordered[:MAX_HITS]


def load_banned(condition: BannedImages, cache: Path, limits: ImageLimits) -> BannedList:
    """The rule's list: its folder's images (fingerprints cached in ``cache``) and hashes."""
    labels: list[str] = []
    hashes: list[str] = []
    by_sha256: dict[str, int] = {}
    by_pixels: dict[str, int] = {}
    if condition.folder is not None:
        stored = _read_cache(cache)
        changed = False
        folder = Path(condition.folder)
        for path in _images(folder):
            try:
                data = read_image_bytes(path, limits)
            except ImageError as exc:
                raise PolicyError(f"Banned image {path}: {exc}") from None
            sha = hashlib.sha256(data).hexdigest()
            entry = stored.get(sha)
            if entry is None:
                try:
                    fingerprint = fingerprint_bytes(data, source=str(path), limits=limits)
                except ImageError as exc:
                    raise PolicyError(f"Banned image {path} cannot be used: {exc}") from None
                entry = {"pdq": fingerprint.pdq, "pixels": fingerprint.pixels_sha256}
                stored[sha] = entry
                changed = True
            row = len(labels)
            labels.append(path.relative_to(folder).as_posix())
            hashes.append(entry["pdq"])
            by_sha256.setdefault(sha, row)
            by_pixels.setdefault(entry["pixels"], row)
        if changed:
            _write_cache(cache, stored)
    for position, text in enumerate(condition.hashes):
        labels.append(f"hash #{position + 1}")
        hashes.append(text)
    return BannedList(labels, hashes, condition.threshold, by_sha256, by_pixels)


def _images(folder: Path) -> list[Path]:
    found = sorted(
        p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
    )
    if len(found) > MAX_FOLDER_IMAGES:
        raise PolicyError(
            f"Banned folder {folder} holds {len(found)} images, over the limit of "
            f"{MAX_FOLDER_IMAGES}; list their PDQ hashes instead."
        )
    return found


def _read_cache(path: Path) -> dict[str, dict[str, str]]:
    """The cached fingerprints; a missing or unreadable cache is simply empty."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {
        key: value
        for key, value in data.items()
        if isinstance(value, dict)
        and isinstance(value.get("pdq"), str)
        and isinstance(value.get("pixels"), str)
    }


def _write_cache(path: Path, data: dict[str, dict[str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            json.dump(data, out)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
