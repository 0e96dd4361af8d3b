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
from mmsearch.graph.store import StoredGraph, has_graph, load_graph, write_graph
from mmsearch.index.base import BuildReader
from mmsearch.manifest import BuildManifest, EncoderDescription

TEXT_ROLE = "text"


def make_build_graph(
    build_dir: Path,
    manifest: BuildManifest,
    index: BuildReader,
    *,
    embed: bool = True,
    previous: StoredGraph | None = None,
) -> EntityGraph:
    """Build, embed and write the graph of the build's current rows; returns it with
    ``build_seconds`` covering all three. Labels ``previous`` embedded with the same
    model keep their vectors: only new ones are encoded."""
    tick = time.perf_counter()
    graph = build_graph(manifest, index)
    embeddings = None
    encoder = manifest.encoders.get(TEXT_ROLE)
    if embed and encoder is not None and graph.entities:
        embeddings = _label_vectors(graph, encoder, previous)
        graph.embedding_spec, graph.embedding_version = encoder.spec, encoder.version
    graph.build_seconds = round(time.perf_counter() - tick, 4)
    write_graph(build_dir, graph, embeddings)
    return graph


def remake_after_item_write(
    build_dir: Path, manifest: BuildManifest, index: BuildReader
) -> EntityGraph | None:
    """The graph again after an in-place write (an item deleted, a run reverted), so no
    entity, edge or cluster names items the table no longer holds; None when the build
    has no graph. A delete re-encodes nothing: every label it keeps was embedded."""
    if not has_graph(build_dir):
        return None
    return make_build_graph(build_dir, manifest, index, previous=load_graph(build_dir))


def _label_vectors(
    graph: EntityGraph, encoder: EncoderDescription, previous: StoredGraph | None
) -> np.ndarray:
    """One vector per entity label: ``previous``'s where it embedded the label with this
    encoder, the rest encoded now."""
    labels = [entity.label for entity in graph.entities]
    known: dict[str, np.ndarray] = {}
    if (
        previous is not None
        and previous.embeddings is not None
        and (previous.graph.embedding_spec, previous.graph.embedding_version)
        == (encoder.spec, encoder.version)
    ):
        before = [entity.label for entity in previous.graph.entities]
        known = dict(zip(before, previous.embeddings, strict=True))
    if not known:
        return np.asarray(create_encoder(encoder.spec).encode_texts(labels))
    missing = sorted(set(labels) - known.keys())
    if missing:
        encoded = create_encoder(encoder.spec).encode_texts(missing)
        known.update(zip(missing, np.asarray(encoded), strict=True))
    return np.stack([known[label] for label in labels])
