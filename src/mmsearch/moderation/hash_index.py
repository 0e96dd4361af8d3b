"""Find every stored 256-bit hash within a Hamming radius without comparing all of them.

Multi-index hashing (Norouzi, Punjani and Fleet, 2012): the 256 bits are cut into
``CHUNKS`` chunks of 16 bits, and each chunk position gets a table from chunk value
to the rows holding it. If a stored hash lies within ``radius`` of the query, the
chunk distances add up to at most ``radius``, so some chunk differs in at most
``radius // CHUNKS`` bits (pigeonhole). Looking up, per chunk, every value within that
sub-radius of the query's chunk therefore finds every true match among the candidates,
and each candidate is then verified with the full distance: the answer is exactly the
brute-force one. The tables are sorted arrays with an offset per 16-bit value
(CSR), so a lookup is a few vectorised NumPy gathers, not a Python loop over rows.

A query may bring several hashes (PDQ's eight rotations and flips); a row's distance is
the smallest over them. When the lookups would touch more than a tenth of what a scan
reads (a wide radius), a plain scan is cheaper and gives the same answer, so the index
switches to it. That happens well below a third of the bits: multi-index hashing pays
at tight radii (PDQ's usual 31 bits for photos), not at the 85 bits that the emoji
needed for a 0.1% false-match rate (docs/BENCHMARKS.md, "Moderation: matching
robustness"), where every lookup is a scan.
"""

from __future__ import annotations

from functools import cache
from itertools import combinations

import numpy as np

from mmsearch.moderation.pdq import WORDS

CHUNK_BITS = 16
CHUNKS = WORDS * 64 // CHUNK_BITS
_VALUES = 1 << CHUNK_BITS
# Use the tables only while they touch fewer rows than this share of a scan: a scan is
# one vectorised pass, a lookup several gathers, so a row costs more through the tables.
_SCAN_SHARE = 0.1


@cache
def _masks(sub_radius: int) -> np.ndarray:
    """Every 16-bit mask with at most ``sub_radius`` bits set (the neighbours of a chunk)."""
    masks = [0]
    for weight in range(1, min(sub_radius, CHUNK_BITS) + 1):
        masks.extend(sum(1 << b for b in bits) for bits in combinations(range(CHUNK_BITS), weight))
    return np.array(masks, dtype=np.int64)


