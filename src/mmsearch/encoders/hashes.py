"""Perceptual hashes of images: pHash and dHash, 64 bits each, stored as int64.

Hashes find copies that are not byte-identical (re-encoded, resized, lightly
edited) in microseconds per pair: the Hamming distance between two 64-bit hashes is
one XOR and a popcount. They are stored per image as signed int64 (the same 64
bits, reinterpreted) because Arrow, LanceDB and NumPy all handle int64 natively,
and shown as 16-digit hex to people.

Transparent pixels are flattened onto white first, like the visual descriptor
does, so that an RGBA image and its JPEG copy on white hash alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import imagehash
import numpy as np
from PIL import Image

from mmsearch.media.images import to_rgb

HASH_BITS = 64
_HASH_SIZE = 8  # 8x8 bits


@dataclass(frozen=True)
class ImageHashes:
    phash: int  # signed int64 holding the 64 hash bits
    dhash: int


def _to_int64(hash_value: imagehash.ImageHash) -> int:
    bits = np.asarray(hash_value.hash, dtype=bool).reshape(-1)
    unsigned = int("".join("1" if bit else "0" for bit in bits), 2)
    return unsigned - (1 << 64) if unsigned >= (1 << 63) else unsigned


def image_hashes(image: Image.Image) -> ImageHashes:
    rgb = to_rgb(image)
    return ImageHashes(
        phash=_to_int64(imagehash.phash(rgb, hash_size=_HASH_SIZE)),
        dhash=_to_int64(imagehash.dhash(rgb, hash_size=_HASH_SIZE)),
    )


def to_hex(value: int) -> str:
    return f"{value & 0xFFFFFFFFFFFFFFFF:016x}"


def hamming(a: int, b: int) -> int:
    return ((a ^ b) & 0xFFFFFFFFFFFFFFFF).bit_count()


def hamming_matrix(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Pairwise Hamming distances (uint8) between two int64 hash arrays."""
    a = np.asarray(left, dtype=np.int64).view(np.uint64)
    b = np.asarray(right, dtype=np.int64).view(np.uint64)
    return np.bitwise_count(a[:, None] ^ b[None, :]).astype(np.uint8)
