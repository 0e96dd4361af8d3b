"""Clusters of duplicate items in a collection, from per-image moderation fingerprints.

Two images are duplicates in one of two senses, and the report says which:

- **exact**: the same bytes, or the same decoded pixels once cropped to content
  (``moderation.fingerprints``). A perceptual-hash distance of 0 is *not* exact:
  skin-tone variants and differently coloured stripes share hashes.
- **near**: PDQ distance (the smallest over the query's eight rotations and flips) at
  most ``max_distance``, a threshold taken from a strictness level calibrated for a
  false-match rate between different pictures (``moderation.fingerprints.STRICTNESS``).
  Images too featureless for PDQ to judge (quality < ``pdq.MIN_QUALITY``, such as a
  flat square) take part in exact matches only.

Pixel-identical images are grouped first (each group is joined as a star, never as all
its pairs), and near pairs are found between one image per group with the multi-index
hash lookup (``moderation.hash_index``), so no step compares all pairs of images.
Items are then joined with union-find over the pairs, so a chain A≈B≈C is one cluster
even if A and C are further apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from mmsearch.moderation.fingerprints import Fingerprint, MatchKind
from mmsearch.moderation.hash_index import HashIndex
from mmsearch.moderation.pdq import MIN_QUALITY, VARIANTS, from_hex


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
    kind: MatchKind  # "same bytes", "same pixels" or "near"
    distance: int  # PDQ bits (of 256), smallest over the rotations and flips of image a
    variant: str  # the rotation or flip of image a that matched

    @property
    def exact(self) -> bool:
        return self.kind != "near"


@dataclass
class DuplicateCluster:
    ids: list[str]
    pairs: list[DuplicatePair] = field(default_factory=list)

    @property
    def kind(self) -> str:
        """``exact`` when every joining pair is the same bytes or pixels, else ``near``."""
        return "exact" if all(p.exact for p in self.pairs) else "near"


@dataclass
class DuplicateReport:
    images: int
    items: int
    max_distance: int  # PDQ bits of 256
    strictness: str | None  # the level the threshold came from; None when given by hand
    featureless: int  # images near matching skipped (PDQ quality < MIN_QUALITY)
    unreadable: list[str]  # one message per image that could not be read again
    clusters: list[DuplicateCluster]

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for cluster, out in zip(self.clusters, data["clusters"], strict=True):
            out["kind"] = cluster.kind
        return data


@dataclass(frozen=True)
class _Edge:
    first: int  # image indices
    second: int
    kind: MatchKind
    distance: int
    variant: str


def find_clusters(
    item_ids: list[str],
    image_item: np.ndarray,
    image_position: np.ndarray,
    fingerprints: Sequence[Fingerprint],
    *,
    max_distance: int,
) -> list[DuplicateCluster]:
    """Clusters (two or more items) of duplicate images; one fingerprint per image.

    ``image_item[i]`` is the index into ``item_ids`` of image ``i``, ``image_position[i]``
    its position in that item's image list.
    """
    edges = _exact_edges(fingerprints) + _near_edges(fingerprints, max_distance)
    edges = [e for e in edges if image_item[e.first] != image_item[e.second]]
    sets = UnionFind(len(item_ids))
    for edge in edges:
        sets.union(int(image_item[edge.first]), int(image_item[edge.second]))
    members: dict[int, list[int]] = {}
    for index in range(len(item_ids)):
        members.setdefault(sets.find(index), []).append(index)
    clusters = {
        root: DuplicateCluster(sorted(item_ids[i] for i in group))
        for root, group in members.items()
        if len(group) > 1
    }
    for edge in edges:
        item_a, item_b = int(image_item[edge.first]), int(image_item[edge.second])
        clusters[sets.find(item_a)].pairs.append(
            DuplicatePair(
                item_ids[item_a],
                item_ids[item_b],
                int(image_position[edge.first]),
                int(image_position[edge.second]),
                edge.kind,
                edge.distance,
                edge.variant,
            )
        )
    ordered = sorted(clusters.values(), key=lambda c: (-len(c.ids), c.ids[0]))
    rank = {"same bytes": 0, "same pixels": 1, "near": 2}
    for cluster in ordered:
        cluster.pairs.sort(key=lambda p: (rank[p.kind], p.distance, p.a, p.b))
    return ordered


def _exact_edges(fingerprints: Sequence[Fingerprint]) -> list[_Edge]:
    """Each pixel-identical image joined to the first of its group (a star, not all pairs)."""
    first: dict[str, int] = {}
    edges: list[_Edge] = []
    for index, print_ in enumerate(fingerprints):
        head = first.setdefault(print_.pixels_sha256, index)
        if head != index:
            same_bytes = fingerprints[head].sha256 == print_.sha256
            kind: MatchKind = "same bytes" if same_bytes else "same pixels"
            edges.append(_Edge(head, index, kind, 0, VARIANTS[0]))
    return edges


def _near_edges(fingerprints: Sequence[Fingerprint], max_distance: int) -> list[_Edge]:
    """Pairs of different pixels within ``max_distance``, one image per pixel group."""
    seen: set[str] = set()
    heads: list[int] = []
    for index, print_ in enumerate(fingerprints):
        if print_.pixels_sha256 in seen or print_.pdq_quality < MIN_QUALITY:
            continue
        seen.add(print_.pixels_sha256)
        heads.append(index)
    if len(heads) < 2:
        return []
    index = HashIndex(np.stack([from_hex(fingerprints[i].pdq) for i in heads]))
    found: dict[tuple[int, int], _Edge] = {}
    for row, head in enumerate(heads):
        variants = fingerprints[head].variant_words()
        rows, distances = index.search(variants, max_distance)
        for other, distance in zip(rows.tolist(), distances.tolist(), strict=True):
            if other == row:
                continue
            # Each pair is searched from both sides (a turn one way may match a little
            # better than the other); the closer one is kept.
            key = (min(row, other), max(row, other))
            if key in found and found[key].distance <= distance:
                continue
            per_variant = np.bitwise_count(variants ^ index.hashes[other]).sum(axis=1)
            variant = VARIANTS[int(np.argmin(per_variant))]
            found[key] = _Edge(head, heads[other], "near", int(distance), variant)
    return [found[key] for key in sorted(found)]


def featureless_images(fingerprints: Sequence[Fingerprint]) -> int:
    """Images whose PDQ is too flat to decide a near match (they match exactly or not at all)."""
    return sum(1 for print_ in fingerprints if print_.pdq_quality < MIN_QUALITY)
