"""What graph routing did to one search, as it travels in a search response.

Apart from ``routing.py`` so that a response can be read (a CLI search answered by a
server) without the graph's arrays and the store's tables being imported.
"""

from __future__ import annotations

from pydantic import BaseModel, Field


class EntityRoute(BaseModel):
    """One recognised entity and what it did to the ranking."""

    entity: str = Field(description="field=value")
    label: str
    text: str = Field(description="the query words that named it")
    kind: str = Field(description="exact, fuzzy (spelling) or meaning (embedding)")
    score: float
    items: int = Field(description="items the caller may see that carry it")
    effects: list[str] = Field(default_factory=list)


class RoutingExplanation(BaseModel):
    """Graph routing of a search: the entities, signal weights and keyword expansion."""

    entities: list[EntityRoute] = Field(default_factory=list)
    signal_weights: dict[str, float] = Field(default_factory=dict)
    reasons: list[str] = Field(default_factory=list)
    expansion: list[str] = Field(default_factory=list)
    skipped: list[str] = Field(default_factory=list, description="recognised, left out on request")
    source: str | None = Field(default=None, description="more like this: the source item")
    related: dict[str, list[str]] = Field(
        default_factory=dict,
        description="more like this: hit id → the shared entities and cluster that brought it",
    )
    mode: str = "boost"
    ms: float = 0.0
