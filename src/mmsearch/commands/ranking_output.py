"""Command-line helpers for ranking options: ``--weight`` parsing and explanation printing."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from rich.console import Console

from mmsearch.errors import QueryError
from mmsearch.ranking.explain import Explanation

if TYPE_CHECKING:
    from mmsearch.graph.explanation import RoutingExplanation


def parse_weights(values: list[str] | None) -> dict[str, float] | None:
    """``["keyword=0.3", "image_vector=0.7"]`` → ``{"keyword": 0.3, "image_vector": 0.7}``."""
    if not values:
        return None
    weights: dict[str, float] = {}
    for value in values:
        name, sep, number = value.partition("=")
        name = name.strip()
        try:
            weight = float(number)
        except ValueError:
            weight = math.nan
        if not sep or not name or not math.isfinite(weight):
            raise QueryError(
                f"--weight {value!r} is not SIGNAL=NUMBER, e.g. --weight keyword=0.3 "
                "--weight text_vector=0.7."
            )
        if name in weights:
            raise QueryError(f"--weight names '{name}' twice; give each signal once.")
        weights[name] = weight
    return weights


def print_explanation(console: Console, rank: int, hit_id: str, explanation: Explanation) -> None:
    """A compact per-hit breakdown: signals, reranker top features, rules."""
    console.print(
        f"[bold]#{rank} {hit_id}[/]  {explanation.fusion} {explanation.fused_score:.4f}"
        f" → final {explanation.final_score:.4f}",
        highlight=False,
    )
    if explanation.alias is not None:
        console.print(f"    alias {explanation.alias!r} matched exactly: ranked first")
    for signal, part in sorted(explanation.signals.items()):
        console.print(
            f"    {signal:<14} raw {part.score:.4f}  #{part.rank:<4} norm {part.normalised:.4f}"
            f"  x w {part.weight:.3g} = {part.contribution:.4f}",
            highlight=False,
        )
    if explanation.reranker is not None:
        top = ", ".join(
            f"{f.feature} {f.contribution:+.3f}" for f in explanation.reranker.features[:5]
        )
        console.print(
            f"    reranker {explanation.reranker.score:+.4f} (base "
            f"{explanation.reranker.base_value:+.4f}): {top}",
            highlight=False,
        )
    if explanation.cross_encoder is not None:
        cross = explanation.cross_encoder
        console.print(
            f"    cross-encoder {cross.score:+.4f} (was #{cross.rank_before}; read "
            f"{', '.join(cross.fields)})",
            highlight=False,
        )
    for rule in explanation.rules:
        console.print(
            f"    rule {rule.rule} ({rule.kind}, v{explanation.rules_version}): {rule.detail}",
            highlight=False,
        )


def print_routing(console: Console, routing: RoutingExplanation) -> None:
    """The entities the query named, what each did, and the signal weights it set."""
    from rich.markup import escape

    console.print(f"[bold]graph routing[/] ({routing.mode}, {routing.ms:.1f} ms)", highlight=False)
    if not routing.entities and not routing.reasons:
        console.print("    no entity recognised", highlight=False)
    for entity in routing.entities:
        console.print(
            f"    {escape(entity.entity)} ← {escape(repr(entity.text))} ({entity.kind} "
            f"{entity.score:.2f}, {entity.items} items): {escape('; '.join(entity.effects))}",
            highlight=False,
        )
    for reason in routing.reasons:
        console.print(f"    {escape(reason)}", highlight=False)
