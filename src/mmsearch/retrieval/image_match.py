"""What a hit says about its images: the one that matched and whether it copies the query.

Plain types, apart from ``retrieval.image_hits`` (which computes them with NumPy and
perceptual hashes), so that reading a search answer — ``search.response``, which
``mmsearch search`` parses from a running server's JSON — imports neither.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

DuplicateKind = Literal["exact", "near"]


@dataclass
class MatchedImage:
    """The image of a hit that scored best for ``signal``: its position, path and cosine."""

    index: int
    path: str
    score: float
    signal: str
