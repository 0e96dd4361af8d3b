"""Crop an image to its content before it is hashed.

A copy of a picture found in the wild is often the same pixels on another canvas: a
transparent sticker saved with more margin, a frame added around it, an emoji pasted
small and off-centre on a white square. Perceptual hashes see the whole canvas, so
each of these moves the hash as far as a different picture would (pHash distance 20+
for a 6 px border on a 64 px emoji). Cropping to the content first makes the canvas
not matter: the transparent margin goes by the alpha bounding box, then a uniform
frame by the bounding box of pixels that differ from the border colour, repeated so
a coloured frame around a white margin goes too. The result is flattened on white,
the background a transparent picture is shown on, so an RGBA original and its JPEG
copy on white end up with the same pixels to hash.
"""

from __future__ import annotations

import hashlib

import numpy as np
from PIL import Image

from mmsearch.media.images import normalise_mode, to_rgb

# Alpha at or below this counts as transparent canvas (anti-aliasing halos are faint).
ALPHA_FLOOR = 8
# A pixel belongs to the frame when no channel differs from the frame colour by more
# than this: enough for JPEG ringing along a flat border, far below any drawn edge.
COLOUR_TOLERANCE = 40
# Frames inside frames: a coloured border around a white margin is two passes.
_MAX_PASSES = 3
# A border is uniform when this share of its outer ring lies within the tolerance.
_UNIFORM_SHARE = 0.9


def crop_to_content(image: Image.Image) -> Image.Image:
    """The content of ``image`` as RGB on white: transparent margin and uniform frames cut.

    An image with no content at all (fully transparent, or one flat colour) comes back
    whole, flattened: there is nothing smaller to keep.
    """
    image = normalise_mode(image)
    if image.mode == "RGBA":
        alpha = np.asarray(image.getchannel("A"))
        box = _bbox(alpha > ALPHA_FLOOR)
        if box is not None:
            image = image.crop(box)
    rgb = to_rgb(image)
    for _ in range(_MAX_PASSES):
        trimmed = _trim_uniform_border(rgb)
        if trimmed is None:
            break
        rgb = trimmed
    return rgb


def pixels_sha256(rgb: Image.Image) -> str:
    """sha256 of the size and RGB bytes: equal exactly when two images have the same pixels."""
    rgb = to_rgb(rgb)
    digest = hashlib.sha256(f"{rgb.width}x{rgb.height}:".encode())
    digest.update(rgb.tobytes())
    return digest.hexdigest()


def _trim_uniform_border(rgb: Image.Image) -> Image.Image | None:
    """``rgb`` without its uniform frame, or None when it has none to cut."""
    pixels = np.asarray(rgb, dtype=np.int16)
    height, width = pixels.shape[:2]
    if height < 3 or width < 3:
        return None
    ring = np.concatenate([pixels[0], pixels[-1], pixels[1:-1, 0], pixels[1:-1, -1]])
    colour = np.median(ring, axis=0)
    if np.mean(np.abs(ring - colour).max(axis=1) <= COLOUR_TOLERANCE) < _UNIFORM_SHARE:
        return None
    box = _bbox(np.abs(pixels - colour).max(axis=2) > COLOUR_TOLERANCE)
    if box is None or box == (0, 0, width, height):
        return None
    return rgb.crop(box)


def _bbox(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """(left, top, right, bottom) of the True cells, or None when there are none."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1
