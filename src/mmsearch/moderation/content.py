"""Crop an image to its content before it is hashed.

A copy of a picture found in the wild is often the same pixels on another canvas: a
transparent sticker saved with more margin, a frame added around it, an emoji pasted
small and off-centre on a white square. Perceptual hashes see the whole canvas, so
each of these moves the hash as far as a different picture would (pHash distance 20+
for a 6 px border on a 64 px emoji). Cropping to the content first makes the canvas
not matter.

Transparency is flattened on white first (the background a transparent picture is
shown on), and then a transparent margin is just a white frame: an RGBA original and
its copy flattened on white crop to the very same pixels. Cropping by the alpha
bounding box instead keeps faint anti-aliasing halos that the flattened copy loses,
and on a 64 px emoji that 1-2 px difference alone moves PDQ by 20-50 of 256 bits.
Frames are cut by the bounding box of pixels whose luma differs from the frame's,
repeated so that a coloured frame around a white margin goes too.
"""

from __future__ import annotations

import hashlib

import numpy as np
from PIL import Image

from mmsearch.media.images import to_rgb

# A pixel belongs to the frame when its luma differs from the frame's by at most this:
# enough for JPEG ringing along a flat border, far below any drawn edge.
LUMA_TOLERANCE = 40
# Frames inside frames: a coloured border around a white margin is two passes.
_MAX_PASSES = 3
# A side is uniform when this share of its outer line lies within the tolerance.
_UNIFORM_SHARE = 0.95


def crop_to_content(image: Image.Image) -> Image.Image:
    """The content of ``image`` as RGB on white: transparent margin and uniform frames cut.

    An image with no content at all (fully transparent, or one flat colour) comes back
    whole, flattened: there is nothing smaller to keep.
    """
    rgb = to_rgb(image)
    previous: float | None = None
    for _ in range(_MAX_PASSES):
        trimmed = _trim_uniform_border(rgb, previous)
        if trimmed is None:
            break
        rgb, previous = trimmed
    return rgb


def pixels_sha256(rgb: Image.Image) -> str:
    """sha256 of the size and RGB bytes: equal exactly when two images have the same pixels."""
    rgb = to_rgb(rgb)
    digest = hashlib.sha256(f"{rgb.width}x{rgb.height}:".encode())
    digest.update(rgb.tobytes())
    return digest.hexdigest()


def _trim_uniform_border(
    rgb: Image.Image, previous: float | None
) -> tuple[Image.Image, float] | None:
    """``rgb`` without its uniform frame and the frame's luma, or None when none is cut.

    Each side is judged on its own: content may touch one edge (a sticker cut at the
    bottom, a flag's white stripe) while the other three are margin. The frame is the
    median luma of the uniform sides; every side then loses the rows or columns that
    hold only that luma. A frame as light as the one cut before it is not a frame but
    the edge of the content (white hair against a white margin) and stays. Luma, not
    colour, decides, so a grayscale copy and a JPEG copy (whose chroma is subsampled
    and smeared at edges) are cut where the original is.
    """
    luma = np.asarray(rgb.convert("L"), dtype=np.int16)
    height, width = luma.shape
    if height < 3 or width < 3:
        return None
    sides = [luma[0], luma[-1], luma[:, 0], luma[:, -1]]
    uniform = [side for side in sides if _uniform_share(side) >= _UNIFORM_SHARE]
    if not uniform:
        return None
    frame = float(np.median(np.concatenate(uniform)))
    if previous is not None and abs(frame - previous) <= LUMA_TOLERANCE:
        return None
    box = _bbox(np.abs(luma - frame) > LUMA_TOLERANCE)
    if box is None or box == (0, 0, width, height):
        return None
    return rgb.crop(box), frame


def _uniform_share(line: np.ndarray) -> float:
    """Share of a line of luma values within the tolerance of the line's median."""
    return float(np.mean(np.abs(line - np.median(line)) <= LUMA_TOLERANCE))


def _bbox(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """(left, top, right, bottom) of the True cells, or None when there are none."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1
