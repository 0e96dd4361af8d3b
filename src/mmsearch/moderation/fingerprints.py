"""One fingerprint per image, and what "exact" and "near" mean between two of them.

"Exact" must never be a perceptual-hash distance of 0: skin-tone variants of one
emoji, or red and blue versions of one striped flag, share pHashes, and a moderation
decision called exact is trusted without a look. Here exact is the same bytes
(``sha256``) or the same decoded pixels after cropping to content
(``pixels_sha256``: a PNG re-encoded, or the same sticker on a bigger transparent
canvas). Everything else is "near" and carries its PDQ distance (the smallest over the
query's eight rotations and flips), to be judged against a strictness level whose
threshold was calibrated for a false-match rate (``STRICTNESS``).

pHash and dHash (64 bits, ``encoders/hashes.py``) are kept in the record, computed on
the same cropped pixels, for the stored build columns and for comparison.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image

from mmsearch.encoders.hashes import image_hashes
from mmsearch.errors import MMSearchError
from mmsearch.media.images import ImageLimits, decode_image
from mmsearch.moderation.content import crop_to_content, pixels_sha256
from mmsearch.moderation.pdq import VARIANTS, from_hex, hamming, pdq_hashes, to_hex

# Images are fingerprinted at most this large on a side (PDQ itself looks at 64x64):
# a camera frame costs a bounded decode, not its full size.
FINGERPRINT_SIDE = 1024

MatchKind = Literal["same bytes", "same pixels", "near"]

# The colour layout: the content averaged down to this many cells a side. PDQ decides on
# luma gradients, so skin-tone variants of one emoji (the same drawing, other colours)
# are within a few bits of each other; the layout tells them apart.
LAYOUT_SIDE = 8
# Largest colour difference (RGB distance in 0..1 units, of the cell that differs most,
# over the eight rotations and flips) between two pictures that ``dupes`` calls near.
# Chosen on the dupes benchmark (docs/BENCHMARKS.md, "mmsearch dupes"): resized,
# re-encoded and bordered copies stay well within it, a changed skin tone does not.
MAX_COLOUR_DIFFERENCE = 0.2


@dataclass(frozen=True)
class Strictness:
    """A named PDQ threshold and the false-match rate it was calibrated for."""

    name: str
    max_distance: int  # largest dihedral PDQ distance (of 256 bits) that is a near match
    target_false_match_rate: float


# Calibrated on the emoji data set (different emoji as non-matches, 17 alterations of
# both artists' emoji as matches) by:
#   python benchmarks/moderation_robustness.py --sample 400 --seed 0
# Each is the largest distance whose false-match rate between different emoji is at
# most the target; docs/BENCHMARKS.md "Moderation: matching robustness" has the table.
# They belong to that data: small cartoons with many look-alikes need wide thresholds
# (PDQ's customary one for photos is 31), so another catalog should be calibrated on
# its own pairs with ``moderation.calibration.calibrate``.
STRICTNESS: dict[str, Strictness] = {
    "strict": Strictness("strict", 39, 0.0001),
    "standard": Strictness("standard", 85, 0.001),
    "loose": Strictness("loose", 99, 0.01),
}
DEFAULT_STRICTNESS = "standard"


@dataclass(frozen=True)
class Fingerprint:
    """What moderation keeps of one image; hashes as hex (PDQ) or signed int64 (pHash, dHash)."""

    sha256: str  # of the bytes as received
    pixels_sha256: str  # of the decoded pixels, cropped to content, flattened on white
    pdq: str  # 64 hex digits, the image as it is
    pdq_variants: tuple[str, ...]  # all eight dihedral variants, ``pdq`` first
    pdq_quality: int  # 0..100; below pdq.MIN_QUALITY the image is nearly featureless
    phash: int
    dhash: int
    width: int  # of the content
    height: int
    # The content's colours on an 8x8 grid (RGB bytes as hex); empty in fingerprints
    # stored before it existed.
    colour_layout: str = ""

    def variant_words(self) -> np.ndarray:
        """The eight variants as an (8, 4) uint64 array."""
        return np.stack([from_hex(text) for text in self.pdq_variants])

    def colour_grids(self) -> np.ndarray | None:
        """The colour layout in its eight rotations and flips, (8, 8, 8, 3) in 0..1, or None."""
        if not self.colour_layout:
            return None
        grid = np.frombuffer(bytes.fromhex(self.colour_layout), dtype=np.uint8)
        grid = grid.reshape(LAYOUT_SIDE, LAYOUT_SIDE, 3).astype(np.float32) / 255
        turns = [np.rot90(grid, k) for k in range(4)]
        return np.stack(turns + [np.rot90(grid[::-1], k) for k in range(4)])


@dataclass(frozen=True)
class Match:
    kind: MatchKind
    pdq_distance: int
    variant: str  # which rotation or flip of the query matched


def fingerprint_image(image: Image.Image, sha256: str) -> Fingerprint:
    """The fingerprint of an already decoded image whose bytes hash to ``sha256``."""
    content = crop_to_content(image)
    pdq = pdq_hashes(content)
    small = image_hashes(content)
    variants = tuple(to_hex(words) for words in pdq.variants)
    return Fingerprint(
        sha256=sha256,
        pixels_sha256=pixels_sha256(content),
        pdq=variants[0],
        pdq_variants=variants,
        pdq_quality=pdq.quality,
        phash=small.phash,
        dhash=small.dhash,
        width=content.width,
        height=content.height,
        colour_layout=colour_layout(content),
    )


def colour_layout(content: Image.Image) -> str:
    """The content (RGB on white) averaged to an 8x8 grid, as hex of its RGB bytes."""
    grid = content.convert("RGB").resize((LAYOUT_SIDE, LAYOUT_SIDE), Image.Resampling.BOX)
    return grid.tobytes().hex()


def colour_difference(a: Fingerprint, b: Fingerprint) -> float | None:
    """How far apart two pictures' colours are: the cell that differs most, at the best of
    ``a``'s eight rotations and flips (0 the same, √3 black against white); None when
    either fingerprint has no colour layout."""
    return colour_grid_difference(a.colour_grids(), b.colour_grids())


def colour_grid_difference(turned: np.ndarray | None, other: np.ndarray | None) -> float | None:
    """``colour_difference`` on grids already unpacked by ``Fingerprint.colour_grids``."""
    if turned is None or other is None:
        return None
    cells = np.sqrt(((turned - other[0]) ** 2).sum(axis=-1))
    return float(cells.reshape(len(turned), -1).max(axis=1).min())


def fingerprint_bytes(
    data: bytes, *, source: str, limits: ImageLimits = ImageLimits()
) -> Fingerprint:
    """Decode untrusted bytes within ``limits`` (``ImageError`` otherwise) and fingerprint them."""
    image = decode_image(data, source=source, limits=limits, max_side=FINGERPRINT_SIDE)
    try:
        return fingerprint_image(image, hashlib.sha256(data).hexdigest())
    finally:
        image.close()


def compare(query: Fingerprint, stored: Fingerprint, max_distance: int) -> Match | None:
    """How ``query`` matches ``stored``: exact, near within ``max_distance``, or None."""
    per_variant = hamming(query.variant_words(), from_hex(stored.pdq)[None, :])
    best = int(np.argmin(per_variant))
    distance, variant = int(per_variant[best]), VARIANTS[best]
    if query.sha256 == stored.sha256:
        return Match("same bytes", distance, variant)
    if query.pixels_sha256 == stored.pixels_sha256:
        return Match("same pixels", distance, variant)
    if distance <= max_distance:
        return Match("near", distance, variant)
    return None


def strictness(name: str) -> Strictness:
    """The named level; an ``MMSearchError`` naming the known ones otherwise."""
    try:
        return STRICTNESS[name]
    except KeyError:
        known = ", ".join(STRICTNESS)
        raise MMSearchError(f"unknown strictness {name!r}; choose one of {known}") from None
