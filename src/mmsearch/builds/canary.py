"""Watching a canary beside live, and switching it off when a rollback guard trips.

Each service worker counts, per build, what it served since the canary started
(searches, zero results, keyword fallbacks, encoder failures, latencies, clicked
queries) and, every few canary searches, compares the canary with live against the
collection's guards. A tripped guard stops the canary at once (searches go back to
live on the next request) and leaves a switch event that names the reason. The
counts are per worker on purpose: a guard must act within seconds, without reading
logs; the side-by-side report across workers (``canary status``) reads the logs.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import ConfigDict
from scipy.stats import norm

from mmsearch.builds.lifecycle import Canary
from mmsearch.collection_state import CanaryGuardSettings, CollectionState
from mmsearch.monitoring.kpis import two_proportion_z
from mmsearch.workspace import CollectionDir

CHECK_EVERY = 10  # canary searches between guard checks
LATENCY_WINDOW = 5000
MAX_CLICKED = 1_000_000


class CanaryGuards(CanaryGuardSettings):
    """Rollback thresholds, kept per collection in ``collection.json`` (``canary_guards``):
    the stored model's fields, refusing names it does not know (CLI ``--set``, API body)."""

    model_config = ConfigDict(extra="forbid")

    @classmethod
    def of(cls, state: CollectionState) -> CanaryGuards:
        stored = state.canary_guards
        return cls.model_validate(stored.as_json() if stored is not None else {})

    def store(self, folder: CollectionDir) -> None:
        """Make these the collection's guards (one locked rewrite of collection.json)."""
        guards = CanaryGuardSettings.model_validate(self.model_dump())

        def change(state: CollectionState) -> None:
            state.canary_guards = guards

        folder.update_state(change)


@dataclass
class BuildWindow:
    """What one build served since the canary started, in this worker."""

    searches: int = 0
    zero_results: int = 0
    fallbacks: int = 0
    encoder_failures: int = 0
    latencies_s: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_WINDOW))
    clicked_queries: set[str] = field(default_factory=set)

    def p95_s(self) -> float:
        return float(np.percentile(list(self.latencies_s), 95)) if self.latencies_s else 0.0

    @property
    def zero_rate(self) -> float:
        return self.zero_results / self.searches if self.searches else 0.0

    @property
    def ctr(self) -> float:
        return len(self.clicked_queries) / self.searches if self.searches else 0.0


@dataclass(frozen=True)
class Trip:
    guard: str
    reason: str


def ctr_lower_p_value(clicks_a: int, n_a: int, clicks_b: int, n_b: int) -> float:
    """One-sided two-proportion z-test that A's click-through rate is below B's.

    One-sided and without the Fisher fallback of ``kpis.ctr_difference_test``: a guard
    trips only on a lower canary CTR, and judges thousands of impressions, where the
    normal approximation is accurate and costs nothing per check."""
    z = two_proportion_z(clicks_a, n_a, clicks_b, n_b)
    return 1.0 if z is None else float(norm.cdf(z))


def judge(canary: BuildWindow, live: BuildWindow, guards: CanaryGuards) -> Trip | None:
    """The first guard the canary breaks, or None."""
    if canary.searches < guards.min_searches:
        return None
    failure_rate = canary.encoder_failures / canary.searches
    if failure_rate > guards.max_encoder_failure_rate:
        return Trip(
            "encoder_failures",
            f"encoder failures in {failure_rate:.1%} of canary searches "
            f"(guard: {guards.max_encoder_failure_rate:.1%})",
        )
    if live.searches < guards.min_searches:
        return None  # the comparisons below need live's figures
    increase = canary.zero_rate - live.zero_rate
    if increase > guards.max_zero_rate_increase:
        return Trip(
            "zero_results",
            f"zero-result rate {canary.zero_rate:.1%} vs live {live.zero_rate:.1%} "
            f"(guard: at most {guards.max_zero_rate_increase:.1%} above live)",
        )
    live_p95 = live.p95_s()
    if live_p95 > 0 and canary.p95_s() / live_p95 > guards.max_p95_ratio:
        return Trip(
            "latency",
            f"p95 {canary.p95_s() * 1000:.1f} ms vs live {live_p95 * 1000:.1f} ms "
            f"(guard: at most {guards.max_p95_ratio:g}x)",
        )
    if min(canary.searches, live.searches) >= guards.ctr_min_impressions:
        p = ctr_lower_p_value(
            len(canary.clicked_queries), canary.searches, len(live.clicked_queries), live.searches
        )
        if p < guards.ctr_alpha:
            return Trip(
                "ctr",
                f"CTR {canary.ctr:.2%} vs live {live.ctr:.2%}, lower at p={p:.4f} "
                f"(guard: alpha {guards.ctr_alpha:g})",
            )
    return None


class CanaryMonitor:
    """Per-build windows of the canaries this worker serves, and their guard checks."""

    def __init__(self) -> None:
        self._windows: dict[str, tuple[Canary, dict[str, BuildWindow]]] = {}
        self._lock = threading.Lock()

    def _builds(self, collection: str, canary: Canary) -> dict[str, BuildWindow]:
        current = self._windows.get(collection)
        if current is None or current[0] != canary:  # a new canary starts from zero
            current = (canary, {})
            self._windows[collection] = current
        return current[1]

    def observe(
        self,
        collection: str,
        canary: Canary | None,
        build_id: str,
        *,
        seconds: float,
        hits: int,
        fallback: bool,
        encoder_failures: int,
    ) -> bool:
        """Count one search; True when the guards are due a check (a canary search)."""
        if canary is None:
            return False
        with self._lock:
            window = self._builds(collection, canary).setdefault(build_id, BuildWindow())
            window.searches += 1
            window.zero_results += hits == 0
            window.fallbacks += fallback
            window.encoder_failures += encoder_failures > 0
            window.latencies_s.append(seconds)
            return build_id == canary.build_id and window.searches % CHECK_EVERY == 0

    def observe_click(self, collection: str, build_id: str, query_id: str) -> None:
        with self._lock:
            current = self._windows.get(collection)
            if current is None:
                return
            window = current[1].get(build_id)
            if window is not None and len(window.clicked_queries) < MAX_CLICKED:
                window.clicked_queries.add(query_id)

    def check(
        self, collection: str, canary: Canary, live_build: str, guards: CanaryGuards
    ) -> Trip | None:
        with self._lock:
            builds = self._builds(collection, canary)
            canary_window = builds.get(canary.build_id, BuildWindow())
            live_window = builds.get(live_build, BuildWindow())
            return judge(canary_window, live_window, guards)

    def snapshot(self, collection: str) -> dict[str, Any]:
        """This worker's windows, JSON-ready (the API's live view of a canary)."""
        with self._lock:
            current = self._windows.get(collection)
            if current is None:
                return {}
            return {
                build: {
                    "searches": w.searches,
                    "zero_rate": round(w.zero_rate, 4),
                    "fallbacks": w.fallbacks,
                    "encoder_failures": w.encoder_failures,
                    "p95_ms": round(w.p95_s() * 1000.0, 3),
                    "clicked_queries": len(w.clicked_queries),
                    "ctr": round(w.ctr, 4),
                }
                for build, w in current[1].items()
            }
