"""Make the entity graph of a build from its table, after an ingest run.

Why from the table and not from the rows as they stream past: the table after a run is
the whole build (rows settled as unchanged included), so one pass over it gives the
same graph whether the run was the first, an upsert of ten rows or a resumed one. The
cost is measured (``build_seconds``) and reported in docs/BENCHMARKS.md.

Bounded work: co-occurrence pairs are counted per item over at most ``MAX_ENTITIES_PER_ITEM``
entities, each entity keeps its ``MAX_NEIGHBOURS`` strongest edges, and k-means runs on
at most ``MAX_CLUSTER_ROWS`` vectors (the rest are assigned to the nearest centre) with
``k = clamp(sqrt(n / 2), 2, MAX_CLUSTERS)``.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections import Counter, defaultdict
from itertools import combinations
from typing import Any

import numpy as np

from mmsearch.catalog.mapping import attribute_column
from mmsearch.clock import utc_now
from mmsearch.graph.model import Cluster, Cooccurrence, Entity, EntityGraph, Hierarchy
from mmsearch.graph.text_entities import add_text_entities
from mmsearch.graph.words import normalise_value, text_segments
from mmsearch.index.base import BuildReader
from mmsearch.manifest import BuildManifest

MAX_ENTITIES_PER_ITEM = 32
MAX_NEIGHBOURS = 30
MAX_CLUSTERS = 256
MAX_CLUSTER_ROWS = 20_000
MAX_VALUE_CHARS = 100
_SPLIT = re.compile(r"\s*[,;|]\s*")


def split_values(value: Any) -> list[str]:
    """An entity field's value as entity labels: a list's elements, or a string cut at
    commas, semicolons and bars (how list fields are stored as text); empty parts and
    parts over ``MAX_VALUE_CHARS`` characters are dropped."""
    if value is None or isinstance(value, bool):
        return []
    parts = value if isinstance(value, list) else _SPLIT.split(str(value))
    labels = [str(part).strip() for part in parts]
    return [label for label in labels if label and len(label) <= MAX_VALUE_CHARS]


def build_graph(
    manifest: BuildManifest,
    index: BuildReader,
    *,
    clusters: bool = True,
    seed: int = 0,
) -> EntityGraph:
    """The graph of the build's current rows: entities of the mapping's entity fields,
    entities found in its entity text fields, visual clusters of the first image vector
    column, co-occurrence and hierarchy."""
    tick = time.perf_counter()
    mapping = manifest.mapping
    fields = list(mapping.entities)
    text_fields = list(mapping.entity_text_fields)
    attributes = set(manifest.mapping.attributes or [])
    columns = {name: attribute_column(name) for name in fields if name in attributes}
    schema_names = set(index.schema.names)
    vector = _cluster_column(index) if clusters else None
    wanted = ["id", "texts_json", *[c for c in columns.values() if c in schema_names]]
    if mapping.title in text_fields and "title" in schema_names:
        wanted.append("title")
    table = index.scan([*wanted, *([vector] if vector else [])])
    ids: list[str] = table["id"].to_pylist()
    graph = EntityGraph(
        build_id=manifest.build_id,
        table_version=index.version(),
        created_at=utc_now(),
        fields=fields,
        text_fields=text_fields,
        items=ids,
    )
    data = table.to_pydict()
    per_item = _entities(graph, data, fields, columns)
    if text_fields:
        segments = _text_segments(data, text_fields, mapping.title)
        graph.phrases = add_text_entities(
            graph,
            per_item,
            segments,
            phrases=mapping.entity_phrases,
            max_per_item=MAX_ENTITIES_PER_ITEM,
        )
    graph.cooccurrence = _cooccurrence(per_item, len(graph.entities), len(ids))
    graph.hierarchy = _hierarchy(graph, fields, columns)
    if vector is not None:
        graph.cluster_vector = vector
        graph.clusters = _clusters(table[vector].to_pylist(), per_item, graph, seed)
    graph.build_seconds = round(time.perf_counter() - tick, 4)
    return graph


def _cluster_column(index: BuildReader) -> str | None:
    for field in index.vector_fields:
        if field.column == "vector_image":
            return field.column
    return None


def _entities(
    graph: EntityGraph,
    data: dict[str, list[Any]],
    fields: list[str],
    columns: dict[str, str],
) -> list[list[int]]:
    """Fill ``graph.entities``; each item's entity numbers, in the items' order."""
    by_key: dict[tuple[str, str], int] = {}
    per_item: list[list[int]] = []
    for row, texts_json in enumerate(data["texts_json"]):
        texts = json.loads(texts_json) if texts_json else {}
        found: list[int] = []
        for name in fields:
            column = columns.get(name)
            raw = data[column][row] if column in data else texts.get(name)
            for label in split_values(raw):
                key = (name, normalise_value(label))
                number = by_key.get(key)
                if number is None:
                    number = by_key[key] = len(graph.entities)
                    graph.entities.append(
                        Entity(field=name, value=key[1], label=label, column=column)
                    )
                entity = graph.entities[number]
                if not entity.items or entity.items[-1] != row:
                    entity.items.append(row)
                    found.append(number)
        per_item.append(found[:MAX_ENTITIES_PER_ITEM])
    return per_item


def _text_segments(
    data: dict[str, list[Any]], text_fields: list[str], title: str | None
) -> list[list[list[str]]]:
    """Each item's entity text fields as word segments (``words.text_segments``)."""
    out: list[list[list[str]]] = []
    for row, texts_json in enumerate(data["texts_json"]):
        texts = json.loads(texts_json) if texts_json else {}
        segments: list[list[str]] = []
        for name in text_fields:
            value = data["title"][row] if name == title and "title" in data else texts.get(name)
            if isinstance(value, list):
                value = " . ".join(str(part) for part in value)
            if value:
                segments += text_segments(str(value))
        out.append(segments)
    return out


