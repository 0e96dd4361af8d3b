"""Near PDQ pairs at a scale where the exact multi-index lookup costs the square of the count.

``hash_index.HashIndex`` is exact, but at strict (39 bits) each of its 16 chunks probes
every value within 2 bits, about 3% of all rows become candidates, and a self-join over
``n`` images verifies about 0.03·n² pairs (100,000 images: 201 CPU-s; 1 M: hours). At
85 or 99 bits it scans every row. This module answers the same question approximately:
each query hash's ``k`` nearest stored hashes, from an inverted-file index over binary
codes (faiss ``IndexBinaryIVF``: the codes are clustered into lists, a query reads only
the ``probes`` lists nearest to it), filtered to the radius. The callers use it only where
the exact join's own cost estimate says it would be too slow (``choose_method``), and say
which one ran.

Why IVF. Measured on synthetic codes (random 256-bit bases with copies at 1 to 39 bits,
mixed with random codes; docs/BENCHMARKS.md, "`mmsearch dupes`"), 100,000 images with
all eight dihedral variants as queries, CPU seconds on one thread:

- faiss ``IndexBinaryIVF`` (1,024 lists, 16 probed): build 11.8 s, queries 19.0 s,
  recall of the true near pairs 0.991 (8 probed: 10.1 s, 0.979; 32: 31.8 s, 0.997);
- faiss ``IndexBinaryHNSW`` (M 16, efConstruction 64, efSearch 32): build 22.7 s,
  queries 93.1 s, recall 0.979;
- usearch HNSW with the Hamming metric (same settings, 20,000 images): 107 µs a query
  against 66 µs for faiss HNSW at equal recall, so it was not taken further;
- faiss ``IndexBinaryMultiHash`` (multi-index hashing in C++, 16 x 16 bits, one flip):
  over three CPU-minutes for 80,000 queries into 1 M codes, stopped.

Random codes are the hard case for a graph (every unrelated hash sits at about 128 bits,
so a greedy walk has no gradient to follow); the lists need only put a hash and its near
copy in lists that are both among the few probed, which a 39-bit difference mostly does.
The lists' count is capped (``MAX_LISTS``): more lists make each probe cheaper but part
more near pairs, and recall fell to 0.73 with 4,096 lists at 1 M. A query therefore
reads about ``probes / lists`` of the rows: the join still grows with the square of the
count, but with a factor of 16/1,024 instead of 0.03 and every distance computed in C++.
Measured through ``pairs_within``: 100,000 codes at 32 bits, 0.9925 of the exact pairs
for 8.1x less CPU; 1 M codes (a 50,000-image sample), about 14 CPU-minutes against an
estimated 3.6 hours, finding 0.95 of the planted pairs at 32 bits but only 0.63 at 80:
at a third of the bits the approximate join is a sample of the pairs, and says so.

faiss ships as a wheel (``faiss-cpu``), already the project's vector baseline; it is in
the ``moderation`` extra.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import comb
from typing import Any, Literal

import numpy as np

from mmsearch.moderation.hash_index import CHUNK_BITS, CHUNKS, joins_by_tables
from mmsearch.moderation.pdq import VARIANTS, WORDS, MissingDependency

# Neighbours asked for per query hash; a query whose last neighbour is still within the
# radius (a large group of copies) is asked again with twice as many, up to the cap.
NEIGHBOURS = 16
MAX_NEIGHBOURS = 512
MAX_LISTS = 1024
PROBES = 16
# A single lookup (a banned list) reads a quarter of the lists, at least this many: it
# is one image, not a million, and a banned copy missed costs more than a duplicate
# missed. 200 lookups at 80 bits into 200,000 random codes with planted copies: 256 of
# 1,024 lists found 0.938 of the five nearest rows a scan finds within the radius, in
# 4.2 ms of CPU against the scan's 13.1 ms (64 lists: 0.794 in 1.2 ms); into 30,000
# codes, 128 of 468 lists found 0.975 (64: 0.946, 16: 0.87).
LOOKUP_PROBES = 64
# Rows per list at least, so that k-means has enough points per centroid.
ROWS_PER_LIST = 64
# Seconds per unit of work, measured on the 2-core benchmark host (docs/BENCHMARKS.md,
# "`mmsearch dupes`"): a candidate verified by the multi-index tables (NumPy gathers), a
# row-hash compared by a scan, a code compared inside faiss's IVF lists.
TABLE_PAIR_SECONDS = 45e-9
SCAN_PAIR_SECONDS = 15.6e-9
IVF_DISTANCE_SECONDS = 6.6e-9
# The exact join runs while its estimate is at most this many seconds, or at most twice
# the approximate one's (exactness is worth that much); beyond, the IVF index runs. With
# eight variants a query that keeps strict (39 bits) exact up to about 11,000 images,
# 31 bits up to about 1 M, and nothing wider beyond 11,000.
EXACT_SECONDS = 15.0
# A single lookup (a banned list) stays exact while it touches at most this many rows
# per query hash: a scan of 50,000 is about 3.5 ms for an image's eight variants, and
# only beyond that does the approximate lookup's lost recall buy enough time.
EXACT_LOOKUP_ROWS = 50_000

Method = Literal["exact multi-index", "exact scan", "approximate IVF"]


@dataclass(frozen=True)
class Choice:
    """Which near-pair method runs, and the numbers it was chosen on (for the report)."""

    method: Method
    count: int
    radius: int

    @property
    def approximate(self) -> bool:
        return self.method == "approximate IVF"

    def describe(self) -> str:
        if self.approximate:
            return (
                f"near pairs: approximate ({NEIGHBOURS}+ nearest of each image's eight "
                f"variants from a faiss IVF index, filtered to {self.radius} bits), since "
                f"an exact join over {self.count:,} images at {self.radius} bits would "
                "verify too many pairs"
            )
        return f"near pairs: exact ({self.method}) over {self.count:,} images"


def exact_join_seconds(count: int, radius: int, kinds: int = len(VARIANTS)) -> float:
    """Estimated CPU seconds of ``HashIndex.pairs_within`` over ``count`` images."""
    tables = joins_by_tables(count, radius)
    per_pair = TABLE_PAIR_SECONDS if tables else SCAN_PAIR_SECONDS
    return count * kinds * exact_lookup_rows(count, radius, tables) * per_pair


def approximate_join_seconds(count: int, kinds: int = len(VARIANTS)) -> float:
    """Estimated CPU seconds of ``NeighbourIndex.pairs_within``: each query hash reads the
    list centroids and ``PROBES`` lists."""
    lists = list_count(count)
    return count * kinds * (lists + min(PROBES, lists) * count / lists) * IVF_DISTANCE_SECONDS


def exact_lookup_rows(count: int, radius: int, tables: bool) -> int:
    """Rows one exact lookup touches per query hash: its buckets' expected rows, or all."""
    if not tables:
        return count
    sub_radius = min(radius // CHUNKS, CHUNK_BITS)
    probes = CHUNKS * sum(comb(CHUNK_BITS, bits) for bits in range(sub_radius + 1))
    return int(probes * (1 + count / 2**CHUNK_BITS))


def choose_method(count: int, radius: int, *, kinds: int = len(VARIANTS)) -> Choice:
    """Exact where it is affordable (narrow radii, small counts), else the IVF index."""
    exact = exact_join_seconds(count, radius, kinds)
    if exact <= max(EXACT_SECONDS, 2 * approximate_join_seconds(count, kinds)):
        method: Method = "exact multi-index" if joins_by_tables(count, radius) else "exact scan"
        return Choice(method, count, radius)
    return Choice("approximate IVF", count, radius)


def list_count(count: int) -> int:
    """The IVF index's lists for ``count`` codes: ``ROWS_PER_LIST`` each, at most ``MAX_LISTS``."""
    return int(min(MAX_LISTS, max(1, count // ROWS_PER_LIST)))


def lookup_probes(count: int) -> int:
    """Lists one lookup among ``count`` codes reads: a quarter of them, at least 64."""
    return max(LOOKUP_PROBES, list_count(count) // 4)


def lookup_is_approximate(count: int, radius: int) -> bool:
    """Whether one lookup among ``count`` stored hashes should use the IVF index."""
    rows = min(count, exact_lookup_rows(count, radius, tables=True))
    return rows > EXACT_LOOKUP_ROWS


def _faiss() -> Any:
    try:
        import faiss
    except ImportError:
        raise MissingDependency(
            "near-duplicate search over many images needs faiss: pip install 'mmsearch[moderation]'"
        ) from None
    return faiss


class NeighbourIndex:
    """An approximate k-nearest-neighbour index over ``n`` hashes (four uint64 words each)."""

    def __init__(self, hashes: np.ndarray, *, probes: int = PROBES, seed: int = 0):
        faiss = _faiss()
        codes = _codes(hashes)
        self.count = len(codes)
        lists = list_count(self.count)
        quantizer = faiss.IndexBinaryFlat(WORDS * 64)
        index = faiss.IndexBinaryIVF(quantizer, WORDS * 64, lists)
        # k-means on a bounded sample, few iterations: the lists need to be balanced,
        # not optimal, and training on all of 1 M codes would cost minutes.
        index.cp.niter = 10
        index.cp.max_points_per_centroid = ROWS_PER_LIST
        index.cp.seed = seed
        index.train(codes)
        index.add(codes)
        index.nprobe = min(probes, lists)
        self._index = index
        self._quantizer = quantizer  # the IVF index borrows it; keep it alive

    def __len__(self) -> int:
        return self.count

    def nearest(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Each query hash's ``k`` nearest rows and distances, (m, k); row -1 where none."""
        k = max(1, min(k, self.count))
        distances, rows = self._index.search(_codes(queries), k)
        return rows.astype(np.int64), distances.astype(np.int64)

    def within(self, queries: np.ndarray, radius: int, limit: int) -> tuple[np.ndarray, np.ndarray]:
        """Up to ``limit`` rows within ``radius`` of any query hash, closest first.

        The lookup of one image (its eight variants): each variant's ``limit`` nearest,
        the smallest distance per row. Sorted by distance, then row.
        """
        rows, distances = self.nearest(np.asarray(queries).reshape(-1, WORDS), limit)
        rows, distances = rows.ravel(), distances.ravel()
        keep = (rows >= 0) & (distances <= radius)
        rows, distances = rows[keep], distances[keep]
        order = np.lexsort((rows, distances))
        rows, distances = rows[order], distances[order]
        _, first = np.unique(rows, return_index=True)
        first.sort()
        return rows[first][:limit], distances[first][:limit]

    def pairs_within(
        self,
        variants: np.ndarray,
        radius: int,
        *,
        block: int = 65_536,
        queried: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Near pairs among the stored rows, as ``HashIndex.pairs_within`` returns them.

        ``variants`` is (n, kinds, 4), row ``i``'s rotations and flips with the stored hash
        first. Each variant's nearest rows within ``radius`` are (i, j, distance, variant),
        once per (i, j) at the smallest distance; a variant whose farthest neighbour is
        still within the radius is asked again with twice as many (up to
        ``MAX_NEIGHBOURS``). Images are queried ``block`` at a time, so memory is
        bounded by the block, not the count. ``queried`` asks only for the first rows'
        pairs (a benchmark's sample; all rows stay in the index).
        """
        count = self.count
        variants = np.asarray(variants, dtype=np.uint64).reshape(count, -1, WORDS)
        kinds = variants.shape[1]
        found: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        for start in range(0, count if queried is None else min(queried, count), block):
            stop = start + block if queried is None else min(start + block, queried)
            queries = variants[start:stop].reshape(-1, WORDS)
            ids = np.arange(len(queries), dtype=np.int64)
            k = NEIGHBOURS
            while len(ids):
                rows, distances = self.nearest(queries[ids], k)
                width = rows.shape[1]
                query = np.repeat(ids, width)
                first = start + query // kinds
                rows, distances = rows.ravel(), distances.ravel()
                keep = (rows >= 0) & (distances <= radius) & (rows != first)
                found.append((first[keep], rows[keep], distances[keep], query[keep] % kinds))
                full = distances.reshape(-1, width)[:, -1] <= radius
                if width >= min(MAX_NEIGHBOURS, count) or not full.any():
                    break
                ids, k = ids[full], 2 * k
        return _closest_once(found)


def _closest_once(
    found: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Each (i, j) once, at its smallest distance (several variants find one pair)."""
    if not found:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty, empty
    first, second, distance, variant = (np.concatenate(part) for part in zip(*found, strict=True))
    order = np.lexsort((distance, second, first))
    first, second, distance, variant = (a[order] for a in (first, second, distance, variant))
    unique = np.ones(len(first), dtype=bool)
    unique[1:] = (first[1:] != first[:-1]) | (second[1:] != second[:-1])
    return first[unique], second[unique], distance[unique], variant[unique]


def _codes(hashes: np.ndarray) -> np.ndarray:
    """(n, 4) uint64 words as the (n, 32) bytes faiss reads; Hamming distance is the same."""
    words = np.ascontiguousarray(np.asarray(hashes, dtype=np.uint64).reshape(-1, WORDS))
    return words.view(np.uint8).reshape(len(words), WORDS * 8)
