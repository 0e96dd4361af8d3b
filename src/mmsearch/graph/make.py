"""Make and save a build's graph: entities, clusters, edges, and entity embeddings.

One entry point for the ingest engine and ``mmsearch graph build``, so both write the
same thing. Entity embeddings use the build's own text encoder (the query is embedded
with it anyway), so routing by meaning costs one matrix product per query.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from mmsearch.encoders.base import create_encoder
from mmsearch.graph.build import build_graph
from mmsearch.graph.model import EntityGraph
from mmsearch.graph.store import has_graph, load_graph, write_graph
from mmsearch.index.base import BuildReader
from mmsearch.manifest import BuildManifest

TEXT_ROLE = "text"


def make_build_graph(
    build_dir: Path, manifest: BuildManifest, index: BuildReader, *, embed: bool = True
) -> EntityGraph:
    """Build, embed and write the graph of the build's current rows; returns it with
    ``build_seconds`` covering all three."""
    tick = time.perf_counter()
    graph = build_graph(manifest, index)
    embeddings = None
    encoder = manifest.encoders.get(TEXT_ROLE)
    if embed and encoder is not None and graph.entities:
        model = create_encoder(encoder.spec)
        embeddings = np.asarray(model.encode_texts([e.label for e in graph.entities]))
        graph.embedding_spec, graph.embedding_version = encoder.spec, encoder.version
    graph.build_seconds = round(time.perf_counter() - tick, 4)
    write_graph(build_dir, graph, embeddings)
    return graph


def remake_after_item_write(
    build_dir: Path, manifest: BuildManifest, index: BuildReader
) -> EntityGraph | None:
    """The graph again after an in-place write (an item deleted, a run reverted), so no
    entity, edge or cluster names items the table no longer holds; None when the build
    has no graph. Labels embedded before keep their vectors: only new ones are encoded,
    so a delete re-encodes nothing."""
    if not has_graph(build_dir):
        return None
    tick = time.perf_counter()
    before = load_graph(build_dir)
    graph = build_graph(manifest, index)
    encoder = manifest.encoders.get(TEXT_ROLE)
    embeddings = None
    if encoder is not None and graph.entities:
        known: dict[str, np.ndarray] = {}
        same_model = before is not None and (
            before.graph.embedding_spec,
            before.graph.embedding_version,
        ) == (encoder.spec, encoder.version)
        if before is not None and before.embeddings is not None and same_model:
            labels = [entity.label for entity in before.graph.entities]
            known = dict(zip(labels, before.embeddings, strict=True))
        missing = sorted({e.label for e in graph.entities} - known.keys())
        if missing:
            encoded = create_encoder(encoder.spec).encode_texts(missing)
            known.update(zip(missing, np.asarray(encoded), strict=True))
        embeddings = np.stack([known[e.label] for e in graph.entities])
        graph.embedding_spec, graph.embedding_version = encoder.spec, encoder.version
    graph.build_seconds = round(time.perf_counter() - tick, 4)
    write_graph(build_dir, graph, embeddings)
    return graph
