"""Synthetic PDQ codes with planted near copies, to measure the near-pair methods at scale.

Fingerprinting a million real images is out of reach of a test or a benchmark run, and
only the codes matter to the near-pair search, so these stand in for them: groups of a
random base "picture" (eight random codes as its rotations and flips) and copies of it
with 1 to ``radius`` random bits flipped, some of them turned (their variants a cyclic
shift of the base's, so that only a variant other than the first finds the pair), mixed
with unrelated random codes. Random 256-bit codes sit about 128 bits apart, so they are
the hard case for an index that relies on structure, not an easy one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mmsearch.moderation.pdq import PDQ_BITS, WORDS

KINDS = 8  # variants per code, as PDQ's eight rotations and flips


@dataclass(frozen=True)
class PlantedCodes:
    variants: np.ndarray  # (n, KINDS, WORDS) uint64, row i's variants, the stored hash first
    group: np.ndarray  # (n,) the planted group of row i, -1 for an unrelated code


def planted_codes(
    count: int,
    radius: int,
    seed: int,
    *,
    group_size: int = 8,
    planted_share: float = 0.5,
    turned_share: float = 0.25,
) -> PlantedCodes:
    """``count`` codes: ``planted_share`` of them in groups of ``group_size`` near copies.

    Rows are shuffled, so a group's members are not neighbours by position.
    """
    rng = np.random.default_rng(seed)
    groups = int(count * planted_share) // group_size
    planted = groups * group_size
    orbit = _random_codes(rng, (groups, KINDS))
    group = np.repeat(np.arange(groups), group_size)
    copy = np.tile(np.arange(group_size), groups) > 0  # member 0 is the base itself
    turned = copy & (rng.random(planted) < turned_share)
    turn = np.where(turned, rng.integers(1, KINDS, planted), 0)
    flips = np.where(copy, rng.integers(1, radius + 1, planted), 0)
    mask = np.concatenate(
        [_random_masks(rng, flips[at : at + 65_536]) for at in range(0, planted, 65_536)]
        or [np.zeros((0, WORDS), dtype=np.uint64)]
    )
    shift = (turn[:, None] + np.arange(KINDS)[None, :]) % KINDS
    copies = orbit[group[:, None], shift] ^ mask[:, None, :]
    variants = np.concatenate([copies, _random_codes(rng, (count - planted, KINDS))])
    labels = np.concatenate([group, np.full(count - planted, -1)])
    order = rng.permutation(count)
    return PlantedCodes(np.ascontiguousarray(variants[order]), labels[order])


def _random_masks(rng: np.random.Generator, flips: np.ndarray) -> np.ndarray:
    """Per row, a random set of ``flips[row]`` bits: the ranks of random keys below it.

    A block at a time, so that a million rows do not hold gigabytes of keys at once.
    """
    ranks = np.argsort(np.argsort(rng.random((len(flips), PDQ_BITS)), axis=1), axis=1)
    return np.packbits(ranks < flips[:, None], axis=1, bitorder="little").view(np.uint64)


def _random_codes(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.integers(0, np.iinfo(np.uint64).max, size=(*shape, WORDS), dtype=np.uint64)