class HashIndex:
    """An immutable index over ``n`` hashes, each four uint64 words; rows are 0..n-1."""

    def __init__(self, hashes: np.ndarray, *, scan_share: float = _SCAN_SHARE):
        self.scan_share = scan_share  # math.inf: always the tables (tests use it)
        self.hashes = np.ascontiguousarray(np.asarray(hashes, dtype=np.uint64).reshape(-1, WORDS))
        # Word-major copy (WORDS, n): distances are summed word by word over contiguous
        # rows, several times faster than popcounting (n, 4) and reducing its last axis.
        self._words = np.ascontiguousarray(self.hashes.T)
        count = len(self.hashes)
        keys = self.hashes.view(np.uint16).reshape(count, CHUNKS).T.astype(np.int64)
        row_type = np.int32 if count < 2**31 else np.int64
        self._rows = np.empty((CHUNKS, count), dtype=row_type)
        self._offsets = np.empty((CHUNKS, _VALUES + 1), dtype=np.int64)
        for chunk in range(CHUNKS):
            order = np.argsort(keys[chunk], kind="stable")
            self._rows[chunk] = order
            self._offsets[chunk] = np.searchsorted(keys[chunk][order], np.arange(_VALUES + 1))

    def __len__(self) -> int:
        return len(self.hashes)

    def search(self, query: np.ndarray, radius: int) -> tuple[np.ndarray, np.ndarray]:
        """Rows within ``radius`` of any of the query's hashes, and their smallest distances.

        ``query`` is one hash (4,) or several (k, 4); rows come back sorted.
        """
        if radius < 0:
            raise ValueError(f"radius must be at least 0 (got {radius})")
        queries = np.asarray(query, dtype=np.uint64).reshape(-1, WORDS)
        candidates = self._candidates(queries, radius)
        if candidates is None:  # the scan: every row, without gathering a copy first
            distances = _min_distances(queries, self._words)
            rows = np.flatnonzero(distances <= radius)
            return rows.astype(np.int64), distances[rows].astype(np.int64)
        if candidates.size == 0:
            return candidates.astype(np.int64), np.zeros(0, dtype=np.int64)
        distances = _min_distances(queries, self._words[:, candidates])
        keep = distances <= radius
        return candidates[keep].astype(np.int64), distances[keep].astype(np.int64)

    def _candidates(self, queries: np.ndarray, radius: int) -> np.ndarray | None:
        """Rows sharing a chunk within the sub-radius with some query; None: scan them all.

        Both costs are counted in rows touched: the index reads one offset pair per
        neighbouring chunk value and then every row in those buckets; a scan reads every
        row once per query hash. The cheaper one runs.
        """
        masks = _masks(radius // CHUNKS)
        scan_cost = len(self.hashes) * len(queries)
        if len(masks) * CHUNKS * len(queries) > self.scan_share * scan_cost:
            return None
        keys = np.ascontiguousarray(queries).view(np.uint16).reshape(len(queries), CHUNKS)
        starts: list[np.ndarray] = []
        sizes: list[np.ndarray] = []
        for chunk in range(CHUNKS):
            values = np.unique(keys[:, chunk].astype(np.int64)[:, None] ^ masks[None, :])
            start = self._offsets[chunk][values]
            starts.append(start)
            sizes.append(self._offsets[chunk][values + 1] - start)
        if sum(int(size.sum()) for size in sizes) > self.scan_share * scan_cost:
            return None
        found: list[np.ndarray] = []
        for chunk in range(CHUNKS):
            size = sizes[chunk]
            if not size.any():
                continue
            # Positions start..stop-1 of every visited bucket, as one flat array.
            ends = np.cumsum(size)
            flat = np.arange(int(ends[-1])) + np.repeat(starts[chunk] - (ends - size), size)
            found.append(self._rows[chunk][flat])
        if not found:
            return np.zeros(0, dtype=np.int64)
        # Sorted and without repeats; marking a flag per row is linear where a sort is not.
        seen = np.zeros(len(self.hashes), dtype=bool)
        seen[np.concatenate(found)] = True
        return np.flatnonzero(seen)

    def pairs_within(
        self, variants: np.ndarray, radius: int, *, budget: int = 4_000_000
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Every pair of stored rows within ``radius``, found as one batched self-join.

        ``variants`` is (n, k, 4): row ``i``'s hash as ``k`` rotations and flips (the
        first one the row itself, as stored). A pair (i, j), i != j, is found when some
        variant of ``i`` lies within ``radius`` of row ``j``; each pair comes back once
        per direction that finds it, as (i, j, distance, variant), so the caller can keep
        the closer direction. The lookups of many rows run together, a block at a time,
        so the Python cost is per block, not per row; ``budget`` bounds the candidates
        held at once (memory stays bounded whatever ``n``). When the tables would touch
        more rows than a scan, the block is scanned instead (a wide radius).
        """
        if radius < 0:
            raise ValueError(f"radius must be at least 0 (got {radius})")
        count = len(self.hashes)
        variants = np.asarray(variants, dtype=np.uint64).reshape(count, -1, WORDS)
        kinds = variants.shape[1]
        masks = _masks(radius // CHUNKS)
        per_hash = max(1.0, CHUNKS * len(masks) * count / _VALUES)
        tables = joins_by_tables(count, radius, self.scan_share)
        block = int(min(max(1, budget // (kinds * per_hash)), max(count, 1)))
        found: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        for start in range(0, count, block if tables else 1):
            if not tables:
                found.append(self._scan_row(start, variants[start], radius))
                continue
            queries = variants[start : start + block].reshape(-1, WORDS)
            query_ids, rows = self._candidate_pairs(queries, masks)
            distance = np.zeros(len(rows), dtype=np.int16)
            for word in range(WORDS):
                distance += np.bitwise_count(self._words[word][rows] ^ queries[query_ids, word])
            first = start + query_ids // kinds
            keep = (distance <= radius) & (first != rows)
            found.append((first[keep], rows[keep], distance[keep], query_ids[keep] % kinds))
        if not found:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty, empty, empty
        parts = zip(*found, strict=True)
        first, second, distance, variant = (np.concatenate(part) for part in parts)
        # Several chunks (and variants) find one pair: keep each (i, j) once, at its
        # smallest distance.
        order = np.lexsort((distance, second, first))
        first, second, distance, variant = (a[order] for a in (first, second, distance, variant))
        unique = np.ones(len(first), dtype=bool)
        unique[1:] = (first[1:] != first[:-1]) | (second[1:] != second[:-1])
        return (
            first[unique].astype(np.int64),
            second[unique],
            distance[unique].astype(np.int64),
            variant[unique].astype(np.int64),
        )

    def _scan_row(
        self, row: int, variants: np.ndarray, radius: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """One row's variants against every row, one contiguous pass per word (a wide radius)."""
        distance = np.zeros((len(variants), len(self.hashes)), dtype=np.int16)
        for word in range(WORDS):
            distance += np.bitwise_count(self._words[word][None, :] ^ variants[:, word, None])
        variant = np.argmin(distance, axis=0)
        best = distance[variant, np.arange(len(self.hashes))]
        rows = np.flatnonzero(best <= radius)
        rows = rows[rows != row]
        return np.full(len(rows), row, dtype=np.int64), rows, best[rows], variant[rows]

    def _candidate_pairs(
        self, queries: np.ndarray, masks: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """(query, row) pairs sharing a chunk within the sub-radius; repeats are kept."""
        keys = np.ascontiguousarray(queries).view(np.uint16).reshape(len(queries), CHUNKS)
        query_parts: list[np.ndarray] = []
        row_parts: list[np.ndarray] = []
        for chunk in range(CHUNKS):
            values = keys[:, chunk].astype(np.int64)[:, None] ^ masks[None, :]
            starts = self._offsets[chunk][values].ravel()
            sizes = self._offsets[chunk][values + 1].ravel() - starts
            total = int(sizes.sum())
            if total == 0:
                continue
            ends = np.cumsum(sizes)
            flat = np.arange(total) + np.repeat(starts - (ends - sizes), sizes)
            row_parts.append(self._rows[chunk][flat])
            query_parts.append(np.repeat(np.arange(len(values) * len(masks)) // len(masks), sizes))
        if not row_parts:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty
        return np.concatenate(query_parts), np.concatenate(row_parts).astype(np.int64)


def joins_by_tables(count: int, radius: int, scan_share: float = _SCAN_SHARE) -> bool:
    """Whether ``pairs_within`` over ``count`` hashes uses the tables (else a scan per row).

    Counted per query hash as in ``search``: the neighbouring chunk values probed plus the
    rows expected in their buckets (random hashes), against a share of a full scan.
    """
    probes = CHUNKS * len(_masks(radius // CHUNKS))
    return probes * (1 + count / _VALUES) <= scan_share * count


def _min_distances(queries: np.ndarray, words: np.ndarray) -> np.ndarray:
    """Each column's smallest Hamming distance to any query hash; ``words`` is (WORDS, n)."""
    best = np.full(words.shape[1], WORDS * 64 + 1, dtype=np.int16)
    for query in queries:
        distance = np.bitwise_count(words[0] ^ query[0]).astype(np.int16)
        for word in range(1, WORDS):
            distance += np.bitwise_count(words[word] ^ query[word])
        np.minimum(best, distance, out=best)
    return best
