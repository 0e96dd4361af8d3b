"""Evaluating a publish gate: the candidate build beside the live one, in one run.

Both builds answer exactly the same queries with the same search options (the gate's
``[search]``), against the live build named when the run started, so a difference in
the figures is a difference between the builds. The checks:

- **judged**: nDCG@10 and Recall@k over judged queries (the ``mmsearch eval`` code:
  ``run_experiment`` per build, ``evaluate_runs`` for ranx's metrics). A metric fails
  when it drops by more than its allowed margin, or when the drop is significant at
  ``alpha`` in a one-sided paired t-test (``paired_drop_p``);
- **canonical**: queries that must return given ids in the top k;
- **counts**: candidate items / live items within bounds (a half-ingested catalog);
- **latency**: p95 of the candidate against live, timed interleaved; refused only when
  the bootstrap confidence interval of the p95 ratio lies above the allowed ratio
  (``gate_latency.py``), so a busy shared host does not refuse an equal build.

With no live build (a first publish) the comparing checks pass with a note; the
candidate's own figures are still shown and canonical queries still apply.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from mmsearch.builds.gate_config import Gate, load_judged
from mmsearch.builds.gate_drift import drift_check
from mmsearch.builds.gate_latency import judge_latency
from mmsearch.builds.gate_report import (
    FAIL,
    PASS,
    CheckResult,
    GateReport,
    MetricRow,
    store_report,
)
from mmsearch.builds.lifecycle import LIVE, ready_manifest
from mmsearch.clock import utc_now
from mmsearch.config import Settings
from mmsearch.evaluation.configs import RetrievalConfig
from mmsearch.evaluation.latency import WARMUP, Latency, sample_queries
from mmsearch.evaluation.metrics import evaluate_runs
from mmsearch.evaluation.queries import EvalQuery
from mmsearch.evaluation.runner import run_experiment
from mmsearch.media.images import ImageLimits, load_image
from mmsearch.search.request import SearchRequest
from mmsearch.search.searcher import Searcher
from mmsearch.workspace import Workspace

NDCG = "ndcg@10"
LATENCY_K = 10  # what a typical search page asks for
NO_LIVE = "no live build to compare with (first publish)"
Progress = Callable[[str], None]


@dataclass
class _Builds:
    candidate: Searcher
    live: Searcher | None


@dataclass(frozen=True)
class _TimedQuery:
    text: str | None
    image: Path | Image.Image | None
    where: str | None


def evaluate_gate(
    settings: Settings,
    collection_name: str,
    candidate_build: str,
    gate: Gate,
    *,
    store: bool = True,
    progress: Progress | None = None,
) -> GateReport:
    """Run every check of ``gate`` on the candidate and the live build; store the report
    with the candidate (unless ``store`` is False) and return it."""
    started = time.perf_counter()
    say = progress or (lambda message: None)
    folder = Workspace(settings.home).collection(collection_name)
    ready_manifest(folder, candidate_build)
    live_build = folder.alias(LIVE)
    # Every search pays its own query encoding, on both builds alike.
    settings = settings.model_copy(update={"query_cache_size": 0})
    builds = _Builds(
        Searcher(settings, collection_name, build_id=candidate_build),
        Searcher(settings, collection_name, build_id=live_build) if live_build else None,
    )
    report = GateReport(
        collection=collection_name,
        candidate_build=candidate_build,
        live_build=live_build,
        verdict=FAIL,
        reasons=[],
        checks=[],
        metrics=[],
        evaluated_at=utc_now(),
        gate_file=str(gate.path),
        gate_sha256=gate.sha256,
    )
    if live_build is None:
        report.notes.append(
            f"No build is live yet: the checks that compare with live pass ({NO_LIVE})."
        )
    elif live_build == candidate_build:
        report.notes.append("The candidate is the live build: it is compared with itself.")
    config = gate.search_config()
    judged_queries: list[EvalQuery] = []
    if gate.config.judged is not None:
        say("judged queries")
        tick = time.perf_counter()
        judged_queries = _judged(settings, builds, gate, config, report)
        report.timings_s["judged"] = round(time.perf_counter() - tick, 3)
    if gate.config.canonical:
        say("canonical queries")
        tick = time.perf_counter()
        _canonical(builds, gate, config, report)
        report.timings_s["canonical"] = round(time.perf_counter() - tick, 3)
    if gate.config.counts is not None:
        _counts(builds, gate, report)
    if gate.config.latency is not None:
        say("latency")
        tick = time.perf_counter()
        _latency(settings, builds, gate, config, judged_queries, report)
        report.timings_s["latency"] = round(time.perf_counter() - tick, 3)
    if gate.config.drift is not None:
        say("drift")
        tick = time.perf_counter()
        drift_check(settings, folder, candidate_build, live_build, gate.config.drift, report)
        report.timings_s["drift"] = round(time.perf_counter() - tick, 3)
    report.reasons = [check.reason for check in report.checks if not check.passed]
    report.verdict = PASS if not report.reasons else FAIL
    report.timings_s["total"] = round(time.perf_counter() - started, 3)
    if store:
        store_report(folder, report)
    return report


def paired_drop_p(live: list[float], candidate: list[float]) -> float:
    """One-sided p-value of "the candidate scores lower than live", paired by query.

    scipy's paired t-test with ``alternative="less"`` rather than ranx's ``compare``:
    the gate asks a one-sided question (is the candidate worse?), which ranx answers
    only two-sided, and an improvement must never count against a build. The scores
    are ranx's per-query values, so the means match ``mmsearch eval``; the t-test is
    the usual IR choice and agrees closely with randomisation tests at these sample
    sizes (Smucker, Allan and Carterette, CIKM 2007). With no variation in the
    differences the answer is exact: 0 for a constant drop, 1 otherwise."""
    from scipy.stats import ttest_rel

    diffs = np.asarray(candidate, dtype=np.float64) - np.asarray(live, dtype=np.float64)
    if len(diffs) < 2 or float(np.ptp(diffs)) == 0.0:
        return 0.0 if len(diffs) >= 2 and diffs[0] < 0 else 1.0
    p = float(ttest_rel(candidate, live, alternative="less").pvalue)
    return p if np.isfinite(p) else 1.0


def _named(config: RetrievalConfig, name: str) -> RetrievalConfig:
    return dataclasses.replace(config, name=name)


def _judged(
    settings: Settings, builds: _Builds, gate: Gate, config: RetrievalConfig, report: GateReport
) -> list[EvalQuery]:
    judged = gate.config.judged
    assert judged is not None
    queries, judgments = load_judged(judged)
    recall = f"recall@{judged.k}"
    depth = max(10, judged.k)
    name = builds.candidate.collection
    runs = [
        run_experiment(
            settings, name, queries, [_named(config, role)], k=depth, build_id=searcher.build_id
        )[0]
        for role, searcher in (("live", builds.live), ("candidate", builds.candidate))
        if searcher is not None
    ]
    evaluation = evaluate_runs(judgments, runs, metrics=(NDCG, recall))
    report.queries = {
        "judged": len(evaluation.query_ids),
        "without_judgments": len(evaluation.unjudged_queries),
    }
    for run in runs:
        if run.warnings:
            report.notes.append(
                f"{run.config.name}: {len(run.warnings)} search warnings, first: {run.warnings[0]}"
            )
    for metric, max_drop in ((NDCG, judged.max_ndcg_drop), (recall, judged.max_recall_drop)):
        candidate = evaluation.means["candidate"][metric]
        rule = f"drop ≤ {max_drop:g}" + (f", p ≥ {judged.alpha:g}" if judged.alpha else "")
        if builds.live is None:
            report.metrics.append(MetricRow(metric, None, candidate, rule, True))
            report.checks.append(CheckResult(f"judged.{metric}", True, f"{metric}: {NO_LIVE}"))
            continue
        live = evaluation.means["live"][metric]
        scores = evaluation.per_query
        p = paired_drop_p(
            [scores["live"][q][metric] for q in evaluation.query_ids],
            [scores["candidate"][q][metric] for q in evaluation.query_ids],
        )
        drop = live - candidate
        too_big = drop > max_drop + 1e-9
        significant = bool(judged.alpha) and drop > 0 and p < judged.alpha
        passed = not (too_big or significant)
        if passed:
            reason = f"{metric} {candidate:.4f} vs live {live:.4f} (drop {drop:+.4f}, p={p:.3g})"
        else:
            why = []
            if too_big:
                why.append(f"drops by {drop:.4f}, more than the {max_drop:g} allowed")
            if significant:
                why.append(
                    f"the drop is significant (one-sided paired t-test p={p:.3g} < "
                    f"{judged.alpha:g}, {len(evaluation.query_ids)} queries)"
                )
            reason = f"{metric} {candidate:.4f} vs live {live:.4f}: " + " and ".join(why)
        report.metrics.append(MetricRow(metric, live, candidate, rule, passed, p_value=p))
        report.checks.append(CheckResult(f"judged.{metric}", passed, reason))
    return queries


def _top_ids(
    searcher: Searcher, config: RetrievalConfig, text: str, k: int, where: str | None
) -> list[str]:
    result = searcher.search(config.request(text=text, k=k, where=where))
    return [hit.id for hit in result.hits]


def _canonical(builds: _Builds, gate: Gate, config: RetrievalConfig, report: GateReport) -> None:
    for index, entry in enumerate(gate.config.canonical):
        wanted = list(dict.fromkeys(entry.ids))
        found_ids = _top_ids(builds.candidate, config, entry.query, entry.k, entry.where)
        missing = [item for item in wanted if item not in found_ids]
        live_found = None
        if builds.live is not None:
            live_ids = _top_ids(builds.live, config, entry.query, entry.k, entry.where)
            live_found = sum(item in live_ids for item in wanted)
        label = entry.query if len(entry.query) <= 28 else entry.query[:25] + "..."
        found = len(wanted) - len(missing)
        if missing:
            reason = (
                f"canonical query {entry.query!r}: {', '.join(missing)} not in the top "
                f"{entry.k} ({found}/{len(wanted)} found"
                + (f"; live finds {live_found}/{len(wanted)})" if live_found is not None else ")")
            )
        else:
            reason = f"canonical query {entry.query!r}: all {len(wanted)} in the top {entry.k}"
        report.metrics.append(
            MetricRow(
                f"canonical {label!r}",
                None if live_found is None else float(live_found),
                float(found),
                f"all {len(wanted)} in top {entry.k}",
                not missing,
                unit="found",
            )
        )
        report.checks.append(CheckResult(f"canonical[{index}]", not missing, reason))


def _counts(builds: _Builds, gate: Gate, report: GateReport) -> None:
    counts = gate.config.counts
    assert counts is not None
    candidate = builds.candidate.index.row_count()
    bounds = [
        f"≥ {counts.min_ratio:g}" if counts.min_ratio is not None else "",
        f"≤ {counts.max_ratio:g}" if counts.max_ratio is not None else "",
    ]
    rule = "ratio " + " and ".join(b for b in bounds if b)
    if builds.live is None:
        report.metrics.append(MetricRow("items", None, float(candidate), rule, True, "items"))
        report.checks.append(CheckResult("counts", True, f"items: {NO_LIVE}"))
        return
    live = builds.live.index.row_count()
    ratio: float | None = candidate / live if live else (1.0 if candidate == 0 else None)
    low = counts.min_ratio is not None and ratio is not None and ratio < counts.min_ratio
    high = counts.max_ratio is not None and (ratio is None or ratio > counts.max_ratio)
    shown = "∞" if ratio is None else f"{ratio:.3f}"
    if low or high:
        reason = (
            f"items: the candidate holds {candidate} against live's {live} (ratio {shown}, "
            f"allowed {rule.removeprefix('ratio ')})"
        )
    else:
        reason = f"items: {candidate} against live's {live} (ratio {shown})"
    report.metrics.append(
        MetricRow("items", float(live), float(candidate), rule, not (low or high), "items")
    )
    report.checks.append(CheckResult("counts", not (low or high), reason))


def _search_ms(searcher: Searcher, request: SearchRequest) -> float:
    """One timed search, in milliseconds (a seam: tests put synthetic timings here)."""
    tick = time.perf_counter()
    searcher.search(request)
    return (time.perf_counter() - tick) * 1000.0


def _timed_queries(
    settings: Settings, builds: _Builds, gate: Gate, judged: list[EvalQuery]
) -> list[_TimedQuery]:
    latency = gate.config.latency
    assert latency is not None
    found: dict[tuple[object, ...], _TimedQuery] = {}
    for query in judged:
        found.setdefault(
            (query.text, query.image, query.where),
            _TimedQuery(query.text, query.image, query.where),
        )
    for entry in gate.config.canonical:
        found.setdefault(
            (entry.query, None, entry.where), _TimedQuery(entry.query, None, entry.where)
        )
    timed = list(found.values())[: latency.queries]
    if not timed:  # nothing named: titles and images of the candidate's own items
        limits = ImageLimits(settings.max_image_bytes, settings.max_image_pixels)
        sampled = sample_queries(builds.candidate, latency.queries, 0, limits)
        timed = [_TimedQuery(q.text, q.image, None) for q in sampled]
    return timed


def _latency(
    settings: Settings,
    builds: _Builds,
    gate: Gate,
    config: RetrievalConfig,
    judged: list[EvalQuery],
    report: GateReport,
) -> None:
    latency = gate.config.latency
    assert latency is not None
    rule = (
        f"{latency.confidence:.0%} CI of the p95 ratio not above {latency.max_p95_ratio:g} "
        f"(or +{latency.slack_ms:g} ms)"
    )
    if builds.live is None:
        report.checks.append(CheckResult("latency.p95", True, f"latency: {NO_LIVE}"))
        return
    limits = ImageLimits(settings.max_image_bytes, settings.max_image_pixels)
    images: dict[Path, Image.Image] = {}

    def search(searcher: Searcher, query: _TimedQuery) -> float:
        image = query.image
        if isinstance(image, Path):
            if image not in images:
                images[image] = load_image(image, limits)
            image = images[image]
        request = config.request(text=query.text, image=image, k=LATENCY_K, where=query.where)
        return _search_ms(searcher, request)

    timed = _timed_queries(settings, builds, gate, judged)
    pair = {"live": builds.live, "candidate": builds.candidate}
    for query in timed[:WARMUP]:  # model loading and first-touch caches are not latency
        for searcher in pair.values():
            search(searcher, query)
    samples: dict[str, list[float]] = {"live": [], "candidate": []}
    # enough pairs for the p95 and its bootstrap interval to mean something
    repeats = max(latency.repeats, -(-latency.min_pairs // max(len(timed), 1)))
    for repeat in range(repeats):
        for index, query in enumerate(timed):
            # Alternate which build goes first, so neither always runs on warmer caches.
            order = ("live", "candidate") if (index + repeat) % 2 == 0 else ("candidate", "live")
            for role in order:
                samples[role].append(search(pair[role], query))
    live, candidate = Latency.of(samples["live"]), Latency.of(samples["candidate"])
    # samples[...][i] of both builds are one pair: the same query, back to back
    judgement = judge_latency(
        samples["live"],
        samples["candidate"],
        max_p95_ratio=latency.max_p95_ratio,
        slack_ms=latency.slack_ms,
        confidence=latency.confidence,
    )
    interval = judgement.interval
    report.queries["timed"] = len(timed)
    report.metrics.append(MetricRow("latency p50", live.p50, candidate.p50, "", None, "ms"))
    report.metrics.append(
        MetricRow(
            "latency p95",
            live.p95,
            candidate.p95,
            f"{rule}; ratio {interval.ratio:.2f} [{interval.low:.2f}, {interval.high:.2f}]",
            judgement.passed,
            "ms",
            ratio_interval=[round(interval.low, 4), round(interval.high, 4)],
        )
    )
    report.checks.append(CheckResult("latency.p95", judgement.passed, judgement.reason))
