"""What recognised entities do to one search: the route plan and its explanation.

From the mentions (``graph/recognise.py``) and the collection's ``RoutingSettings``:

- boost (default): items carrying a mentioned entity form a ``graph`` signal, scored by
  the mention's confidence times the entity's specificity (``log(1 + N / items)``), and
  fused with the other signals at ``graph_weight``;
- filter: a named (exact or fuzzy) attribute value also becomes a hard filter, values of
  one field ORed, fields ANDed; text-field entities and meaning matches stay boosts;
- signal weights: a colour or shape word weights the image signals up, a code-like
  token (letters and digits: "AC-1042") weights keyword up;
- expansion: the strongest co-occurring neighbours (PMI over the caller's visible items)
  of each named entity are added to the keyword query.

Every effect is written down per entity, so ``--explain`` shows what each one did.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from pydantic import BaseModel, Field

from mmsearch.graph.recognise import Mention, query_words
from mmsearch.graph.settings import RoutingSettings
from mmsearch.graph.view import GraphView

GRAPH_SIGNAL = "graph"
IMAGE_SIGNALS = ("image_vector", "text_to_image", "text_image")
KEYWORD_SIGNAL = "keyword"
MAX_BOOSTED = 1000
MAX_EXPANSION = 10
VISUAL_WORDS = frozenset(
    [
        "red",
        "orange",
        "yellow",
        "green",
        "blue",
        "purple",
        "violet",
        "pink",
        "brown",
        "black",
        "white",
        "grey",
        "gray",
        "gold",
        "silver",
        "beige",
        "navy",
        "teal",
        "turquoise",
        "maroon",
        "round",
        "square",
        "circular",
        "rectangular",
        "triangular",
        "striped",
        "spotted",
        "dotted",
        "checked",
        "plaid",
        "floral",
    ]
)
VISUAL_FIELDS = frozenset({"colour", "color", "shape", "pattern"})
_CODE = re.compile(r"^(?=.*\d)(?=.*[a-z])[a-z0-9][a-z0-9-]{2,}$|^\d{4,}$")


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
    mode: str = "boost"
    ms: float = 0.0


@dataclass
class RoutePlan:
    filters: dict[str, list[str]] = field(default_factory=dict)  # column → values
    weight_factors: dict[str, float] = field(default_factory=dict)
    expansion: list[str] = field(default_factory=list)
    boosts: dict[str, float] = field(default_factory=dict)  # item id → graph score
    encode_ms: float = 0.0  # embedding the query for meaning matches (the text retriever's)
    explanation: RoutingExplanation = field(default_factory=RoutingExplanation)


def plan_route(
    view: GraphView, mentions: list[Mention], text: str, settings: RoutingSettings
) -> RoutePlan:
    plan = RoutePlan(explanation=RoutingExplanation(mode=settings.mode))
    total = max(view.item_total(), 1)
    words = query_words(text)
    scores: dict[int, float] = {}
    named_fields = {view.graph.entities[m.entity].field for m in mentions if m.kind != "meaning"}
    for mention in mentions:
        entity = view.graph.entities[mention.entity]
        items = view.items_of(mention.entity)
        route = EntityRoute(
            entity=entity.key,
            label=entity.label,
            text=mention.text,
            kind=mention.kind,
            score=mention.score,
            items=len(items),
        )
        weight = mention.score * math.log(1.0 + total / max(len(items), 1))
        for item in items:
            scores[item] = scores.get(item, 0.0) + weight
        route.effects.append(f"boost: {len(items)} items, weight {weight:.3f} each")
        named = mention.kind != "meaning"
        if settings.mode == "filter" and named and entity.column is not None:
            plan.filters.setdefault(entity.column, []).append(entity.label)
            route.effects.append(f"filter: {entity.column} = {entity.label!r}")
        if named and settings.expand:
            added = _expansion(view, mention.entity, settings, words, plan.expansion, named_fields)
            if added:
                plan.expansion += added
                route.effects.append("keyword expanded with " + ", ".join(added))
        plan.explanation.entities.append(route)
    ranked = sorted(scores.items(), key=lambda pair: (-pair[1], pair[0]))[:MAX_BOOSTED]
    plan.boosts = {view.graph.items[item]: round(score, 6) for item, score in ranked}
    if settings.weight_signals:
        _weigh(plan, words, mentions, view, settings)
    plan.explanation.expansion = plan.expansion
    return plan


def _expansion(
    view: GraphView,
    number: int,
    settings: RoutingSettings,
    words: list[str],
    already: list[str],
    named_fields: set[str],
) -> list[str]:
    """Co-occurring entities of fields the query does not name already: "Acme boots"
    may gain "footwear", never another category or brand, which would pull the
    ranking away from what was asked."""
    room = min(settings.expand, MAX_EXPANSION - len(already))
    if room <= 0:
        return []
    out: list[str] = []
    for neighbour in view.neighbours(number, limit=settings.expand * 4):
        if len(out) >= room:
            break
        label = neighbour.entity.label
        if (
            neighbour.relation != "cooccurs"
            or neighbour.entity.field in named_fields
            or neighbour.pmi < settings.expand_min_pmi
            or neighbour.entity.value in words
            or label in already
            or label in out
        ):
            continue
        out.append(label)
    return out


def _weigh(
    plan: RoutePlan,
    words: list[str],
    mentions: list[Mention],
    view: GraphView,
    settings: RoutingSettings,
) -> None:
    visual = [w for w in words if w in VISUAL_WORDS]
    visual += [
        m.text
        for m in mentions
        if m.kind != "meaning" and view.graph.entities[m.entity].field.lower() in VISUAL_FIELDS
    ]
    if visual:
        for signal in IMAGE_SIGNALS:
            plan.weight_factors[signal] = settings.image_boost
        plan.explanation.reasons.append(
            f"colour/shape words ({', '.join(dict.fromkeys(visual))}): image signals "
            f"x{settings.image_boost:g}"
        )
    codes = [w for w in words if _CODE.match(w)]
    if codes:
        plan.weight_factors[KEYWORD_SIGNAL] = settings.keyword_boost
        plan.explanation.reasons.append(
            f"code-like tokens ({', '.join(codes)}): keyword x{settings.keyword_boost:g}"
        )
    plan.explanation.signal_weights = dict(plan.weight_factors)
