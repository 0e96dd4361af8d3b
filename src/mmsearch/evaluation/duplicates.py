"""Clusters of duplicate items in a collection, from per-image moderation fingerprints.

Two images are duplicates in one of two senses, and the report says which:

- **exact**: the same bytes, or the same decoded pixels once cropped to content
  (``moderation.fingerprints``). A perceptual-hash distance of 0 is *not* exact:
  skin-tone variants and differently coloured stripes share hashes.
- **near**: PDQ distance (the smallest over the query's eight rotations and flips) at
  most ``max_distance``, *or* a visual descriptor cosine (the better of an image and its
  mirror) at least ``min_visual_cosine``: a strictness level's two thresholds, calibrated
  together for a false-match rate between different pictures
  (``moderation.fingerprints.STRICTNESS``). Images too featureless for PDQ to judge
  (quality < ``pdq.MIN_QUALITY``, such as a flat square) match by PDQ only exactly; the
  visual pairs come from a dense self-join in blocks (``descriptor.pairs_at_least``),
  not an index, so their time grows with the square of the pictures.

Pixel-identical images are one picture (each joined to the picture's first image as a
star, never as all its pairs), and near pairs are found between one image per picture
with the multi-index hash lookup (``moderation.hash_index``), or, where that exact join
would cost too much (wide radii over many pictures), each picture's nearest neighbours
from an IVF index over the codes (``moderation.neighbour_index``, approximate, and the
report says so), so no PDQ step compares all pairs of images. Pictures are then
grouped as stars: the picture with the most near neighbours leads and takes them all,
then the next among those left. Every member of a cluster is one direct match from
its leader, so a chain A≈B≈C≈D (skin-tone variants, one look-alike after another) no
longer merges everything into one cluster, as connected components
(``linkage="single"``, kept to measure against) did.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

from mmsearch.moderation.descriptor import pairs_at_least
from mmsearch.moderation.fingerprints import (
    MAX_COLOUR_DIFFERENCE,
    Fingerprint,
    MatchKind,
    MatchMethod,
    colour_grid_difference,
)
from mmsearch.moderation.hash_index import HashIndex
from mmsearch.moderation.neighbour_index import Choice, Method, NeighbourIndex, choose_method
from mmsearch.moderation.pdq import MIN_QUALITY, VARIANTS, WORDS, from_hex, hamming


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
    method: MatchMethod = "exact"  # "exact", "pdq" or "visual": which comparison matched
    cosine: float | None = None  # visual descriptor cosine of a "visual" pair

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
    min_visual_cosine: float | None  # None: PDQ alone
    max_colour_difference: float  # largest colour_difference of a near pair
    strictness: str | None  # the level the threshold came from; None when given by hand
    featureless: int  # images near matching skipped (PDQ quality < MIN_QUALITY)
    unreadable: list[str]  # one message per image that could not be read again
    clusters: list[DuplicateCluster]
    near_pairs: str = ""  # how PDQ pairs were found: exact, or approximate and why

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
    method: MatchMethod = "exact"
    cosine: float | None = None


Linkage = Literal["star", "single"]
LINKAGES: tuple[Linkage, ...] = ("star", "single")


def find_clusters(
    item_ids: list[str],
    image_item: np.ndarray,
    image_position: np.ndarray,
    fingerprints: Sequence[Fingerprint],
    *,
    max_distance: int,
    min_visual_cosine: float | None = None,
    max_colour_difference: float | None = MAX_COLOUR_DIFFERENCE,
    linkage: Linkage = "star",
    near_pairs: Method | None = None,
) -> list[DuplicateCluster]:
    """Clusters (two or more items) of duplicate images; one fingerprint per image.

    ``image_item[i]`` is the index into ``item_ids`` of image ``i``, ``image_position[i]``
    its position in that item's image list. ``linkage`` says how near pairs make a
    cluster: ``star`` (every picture within ``max_distance`` of its cluster's leader,
    so no chain) or ``single`` (connected components, where A≈B≈C is one cluster even
    if A and C are far apart; kept to measure against). An item whose images land in
    different clusters is listed in each of them. A near pair must also have the same
    colours cell by cell (``colour_difference`` at most ``max_colour_difference``; None
    leaves colour out), so that recoloured variants of one drawing stay apart. With
    ``min_visual_cosine``, pairs of pictures whose visual descriptors are that close are
    near too (fingerprints without a descriptor take part by PDQ only). ``near_pairs``
    names how PDQ pairs are found; None chooses as ``near_pair_choice`` does.
    """
    if linkage not in LINKAGES:
        raise ValueError(f"unknown linkage {linkage!r}; choose one of {', '.join(LINKAGES)}")
    heads = _picture_heads(fingerprints)
    near = _near_edges(fingerprints, heads, max_distance, near_pairs)
    if min_visual_cosine is not None:
        near = _with_visual_edges(fingerprints, heads, near, min_visual_cosine)
    if max_colour_difference is not None:
        near = _same_colours(fingerprints, near, max_colour_difference)
    groups = _stars(near) if linkage == "star" else _components(near)
    # A picture held by several images is a group even when nothing else is near it.
    in_group = {picture for pictures, _ in groups for picture in pictures}
    copies: dict[int, list[int]] = {}
    for image, head in enumerate(heads):
        copies.setdefault(head, []).append(image)
    groups.extend(
        ([head], []) for head, images in copies.items() if len(images) > 1 and head not in in_group
    )
    clusters: list[DuplicateCluster] = []
    for pictures, edges in groups:
        images = [image for picture in pictures for image in copies[picture]]
        members = sorted({int(image_item[image]) for image in images})
        if len(members) < 2:
            continue
        cluster = DuplicateCluster(sorted(item_ids[i] for i in members))
        joined = [_exact_edge(fingerprints, heads[i], i) for i in images if heads[i] != i]
        for edge in joined + edges:
            item_a, item_b = int(image_item[edge.first]), int(image_item[edge.second])
            if item_a == item_b:
                continue
            cluster.pairs.append(
                DuplicatePair(
                    item_ids[item_a],
                    item_ids[item_b],
                    int(image_position[edge.first]),
                    int(image_position[edge.second]),
                    edge.kind,
                    edge.distance,
                    edge.variant,
                    edge.method,
                    edge.cosine,
                )
            )
        clusters.append(cluster)
    ordered = sorted(clusters, key=lambda c: (-len(c.ids), c.ids))
    rank = {"same bytes": 0, "same pixels": 1, "near": 2}
    for cluster in ordered:
        cluster.pairs.sort(key=lambda p: (rank[p.kind], p.distance, p.a, p.b))
    return ordered


def _picture_heads(fingerprints: Sequence[Fingerprint]) -> list[int]:
    """For each image, the first image with the same decoded pixels (itself if none before)."""
    first: dict[str, int] = {}
    return [first.setdefault(p.pixels_sha256, index) for index, p in enumerate(fingerprints)]


def _exact_edge(fingerprints: Sequence[Fingerprint], head: int, image: int) -> _Edge:
    """A pixel-identical image joined to its picture's head (a star, never all pairs)."""
    same_bytes = fingerprints[head].sha256 == fingerprints[image].sha256
    kind: MatchKind = "same bytes" if same_bytes else "same pixels"
    return _Edge(head, image, kind, 0, VARIANTS[0])


