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
class CrossEncoderExplanation:
    """The cross-encoder's score of a hit it rescored, the model (its folder), where the
    hit stood before (1-based) and the fields the model read."""

    model: str
    score: float
    rank_before: int
    fields: list[str] = field(default_factory=list)


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
    # The cross-encoder's score, when it rescored this hit (ranking/cross_encoder.py).
    cross_encoder: CrossEncoderExplanation | None = None
