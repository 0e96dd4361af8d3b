"""One caller's view of a build's graph: only what the items they may see support.

ACL choice: counts and edges are computed per caller, from the items the store says
the caller may see (the access node pushed into a scan of the id column), not from the
graph's own figures. An entity none of whose items the caller may see does not exist
for them (not listed, not recognised in queries, not a neighbour); an entity's count,
its neighbours' co-occurrence counts and PMI, and cluster sizes count visible items
only. Unrestricted callers (admins, the local operator) see the graph as stored.
Items added after the graph was made are simply absent until the next ingest remakes
it; items deleted since are absent from the store, so from every view.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

import numpy as np

from mmsearch.filters.expr import Filter
from mmsearch.graph.model import Entity, EntityGraph
from mmsearch.graph.store import StoredGraph
from mmsearch.index.base import BuildReader


@dataclass(frozen=True)
class Neighbour:
    entity: Entity
    count: int  # visible items carrying both
    pmi: float  # over visible items
    relation: str  # "cooccurs", "parent", "child"


@dataclass
class GraphView:
    stored: StoredGraph
    visible: set[int] | None  # item numbers the caller may see; None: every item

    @property
    def graph(self) -> EntityGraph:
        return self.stored.graph

    @property
    def embeddings(self) -> np.ndarray | None:
        return self.stored.embeddings

    def items_of(self, number: int) -> list[int]:
        items = self.graph.entities[number].items
        if self.visible is None:
            return items
        return [i for i in items if i in self.visible]

    def count(self, number: int) -> int:
        return len(self.items_of(number))

    def exists(self, number: int) -> bool:
        if self.visible is None:
            return bool(self.graph.entities[number].items)
        return any(i in self.visible for i in self.graph.entities[number].items)

    def item_total(self) -> int:
        return len(self.graph.items) if self.visible is None else len(self.visible)

    def find(self, name: str) -> list[int]:
        """Entities named ``name``: ``field=value`` for one, or a bare value for every
        field that holds it; only those the caller may see."""
        from mmsearch.graph.build import normalise_value

        if "=" in name:
            field_name, _, value = name.partition("=")
            number = self.stored.by_key.get(f"{field_name.strip()}={normalise_value(value)}")
            found = [] if number is None else [number]
        else:
            value = normalise_value(name)
            found = [n for n, e in enumerate(self.graph.entities) if e.value == value]
        return [n for n in found if self.exists(n)]

    def prefixed(self, prefix: str, limit: int) -> list[int]:
        """Entities whose value starts with ``prefix``, most items first."""
        from mmsearch.graph.build import normalise_value

        wanted = normalise_value(prefix)
        found = [
            (self.count(n), n)
            for n, e in enumerate(self.graph.entities)
            if e.value.startswith(wanted)
        ]
        found = [(c, n) for c, n in found if c > 0]
        found.sort(key=lambda pair: (-pair[0], self.graph.entities[pair[1]].key))
        return [n for _, n in found[:limit]]

    def neighbours(self, number: int, limit: int = 20) -> list[Neighbour]:
        """Hierarchy parents and children, then co-occurring entities by PMI, all
        recounted over the caller's visible items."""
        own = set(self.items_of(number))
        if not own:
            return []
        total = max(self.item_total(), 1)
        out: list[Neighbour] = []
        entities = self.graph.entities
        for edge in self.stored.related.get(number, []):
            if number in (edge.parent, edge.child):
                other = edge.child if edge.parent == number else edge.parent
                shared = len(own.intersection(self.items_of(other)))
                if shared:
                    relation = "child" if edge.parent == number else "parent"
                    out.append(Neighbour(entities[other], shared, 0.0, relation))
        ranked: list[Neighbour] = []
        seen = {n.entity.key for n in out}
        for edge in self.stored.cooccurring.get(number, []):
            other = edge.b if edge.a == number else edge.a
            if entities[other].key in seen:
                continue
            other_items = self.items_of(other)
            shared = len(own.intersection(other_items))
            if not shared:
                continue
            pmi = math.log(shared * total / (len(own) * len(other_items)))
            ranked.append(Neighbour(entities[other], shared, round(pmi, 4), "cooccurs"))
        ranked.sort(key=lambda n: (-n.pmi, -n.count, n.entity.key))
        return (out + ranked)[:limit]

    def stats(self) -> dict[str, object]:
        visible_entities = [n for n in range(len(self.graph.entities)) if self.exists(n)]
        by_field = Counter(self.graph.entities[n].field for n in visible_entities)
        clusters = [
            c for c in self.graph.clusters if self.visible is None or self.visible & set(c.items)
        ]
        return {
            "build_id": self.graph.build_id,
            "table_version": self.graph.table_version,
            "created_at": self.graph.created_at,
            "build_seconds": self.graph.build_seconds,
            "items": self.item_total(),
            "entities": len(visible_entities),
            "entities_by_field": dict(sorted(by_field.items())),
            "clusters": len(clusters),
            "cooccurrence_edges": len(self.graph.cooccurrence) if self.visible is None else None,
            "hierarchy_edges": len(self.graph.hierarchy) if self.visible is None else None,
            "embeddings": self.embeddings is not None,
        }


def caller_view(stored: StoredGraph, index: BuildReader, access: Filter | None) -> GraphView:
    """The view of a caller who may read what ``access`` admits (their access node and
    the moderation node; None: everything). The store answers who may see what: the id
    column scanned with the filter applied in the engine."""
    if access is None:
        return GraphView(stored, None)
    seen = set(index.scan(["id"], access)["id"].to_pylist())
    visible = {n for n, item_id in enumerate(stored.graph.items) if item_id in seen}
    return GraphView(stored, visible)
