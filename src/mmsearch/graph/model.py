"""The entity graph of one build, as the typed model saved beside it.

Nodes are positions in lists (items, entities, clusters), so the file stays compact and
loading needs no id maps beyond one dict per kind. Edges are the item lists of entities
and clusters (item-entity, item-cluster), weighted co-occurrence between entities (PMI
over items), and parent → child hierarchy edges found in the data (every value of the
child field seen with one value of the parent field, e.g. category → subcategory).

The model holds no ACLs: what a caller may see is asked of the store at query time
(``graph/view.py``), so a graph made before an ACL changed can never show an item the
store would hide.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

GRAPH_FORMAT = 1


class Entity(BaseModel):
    """One (field, normalised value) with the items carrying it."""

    field: str
    value: str  # normalised: lower case, single spaces
    label: str  # the value as the catalog first spelled it
    column: str | None = None  # the attribute column, when the field is an attribute
    items: list[int] = Field(default_factory=list)

    @property
    def key(self) -> str:
        return f"{self.field}={self.value}"


class Cooccurrence(BaseModel):
    """Two entities carried by the same items: ``count`` items, ``pmi`` = log P(a,b) /
    (P(a) P(b)) over the build's items."""

    a: int
    b: int
    count: int
    pmi: float


class Hierarchy(BaseModel):
    parent: int
    child: int


class Cluster(BaseModel):
    """Items whose image vectors lie near one k-means centre."""

    items: list[int] = Field(default_factory=list)
    label: str = ""  # the most common entity among its items, to name it


class EntityGraph(BaseModel):
    format: int = GRAPH_FORMAT
    build_id: str
    table_version: int | None = None
    created_at: str
    build_seconds: float = 0.0
    fields: list[str] = Field(default_factory=list)
    # Where names were looked for in text (``graph/text_entities.py``), and how many
    # phrases were mined there.
    text_fields: list[str] = Field(default_factory=list)
    phrases: int = 0
    items: list[str] = Field(default_factory=list)
    entities: list[Entity] = Field(default_factory=list)
    clusters: list[Cluster] = Field(default_factory=list)
    cluster_vector: str | None = None  # the image vector column clustered
    cooccurrence: list[Cooccurrence] = Field(default_factory=list)
    hierarchy: list[Hierarchy] = Field(default_factory=list)
    # Entity embeddings (text encoder of the build), for routing by meaning; the
    # vectors sit in a .npy file beside the graph, in entity order.
    embedding_spec: str | None = None
    embedding_version: str | None = None
