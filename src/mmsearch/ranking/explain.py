"""Typed explanations of why a hit is where it is.

Plain dataclasses so that ``dataclasses.asdict`` (which ``SearchResult.as_dict``
uses) turns them into JSON without a custom encoder.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mmsearch.ranking.fusion import SignalContribution


@dataclass(frozen=True)
class RuleApplication:
    """One business rule that touched a hit: its name, its kind and what it did."""

    rule: str
    kind: str  # boost | pin | diversity | dedupe (filters and blocks act inside the store query)
    detail: str


@dataclass(frozen=True)
class FeatureContribution:
    """One reranker feature: its value for this hit and its SHAP contribution to the score."""

    feature: str
    value: float | None
    contribution: float


@dataclass
class RerankerExplanation:
    model: str
    score: float
    base_value: float  # the model's expected score; base + contributions = score
    features: list[FeatureContribution] = field(default_factory=list)


@dataclass
class Explanation:
    fusion: str
    fused_score: float
    signals: dict[str, SignalContribution] = field(default_factory=dict)
    reranker: RerankerExplanation | None = None
    rules_version: str | None = None
    rules: list[RuleApplication] = field(default_factory=list)
    final_score: float = 0.0
    # The code or alias the query named, when that put the item first (catalog/aliases.py).
    alias: str | None = None
