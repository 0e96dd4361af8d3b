"""Hits grouped by an attribute: the best item per value, the others counted and named.

A search over PDF pages (``catalog/pdf_source.py``) answers with pages, and three good
pages of one report would fill the first three places; ``group_by="document"`` keeps
the best page of each document and says which other pages of it matched. Any attribute
works (a product's ``brand``, an image's ``folder``).

Grouping runs over the fused, reranked and ruled candidate list (every retriever's
candidates, not only the first ``k``), so a group's count covers what the search found,
not what fitted on the page. An item without a value is a group of its own.

Only the standard library, and a dataclass like ``MatchedImage``: the result's
``as_dict`` and the answer's shape (``search/response.py``, without NumPy) both carry it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

# Other members named per group; the count covers them all.
MAX_OTHER_IDS = 20


@dataclass
class HitGroup:
    """The group a hit is the best item of: the attribute, its value here (None: an item
    without one, a group of its own), how many candidates matched in the group (this hit
    included), and the others' ids, best first (at most ``MAX_OTHER_IDS``)."""

    attribute: str
    value: Any
    matches: int
    other_ids: list[str] = field(default_factory=list)


def group_ranked(
    ranked: Sequence[str],
    value_of: Callable[[str], Any],
    attribute: str,
    k: int,
) -> tuple[list[str], dict[str, HitGroup]]:
    """The first ``k`` groups' best ids, in rank order, and each kept id's group.

    ``ranked`` is the whole ranked candidate list; a group's count and other ids come from
    all of it, also from after the ``k``-th group's leader."""
    leaders: dict[Any, str] = {}
    groups: dict[str, HitGroup] = {}
    for item_id in ranked:
        value = value_of(item_id)
        key = ("value", value) if value is not None else ("item", item_id)
        leader = leaders.get(key)
        if leader is None:
            leaders[key] = item_id
            groups[item_id] = HitGroup(attribute, value, 1)
            continue
        group = groups[leader]
        group.matches += 1
        if len(group.other_ids) < MAX_OTHER_IDS:
            group.other_ids.append(item_id)
    kept = list(leaders.values())[:k]
    return kept, {item_id: groups[item_id] for item_id in kept}
