"""The stage after retrieval: fusion → learned reranker → business rules → explanations.

``search.searcher.Searcher`` owns one ``RankingStage`` per opened build. The stage resolves the
request's ranking choices against the settings (fusion, weights, reranker model,
rules file), caches loaded models and rules, and fetches the candidate columns it
needs (features, rule attributes, vectors for MMR, perceptual hashes) in one store
query. A reranker that does not fit the build is refused: the search falls back to
plain fusion and says so in the result's warnings.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mmsearch.config import Settings
from mmsearch.errors import QueryError
from mmsearch.filters.expr import Filter
from mmsearch.index.base import BuildReader
from mmsearch.manifest import BuildManifest
from mmsearch.ranking.apply_rules import active_pins, apply_rules
from mmsearch.ranking.cross_encoder import TEXT_COLUMNS, CrossEncoderChoice, rescore_head
from mmsearch.ranking.explain import (
    CrossEncoderExplanation,
    Explanation,
    FeatureContribution,
    RerankerExplanation,
    RuleApplication,
)
from mmsearch.ranking.features import (
    FeatureSpace,
    GraphEvidence,
    all_signals,
    feature_matrix,
    item_vectors,
)
from mmsearch.ranking.fusion import FusionParams, FusionResult, fuse, order_by_score
from mmsearch.ranking.model import RankerError, RankerModel
from mmsearch.ranking.rules import (
    RulesChoice,
    RulesError,
    RuleSet,
    check_columns,
    load_rules,
    stack_rules,
)
from mmsearch.retrieval.retrieve import Retrieved

OFF = {"", "none", "off"}


@dataclass
class Ranked:
    """The outcome of ranking: the top ids in order, their final scores, and the why."""

    top: list[str]
    scores: dict[str, float]
    fused: FusionResult
    rules: dict[str, list[RuleApplication]] = field(default_factory=dict)
    explanations: dict[str, Explanation] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    reranker: str | None = None
    rules_version: str | None = None
    cross_encoder: dict[str, CrossEncoderExplanation] = field(default_factory=dict)


def _choice(value: str | Path | None, default: Path | None) -> Path | None:
    """A request value wins over the settings default; "none"/"off" switches it off."""
    if value is None:
        return default
    if isinstance(value, str) and value.strip().lower() in OFF:
        return None
    return Path(value)


class RankingStage:
    def __init__(self, settings: Settings, manifest: BuildManifest, index: BuildReader):
        self.settings = settings
        self.manifest = manifest
        self.index = index
        self.space = FeatureSpace.for_build(manifest, index.schema)
        self.columns = {a.column for a in manifest.attributes}
        self.signal_columns = all_signals(manifest.encoders)
        self._models: dict[Path, RankerModel] = {}
        self._rules: dict[Path, tuple[float, RuleSet]] = {}

    # --- choices -------------------------------------------------------------------------

    def rules_for(self, value: RulesChoice) -> RuleSet | None:
        """The rules a request asked for; a pair is a binding set and one stacked on it
        (``stack_rules``)."""
        if isinstance(value, tuple):
            binding, added = (self.rules_for(part) for part in value)
            if binding is None or added is None:
                return binding or added
            return stack_rules(binding, added)
        path = _choice(value, self.settings.rules)
        if path is None:
            return None
        path = path.expanduser()
        mtime = path.stat().st_mtime if path.is_file() else -1.0
        cached = self._rules.get(path)
        if cached and cached[0] == mtime:
            return cached[1]
        rules = load_rules(path)
        check_columns(rules, self.columns)
        mmr = rules.diversity.mmr if rules.diversity else None
        if mmr and not self.signal_columns.get(mmr.signal):
            vector_signals = sorted(s for s, c in self.signal_columns.items() if c)
            raise RulesError(
                f"The MMR rule names signal '{mmr.signal}', which has no vectors in this "
                f"collection; use one of: {', '.join(vector_signals) or 'none'}."
            )
        self._rules[path] = (mtime, rules)
        return rules

    def reranker_path(self, value: str | Path | None) -> Path | None:
        """The model folder a request's reranker choice names (the settings' by default),
        None when reranking is off: retrieval asks this before the model is loaded."""
        return _choice(value, self.settings.ranker)

    def reranker_for(self, value: str | Path | None, warnings: list[str]) -> RankerModel | None:
        path = self.reranker_path(value)
        if path is None:
            return None
        path = path.expanduser()
        try:
            model = self._models.get(path) or RankerModel.load(path)
        except RankerError as exc:
            warnings.append(f"reranker not used: {exc}")
            return None
        self._models[path] = model
        problem = model.incompatibility(self.space.names(), self.manifest)
        if problem:
            warnings.append(f"reranker not used: {problem}")
            return None
        return model

    # --- ranking -------------------------------------------------------------------------

    def features(
        self, retrieved: Retrieved, ids: list[str], graph: GraphEvidence | None = None
    ) -> np.ndarray:
        """The feature rows of ``ids`` (in fused order), ``graph`` the query's graph evidence."""
        rows = self._rows(ids, self.space.columns())
        return feature_matrix(self.space, retrieved, ids, rows, graph)

    def rank(
        self,
        retrieved: Retrieved,
        *,
        k: int,
        fusion: str,
        params: FusionParams,
        reranker: str | Path | None = None,
        ruleset: RuleSet | None = None,
        explain: bool = False,
        graph: GraphEvidence | None = None,
        cross: CrossEncoderChoice | None = None,
    ) -> Ranked:
        """Fuse, rerank, apply ``ruleset`` (resolved once by the caller with ``rules_for``,
        whose filters already went down with retrieval), explain. ``graph``: the query's
        entity-graph evidence for the reranker's graph features (asked only when a
        reranker runs). ``cross``: the cross-encoder rescoring the top of that order
        before the rules (resolved, its folder checked, by the caller)."""
        timings = retrieved.timings
        _check_weight_names(params.weights, retrieved.planned)
        tick = time.perf_counter()
        fused = fuse(fusion, retrieved.ranked, params)
        timings["fusion"] = _ms(tick)
        out = Ranked([], dict(fused.scores), fused)
        model = self.reranker_for(reranker, out.warnings)
        pool = order_by_score(fused.scores)
        pins = active_pins(ruleset, retrieved.text) if ruleset else []
        pool += self._pinned_outside(pool, pins, retrieved.where)
        columns = self._columns(model, ruleset)
        rows = self._rows(pool, columns) if columns else {}
        matrix = np.zeros((0, 0))
        if model is not None and pool:
            tick = time.perf_counter()
            matrix = feature_matrix(self.space, retrieved, pool, rows, graph)
            scores = model.score(matrix, self.space.names())
            out.scores = dict(zip(pool, scores.tolist(), strict=True))
            out.reranker = model.name
            timings["rerank"] = _ms(tick)
        if cross is not None and pool:
            self._cross_rescore(out, cross, retrieved)
        order = order_by_score(out.scores)
        if ruleset is not None:
            tick = time.perf_counter()
            floor = min(out.scores.values(), default=0.0)
            for item_id in pool:  # pinned items fetched from outside the fused candidates
                out.scores.setdefault(item_id, floor)
            ruled = apply_rules(
                ruleset,
                retrieved.text,
                out.scores,
                rows,
                k=k,
                phash_column=self.space.phash,
                vectors=self._mmr_vectors(ruleset, rows),
            )
            order, out.scores, out.rules = ruled.order, ruled.scores, ruled.applied
            out.warnings += ruled.warnings
            out.rules_version = ruleset.version
            timings["rules"] = _ms(tick)
        out.top = order[:k]
        if explain:
            self._explain(out, fusion, model, pool, matrix)
        return out

    def _cross_rescore(self, out: Ranked, cross: CrossEncoderChoice, retrieved: Retrieved) -> None:
        """The cross-encoder's order for the top of ``out.scores``; the texts it reads are
        fetched through the search's whole store filter (the caller's groups included)."""
        if not retrieved.text:
            out.warnings.append("cross-encoder not used: it reads a text query, and there is none")
            return
        tick = time.perf_counter()
        order = order_by_score(out.scores)
        head = order[: cross.top]
        rows = {
            row["id"]: row
            for row in self.index.get(head, ["id", *TEXT_COLUMNS], filter=retrieved.where)
        }
        out.scores, out.cross_encoder = rescore_head(cross, retrieved.text, order, out.scores, rows)
        retrieved.timings["cross_encoder"] = _ms(tick)

    def _pinned_outside(
        self, pool: list[str], pins: list[tuple[str, int, str]], where: Filter | None
    ) -> list[str]:
        """Pinned ids the retrievers did not return, if they exist and pass the whole filter
        (the user's, the rules', and what the caller may see): they come from outside the
        filtered candidates, so the filter is applied to them here."""
        missing = [item_id for item_id, _, _ in pins if item_id not in set(pool)]
        if not missing:
            return []
        found = {row["id"] for row in self.index.get(missing, ["id"], filter=where)}
        return [item_id for item_id in missing if item_id in found]

    def _columns(self, model: RankerModel | None, ruleset: RuleSet | None) -> list[str]:
        columns: list[str] = []
        if model is not None:
            columns += self.space.columns()
        if ruleset is not None:
            columns += ["id", *sorted(ruleset.attributes())]
            if ruleset.dedupe and self.space.phash:
                columns.append(self.space.phash)
            mmr = ruleset.diversity.mmr if ruleset.diversity else None
            if mmr:
                columns.append(self.signal_columns[mmr.signal] or "")
        return list(dict.fromkeys(columns))

    def _rows(self, ids: list[str], columns: list[str]) -> dict[str, dict[str, Any]]:
        return {row["id"]: row for row in self.index.get(ids, columns)} if ids else {}

    def _mmr_vectors(
        self, ruleset: RuleSet, rows: dict[str, dict[str, Any]]
    ) -> dict[str, np.ndarray]:
        mmr = ruleset.diversity.mmr if ruleset.diversity else None
        if not mmr:
            return {}
        column = self.signal_columns[mmr.signal] or ""
        vectors = {item_id: item_vectors(row.get(column)) for item_id, row in rows.items()}
        # Several images per item: their mean direction stands for the item.
        return {item_id: _unit(v.mean(axis=0)) for item_id, v in vectors.items() if v is not None}

    def _explain(
        self,
        out: Ranked,
        fusion: str,
        model: RankerModel | None,
        pool: list[str],
        matrix: np.ndarray,
    ) -> None:
        shap: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        if model is not None and out.top:
            index = {item_id: i for i, item_id in enumerate(pool)}
            rows = [index[i] for i in out.top if i in index]
            own = matrix[:, model.columns(self.space.names())]
            values = model.contributions(own[rows])
            for row, contrib in zip(rows, values, strict=True):
                shap[pool[row]] = (own[row], contrib)
        names = model.meta.features if model is not None else self.space.names()
        for item_id in out.top:
            explanation = Explanation(
                fusion=fusion,
                fused_score=round(out.fused.scores.get(item_id, 0.0), 6),
                signals=dict(out.fused.contributions.get(item_id, {})),
                rules_version=out.rules_version,
                rules=list(out.rules.get(item_id, [])),
                final_score=round(out.scores.get(item_id, 0.0), 6),
                cross_encoder=out.cross_encoder.get(item_id),
            )
            if item_id in shap and model is not None:
                values, contrib = shap[item_id]
                features = [
                    FeatureContribution(
                        name, None if np.isnan(v) else round(float(v), 6), round(float(c), 6)
                    )
                    for name, v, c in zip(names, values, contrib[:-1], strict=True)
                ]
                features.sort(key=lambda f: -abs(f.contribution))
                explanation.reranker = RerankerExplanation(
                    model=model.name,
                    score=round(float(contrib.sum()), 6),
                    base_value=round(float(contrib[-1]), 6),
                    features=features,
                )
            out.explanations[item_id] = explanation


def _unit(vector: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 0 else vector


def _check_weight_names(weights: dict[str, float] | None, planned: list[str]) -> None:
    unknown = sorted(set(weights or {}) - set(planned))
    if unknown:
        raise QueryError(
            f"Weight(s) given for {', '.join(unknown)}, which do not answer this query; "
            f"signals of this query: {', '.join(sorted(planned)) or 'none'}."
        )


def _ms(tick: float) -> float:
    return round((time.perf_counter() - tick) * 1000.0, 3)
