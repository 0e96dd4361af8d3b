"""What ``mmsearch graph`` prints and the graph routes return: JSON-able dicts built
from one caller's ``GraphView``, so the CLI and the API cannot disagree."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mmsearch.errors import MMSearchError
from mmsearch.graph.model import Entity
from mmsearch.graph.store import StoredGraph, load_graph
from mmsearch.graph.view import GraphView

MAX_LIMIT = 200


class GraphError(MMSearchError):
    """No graph for the build, or no entity of that name (a 404 over HTTP)."""


def require_graph(build_dir: Path, collection: str, build_id: str) -> StoredGraph:
    stored = load_graph(build_dir)
    if stored is None:
        raise GraphError(
            f"Build {build_id} of '{collection}' has no entity graph: name entity fields "
            "when ingesting (--entity-field, or entities in the mapping file), or make it "
            f"with `mmsearch graph -c {collection} build`."
        )
    return stored


def entity_json(view: GraphView, number: int) -> dict[str, Any]:
    entity: Entity = view.graph.entities[number]
    return {
        "entity": entity.key,
        "field": entity.field,
        "value": entity.value,
        "label": entity.label,
        "items": view.count(number),
    }


def resolve(view: GraphView, name: str) -> list[int]:
    found = view.find(name)
    if not found:
        raise GraphError(
            f"No entity {name!r} in the graph of build {view.graph.build_id}; "
            "give field=value or a value (see `mmsearch graph entities --prefix`)."
        )
    return found


def entities_report(view: GraphView, prefix: str, limit: int) -> dict[str, Any]:
    limit = max(1, min(limit, MAX_LIMIT))
    return {
        "build_id": view.graph.build_id,
        "prefix": prefix,
        "entities": [entity_json(view, n) for n in view.prefixed(prefix, limit)],
    }


def entity_report(view: GraphView, name: str, limit: int) -> dict[str, Any]:
    """Each entity of that name, its sample of visible item ids and its neighbours."""
    limit = max(1, min(limit, MAX_LIMIT))
    out = []
    for number in resolve(view, name):
        items = view.items_of(number)
        out.append(
            {
                **entity_json(view, number),
                "sample_items": [view.graph.items[i] for i in items[:limit]],
                "neighbours": neighbours_json(view, number, limit),
            }
        )
    return {"build_id": view.graph.build_id, "entities": out}


def neighbours_json(view: GraphView, number: int, limit: int) -> list[dict[str, Any]]:
    return [
        {
            "entity": n.entity.key,
            "label": n.entity.label,
            "relation": n.relation,
            "shared_items": n.count,
            "pmi": n.pmi,
        }
        for n in view.neighbours(number, limit)
    ]


def neighbours_report(view: GraphView, name: str, limit: int) -> dict[str, Any]:
    limit = max(1, min(limit, MAX_LIMIT))
    return {
        "build_id": view.graph.build_id,
        "entities": [
            {**entity_json(view, n), "neighbours": neighbours_json(view, n, limit)}
            for n in resolve(view, name)
        ],
    }
