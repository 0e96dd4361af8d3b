"""Text printed in images (OCR), so that a word on a label or a poster is searchable.

Uses RapidOCR on ONNX Runtime (the ``ocr`` extra, ``rapidocr-onnxruntime``), which
ships its detection and recognition models inside the wheel: it works offline and
needs no torch. The import is lazy so that installs without the extra are unaffected
until ``--ocr`` is asked for, and then fail with a message saying what to install.

Images are shrunk to ``max_side`` pixels on their long side before recognition:
OCR time grows with the pixel count, and catalog images are untrusted input.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
from PIL import Image

from mmsearch.errors import EncoderError
from mmsearch.media.images import to_rgb

MAX_SIDE = 1600
DET_MAX_SIDE = 960
MIN_CONFIDENCE = 0.5
MAX_CHARS = 10_000

_ENGINE: Any = None
_LOCK = threading.Lock()


def _engine() -> Any:
    global _ENGINE
    with _LOCK:
        if _ENGINE is None:
            try:
                from rapidocr_onnxruntime import RapidOCR
            except ImportError as exc:
                raise EncoderError(
                    "OCR needs the 'ocr' extra: pip install 'mmsearch[ocr]' "
                    f"(rapidocr-onnxruntime); import failed: {exc}"
                ) from exc
            # The default scales the *short* side up to 736 px, which turns a 400x100 label
            # into a 3000x736 canvas; capping the long side is ~10x faster on CPUs and
            # reads catalog-sized text as well.
            _ENGINE = RapidOCR(det_limit_side_len=DET_MAX_SIDE, det_limit_type="max")
        return _ENGINE


class ImageTextReader:
    """Reads the text of images; one shared engine per process (the models load once)."""

    def __init__(self, min_confidence: float = MIN_CONFIDENCE, max_side: int = MAX_SIDE):
        self.min_confidence = min_confidence
        self.max_side = max_side
        self._engine = _engine()

    def read(self, image: Image.Image) -> str:
        """The recognised lines in reading order (top to bottom, left to right)."""
        rgb = to_rgb(image)
        if max(rgb.size) > self.max_side:
            rgb = rgb.copy()
            rgb.thumbnail((self.max_side, self.max_side))
        result, _elapsed = self._engine(np.asarray(rgb))
        lines: list[tuple[float, float, str]] = []
        for box, text, confidence in result or []:
            if float(confidence) >= self.min_confidence and str(text).strip():
                top = min(point[1] for point in box)
                left = min(point[0] for point in box)
                lines.append((round(top / 10.0), left, str(text).strip()))
        lines.sort()
        return "\n".join(text for _top, _left, text in lines)[:MAX_CHARS]

    def read_all(self, images: list[Image.Image]) -> str:
        """The text of several images of one item, one block per image."""
        return "\n".join(text for text in (self.read(image) for image in images) if text)
