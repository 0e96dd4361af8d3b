"""Reranker features from feedback over the candidate pool itself.

The keyword search with feedback (RM3, ``Retrieved.feedback``) is better evidence at
the top than either first-pass signal, and fused with the vector list it is the best
non-learned order on Cranfield (DBSF with keyword feedback). These features hand the
reranker that order and what follows from it:

- the fused scores the other fusions would give: DBSF of the first-pass lists, and DBSF
  and RRF with the keyword list replaced by the feedback list (0 where absent);
- vector feedback (Rocchio): the query vector moved toward the mean vector of the top
  3, 5 and 10 candidates of the feedback order, and each candidate's cosine with it.
  The top hits describe what the query means in the catalog's own terms, so a
  relevant item that shares few of the query's words comes closer;
- the candidate's cosine with the query standardised within the pool (z-score, and a
  share of the pool's best), which a fixed cosine threshold cannot express.

Without a feedback list the feedback order is the first-pass DBSF order, so a build
searched without it still gets every column. Vectors come from the candidates' rows
(the reranker already reads them for the cosine feature); a candidate without one has
NaN in its vector columns.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from mmsearch.ranking.fusion import FusionParams, fuse, order_by_score
from mmsearch.retrieval.retrieve import Retrieved

FUSION_FEATURES = ("fusion:dbsf", "fusion:dbsf_feedback", "fusion:rrf_feedback")
# Top candidates of the feedback order whose mean vector moves the query (Rocchio).
FEEDBACK_DEPTHS = (3, 5, 10)
KEYWORD = "keyword"


def vector_feature_names(signal: str) -> list[str]:
    """The columns of one vector signal, in ``pool_feedback_matrix`` order."""
    names = [f"{signal}:prf_cosine{k}" for k in FEEDBACK_DEPTHS]
    return [*names, f"{signal}:prf_zscore5", f"{signal}:pool_zscore", f"{signal}:pool_share"]


def pool_feedback_names(vector_signals: Sequence[str]) -> list[str]:
    names: list[str] = [*FUSION_FEATURES]
    for signal in vector_signals:
        names += vector_feature_names(signal)
    return names


def pool_feedback_matrix(
    retrieved: Retrieved,
    ids: list[str],
    vector_columns: Sequence[tuple[str, str]],
    rows: dict[str, dict[str, Any]],
) -> np.ndarray:
    """One row per id, columns in ``pool_feedback_names`` order (NaN = no vector)."""
    params = FusionParams()
    lists = dict(retrieved.ranked)
    if retrieved.feedback is not None and KEYWORD in lists:
        lists[KEYWORD] = retrieved.feedback
    dbsf = fuse("dbsf", retrieved.ranked, params).scores
    dbsf_feedback = fuse("dbsf", lists, params).scores
    rrf_feedback = fuse("rrf", lists, params).scores
    columns = [
        np.asarray([scores.get(i, 0.0) for i in ids], dtype=np.float64)
        for scores in (dbsf, dbsf_feedback, rrf_feedback)
    ]
    in_pool = set(ids)
    order = [i for i in order_by_score(dbsf_feedback) if i in in_pool]
    for signal, column in vector_columns:
        cells = [rows.get(i, {}).get(column) for i in ids]
        columns += _vector_columns(retrieved.query_vectors.get(signal), ids, order, cells)
    return np.column_stack(columns) if ids else np.zeros((0, len(columns)))


def _vector_columns(
    query: np.ndarray | None, ids: list[str], order: list[str], cells: list[Any]
) -> list[np.ndarray]:
    width = len(FEEDBACK_DEPTHS) + 3
    if query is None:
        return [np.full(len(ids), np.nan)] * width
    vectors = [_item_vector(cell) for cell in cells]
    dim = len(query)
    matrix = np.asarray([v if v is not None else np.zeros(dim) for v in vectors], np.float64)
    missing = np.asarray([v is None for v in vectors])
    q = _unit(np.asarray(query, np.float64))
    position = {item_id: i for i, item_id in enumerate(ids)}
    top = [position[i] for i in order if not missing[position[i]]]
    out: list[np.ndarray] = []
    for k in FEEDBACK_DEPTHS:
        moved = _unit(q + matrix[top[:k]].mean(axis=0)) if top else q
        out.append(matrix @ moved)
    cos = matrix @ q
    out += [_zscore(out[1], missing), _zscore(cos, missing), _share(cos, missing)]
    for column in out:
        column[missing] = np.nan
    return out


def _item_vector(cell: Any) -> np.ndarray | None:
    """A row's vector as one unit row (several images: their mean direction)."""
    if cell is None:
        return None
    array = np.asarray(cell, dtype=np.float64)
    if array.size == 0:
        return None
    return _unit(array.mean(axis=0) if array.ndim == 2 else array)


def _unit(vector: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 0 else vector


def _zscore(values: np.ndarray, missing: np.ndarray) -> np.ndarray:
    present = values[~missing]
    sd = float(present.std()) if present.size else 0.0
    return (values - float(present.mean())) / sd if sd > 0 else np.zeros(len(values))


def _share(values: np.ndarray, missing: np.ndarray) -> np.ndarray:
    present = values[~missing]
    top = float(present.max()) if present.size else 0.0
    return values / top if top > 0 else np.zeros(len(values))
