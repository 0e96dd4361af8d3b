"""The gate's drift check: does the candidate's embedding distribution differ from live's?

A rebuild or a catalog refresh that should change little but moves a role's vectors
(a corrupted model file, a preprocessing change, a catalog from another source) is
caught before it answers anyone. Roles whose encoder changed live in another vector
space and cannot be compared; they pass with a note instead of a meaningless p-value.
"""

from __future__ import annotations

from mmsearch.builds.gate_config import DriftGate
from mmsearch.builds.gate_report import CheckResult, GateReport
from mmsearch.config import Settings
from mmsearch.monitoring.drift import compare_builds
from mmsearch.workspace import CollectionDir


def drift_check(
    settings: Settings,
    folder: CollectionDir,
    candidate_build: str,
    live_build: str | None,
    drift: DriftGate,
    report: GateReport,
) -> None:
    if live_build is None or live_build == candidate_build:
        report.checks.append(CheckResult("drift", True, "drift: no other live build to compare"))
        return
    results = compare_builds(
        folder,
        folder.manifest(candidate_build),
        folder.manifest(live_build),
        settings,
        threshold=drift.threshold,
    )
    for result in results:
        name = f"drift.{result.role}"
        if result.drifted is None:
            report.notes.append(f"{name}: not tested ({result.note or 'encoder changed'})")
            continue
        verdict = "drifted" if result.drifted else "no drift"
        reason = (
            f"drift of {result.role} vectors: MMD² {result.score:.4g}, p = "
            f"{result.p_value:.4f} against threshold {drift.threshold:g} ({verdict})"
        )
        report.checks.append(CheckResult(name, not result.drifted, reason))
