"""The entity graph's evidence about each reranker candidate, one query at a time.

The graph signal of routing says only "this item carries a named entity"; the reranker
can weigh more than that, per candidate (columns in ``ranking.features.GRAPH_FEATURES``
order):

- ``query_entities``: entities the query names (the same for every candidate);
- ``entity_matches`` / ``named_matches``: how many of them the item carries (all; only
  those named exactly or by spelling, not near in meaning);
- ``entity_share``: ``entity_matches`` / ``query_entities``;
- ``entity_weight``: the sum over carried entities of the mention's confidence times
  the entity's specificity ``log(1 + N / items)`` (what the routing boost scores);
- ``neighbour_pmi``: the strongest co-occurrence (PMI) between a named entity and one
  of the item's entities (hierarchy parents and children count as PMI 0);
- ``proximity``: 1 / (1 + hops) from the named entities to the item: 1 when it
  carries one, 1/2 when one of its entities is a neighbour of one, 0 otherwise;
- ``cluster_top``: the share of the top fused candidates (the item itself left out)
  in the item's visual cluster: items that look like the best text hits.

Counts, specificity and PMI are over the caller's visible items (``GraphView``), as
for routing. The work is one pass over the named entities' neighbours (a few dozen
edges each) and array gathers over the candidates: the item → entity and item →
cluster arrays are made once per loaded graph.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mmsearch.graph.recognise import Mention
from mmsearch.graph.store import StoredGraph
from mmsearch.graph.view import GraphView
from mmsearch.ranking.features import GRAPH_FEATURES

TOP_FUSED = 10  # the fused top that ``cluster_top`` compares a candidate with
NEIGHBOUR_LIMIT = 200  # neighbours read per named entity (every stored edge, in practice)


@dataclass(frozen=True)
class ItemArrays:
    """Item → entities as CSR arrays, and item → cluster (-1: none), of one graph."""

    number: dict[str, int]
    starts: np.ndarray  # entities of item i: entities[starts[i]:starts[i + 1]]
    entities: np.ndarray
    cluster: np.ndarray

    @classmethod
    def of(cls, stored: StoredGraph) -> ItemArrays:
        count = len(stored.graph.items)
        lengths = np.zeros(count + 1, dtype=np.int64)
        for item, found in stored.entities_of.items():
            lengths[item + 1] = len(found)
        starts = np.cumsum(lengths)
        entities = np.zeros(int(starts[-1]), dtype=np.int64)
        for item, found in stored.entities_of.items():
            entities[starts[item] : starts[item + 1]] = found
        cluster = np.full(count, -1, dtype=np.int64)
        for item, number in stored.cluster_of.items():
            cluster[item] = number
        return cls(stored.item_number, starts, entities, cluster)


_arrays: dict[int, tuple[StoredGraph, ItemArrays]] = {}
_lock = threading.Lock()


def arrays_of(stored: StoredGraph) -> ItemArrays:
    """The arrays of a loaded graph, made once and shared (like the recognition lexicon)."""
    with _lock:
        found = _arrays.get(id(stored))
        if found is not None and found[0] is stored:
            return found[1]
    arrays = ItemArrays.of(stored)
    with _lock:
        if len(_arrays) >= 8:
            _arrays.pop(next(iter(_arrays)))
        _arrays[id(stored)] = (stored, arrays)
    return arrays


def graph_features(
    view: GraphView, mentions: Sequence[Mention], ids: Sequence[str], top: int = TOP_FUSED
) -> np.ndarray:
    """One row per candidate id (in fused order), columns in ``GRAPH_FEATURES`` order."""
    out = np.zeros((len(ids), len(GRAPH_FEATURES)))
    if not ids:
        return out
    arrays = arrays_of(view.stored)
    items = np.asarray([arrays.number.get(i, -1) for i in ids], dtype=np.int64)
    known = items >= 0
    safe = np.where(known, items, 0)
    lengths = np.where(known, arrays.starts[safe + 1] - arrays.starts[safe], 0)
    owner = np.repeat(np.arange(len(ids)), lengths)
    offsets = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    carried = arrays.entities[np.repeat(arrays.starts[safe], lengths) + offsets]

    entity_count = len(view.graph.entities)
    mentioned = np.zeros(entity_count, dtype=bool)
    named = np.zeros(entity_count, dtype=bool)
    weight = np.zeros(entity_count)
    related = np.zeros(entity_count, dtype=bool)
    pmi = np.full(entity_count, -np.inf)
    total = max(view.item_total(), 1)
    for mention in mentions:
        number = mention.entity
        mentioned[number] = True
        named[number] |= mention.kind != "meaning"
        weight[number] += mention.score * math.log(1.0 + total / max(view.count(number), 1))
        for neighbour in view.neighbours(number, limit=NEIGHBOUR_LIMIT):
            other = view.stored.by_key[neighbour.entity.key]
            related[other] = True
            pmi[other] = max(pmi[other], neighbour.pmi)

    matches = np.bincount(owner, weights=mentioned[carried], minlength=len(ids))
    out[:, 0] = float(int(mentioned.sum()))
    out[:, 1] = matches
    out[:, 2] = np.bincount(owner, weights=named[carried], minlength=len(ids))
    out[:, 3] = matches / max(int(mentioned.sum()), 1)
    out[:, 4] = np.bincount(owner, weights=weight[carried], minlength=len(ids))
    best = np.full(len(ids), -np.inf)
    np.maximum.at(best, owner, pmi[carried])
    out[:, 5] = np.where(np.isfinite(best), best, 0.0)
    near = np.bincount(owner, weights=related[carried], minlength=len(ids)) > 0
    out[:, 6] = np.where(matches > 0, 1.0, np.where(near, 0.5, 0.0))
    out[:, 7] = _cluster_top(arrays.cluster[safe], known, top)
    return out


def _cluster_top(clusters: np.ndarray, known: np.ndarray, top: int) -> np.ndarray:
    """Per candidate, the share of the first ``top`` candidates (itself left out) that
    lie in its visual cluster; 0 for items without a cluster."""
    clusters = np.where(known, clusters, -1)
    head = clusters[:top]
    head_known = head[head >= 0]
    if head_known.size == 0:
        return np.zeros(len(clusters))
    counts = np.bincount(head_known, minlength=int(clusters.max()) + 1)
    has = clusters >= 0
    same = np.where(has, counts[np.where(has, clusters, 0)], 0).astype(np.float64)
    in_head = np.zeros(len(clusters), dtype=bool)
    in_head[: len(head)] = head >= 0
    same -= in_head  # an item in the top is not its own evidence
    others = len(head) - in_head.astype(np.float64)
    return np.where(has & (others > 0), same / np.maximum(others, 1.0), 0.0)
