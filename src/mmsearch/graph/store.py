"""Where a build's graph lives and how it is written and read.

The graph is a gzip JSON file (the ``EntityGraph`` model) plus a ``.npy`` of entity
embeddings, in the build's folder: ``<build>/graph/graph.json.gz``. It is versioned with
the build (a new build gets its own; dropping a build drops it) and records the table
version it was made from. It is remade whole at the end of every ingest run that
changed rows; docs/GRAPH.md says why a file and not a graph database.

Readers share one loaded graph per file while its modification time is unchanged.
"""

from __future__ import annotations

import gzip
import os
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydantic import ValidationError

from mmsearch.errors import MMSearchError
from mmsearch.graph.model import GRAPH_FORMAT, Cooccurrence, EntityGraph, Hierarchy

GRAPH_FOLDER = "graph"
GRAPH_FILE = "graph.json.gz"
EMBEDDINGS_FILE = "entities.npy"


@dataclass(frozen=True)
class StoredGraph:
    """A loaded graph with its edges indexed by entity (made once per load)."""

    graph: EntityGraph
    embeddings: np.ndarray | None  # one unit row per entity, or None
    cooccurring: dict[int, list[Cooccurrence]] = field(default_factory=dict)
    related: dict[int, list[Hierarchy]] = field(default_factory=dict)
    by_key: dict[str, int] = field(default_factory=dict)  # "field=value" → entity
    # Item walks ("more like this") start from an item: its number, entities, cluster.
    item_number: dict[str, int] = field(default_factory=dict)  # item id → item
    entities_of: dict[int, list[int]] = field(default_factory=dict)  # item → entities
    cluster_of: dict[int, int] = field(default_factory=dict)  # item → cluster

    @classmethod
    def of(cls, graph: EntityGraph, embeddings: np.ndarray | None) -> StoredGraph:
        cooccurring: dict[int, list[Cooccurrence]] = {}
        for edge in graph.cooccurrence:
            cooccurring.setdefault(edge.a, []).append(edge)
            cooccurring.setdefault(edge.b, []).append(edge)
        related: dict[int, list[Hierarchy]] = {}
        for link in graph.hierarchy:
            related.setdefault(link.parent, []).append(link)
            related.setdefault(link.child, []).append(link)
        by_key = {entity.key: number for number, entity in enumerate(graph.entities)}
        item_number = {item_id: number for number, item_id in enumerate(graph.items)}
        entities_of: dict[int, list[int]] = {}
        for number, entity in enumerate(graph.entities):
            for item in entity.items:
                entities_of.setdefault(item, []).append(number)
        cluster_of = {
            item: number for number, cluster in enumerate(graph.clusters) for item in cluster.items
        }
        return cls(
            graph, embeddings, cooccurring, related, by_key, item_number, entities_of, cluster_of
        )


def graph_folder(build_dir: Path) -> Path:
    return build_dir / GRAPH_FOLDER


def has_graph(build_dir: Path) -> bool:
    return (graph_folder(build_dir) / GRAPH_FILE).is_file()


def write_graph(build_dir: Path, graph: EntityGraph, embeddings: np.ndarray | None) -> Path:
    """Write both files atomically (temp file + rename), the embeddings first, so a
    reader never sees a graph whose embeddings belong to another."""
    folder = graph_folder(build_dir)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / EMBEDDINGS_FILE
    if embeddings is not None:
        with tempfile.NamedTemporaryFile(dir=folder, suffix=".npy", delete=False) as handle:
            np.save(handle, embeddings.astype(np.float32))
        os.replace(handle.name, target)
    else:
        target.unlink(missing_ok=True)
    path = folder / GRAPH_FILE
    data = graph.model_dump_json().encode("utf-8")
    with tempfile.NamedTemporaryFile(dir=folder, suffix=".gz", delete=False) as handle:
        handle.write(gzip.compress(data, compresslevel=6))
    os.replace(handle.name, path)
    return path


_cache: dict[Path, tuple[int, StoredGraph]] = {}
_lock = threading.Lock()


def load_graph(build_dir: Path) -> StoredGraph | None:
    """The build's graph, or None when it has none (no entity fields, or made before)."""
    path = graph_folder(build_dir) / GRAPH_FILE
    try:
        stamp = path.stat().st_mtime_ns
    except FileNotFoundError:
        return None
    with _lock:
        cached = _cache.get(path)
        if cached is not None and cached[0] == stamp:
            return cached[1]
    try:
        graph = EntityGraph.model_validate_json(gzip.decompress(path.read_bytes()))
    except (OSError, ValidationError, EOFError) as exc:
        raise MMSearchError(
            f"The entity graph {path} cannot be read ({exc}); remake it with "
            "`mmsearch graph -c NAME build`."
        ) from exc
    if graph.format != GRAPH_FORMAT:
        raise MMSearchError(
            f"The entity graph {path} has format {graph.format}, this mmsearch reads "
            f"{GRAPH_FORMAT}; remake it with `mmsearch graph -c NAME build`."
        )
    embeddings = None
    vectors = graph_folder(build_dir) / EMBEDDINGS_FILE
    if vectors.is_file():
        embeddings = np.load(vectors, allow_pickle=False)
        if embeddings.shape[0] != len(graph.entities):
            embeddings = None  # written by another graph: routing goes without meaning
    stored = StoredGraph.of(graph, embeddings)
    with _lock:
        _cache[path] = (stamp, stored)
    return stored
