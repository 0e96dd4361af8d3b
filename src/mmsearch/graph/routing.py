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
  of each named entity are added to the keyword query;
- item walks ("more like this", ``plan_item_route``): items sharing the source item's
  entities, each shared entity weighted by its specificity, and items of its visual
  cluster form the ``graph`` signal, fused with the vector neighbours.

Every effect is written down per entity, so ``--explain`` shows what each one did.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from mmsearch.graph.explanation import EntityRoute, RoutingExplanation
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


@dataclass
class RoutePlan:
    filters: dict[str, list[str]] = field(default_factory=dict)  # column → values
    weight_factors: dict[str, float] = field(default_factory=dict)
    expansion: list[str] = field(default_factory=list)
    boosts: dict[str, float] = field(default_factory=dict)  # item id → graph score
    related: dict[str, list[str]] = field(default_factory=dict)  # item id → what brought it
    encode_ms: float = 0.0  # embedding the query for meaning matches (the text retriever's)
    explanation: RoutingExplanation = field(default_factory=RoutingExplanation)
    # What the plan was made from, kept for the reranker's graph features.
    mentions: list[Mention] = field(default_factory=list)
    view: GraphView | None = None


def plan_route(
    view: GraphView, mentions: list[Mention], text: str, settings: RoutingSettings
) -> RoutePlan:
    plan = RoutePlan(
        explanation=RoutingExplanation(mode=settings.mode), mentions=list(mentions), view=view
    )
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


def plan_item_route(
    view: GraphView, item_id: str, settings: RoutingSettings, skip: set[str] | None = None
) -> RoutePlan:
    """The graph candidates of "more like this" for one source item.

    Each item sharing an entity with the source scores that entity's specificity,
    ``log(1 + N / items)`` over the caller's visible items (the IDF the text route
    uses): sharing a brand of 15 items says more than sharing a colour of 40, and
    sharing several adds up. Items of the source's visual cluster score the cluster's
    specificity the same way. The source itself, and items the caller may not see, are
    never candidates; the search still fetches every candidate back through its whole
    filter (``search/graph_route.py``). ``related`` records what brought each item."""
    plan = RoutePlan(explanation=RoutingExplanation(mode=settings.mode, source=item_id))
    stored = view.stored
    source = stored.item_number.get(item_id)
    if source is None or (view.visible is not None and source not in view.visible):
        return plan  # made before the item, or an item this caller may not read
    total = max(view.item_total(), 1)
    scores: dict[int, float] = {}
    why: dict[int, list[str]] = {}
    skipped = skip or set()
    for number in stored.entities_of.get(source, []):
        entity = view.graph.entities[number]
        if entity.key in skipped:
            plan.explanation.skipped.append(entity.key)
            continue
        items = [i for i in view.items_of(number) if i != source]
        if not items:
            continue
        weight = math.log(1.0 + total / (len(items) + 1))
        for item in items:
            scores[item] = scores.get(item, 0.0) + weight
            why.setdefault(item, []).append(entity.key)
        plan.explanation.entities.append(
            EntityRoute(
                entity=entity.key,
                label=entity.label,
                text=item_id,
                kind="item",
                score=1.0,
                items=len(items),
                effects=[f"boost: {len(items)} items share it, weight {weight:.3f} each"],
            )
        )
    cluster_number = stored.cluster_of.get(source)
    if cluster_number is not None:
        cluster = view.graph.clusters[cluster_number]
        members = [
            i for i in cluster.items if i != source and (view.visible is None or i in view.visible)
        ]
        if members:
            weight = math.log(1.0 + total / (len(members) + 1))
            name = f"cluster {cluster_number}" + (f" ({cluster.label})" if cluster.label else "")
            for item in members:
                scores[item] = scores.get(item, 0.0) + weight
                why.setdefault(item, []).append(name)
            plan.explanation.reasons.append(
                f"visual {name}: {len(members)} items, weight {weight:.3f} each"
            )
    ranked = sorted(scores.items(), key=lambda pair: (-pair[1], pair[0]))[:MAX_BOOSTED]
    plan.boosts = {view.graph.items[item]: round(score, 6) for item, score in ranked}
    plan.related = {view.graph.items[item]: why[item] for item, _ in ranked}
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
