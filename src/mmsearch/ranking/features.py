"""Per-candidate features for the learned reranker.

The feature list is a function of the build (its retrievers, attribute columns and
whether it has a perceptual-hash column), never of the query, so that a model trained
on one build can be checked for compatibility with another by comparing names. The
entity-graph features (``GRAPH_FEATURES``) are in every space: their values come from
the search layer (``GraphEvidence``; ``ranking/`` cannot read the graph, which sits
above it), and are 0 where the build has no graph or the query names no entity, so a
model trained with them still ranks a build without a graph. Absence is explicit: a
candidate a retriever did not return gets score 0, rank ``depth + 1`` and
``found = 0``; a missing attribute is NaN (LightGBM learns where NaN goes at each
split).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
from PIL import Image

from mmsearch.errors import QueryError
from mmsearch.index.base import Match
from mmsearch.manifest import BuildManifest, EncoderDescription
from mmsearch.ranking.lexical import LEXICAL_FEATURES, lexical_matrix
from mmsearch.ranking.pool_feedback import pool_feedback_matrix, pool_feedback_names
from mmsearch.retrieval.planner import plan_retrievers
from mmsearch.retrieval.retrieve import Retrieved

NUMERIC_KINDS = {"int", "float", "bool"}
RRF_K = 60  # the ``fusion:rrf`` feature: the default fusion's score, as a starting point
_WORD = re.compile(r"\w+")
# What the entity graph says about each candidate (graph/features.py computes them):
# entities the query names that the item carries (count, share, specificity-weighted,
# named rather than near in meaning), the strongest co-occurrence (PMI) between a
# named entity and one of the item's own, the graph distance as 1 / (1 + hops), and
# the share of the fused top hits in the item's visual cluster.
GRAPH_FEATURES = (
    "graph:query_entities",
    "graph:entity_matches",
    "graph:named_matches",
    "graph:entity_share",
    "graph:entity_weight",
    "graph:neighbour_pmi",
    "graph:proximity",
    "graph:cluster_top",
)
# The keyword search with feedback (RM3, ``Retrieved.feedback``) as evidence of its own:
# its score, rank and presence, and the score min-max and z-scored within its list. The
# expanded query finds what the query's own words miss (a field's other word for the
# same thing), so its list knows what neither first-pass signal does. Absent as for a
# signal (0, depth + 1, 0, 0, NaN) where retrieval did not run it.
FEEDBACK_FEATURES = (
    "keyword_feedback:score",
    "keyword_feedback:rank",
    "keyword_feedback:found",
    "keyword_feedback:norm",
    "keyword_feedback:zscore",
)
# Candidate ids in fused order → one row per id, columns in ``GRAPH_FEATURES`` order.
GraphEvidence = Callable[[Sequence[str]], np.ndarray]


def phash_columns(schema: pa.Schema) -> list[str]:
    """Perceptual-hash columns are recognised by name (``phash``, ``image_phash``...)."""
    return [f.name for f in schema if "phash" in f.name.lower()]


def all_signals(encoders: dict[str, EncoderDescription]) -> dict[str, str | None]:
    """Every retriever this build can run → its vector column (None for keyword)."""
    try:
        plans = plan_retrievers(has_text=True, has_image=True, encoders=encoders)
    except QueryError:
        plans = plan_retrievers(has_text=True, has_image=False, encoders=encoders)
    return {plan.name: plan.column for plan in plans}


@dataclass(frozen=True)
class FeatureSpace:
    """The features a build supports, in a fixed order."""

    signals: tuple[str, ...]
    vector_columns: tuple[tuple[str, str], ...]  # (signal, column)
    numeric: tuple[str, ...]
    strings: tuple[str, ...]
    phash: str | None

    @classmethod
    def for_build(cls, manifest: BuildManifest, schema: pa.Schema) -> FeatureSpace:
        signals = all_signals(manifest.encoders)
        attributes = manifest.attributes
        hashes = phash_columns(schema)
        return cls(
            signals=tuple(sorted(signals)),
            vector_columns=tuple(sorted((s, c) for s, c in signals.items() if c)),
            numeric=tuple(a.column for a in attributes if a.kind in NUMERIC_KINDS),
            strings=tuple(a.column for a in attributes if a.kind == "string"),
            phash=hashes[0] if hashes else None,
        )

    def names(self) -> list[str]:
        names: list[str] = []
        for signal in self.signals:
            names += [f"{signal}:score", f"{signal}:rank", f"{signal}:found"]
        names += [f"{signal}:cosine" for signal, _ in self.vector_columns]
        names += ["text:title_overlap", "text:body_overlap", "attr:string_match"]
        names += [f"attr:{column}" for column in self.numeric]
        if self.phash:
            names.append("image:phash_distance")
        names += ["query:terms", "query:has_image", "query:has_filter"]
        for signal in self.signals:
            names += [f"{signal}:norm", f"{signal}:zscore", f"{signal}:rank_ratio"]
        names += ["fusion:rrf", *LEXICAL_FEATURES, *FEEDBACK_FEATURES]
        names += [*self.pool_feedback_names(), *GRAPH_FEATURES]
        return names

    def pool_feedback_names(self) -> list[str]:
        return pool_feedback_names([signal for signal, _ in self.vector_columns])

    def columns(self) -> list[str]:
        """Columns to fetch for the candidates (one store query)."""
        cols = ["id", "title", "search_text", *self.strings, *self.numeric]
        cols += [column for _, column in self.vector_columns]
        if self.phash:
            cols.append(self.phash)
        return cols


def _terms(text: str | None) -> set[str]:
    return set(_WORD.findall((text or "").lower()))


def _overlap(query: set[str], text: str | None) -> float:
    if not query:
        return 0.0
    return len(query & _terms(text)) / len(query)


def hamming(a: Any, b: Any) -> int:
    """Bits that differ between two hashes given as hex strings or integers."""
    x = int(a, 16) if isinstance(a, str) else int(a)
    y = int(b, 16) if isinstance(b, str) else int(b)
    return ((x ^ y) & 0xFFFFFFFFFFFFFFFF).bit_count()  # int64 storage: compare the 64 bits


def hashes_of(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, list | tuple):
        return [v for v in value if v not in (None, "")]
    return [value] if value != "" else []


def query_phash(image: Image.Image | None) -> int | None:
    """The query image's pHash, computed the way ingest hashes catalog images."""
    if image is None:
        return None
    from mmsearch.encoders.hashes import image_hashes

    return image_hashes(image).phash


