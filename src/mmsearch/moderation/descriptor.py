"""The ``visual`` descriptor as part of a moderation fingerprint: stored small, compared
with its mirror.

PDQ misses a copy turned by a few degrees, with text written over it, brightened or
cropped, and the ``visual`` descriptor (``encoders/visual.py``) keeps those; it misses
the flips, frames and recolourings that PDQ keeps (docs/BENCHMARKS.md, "Moderation:
matching robustness"). So a fingerprint carries both and a near match is either one at
thresholds calibrated together (``fingerprints.STRICTNESS``).

Stored: the vector quantised to signed bytes (scaled by its largest component; only
its direction matters for a cosine), base64, behind the first 12 hex digits of the
encoder's version, so a vector made by another revision of the descriptor is recognised
and not compared: about 400 characters an image. Compared: the query's vector and its
mirror (a permutation of the same vector, ``mirror_permutation``), the higher cosine;
the descriptor tells left from right, and a mirrored copy should still match.
"""

from __future__ import annotations

import base64
from functools import cache

import numpy as np
from PIL import Image

from mmsearch.encoders.visual import VisualEncoder, mirror_permutation

_LEVELS = 127  # signed bytes: -127..127


@cache
def _encoder() -> VisualEncoder:
    return VisualEncoder()


@cache
def _mirror() -> np.ndarray:
    return mirror_permutation(_encoder().params)


def descriptor_tag() -> str:
    """The prefix of every stored vector: which descriptor made it."""
    return _encoder().version.rsplit(":", 1)[-1][:12]


def describe(image: Image.Image) -> str:
    """The stored form of ``image``'s descriptor (the encoder crops it to content)."""
    return encode_vector(_encoder().encode_images([image])[0])


def quantise(vectors: np.ndarray) -> np.ndarray:
    """Vectors (n, d) as signed bytes, each scaled so its largest component is ±127."""
    vectors = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
    peak = np.maximum(np.abs(vectors).max(axis=1, keepdims=True), 1e-12)
    return np.round(vectors / peak * _LEVELS).astype(np.int8)


def unit_rows(codes: np.ndarray) -> np.ndarray:
    """Quantised vectors back as float32 unit vectors (all-zero rows stay zero)."""
    vectors = codes.astype(np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def encode_vector(vector: np.ndarray) -> str:
    return f"{descriptor_tag()}:{base64.b64encode(quantise(vector)[0].tobytes()).decode('ascii')}"


def decode_vector(text: str) -> np.ndarray | None:
    """The unit vector stored in ``text``; None when empty, from another descriptor
    revision, or not readable as one (such a fingerprint matches by PDQ only)."""
    tag, _, payload = text.partition(":")
    if not payload or tag != descriptor_tag():
        return None
    try:
        raw = base64.b64decode(payload, validate=True)
    except ValueError:
        return None
    if len(raw) != _encoder().dim:
        return None
    return unit_rows(np.frombuffer(raw, dtype=np.int8)[None, :])[0]


def with_mirror(vector: np.ndarray) -> np.ndarray:
    """The query's two views, (2, d): as it is and mirrored left to right."""
    return np.stack([vector, vector[_mirror()]])


def best_cosine(views: np.ndarray, stored: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each stored unit vector (n, d): the higher cosine of the two ``views`` and
    whether it was the mirrored one."""
    # Two matrix-vector products: a (n, d) x (d, 2) product goes through OpenBLAS's
    # threaded matrix-matrix path, measured 100x slower on a loaded 2-core host.
    plain, mirrored_view = stored @ views[0], stored @ views[1]
    return np.maximum(plain, mirrored_view), mirrored_view > plain


# Rows compared at once in ``pairs_at_least``: a 2,048 x n float32 block of cosines.
_JOIN_BLOCK = 2048


def pairs_at_least(
    vectors: np.ndarray, min_cosine: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs (i < j) of unit vectors whose cosine, the better of i or its mirror against
    j, is at least ``min_cosine``: row i, row j and the cosine.

    A dense self-join in blocks of rows, each block compared only with the rows from it
    on (each pair once), so memory stays at one block of cosines; its time grows with
    the square of the rows (15 s of CPU for 30,000 on a loaded 2-core host, half of what
    comparing every block with every row took). A faiss IVF range search over the same
    vectors was measured slower still at 30,000 (25 s): the descriptors are all-positive
    histograms crowded into a few lists, so each query reads a quarter of the rows.
    """
    count = len(vectors)
    mirrored = vectors[:, _mirror()]
    firsts, seconds, cosines = [], [], []
    for start in range(0, count, _JOIN_BLOCK):
        stop = min(start + _JOIN_BLOCK, count)
        later = vectors[start:].T  # only rows from this block on: each pair once
        block = np.maximum(vectors[start:stop] @ later, mirrored[start:stop] @ later)
        rows, columns = np.nonzero(block >= min_cosine)
        upper = columns > rows
        firsts.append(rows[upper] + start)
        seconds.append(columns[upper] + start)
        cosines.append(block[rows[upper], columns[upper]])
    return _joined(firsts, seconds, cosines)


def _joined(
    firsts: list[np.ndarray], seconds: list[np.ndarray], cosines: list[np.ndarray]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if not firsts:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros(0, dtype=np.float32)
    return (
        np.concatenate(firsts).astype(np.int64),
        np.concatenate(seconds).astype(np.int64),
        np.concatenate(cosines).astype(np.float32),
    )
