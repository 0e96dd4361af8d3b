"""Clusters of near-duplicate items in a collection, from per-image perceptual hashes.

Two images are a candidate pair when their 64-bit pHashes differ in at most
``max_distance`` bits. When the build has image vectors, a candidate is kept only
if the two images' vectors also agree (cosine ≥ ``min_cosine``): pHash alone pairs
some unrelated flat, low-detail images, and the descriptor is a cheap second
opinion. Items are then joined with union-find over the kept pairs, so a chain
A≈B≈C is one cluster even if A and C are further apart.

All pairs are compared with vectorised XOR + popcount in blocks (about 10⁹ pairs
per few seconds on one core), which is exact and simple up to ``MAX_IMAGES``
images (50,000 → 1.25·10⁹ pairs). Beyond that a multi-index hash (split the 64
bits into ``max_distance + 1`` bands; by pigeonhole a pair within the distance
shares a band exactly) would be the next step; the function refuses instead of
running for minutes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from mmsearch.errors import MMSearchError
from mmsearch.index.base import BuildReader

MAX_IMAGES = 50_000
_BLOCK_CELLS = 8_000_000  # uint64 cells per block: 64 MB of XOR results at a time


class UnionFind:
    """Disjoint sets over 0..n-1 with path halving and union by size."""

    def __init__(self, size: int):
        self.parent = list(range(size))
        self.size = [1] * size

    def find(self, node: int) -> int:
        parent = self.parent
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    def union(self, a: int, b: int) -> None:
        root_a, root_b = self.find(a), self.find(b)
        if root_a == root_b:
            return
        if self.size[root_a] < self.size[root_b]:
            root_a, root_b = root_b, root_a
        self.parent[root_b] = root_a
        self.size[root_a] += self.size[root_b]


@dataclass
class DuplicatePair:
    a: str
    b: str
    image_a: int
    image_b: int
    distance: int
    cosine: float | None


@dataclass
class DuplicateCluster:
    ids: list[str]
    pairs: list[DuplicatePair] = field(default_factory=list)

    @property
    def kind(self) -> str:
        return "exact" if all(p.distance == 0 for p in self.pairs) else "near"


@dataclass
class DuplicateReport:
    images: int
    items: int
    max_distance: int
    min_cosine: float | None
    clusters: list[DuplicateCluster]

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for cluster, out in zip(self.clusters, data["clusters"], strict=True):
            out["kind"] = cluster.kind
        return data


def candidate_pairs(hashes: np.ndarray, max_distance: int) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (i < j) whose Hamming distance is ≤ ``max_distance``, and the distances."""
    values = np.asarray(hashes, dtype=np.int64).view(np.uint64)
    count = len(values)
    block = max(1, _BLOCK_CELLS // max(count, 1))
    left: list[np.ndarray] = []
    right: list[np.ndarray] = []
    for start in range(0, count, block):
        stop = min(start + block, count)
        distances = np.bitwise_count(values[start:stop, None] ^ values[None, start:])
        rows, cols = np.nonzero(distances <= max_distance)
        cols = cols + start
        keep = cols > rows + start  # upper triangle only: each pair once, no self-pairs
        left.append(rows[keep] + start)
        right.append(cols[keep])
    if not left:
        empty = np.zeros(0, dtype=np.int64)
        return np.zeros((0, 2), dtype=np.int64), empty
    pairs = np.stack([np.concatenate(left), np.concatenate(right)], axis=1).astype(np.int64)
    dist = np.bitwise_count(values[pairs[:, 0]] ^ values[pairs[:, 1]]).astype(np.int64)
    return pairs, dist


def find_clusters(
    item_ids: list[str],
    image_item: np.ndarray,
    image_position: np.ndarray,
    hashes: np.ndarray,
    vectors: np.ndarray | None,
    *,
    max_distance: int,
    min_cosine: float | None,
) -> list[DuplicateCluster]:
    """Clusters (two or more items) of near-duplicate images; one row per image in inputs.

    ``image_item[i]`` is the index into ``item_ids`` of image ``i``, ``image_position[i]``
    its position in that item's image list; ``vectors`` (unit rows) may be None.
    """
    if len(hashes) > MAX_IMAGES:
        raise MMSearchError(
            f"{len(hashes)} images are more than the {MAX_IMAGES} that duplicate finding "
            "compares pairwise; filter the collection or split it"
        )
    pairs, distances = candidate_pairs(hashes, max_distance)
    other_item = image_item[pairs[:, 0]] != image_item[pairs[:, 1]]
    pairs, distances = pairs[other_item], distances[other_item]
    cosines: np.ndarray | None = None
    if vectors is not None and min_cosine is not None and len(pairs):
        found: np.ndarray = np.einsum("ij,ij->i", vectors[pairs[:, 0]], vectors[pairs[:, 1]])
        keep = (found >= min_cosine) | (distances == 0)
        pairs, distances, cosines = pairs[keep], distances[keep], found[keep]
    sets = UnionFind(len(item_ids))
    for a, b in pairs:
        sets.union(int(image_item[a]), int(image_item[b]))
    members: dict[int, list[int]] = {}
    for index in range(len(item_ids)):
        members.setdefault(sets.find(index), []).append(index)
    clusters: dict[int, DuplicateCluster] = {
        root: DuplicateCluster(sorted(item_ids[i] for i in group))
        for root, group in members.items()
        if len(group) > 1
    }
    for row, (a, b) in enumerate(pairs):
        item_a, item_b = int(image_item[a]), int(image_item[b])
        clusters[sets.find(item_a)].pairs.append(
            DuplicatePair(
                item_ids[item_a],
                item_ids[item_b],
                int(image_position[a]),
                int(image_position[b]),
                int(distances[row]),
                None if cosines is None else round(float(cosines[row]), 6),
            )
        )
    ordered = sorted(clusters.values(), key=lambda c: (-len(c.ids), c.ids[0]))
    for cluster in ordered:
        cluster.pairs.sort(key=lambda p: (p.distance, p.a, p.b))
    return ordered


def flatten_images(
    table: pa.Table, vector_column: str | None
) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """Per-image arrays from a build table's ``id``, ``image_phash`` (and vector) columns."""
    ids = table["id"].to_pylist()
    phashes = table["image_phash"].to_pylist()
    vectors = table[vector_column].to_pylist() if vector_column else None
    image_item: list[int] = []
    positions: list[int] = []
    hashes: list[int] = []
    rows: list[Any] = []
    for item, item_hashes in enumerate(phashes):
        item_vectors = (vectors[item] or []) if vectors is not None else []
        for position, value in enumerate(item_hashes or []):
            if value is None:
                continue
            image_item.append(item)
            positions.append(position)
            hashes.append(value)
            if vectors is not None:
                rows.append(item_vectors[position] if position < len(item_vectors) else None)
    matrix: np.ndarray | None = None
    if vectors is not None and rows and all(r is not None for r in rows):
        matrix = np.asarray(rows, dtype=np.float32)
    return (
        ids,
        np.asarray(image_item, dtype=np.int64),
        np.asarray(positions, dtype=np.int64),
        np.asarray(hashes, dtype=np.int64),
        matrix,
    )


def collection_duplicates(
    index: BuildReader, *, max_distance: int, min_cosine: float | None
) -> DuplicateReport:
    """Duplicate clusters of a build (any store's ``BuildReader``)."""
    names = set(index.schema.names)
    if "image_phash" not in names:
        raise MMSearchError(
            "This build has no perceptual hashes (it was made by an older mmsearch); "
            "re-ingest the catalog into a new collection to find duplicates"
        )
    multi = [v.column for v in index.vector_fields if v.multi]
    vector_column = "vector_image" if "vector_image" in multi else (multi[0] if multi else None)
    columns = ["id", "image_phash", *([vector_column] if vector_column else [])]
    ids, image_item, positions, hashes, vectors = flatten_images(index.scan(columns), vector_column)
    clusters = find_clusters(
        ids,
        image_item,
        positions,
        hashes,
        vectors,
        max_distance=max_distance,
        min_cosine=min_cosine if vectors is not None else None,
    )
    return DuplicateReport(
        images=len(hashes),
        items=len(ids),
        max_distance=max_distance,
        min_cosine=min_cosine if vectors is not None else None,
        clusters=clusters,
    )