def item_vectors(value: Any) -> np.ndarray | None:
    """A vector cell as a 2-D array: one row, or one row per image for multivector columns."""
    if value is None:
        return None
    array = np.asarray(
        [np.asarray(v, np.float32) for v in value] if _is_multi(value) else [value], np.float32
    )
    return array if array.size else None


def _is_multi(value: Any) -> bool:
    first = value[0] if len(value) else None
    return first is not None and hasattr(first, "__len__")


def cosine(value: Any, query: np.ndarray | None) -> float:
    """Cosine of unit vectors; for several images, the best one (MaxSim, as the store does)."""
    vectors = item_vectors(value)
    if vectors is None or query is None:
        return float("nan")
    return float(np.max(vectors @ np.asarray(query, np.float32)))


def feature_matrix(
    space: FeatureSpace,
    retrieved: Retrieved,
    ids: list[str],
    rows: dict[str, dict[str, Any]],
    graph: GraphEvidence | None = None,
) -> np.ndarray:
    """One row per candidate id, columns in ``space.names()`` order (float64, NaN = missing).

    ``ids`` in fused order (the graph's cluster feature reads the top of it); ``graph``:
    the query's graph evidence, None where there is none (its columns are then 0)."""
    positions = {
        signal: {m.id: (rank, m.score) for rank, m in enumerate(matches, start=1)}
        for signal, matches in retrieved.ranked.items()
    }
    query = _terms(retrieved.text)
    text_lower = (retrieved.text or "").lower()
    qhash = query_phash(retrieved.image) if space.phash else None
    added = 3 * len(space.signals) + 1 + len(LEXICAL_FEATURES)
    added += len(FEEDBACK_FEATURES) + len(space.pool_feedback_names()) + len(GRAPH_FEATURES)
    out = np.full((len(ids), len(space.names()) - added), np.nan, dtype=np.float64)
    for i, item_id in enumerate(ids):
        row = rows.get(item_id, {})
        values: list[float] = []
        for signal in space.signals:
            rank, score = positions.get(signal, {}).get(item_id, (retrieved.depth + 1, 0.0))
            values += [score, float(rank), float(item_id in positions.get(signal, {}))]
        for signal, column in space.vector_columns:
            values.append(cosine(row.get(column), retrieved.query_vectors.get(signal)))
        values.append(_overlap(query, row.get("title")))
        values.append(_overlap(query, row.get("search_text")))
        values.append(
            float(
                sum(
                    1
                    for column in space.strings
                    if isinstance(row.get(column), str)
                    and len(row[column]) >= 3
                    and row[column].lower() in text_lower
                )
            )
        )
        for column in space.numeric:
            value = row.get(column)
            values.append(np.nan if value is None else float(value))
        if space.phash:
            item_hashes = hashes_of(row.get(space.phash))
            values.append(
                float(min(hamming(qhash, h) for h in item_hashes))
                if qhash is not None and item_hashes
                else np.nan
            )
        values += [
            float(len(query)),
            float(retrieved.image is not None),
            float(retrieved.user_filtered),
        ]
        out[i] = values
    per_query = _per_query_matrix(space, retrieved, ids)
    lexical = lexical_matrix(
        retrieved.text,
        [str(rows.get(i, {}).get("title") or "") for i in ids],
        [str(rows.get(i, {}).get("search_text") or "") for i in ids],
    )
    feedback = feedback_matrix(retrieved.feedback, ids, retrieved.depth)
    pooled = pool_feedback_matrix(retrieved, ids, space.vector_columns, rows)
    return np.hstack([out, per_query, lexical, feedback, pooled, graph_matrix(graph, ids)])


