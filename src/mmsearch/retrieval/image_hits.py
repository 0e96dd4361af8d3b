"""Per-image facts about hits: which image of an item matched, and duplicates of the query.

Image-side vector columns hold one vector per image, and the store ranks an item by
its best image (MaxSim). The store does not say *which* image that was, so it is
recomputed here for the top hits only (a handful of rows, a few vectors each): the
hit then names the image to show next to the result.

For a query by image, each hit is also marked ``exact`` (same bytes, or pHash
distance 0) or ``near`` (pHash distance ≤ the configured maximum, confirmed by the
image-vector cosine of the matched image when there is one) so that a user who
uploads a product photo sees at once which results are copies of it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from mmsearch.encoders.hashes import hamming, image_hashes
from mmsearch.retrieval.image_match import DuplicateKind, MatchedImage


@dataclass(frozen=True)
class ImageSignal:
    """A retriever that searched a multivector column with one query vector."""

    name: str
    column: str
    vector: np.ndarray


def best_images(
    rows: dict[str, dict[str, Any]], signals: Sequence[ImageSignal]
) -> dict[str, MatchedImage]:
    """Per item id, the best image under the first signal whose column the row fills."""
    found: dict[str, MatchedImage] = {}
    for item_id, row in rows.items():
        for signal in signals:
            vectors = row.get(signal.column)
            if not vectors:
                continue
            matrix = np.asarray(vectors, dtype=np.float32)
            if matrix.ndim == 1:  # a single-vector column (builds made before multivectors)
                matrix = matrix[None, :]
            scores = matrix @ np.asarray(signal.vector, dtype=np.float32)
            best = int(np.argmax(scores))
            paths = list(row.get("images") or [])
            found[item_id] = MatchedImage(
                index=best,
                path=paths[best] if best < len(paths) else "",
                score=round(float(scores[best]), 6),
                signal=signal.name,
            )
            break
    return found


@dataclass(frozen=True)
class QueryImage:
    """What identifies the query image: its pHash and, when known, the sha256 of its bytes."""

    phash: int
    sha256: str | None = None

    @classmethod
    def of(cls, image: Image.Image, sha256: str | None = None) -> QueryImage:
        return cls(image_hashes(image).phash, sha256)


def duplicate_of_query(
    query: QueryImage,
    row: dict[str, Any],
    matched: MatchedImage | None,
    *,
    max_distance: int,
    min_cosine: float,
) -> tuple[DuplicateKind | None, int | None]:
    """``("exact" | "near" | None, smallest pHash distance)`` of one hit to the query."""
    hashes = [h for h in (row.get("image_phash") or []) if h is not None]
    if query.sha256 and query.sha256 in (row.get("image_sha256") or []):
        return "exact", 0 if hashes else None
    if not hashes:
        return None, None
    distance = min(hamming(query.phash, h) for h in hashes)
    if distance == 0:
        return "exact", 0
    confirmed = matched is None or matched.score >= min_cosine
    if distance <= max_distance and confirmed:
        return "near", distance
    return None, distance