_Group = tuple[list[int], list[_Edge]]  # pictures (head images) and the near edges joining them


def _stars(edges: list[_Edge]) -> list[_Group]:
    """Leaders and their followers: every follower is within the threshold of its leader.

    The picture with the most near neighbours not yet taken leads first (the original
    that its altered copies all resemble) and takes all of them; the rest repeat with
    what is left. Two followers may be up to twice the threshold apart, but never by a
    chain: each is one direct match from the leader.
    """
    neighbours: dict[int, dict[int, _Edge]] = {}
    for edge in edges:
        neighbours.setdefault(edge.first, {})[edge.second] = edge
        neighbours.setdefault(edge.second, {})[edge.first] = edge
    taken: set[int] = set()
    groups: list[_Group] = []
    # A max-heap on the count of untaken neighbours, refreshed lazily: a popped entry
    # whose count has fallen since is pushed back with the new count.
    heap = [(-len(near), picture) for picture, near in neighbours.items()]
    heapq.heapify(heap)
    while heap:
        stale, leader = heapq.heappop(heap)
        if leader in taken:
            continue
        followers = sorted(q for q in neighbours[leader] if q not in taken)
        if len(followers) < -stale:
            heapq.heappush(heap, (-len(followers), leader))
            continue
        taken.add(leader)
        taken.update(followers)
        if followers:
            groups.append(([leader, *followers], [neighbours[leader][q] for q in followers]))
    return groups


def _components(edges: list[_Edge]) -> list[_Group]:
    """Connected components of the near pairs (single linkage: chains join)."""
    pictures = sorted({p for edge in edges for p in (edge.first, edge.second)})
    position = {picture: n for n, picture in enumerate(pictures)}
    sets = UnionFind(len(pictures))
    for edge in edges:
        sets.union(position[edge.first], position[edge.second])
    groups: dict[int, _Group] = {}
    for picture in pictures:
        groups.setdefault(sets.find(position[picture]), ([], []))[0].append(picture)
    for edge in edges:
        groups[sets.find(position[edge.first])][1].append(edge)
    return list(groups.values())