def feedback_matrix(matches: Sequence[Match] | None, ids: list[str], depth: int) -> np.ndarray:
    """The feedback columns (``FEEDBACK_FEATURES`` order) of ``ids`` from the keyword list
    with feedback; every id absent where there is no list."""
    out = np.tile([0.0, float(depth + 1), 0.0, 0.0, np.nan], (len(ids), 1))
    if not matches:
        return out
    scores = np.asarray([m.score for m in matches], dtype=np.float64)
    low, high = float(scores.min()), float(scores.max())
    mean, sd = float(scores.mean()), float(scores.std())
    found = {m.id: (rank, m.score) for rank, m in enumerate(matches, start=1)}
    for i, item_id in enumerate(ids):
        if item_id in found:
            rank, score = found[item_id]
            norm = (score - low) / (high - low) if high > low else 1.0
            out[i] = [score, float(rank), 1.0, norm, (score - mean) / sd if sd > 0 else 0.0]
    return out


def graph_matrix(graph: GraphEvidence | None, ids: list[str]) -> np.ndarray:
    """The graph columns: the evidence's, checked for shape, or zeros without one."""
    if graph is None or not ids:
        return np.zeros((len(ids), len(GRAPH_FEATURES)))
    matrix = np.asarray(graph(ids), dtype=np.float64)
    if matrix.shape != (len(ids), len(GRAPH_FEATURES)):
        raise ValueError(
            f"graph evidence gave shape {matrix.shape}, expected {(len(ids), len(GRAPH_FEATURES))}"
        )
    return matrix


def _per_query_matrix(space: FeatureSpace, retrieved: Retrieved, ids: list[str]) -> np.ndarray:
    """Each signal's score made comparable across queries: min-max and z-score within
    the signal's list for this query, and rank / list length (2.0 when absent, NaN
    z-score); then the RRF score. Raw BM25 scores vary by query length and rare words,
    so a model trained on them alone learns thresholds that do not transfer."""
    columns: list[np.ndarray] = []
    rrf = np.zeros(len(ids))
    for signal in space.signals:
        matches = retrieved.ranked.get(signal, [])
        scores = np.asarray([m.score for m in matches], dtype=np.float64)
        low, high = (float(scores.min()), float(scores.max())) if scores.size else (0.0, 0.0)
        mean, sd = (float(scores.mean()), float(scores.std())) if scores.size else (0.0, 0.0)
        found = {m.id: (rank, m.score) for rank, m in enumerate(matches, start=1)}
        norm, z, ratio = np.zeros(len(ids)), np.full(len(ids), np.nan), np.full(len(ids), 2.0)
        for i, item_id in enumerate(ids):
            if item_id not in found:
                continue
            rank, score = found[item_id]
            norm[i] = (score - low) / (high - low) if high > low else 1.0
            z[i] = (score - mean) / sd if sd > 0 else 0.0
            ratio[i] = rank / len(matches)
            rrf[i] += 1.0 / (RRF_K + rank)
        columns += [norm, z, ratio]
    columns.append(rrf)
    return np.column_stack(columns) if columns else np.zeros((len(ids), 0))
