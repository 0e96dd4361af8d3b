"""Applying business rules to the ranked candidate pool, recording what each rule did.

Order: blocks (a safety net; blocks also go into the store filter), boosts (then
re-sort), near-duplicate removal, diversity, pins. Pins come last so that a pinned
item lands exactly where the merchandiser put it.

Multiplicative boosts act as ``score + |score| * (factor - 1)``: the same as
``score * factor`` for positive scores (RRF, weighted, DBSF), and still a move in the
intended direction for the negative scores a reranker can produce.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mmsearch.ranking.explain import RuleApplication
from mmsearch.ranking.features import hamming, hashes_of
from mmsearch.ranking.fusion import min_max, order_by_score
from mmsearch.ranking.rules import RuleSet, rule_name


@dataclass
class RuledRanking:
    order: list[str]
    scores: dict[str, float]
    applied: dict[str, list[RuleApplication]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def note(self, item_id: str, rule: str, kind: str, detail: str) -> None:
        self.applied.setdefault(item_id, []).append(RuleApplication(rule, kind, detail))


def active_pins(rules: RuleSet, text: str | None) -> list[tuple[str, int, str]]:
    """(id, position, rule) of the pins for this query; the first rule to claim an id wins."""
    seen: set[str] = set()
    pins: list[tuple[str, int, str]] = []
    for index, rule in enumerate(rules.pins):
        if not rule.applies_to(text):
            continue
        for pin in rule.items:
            if pin.id not in seen:
                seen.add(pin.id)
                pins.append((pin.id, pin.position, rule_name(rule, "pin", index)))
    return pins


def apply_rules(
    rules: RuleSet,
    text: str | None,
    scores: dict[str, float],
    rows: dict[str, dict[str, Any]],
    *,
    k: int,
    phash_column: str | None,
    vectors: dict[str, np.ndarray] | None = None,
) -> RuledRanking:
    """Re-order the candidate pool; ``rows`` holds the columns the rules read, by id."""
    blocked = rules.blocked(text)
    out = RuledRanking([], {i: s for i, s in scores.items() if i not in blocked})
    _boost(rules, text, rows, out)
    out.order = order_by_score(out.scores)
    if rules.dedupe is not None:
        _dedupe(rules, rows, phash_column, out)
    if rules.diversity is not None:
        _diversify(rules, rows, vectors or {}, k, out)
    _pin(rules, text, blocked, out)
    return out


def _boost(
    rules: RuleSet, text: str | None, rows: dict[str, dict[str, Any]], out: RuledRanking
) -> None:
    for index, rule in enumerate(rules.boosts):
        if not rule.applies_to(text):
            continue
        name = rule_name(rule, "boost", index)
        for item_id, score in list(out.scores.items()):
            if not rule.matches(rows.get(item_id, {})):
                continue
            if rule.multiply is not None:
                new = score + abs(score) * (rule.multiply - 1.0)
                detail = f"x{rule.multiply:g}: {score:.6g} -> {new:.6g}"
            else:
                new = score + float(rule.add or 0.0)
                detail = f"+{rule.add:g}: {score:.6g} -> {new:.6g}"
            out.scores[item_id] = new
            out.note(item_id, name, "boost", detail)


def _dedupe(
    rules: RuleSet, rows: dict[str, dict[str, Any]], column: str | None, out: RuledRanking
) -> None:
    assert rules.dedupe is not None
    name = rules.dedupe.name or "dedupe"
    if column is None:
        out.warnings.append(
            f"rule '{name}' skipped: this build has no perceptual-hash column to find "
            "near-duplicates with"
        )
        return
    kept: list[tuple[str, list[Any]]] = []
    order: list[str] = []
    for item_id in out.order:
        hashes = hashes_of(rows.get(item_id, {}).get(column))
        twin = next(
            (
                kept_id
                for kept_id, kept_hashes in kept
                if any(
                    hamming(a, b) <= rules.dedupe.max_hamming for a in hashes for b in kept_hashes
                )
            ),
            None,
        )
        if twin is not None:
            out.note(twin, name, "dedupe", f"kept over near-duplicate {item_id}")
            out.scores.pop(item_id, None)
            continue
        kept.append((item_id, hashes))
        order.append(item_id)
    out.order = order


def _diversify(
    rules: RuleSet,
    rows: dict[str, dict[str, Any]],
    vectors: dict[str, np.ndarray],
    k: int,
    out: RuledRanking,
) -> None:
    diversity = rules.diversity
    assert diversity is not None
    name = diversity.name or "diversity"
    if diversity.max_per_value is not None:
        cap = diversity.max_per_value
        counts: dict[Any, int] = {}
        kept, demoted = [], []
        for item_id in out.order:
            value = rows.get(item_id, {}).get(cap.attribute)
            if value is not None and counts.get(value, 0) >= cap.limit:
                demoted.append(item_id)
                out.note(
                    item_id, name, "diversity", f"demoted: over {cap.limit} per {cap.attribute}"
                )
                continue
            counts[value] = counts.get(value, 0) + 1
            kept.append(item_id)
        out.order = kept + demoted
    if diversity.mmr is not None:
        out.order = _mmr(out, vectors, diversity.mmr.lambda_, k, name)


def _mmr(
    out: RuledRanking, vectors: dict[str, np.ndarray], lam: float, k: int, name: str
) -> list[str]:
    """Maximal marginal relevance (Carbonell & Goldstein 1998) over the first picks."""
    order = out.order
    relevance = (
        dict(zip(order, min_max([out.scores[i] for i in order]), strict=True)) if order else {}
    )
    chosen: list[str] = []
    left = list(order)
    while left and len(chosen) < k:
        best, best_value = left[0], -np.inf
        for item_id in left:
            vector = vectors.get(item_id)
            redundancy = max(
                (
                    float(np.dot(vector, vectors[c]))
                    for c in chosen
                    if vector is not None and c in vectors
                ),
                default=0.0,
            )
            value = lam * relevance[item_id] - (1.0 - lam) * redundancy
            if value > best_value:
                best, best_value = item_id, value
        chosen.append(best)
        left.remove(best)
    for position, item_id in enumerate(chosen, start=1):
        before = order.index(item_id) + 1
        if before != position:
            out.note(item_id, name, "diversity", f"mmr moved #{before} -> #{position}")
    return chosen + left


def _pin(rules: RuleSet, text: str | None, blocked: set[str], out: RuledRanking) -> None:
    pins = [
        pin for pin in active_pins(rules, text) if pin[0] not in blocked and pin[0] in out.scores
    ]
    pinned = {item_id for item_id, _, _ in pins}
    order = [i for i in out.order if i not in pinned]
    for item_id, position, name in sorted(pins, key=lambda p: p[1]):
        order.insert(min(position - 1, len(order)), item_id)
        out.note(item_id, name, "pin", f"pinned at #{position}")
    out.order = order