def _near_pictures(fingerprints: Sequence[Fingerprint], heads: list[int]) -> list[int]:
    """One image per picture, among those PDQ can judge (quality at least MIN_QUALITY)."""
    return [
        index
        for index, head in enumerate(heads)
        if head == index and fingerprints[index].pdq_quality >= MIN_QUALITY
    ]


def near_pair_choice(fingerprints: Sequence[Fingerprint], max_distance: int) -> Choice:
    """How ``find_clusters`` finds PDQ pairs here: exact, or approximate beyond its cost."""
    pictures = _near_pictures(fingerprints, _picture_heads(fingerprints))
    return choose_method(len(pictures), max_distance)


def _near_edges(
    fingerprints: Sequence[Fingerprint],
    heads: list[int],
    max_distance: int,
    method: Method | None = None,
) -> list[_Edge]:
    """Pairs of different pictures within ``max_distance``, between their head images."""
    pictures = _near_pictures(fingerprints, heads)
    if len(pictures) < 2:
        return []
    if method is None:
        method = choose_method(len(pictures), max_distance).method
    variants = _variant_words([fingerprints[i] for i in pictures])
    if method == "approximate IVF":
        index: HashIndex | NeighbourIndex = NeighbourIndex(variants[:, 0])
    else:
        index = HashIndex(variants[:, 0])
    first, second, distance, variant = index.pairs_within(variants, max_distance)
    # Each pair is searched from both sides (a turn one way may match a little better
    # than the other); the closer one is kept.
    found: dict[tuple[int, int], _Edge] = {}
    for row, other, bits, turn in zip(
        first.tolist(), second.tolist(), distance.tolist(), variant.tolist(), strict=True
    ):
        key = (min(row, other), max(row, other))
        if key in found and found[key].distance <= bits:
            continue
        found[key] = _Edge(pictures[row], pictures[other], "near", bits, VARIANTS[turn], "pdq")
    return [found[key] for key in sorted(found)]


def _variant_words(fingerprints: Sequence[Fingerprint]) -> np.ndarray:
    """Every fingerprint's eight variants as (n, 8, 4) uint64, decoded in one pass.

    The same as stacking ``Fingerprint.variant_words``, whose parsing hash by hash costs
    tens of seconds at a million images; the hex form is big-endian, word 3 first.
    """
    text = "".join(hex_ for print_ in fingerprints for hex_ in print_.pdq_variants)
    words = np.frombuffer(bytes.fromhex(text), dtype=">u8").reshape(len(fingerprints), -1, WORDS)
    return np.ascontiguousarray(words[:, :, ::-1]).astype(np.uint64)


def _with_visual_edges(
    fingerprints: Sequence[Fingerprint],
    heads: list[int],
    edges: list[_Edge],
    min_cosine: float,
) -> list[_Edge]:
    """``edges`` and the pairs of pictures (head images with a descriptor) that are not
    among them and whose visual cosine is at least ``min_cosine``."""
    vectors: list[np.ndarray] = []
    pictures: list[int] = []
    for index, head in enumerate(heads):
        vector = fingerprints[index].visual_vector() if head == index else None
        if vector is not None:
            vectors.append(vector)
            pictures.append(index)
    if len(pictures) < 2:
        return edges
    known = {(min(e.first, e.second), max(e.first, e.second)) for e in edges}
    first, second, cosine = pairs_at_least(np.stack(vectors), min_cosine)
    added: list[_Edge] = []
    for row, other, value in zip(first.tolist(), second.tolist(), cosine.tolist(), strict=True):
        a, b = pictures[row], pictures[other]
        if (a, b) in known:
            continue
        per_variant = hamming(
            fingerprints[a].variant_words(), from_hex(fingerprints[b].pdq)[None, :]
        )
        turn = int(np.argmin(per_variant))
        added.append(
            _Edge(a, b, "near", int(per_variant[turn]), VARIANTS[turn], "visual", round(value, 4))
        )
    return edges + added


def _same_colours(
    fingerprints: Sequence[Fingerprint], edges: list[_Edge], limit: float
) -> list[_Edge]:
    """The near pairs whose colour layouts agree within ``limit`` (or where one has none)."""
    grids: dict[int, np.ndarray | None] = {}

    def grid(image: int) -> np.ndarray | None:
        if image not in grids:
            grids[image] = fingerprints[image].colour_grids()
        return grids[image]

    kept: list[_Edge] = []
    for edge in edges:
        difference = colour_grid_difference(grid(edge.first), grid(edge.second))
        if difference is None or difference <= limit:
            kept.append(edge)
    return kept


def featureless_images(fingerprints: Sequence[Fingerprint]) -> int:
    """Images whose PDQ is too flat to decide a near match (they match exactly or not at all)."""
    return sum(1 for print_ in fingerprints if print_.pdq_quality < MIN_QUALITY)
