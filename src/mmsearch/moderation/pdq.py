"""PDQ, the 256-bit perceptual hash that hash-sharing programmes exchange, and its symmetries.

PDQ (Meta's open hash, used by industry hash lists) is computed by the reference C++
code through the ``pdqhash`` bindings, so a hash made here equals one made anywhere
else from the same pixels. Its eight dihedral variants (the rotations by 90° and
their mirror images) come from one DCT with sign flips and a transpose; comparing a
query's eight variants against a stored hash makes flips and quarter turns match at
the price of eight XORs. ``pdqhash`` ships as source only, so it is an extra
(``pip install 'mmsearch[moderation]'``); ``MissingDependency`` says so when absent.

A hash is held as four little-endian uint64 words (word ``j`` holds bits 64j..64j+63),
so a Hamming distance is four XORs and popcounts in NumPy. Shown to people and
written to files it is the reference's 64-digit hex form (bit 255 first).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from mmsearch.errors import MMSearchError
from mmsearch.media.images import to_rgb

PDQ_BITS = 256
WORDS = PDQ_BITS // 64
# Below this the reference calls a hash featureless: it should not decide a match alone.
MIN_QUALITY = 50
# The order ``pdqhash.compute_dihedral`` returns them in. Each names what turns the query
# back into the stored picture; turns are counter-clockwise, like Pillow's ROTATE_*.
VARIANTS = (
    "original",
    "rotate 90",
    "rotate 180",
    "rotate 270",
    "flip vertical",
    "flip horizontal",
    "rotate 90 + flip vertical",
    "rotate 90 + flip horizontal",
)
_BIT_WEIGHTS = (np.uint64(1) << np.arange(64, dtype=np.uint64)).astype(np.uint64)


class MissingDependency(MMSearchError):
    """PDQ needs the ``moderation`` extra."""


@dataclass(frozen=True)
class PdqHashes:
    """The eight dihedral PDQ hashes of one image (row 0 the image as it is) and its quality."""

    variants: np.ndarray  # (8, 4) uint64
    quality: int

    @property
    def hash(self) -> np.ndarray:
        return self.variants[0]


def _pdqhash() -> Any:
    try:
        import pdqhash
    except ImportError:
        raise MissingDependency(
            "PDQ hashing needs the pdqhash package: pip install 'mmsearch[moderation]'"
        ) from None
    return pdqhash


def pdq_hashes(image: Image.Image) -> PdqHashes:
    """PDQ of ``image`` (flattened on white) with its eight dihedral variants."""
    pixels = np.ascontiguousarray(np.asarray(to_rgb(image), dtype=np.uint8))
    vectors, quality = _pdqhash().compute_dihedral(pixels)
    return PdqHashes(np.stack([pack_bits(v) for v in vectors]), int(quality))


def pack_bits(vector: Any) -> np.ndarray:
    """A 256-long 0/1 vector (bit ``k`` at index ``k``) → four uint64 words."""
    bits = np.asarray(vector, dtype=np.uint64).reshape(WORDS, 64)
    return (bits * _BIT_WEIGHTS).sum(axis=1, dtype=np.uint64)


def to_hex(words: np.ndarray) -> str:
    """The reference's hex form: 64 digits, bit 255 first."""
    return "".join(f"{int(word):016x}" for word in reversed(np.asarray(words, dtype=np.uint64)))


def from_hex(text: str) -> np.ndarray:
    """Four uint64 words from the 64-digit hex form; ValueError for anything else."""
    text = text.strip().lower()
    if len(text) != 64:
        raise ValueError(f"a PDQ hash is 64 hex digits, got {len(text)}")
    int(text, 16)  # ValueError on a non-hex digit
    return np.array([int(text[i : i + 16], 16) for i in range(48, -1, -16)], dtype=np.uint64)


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamming distances between hashes in ``a`` and ``b`` (broadcast over leading axes)."""
    return np.bitwise_count(np.asarray(a, np.uint64) ^ np.asarray(b, np.uint64)).sum(axis=-1)


def dihedral_distance(query: np.ndarray, stored: np.ndarray) -> np.ndarray:
    """Smallest distance between any of a query's variants (8, 4) and each stored hash (n, 4)."""
    stored = np.asarray(stored, np.uint64).reshape(-1, WORDS)
    return hamming(np.asarray(query, np.uint64)[:, None, :], stored[None, :, :]).min(axis=0)
