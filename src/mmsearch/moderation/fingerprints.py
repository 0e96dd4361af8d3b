"""One fingerprint per image, and what "exact" and "near" mean between two of them.

"Exact" must never be a perceptual-hash distance of 0: skin-tone variants of one
emoji, or red and blue versions of one striped flag, share pHashes, and a moderation
decision called exact is trusted without a look. Here exact is the same bytes
(``sha256``) or the same decoded pixels after cropping to content
(``pixels_sha256``: a PNG re-encoded, or the same sticker on a bigger transparent
canvas). Everything else is "near": its PDQ distance (the smallest over the query's
eight rotations and flips) is within the level's threshold, *or* the cosine of the
``visual`` descriptors (the better of the query and its mirror, ``descriptor``) is at
least the level's. PDQ keeps flips, frames and recolourings; the descriptor keeps
small rotations, overlaid text, brightness and crops, which PDQ loses. The two
thresholds of a strictness level were calibrated *together* for one false-match rate
(``STRICTNESS``), and a match says which method found it.

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
from mmsearch.moderation.descriptor import best_cosine, decode_vector, describe, with_mirror
from mmsearch.moderation.pdq import VARIANTS, from_hex, hamming, pdq_hashes, to_hex

# Images are fingerprinted at most this large on a side (PDQ itself looks at 64x64):
# a camera frame costs a bounded decode, not its full size.
FINGERPRINT_SIDE = 1024

MatchKind = Literal["same bytes", "same pixels", "near"]
# Which comparison found a match: the bytes or pixels, PDQ, or the visual descriptor
# (when PDQ did not: a pair within both thresholds says "pdq").
MatchMethod = Literal["exact", "pdq", "visual"]

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
    """A named pair of thresholds and the false-match rate their union was calibrated for."""

    name: str
    max_distance: int  # largest dihedral PDQ distance (of 256 bits) that is a near match
    target_false_match_rate: float
    # Smallest visual cosine (the better of the query and its mirror) that is a near
    # match too; None: PDQ alone.
    min_visual_cosine: float | None = None


# Calibrated on the emoji data set (different emoji as non-matches, 17 alterations of
# both artists' emoji as matches) by:
#   python benchmarks/moderation_robustness.py --sample 400 --seed 0
# Each level's pair is calibrated jointly (``moderation.calibration.calibrate_union``):
# the union "PDQ ≤ max_distance OR visual cosine ≥ min_visual_cosine" keeps a false-match
# rate between different emoji within the target, and of the pairs that do, the one
# with the highest lowest recall over the alterations (on half of the originals) wins;
# docs/BENCHMARKS.md "Moderation: matching robustness" has the table. The cosine is
# rounded up to 4 decimals, so it admits nothing the calibrated one did not. They belong
# to that data: small cartoons with many look-alikes need wide thresholds (PDQ's
# customary one for photos is 31), so another catalog should be calibrated on its own
# pairs with ``moderation.calibration``.
STRICTNESS: dict[str, Strictness] = {
    "strict": Strictness("strict", 32, 0.0001, 0.9768),
    "standard": Strictness("standard", 80, 0.001, 0.9193),
    "loose": Strictness("loose", 92, 0.01, 0.835),
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
    # The visual descriptor, quantised (``descriptor.encode_vector``); empty in
    # fingerprints stored before it existed, which match by PDQ only.
    visual: str = ""

    def variant_words(self) -> np.ndarray:
        """The eight variants as an (8, 4) uint64 array."""
        return np.stack([from_hex(text) for text in self.pdq_variants])

    def visual_vector(self) -> np.ndarray | None:
        """The descriptor as a unit vector; None when absent or from another revision."""
        return decode_vector(self.visual) if self.visual else None

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
    variant: str  # which rotation or flip of the query matched (PDQ)
    method: MatchMethod = "pdq"
    visual_cosine: float | None = None  # when both fingerprints carry the descriptor


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
        visual=describe(image),
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


def compare(
    query: Fingerprint,
    stored: Fingerprint,
    max_distance: int,
    min_visual_cosine: float | None = None,
) -> Match | None:
    """How ``query`` matches ``stored``: exact, near (PDQ within ``max_distance`` or the
    visual cosine at least ``min_visual_cosine``), or None."""
    per_variant = hamming(query.variant_words(), from_hex(stored.pdq)[None, :])
    best = int(np.argmin(per_variant))
    distance, variant = int(per_variant[best]), VARIANTS[best]
    cosine = visual_cosine(query, stored)
    shown = None if cosine is None else round(cosine, 4)
    if query.sha256 == stored.sha256:
        return Match("same bytes", distance, variant, "exact", shown)
    if query.pixels_sha256 == stored.pixels_sha256:
        return Match("same pixels", distance, variant, "exact", shown)
    if distance <= max_distance:
        return Match("near", distance, variant, "pdq", shown)
    if min_visual_cosine is not None and cosine is not None and cosine >= min_visual_cosine:
        return Match("near", distance, variant, "visual", shown)
    return None


def visual_cosine(query: Fingerprint, stored: Fingerprint) -> float | None:
    """The better cosine of ``query`` (or its mirror) with ``stored``; None without both."""
    mine, theirs = query.visual_vector(), stored.visual_vector()
    if mine is None or theirs is None:
        return None
    cosine, _ = best_cosine(with_mirror(mine), theirs[None, :])
    return float(cosine[0])


def strictness(name: str) -> Strictness:
    """The named level; an ``MMSearchError`` naming the known ones otherwise."""
    try:
        return STRICTNESS[name]
    except KeyError:
        known = ", ".join(STRICTNESS)
        raise MMSearchError(f"unknown strictness {name!r}; choose one of {known}") from None
