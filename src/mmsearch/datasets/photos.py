"""Synthetic photo-like images, for measuring what large photos cost to ingest.

The public datasets here are 64-pixel icons; memory and decode-time checks need
camera-sized pictures instead. These are deterministic per seed and look enough like
photos to matter: smooth gradients (what JPEG compresses well), solid shapes, thin
lines and grain (detail at the pixel scale, where a reduced-scale decode differs most
from a full one, and which keeps the files a realistic few MB).
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw


def photo_like(size: tuple[int, int], seed: int, *, grain: int = 6) -> Image.Image:
    """An RGB image of ``size`` with gradients, shapes, lines and ±``grain`` noise."""
    width, height = size
    rng = np.random.default_rng(seed)
    corners = rng.integers(0, 256, (3, 3, 3), dtype=np.uint8)
    image = Image.fromarray(corners, mode="RGB").resize(size, Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(8, 16))):
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        radius = rng.uniform(0.04, 0.25) * min(width, height)
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        box = (cx - radius, cy - radius, cx + radius, cy + radius)
        if rng.random() < 0.5:
            draw.ellipse(box, fill=colour)
        else:
            draw.rectangle(box, fill=colour)
    for _ in range(40):
        ends = [(float(rng.uniform(0, width)), float(rng.uniform(0, height))) for _ in range(2)]
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        draw.line(ends, fill=colour, width=int(rng.integers(1, 12)))
    if grain:
        pixels = np.asarray(image).astype(np.int16)
        for row in range(0, height, 512):  # in bands: a 36-MP frame as int16 is 220 MB
            band = pixels[row : row + 512]
            band += rng.integers(-grain, grain + 1, (band.shape[0], width, 1), dtype=np.int16)
        image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), mode="RGB")
    return image
