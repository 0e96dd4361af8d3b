"""One banned-image rule's list: fingerprints computed once, looked up through ``HashIndex``.

A banned folder may hold thousands of images, and decoding them for every request would
cost more than the request. Each file's fingerprint is cached beside the policy
(``<name>.fingerprints.json``) under the sha256 of its bytes, so a file that did not
change is only read and hashed, and one that changed is fingerprinted again. Listed
hashes (PDQ hex from a hash-sharing list) have no bytes or pixels: they can only match
"near". Exact means what it means in ``fingerprints``: the same bytes or the same
decoded pixels after cropping, whatever the PDQ distance. A near match is PDQ within
the rule's distance *or* the visual descriptor within its cosine (a strictness level's
jointly calibrated pair); the descriptors are compared in one matrix product over the
list, as PDQ-only listed hashes have none.

The cache is versioned (``CACHE_VERSION`` and the descriptor's revision): a cache
written before the descriptor was stored, or by another revision of it, is read as
empty and rebuilt, never taken for vectors it does not hold.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from mmsearch.errors import ImageError
from mmsearch.media.images import ImageLimits, read_image_bytes
from mmsearch.moderation.descriptor import best_cosine, decode_vector, descriptor_tag, with_mirror
from mmsearch.moderation.fingerprints import Fingerprint, MatchMethod, fingerprint_bytes
from mmsearch.moderation.hash_index import HashIndex
from mmsearch.moderation.neighbour_index import (
    NeighbourIndex,
    lookup_is_approximate,
    lookup_probes,
)
from mmsearch.moderation.pdq import MIN_QUALITY, from_hex, hamming
from mmsearch.moderation.policy import BannedImages, PolicyError

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp", ".tif", ".tiff"})
MAX_FOLDER_IMAGES = 200_000
# At most this many banned images are reported per rule and image: the closest ones.
MAX_HITS = 5

HitKind = Literal["exact", "near"]
CACHE_VERSION = 2  # 2: entries carry the visual descriptor


@dataclass(frozen=True)
class BannedHit:
    label: str  # the banned file (relative to its folder) or "hash #N"
    pdq: str
    distance: int  # PDQ, smallest over the query's rotations and flips
    kind: HitKind
    method: MatchMethod = "pdq"  # what found it: "exact", "pdq" or "visual"
    cosine: float | None = None  # visual, when both sides carry the descriptor


@dataclass
class BannedList:
    labels: list[str]
    pdq: list[str]
    max_distance: int
    by_sha256: dict[str, int] = field(default_factory=dict)
    by_pixels: dict[str, int] = field(default_factory=dict)
    # Per row, the stored descriptor (``descriptor.encode_vector``) or "" (listed hashes).
    visual: list[str] = field(default_factory=list)
    min_visual_cosine: float | None = None
    index: HashIndex | None = None
    neighbours: NeighbourIndex | None = None  # instead of ``index`` for a long list, wide radius
    vectors: np.ndarray | None = None  # (rows, dim) unit vectors, zero where none
    has_vector: np.ndarray | None = None  # (rows,) bool

    def __post_init__(self) -> None:
        if self.pdq:
            hashes = np.stack([from_hex(text) for text in self.pdq])
            # A long list at a wide radius would be scanned on every lookup: the IVF index
            # answers with the nearest rows instead (approximate); short lists stay exact.
            if lookup_is_approximate(len(hashes), self.max_distance):
                self.neighbours = NeighbourIndex(hashes, probes=lookup_probes(len(hashes)))
            else:
                self.index = HashIndex(hashes)
        decoded = [decode_vector(text) if text else None for text in self.visual]
        present = [v for v in decoded if v is not None]
        if present:
            self.vectors = np.zeros((len(self.labels), len(present[0])), dtype=np.float32)
            for row, vector in enumerate(decoded):
                if vector is not None:
                    self.vectors[row] = vector
            self.has_vector = np.array([v is not None for v in decoded])

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
        cosines = self._cosines(query)

        def hit(row: int, distance: int, kind: HitKind, method: MatchMethod) -> BannedHit:
            value = math.nan if cosines is None else float(cosines[row])
            cosine = None if math.isnan(value) else round(value, 4)
            return BannedHit(self.labels[row], self.pdq[row], distance, kind, method, cosine)

        def pdq_distance(row: int) -> int:
            return int(hamming(words, from_hex(self.pdq[row])[None, :]).min())

        found: dict[int, BannedHit] = {}
        for row in exact:
            found[row] = hit(row, pdq_distance(row), "exact", "exact")
        if query.pdq_quality >= MIN_QUALITY:
            rows, distances = self._near_rows(words, MAX_HITS + len(exact))
            for row, distance in zip(rows.tolist(), distances.tolist(), strict=True):
                if row not in found:
                    found[row] = hit(row, int(distance), "near", "pdq")
        if cosines is not None and self.min_visual_cosine is not None:
            for row in np.flatnonzero(cosines >= self.min_visual_cosine).tolist():
                if row not in found:
                    found[row] = hit(row, pdq_distance(row), "near", "visual")
        ordered = sorted(
            found.values(),
            key=lambda h: (h.kind != "exact", h.method != "pdq", h.distance, -(h.cosine or 0)),
        )
        return ordered[:MAX_HITS]

    def _near_rows(self, words: np.ndarray, enough: int) -> tuple[np.ndarray, np.ndarray]:
        """Rows within the PDQ distance of the query's variants: all of them (exact), or
        the ``enough`` nearest from the IVF index of a long list."""
        if self.neighbours is not None:
            return self.neighbours.within(words, self.max_distance, enough)
        if self.index is not None:
            return self.index.search(words, self.max_distance)
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)

    def _cosines(self, query: Fingerprint) -> np.ndarray | None:
        """Per row, the better cosine of the query or its mirror (NaN where a row has no
        descriptor); None when the query or the whole list has none."""
        vector = query.visual_vector()
        if vector is None or self.vectors is None or self.has_vector is None:
            return None
        cosines, _ = best_cosine(with_mirror(vector), self.vectors)
        return np.where(self.has_vector, cosines, np.nan)


def load_banned(condition: BannedImages, cache: Path, limits: ImageLimits) -> BannedList:
    """The rule's list: its folder's images (fingerprints cached in ``cache``) and hashes."""
    labels: list[str] = []
    hashes: list[str] = []
    by_sha256: dict[str, int] = {}
    by_pixels: dict[str, int] = {}
    visual: list[str] = []
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
                entry = {
                    "pdq": fingerprint.pdq,
                    "pixels": fingerprint.pixels_sha256,
                    "visual": fingerprint.visual,
                }
                stored[sha] = entry
                changed = True
            row = len(labels)
            labels.append(path.relative_to(folder).as_posix())
            hashes.append(entry["pdq"])
            visual.append(entry["visual"])
            by_sha256.setdefault(sha, row)
            by_pixels.setdefault(entry["pixels"], row)
        if changed:
            _write_cache(cache, stored)
    for position, text in enumerate(condition.hashes):
        labels.append(f"hash #{position + 1}")
        hashes.append(text)
        visual.append("")
    return BannedList(
        labels,
        hashes,
        condition.threshold,
        by_sha256,
        by_pixels,
        visual,
        condition.min_visual_cosine,
    )


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


def _cache_header() -> dict[str, object]:
    return {"version": CACHE_VERSION, "descriptor": descriptor_tag()}


def _read_cache(path: Path) -> dict[str, dict[str, str]]:
    """The cached fingerprints; a missing or unreadable cache, or one of another version
    or descriptor revision (an older flat file of PDQ entries included), is empty."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("header") != _cache_header():
        return {}
    entries = data.get("entries")
    if not isinstance(entries, dict):
        return {}
    return {
        key: value
        for key, value in entries.items()
        if isinstance(value, dict)
        and all(isinstance(value.get(name), str) for name in ("pdq", "pixels", "visual"))
    }


def _write_cache(path: Path, entries: dict[str, dict[str, str]]) -> None:
    data = {"header": _cache_header(), "entries": entries}
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            json.dump(data, out)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