def _cooccurrence(per_item: list[list[int]], entities: int, items: int) -> list[Cooccurrence]:
    """PMI of every pair seen on one item, the ``MAX_NEIGHBOURS`` strongest per entity
    kept (by PMI, then count); a pair seen once is kept too, since small catalogs have
    little else, and its count is stored so a reader can ask for more support."""
    pairs: Counter[tuple[int, int]] = Counter()
    single = np.zeros(entities, dtype=np.int64)
    for found in per_item:
        unique = sorted(set(found))
        single[unique] += 1
        pairs.update(combinations(unique, 2))
    scored: list[Cooccurrence] = []
    for (a, b), count in pairs.items():
        pmi = math.log(count * items / (float(single[a]) * float(single[b])))
        scored.append(Cooccurrence(a=a, b=b, count=count, pmi=round(pmi, 4)))
    scored.sort(key=lambda e: (-e.pmi, -e.count, e.a, e.b))
    kept: list[Cooccurrence] = []
    degree: Counter[int] = Counter()
    for edge in scored:
        if degree[edge.a] < MAX_NEIGHBOURS or degree[edge.b] < MAX_NEIGHBOURS:
            kept.append(edge)
            degree[edge.a] += 1
            degree[edge.b] += 1
    return kept


def _hierarchy(graph: EntityGraph, fields: list[str], columns: dict[str, str]) -> list[Hierarchy]:
    """parent → child where the data says so: two single-valued attribute fields, the
    parent with fewer values, and every child value seen under exactly one parent value
    (a functional dependency over the items that carry both)."""
    item_value: dict[str, dict[int, int]] = defaultdict(dict)
    for number, entity in enumerate(graph.entities):
        if entity.field in columns:
            for item in entity.items:
                item_value[entity.field][item] = number
    edges: list[Hierarchy] = []
    for parent, child in ((p, c) for p in fields for c in fields if p != c):
        if parent not in item_value or child not in item_value:
            continue
        parents_of: dict[int, set[int]] = defaultdict(set)
        for item, value in item_value[child].items():
            if item in item_value[parent]:
                parents_of[value].add(item_value[parent][item])
        distinct_parents = len(set(item_value[parent].values()))
        distinct_children = len(set(item_value[child].values()))
        if (
            not parents_of
            or distinct_parents >= distinct_children
            or any(len(found) != 1 for found in parents_of.values())
        ):
            continue
        edges += [Hierarchy(parent=next(iter(p)), child=c) for c, p in parents_of.items()]
    return edges


def _clusters(
    vectors: list[Any], per_item: list[list[int]], graph: EntityGraph, seed: int
) -> list[Cluster]:
    """k-means over each item's first image vector; items without an image are left out."""
    rows = [i for i, v in enumerate(vectors) if v is not None and len(v)]
    if len(rows) < 4:
        return []
    first = [
        vectors[i][0] if isinstance(vectors[i][0], list | np.ndarray) else vectors[i] for i in rows
    ]
    matrix = np.asarray(first, dtype=np.float32)
    k = int(min(MAX_CLUSTERS, max(2, round(math.sqrt(len(rows) / 2)))))
    labels = _kmeans(matrix, k, seed)
    clusters = [Cluster() for _ in range(k)]
    for row, label in zip(rows, labels, strict=True):
        clusters[label].items.append(row)
    for cluster in clusters:
        common = Counter(e for item in cluster.items for e in per_item[item]).most_common(1)
        cluster.label = graph.entities[common[0][0]].key if common else ""
    return [cluster for cluster in clusters if cluster.items]


def _kmeans(matrix: np.ndarray, k: int, seed: int, rounds: int = 20) -> list[int]:
    """Spherical k-means (the stored vectors are unit rows; similarity is the dot
    product), fitted on at most ``MAX_CLUSTER_ROWS`` rows, every row then assigned."""
    rng = np.random.default_rng(seed)
    fit = matrix
    if len(matrix) > MAX_CLUSTER_ROWS:
        fit = matrix[rng.choice(len(matrix), MAX_CLUSTER_ROWS, replace=False)]
    centres = fit[rng.choice(len(fit), k, replace=False)].copy()
    for _ in range(rounds):
        assigned = np.argmax(fit @ centres.T, axis=1)
        moved = centres.copy()
        for label in range(k):
            members = fit[assigned == label]
            if len(members):
                total = members.sum(axis=0)
                norm = float(np.linalg.norm(total))
                moved[label] = total / norm if norm > 0 else centres[label]
        if np.allclose(moved, centres):
            break
        centres = moved
    return [int(label) for label in np.argmax(matrix @ centres.T, axis=1)]
