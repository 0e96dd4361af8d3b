"""Vector search in memory: exact NumPy search, or a faiss HNSW graph for large columns.

Scores are cosine similarities, as the durable store reports them (1 - cosine
distance). A single-vector column below ``hnsw_min_rows`` rows, a search asking for
``exact``, and a filtered search leaving few rows are exact: a matrix product over
the allowed rows, the same ranking as LanceDB's exact scan. Above it a faiss
``IndexHNSWFlat`` (inner product over normalised vectors) answers, with the filter as
an ``IDSelectorBitmap`` inside the walk (a prefilter, never a post-filtered top k) and
the walk's list widened in proportion to the rows the filter removes.

Multivector columns (one vector per image) are scored by MaxSim, the best image's
cosine, exactly, over every image vector: image vectors are few and short.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as arrow_compute

from mmsearch.index.base import VectorField
from mmsearch.index.hot.text import top_rows

# pyarrow.compute defines its kernels at import time, so pyright cannot see them.
pc: Any = arrow_compute

HNSW_M = 32  # graph degree (the floor's in docs/BENCHMARKS.md)
HNSW_EF_CONSTRUCTION = 80
DEFAULT_EF = 128  # the walk's list when the request gives no ``ef``
EXACT_ALLOWED_ROWS = 20_000  # a filter leaving at most this many rows: exact search


def _normalised(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows scaled to unit length, and which rows had a length at all."""
    norms = np.linalg.norm(matrix, axis=1)
    usable = norms > 0
    matrix = matrix.copy()
    matrix[usable] /= norms[usable, None]
    return np.ascontiguousarray(matrix, dtype=np.float32), usable


def _fixed_rows(array: Any, dim: int) -> np.ndarray:
    """A fixed-size-list array as a rows x dim matrix (a NULL row's values are whatever
    Arrow holds there: callers mask NULL rows out)."""
    values = array.values.slice(array.offset * dim, len(array) * dim)
    matrix = np.asarray(values.fill_null(0.0).to_numpy(zero_copy_only=False), dtype=np.float32)
    return matrix.reshape(len(array), dim)


def _query(vector: np.ndarray) -> np.ndarray:
    query = np.asarray(vector, dtype=np.float32)
    query = query.reshape(-1, query.shape[-1])
    norms = np.linalg.norm(query, axis=1, keepdims=True)
    return query / np.where(norms > 0, norms, 1.0)


class SingleVectors:
    """One vector per row (NULL rows are never found)."""

    def __init__(self, field: VectorField, column: pa.ChunkedArray, hnsw_min_rows: int):
        array = column.combine_chunks()
        rows = len(array)
        present = np.asarray(array.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
        self.vectors, usable = _normalised(_fixed_rows(array, field.dim))
        self.present = present & usable
        self.rows = rows
        self._hnsw: Any = None
        if rows >= hnsw_min_rows:
            import faiss

            index = faiss.IndexHNSWFlat(field.dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
            index.add(self.vectors)
            self._hnsw = index

    def search(
        self,
        vector: np.ndarray,
        k: int,
        allowed: np.ndarray | None,
        exact: bool,
        ef: int | None,
    ) -> list[tuple[int, float]]:
        query = _query(vector)[0]
        candidates = self.present if allowed is None else self.present & allowed
        count = int(candidates.sum()) if allowed is not None else self.rows
        if self._hnsw is None or exact or count <= EXACT_ALLOWED_ROWS:
            return self._exact(query, k, candidates, count)
        return self._walk(query, k, candidates, count, ef or DEFAULT_EF)

    def _exact(
        self, query: np.ndarray, k: int, candidates: np.ndarray, count: int
    ) -> list[tuple[int, float]]:
        if count * 4 < self.rows:  # few rows left: score only those
            rows = np.flatnonzero(candidates)
            scores = np.full(self.rows, -np.inf, dtype=np.float32)
            scores[rows] = self.vectors[rows] @ query
        else:
            scores = self.vectors @ query
        return top_rows(scores, candidates, k)

    def _walk(
        self, query: np.ndarray, k: int, candidates: np.ndarray, count: int, ef: int
    ) -> list[tuple[int, float]]:
        import faiss

        # A filter removing most rows leaves the walk fewer neighbours that count: its
        # list grows in proportion, so that recall holds.
        widened = min(self.rows, math.ceil(max(ef, k) * self.rows / max(count, 1)))
        params = faiss.SearchParametersHNSW()  # pyright: ignore[reportAttributeAccessIssue]
        params.efSearch = widened
        bitmap = None
        if count < self.rows:
            bitmap = np.packbits(candidates, bitorder="little")
            params.sel = faiss.IDSelectorBitmap(len(candidates), faiss.swig_ptr(bitmap))
        scores, rows = self._hnsw.search(query[None, :], k, params=params)
        del bitmap  # kept alive until the search returned
        return [(int(r), float(s)) for r, s in zip(rows[0], scores[0], strict=True) if r >= 0]

    def nbytes(self) -> int:
        graph = 0
        if self._hnsw is not None:
            links = self._hnsw.hnsw.neighbors.size()
            graph = links * 4 + self._hnsw.ntotal * 8 * 3
        return int(self.vectors.nbytes + self.present.nbytes + graph)


class MultiVectors:
    """Several vectors per row (one per image), scored by MaxSim."""

    def __init__(self, field: VectorField, column: pa.ChunkedArray):
        array = column.combine_chunks()
        self.rows = len(array)
        inner = pc.list_flatten(array)
        self.parents = np.asarray(pc.list_parent_indices(array).to_numpy(), dtype=np.int64)
        self.vectors, usable = _normalised(_fixed_rows(inner, field.dim))
        usable &= np.asarray(inner.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
        self.vectors, self.parents = self.vectors[usable], self.parents[usable]
        self.present = np.zeros(self.rows, dtype=bool)
        self.present[self.parents] = True
        self._starts = np.flatnonzero(np.r_[True, np.diff(self.parents) != 0])

    def search(
        self,
        vector: np.ndarray,
        k: int,
        allowed: np.ndarray | None,
        exact: bool,
        ef: int | None,
    ) -> list[tuple[int, float]]:
        if not len(self.vectors):
            return []
        query = _query(vector)
        per_image = self.vectors @ query.T  # images x query vectors
        best = np.maximum.reduceat(per_image, self._starts, axis=0).sum(axis=1)
        scores = np.full(self.rows, -np.inf, dtype=np.float32)
        scores[self.parents[self._starts]] = best
        candidates = self.present if allowed is None else self.present & allowed
        return top_rows(scores, candidates, k)

    def nbytes(self) -> int:
        return int(self.vectors.nbytes + self.parents.nbytes + self.present.nbytes)


def vector_index(field: VectorField, column: pa.ChunkedArray, hnsw_min_rows: int) -> Any:
    if field.multi:
        return MultiVectors(field, column)
    return SingleVectors(field, column, hnsw_min_rows)
