"""The publish gate's latency decision: is the candidate confidently slower than live?

A p95 taken once on a shared host measures the host as much as the build: the same
live build showed p50 74 ms in one publish and 586 ms three minutes later, so a plain
"p95 ratio ≤ 1.5" refused equal builds whenever a neighbour got busy. Two things
make the figure mean something:

- the gate times the builds **interleaved** (live and candidate alternate on each
  query, ``gate._latency``), so a burst of load falls on both sides of a pair;
- the ratio of p95s gets a **paired bootstrap confidence interval**: the (live,
  candidate) pairs are resampled together, keeping what the host did to both, and
  the gate refuses only when the interval's lower bound is above the allowed ratio,
  i.e. when the candidate is slower beyond what the noise explains.

A percentile bootstrap of a ratio of p95s: seeded, so the same timings always give the
same verdict; a few thousand resamples of a few hundred pairs take milliseconds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

RESAMPLES = 2000
SEED = 1234


@dataclass(frozen=True)
class RatioInterval:
    """p95(candidate) / p95(live), with a bootstrap confidence interval."""

    ratio: float
    low: float
    high: float
    confidence: float
    resamples: int
    pairs: int

    def describe(self) -> str:
        return (
            f"p95 ratio {self.ratio:.2f}, {self.confidence:.0%} CI "
            f"[{self.low:.2f}, {self.high:.2f}] ({self.pairs} interleaved pairs, "
            f"{self.resamples} bootstrap resamples)"
        )


def _ratio(candidate_p95: np.ndarray, live_p95: np.ndarray) -> np.ndarray:
    """Candidate over live, 1.0 where both are 0 and a large finite value where only
    live is 0 (a timer reading 0 ms must not divide by zero)."""
    safe = np.where(live_p95 > 0, live_p95, 1.0)
    ratio = np.where(live_p95 > 0, candidate_p95 / safe, np.where(candidate_p95 > 0, 1e9, 1.0))
    return np.asarray(ratio, dtype=np.float64)


def p95_ratio_interval(
    live_ms: Sequence[float],
    candidate_ms: Sequence[float],
    *,
    confidence: float = 0.95,
    resamples: int = RESAMPLES,
    seed: int = SEED,
) -> RatioInterval:
    """The p95 ratio of paired timings and its percentile-bootstrap interval.

    ``live_ms[i]`` and ``candidate_ms[i]`` are one interleaved pair (the same query, back
    to back); pairs are resampled as units so load shared by a pair cancels out."""
    live = np.asarray(live_ms, dtype=np.float64)
    candidate = np.asarray(candidate_ms, dtype=np.float64)
    if live.shape != candidate.shape or live.ndim != 1 or live.size == 0:
        raise ValueError("need the same positive number of live and candidate timings")
    if not 0.0 < confidence < 1.0:
        raise ValueError("confidence must be between 0 and 1")
    ratio = float(
        _ratio(np.atleast_1d(np.percentile(candidate, 95)), np.atleast_1d(np.percentile(live, 95)))[
            0
        ]
    )
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, live.size, size=(resamples, live.size))
    boot = _ratio(
        np.percentile(candidate[picks], 95, axis=1), np.percentile(live[picks], 95, axis=1)
    )
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(boot, [tail, 100.0 - tail])
    return RatioInterval(ratio, float(low), float(high), confidence, resamples, int(live.size))


@dataclass(frozen=True)
class LatencyJudgement:
    passed: bool
    interval: RatioInterval
    live_p95: float
    candidate_p95: float
    reason: str


def judge_latency(
    live_ms: Sequence[float],
    candidate_ms: Sequence[float],
    *,
    max_p95_ratio: float,
    slack_ms: float,
    confidence: float = 0.95,
    resamples: int = RESAMPLES,
) -> LatencyJudgement:
    """Refuse only a candidate confidently slower than allowed: the interval's lower
    bound above ``max_p95_ratio`` and the p95s more than ``slack_ms`` apart (timer
    noise on millisecond searches would otherwise fail identical builds)."""
    interval = p95_ratio_interval(live_ms, candidate_ms, confidence=confidence, resamples=resamples)
    live_p95 = float(np.percentile(np.asarray(live_ms, dtype=np.float64), 95))
    candidate_p95 = float(np.percentile(np.asarray(candidate_ms, dtype=np.float64), 95))
    slower = interval.low > max_p95_ratio
    within_slack = candidate_p95 - live_p95 <= slack_ms
    passed = not slower or within_slack
    if not slower:
        verdict = (
            f"not confidently above the {max_p95_ratio:g} ratio allowed "
            f"(CI lower bound {interval.low:.2f} ≤ {max_p95_ratio:g})"
        )
    elif within_slack:
        verdict = f"above the {max_p95_ratio:g} ratio but within {slack_ms:g} ms"
    else:
        verdict = (
            f"confidently above the {max_p95_ratio:g} ratio allowed "
            f"(CI lower bound {interval.low:.2f} > {max_p95_ratio:g})"
        )
    reason = (
        f"latency p95 {candidate_p95:.1f} ms vs live {live_p95:.1f} ms, "
        f"{interval.describe()}: {verdict}"
    )
    return LatencyJudgement(passed, interval, live_p95, candidate_p95, reason)
