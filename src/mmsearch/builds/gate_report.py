"""A gate's verdict on one build, kept with the build.

Every evaluation is stored, passing or not, as ``builds/<build>/gates/<stamp>.json``
(the newest ``KEEP_REPORTS``), and its summary goes into the build's manifest under
``gate``, so ``builds show``, the API and ``/admin`` read it without rerunning
anything, and a forced publish keeps the evidence of what it overrode.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mmsearch.errors import MMSearchError
from mmsearch.manifest import GateSummary
from mmsearch.workspace import CollectionDir, read_json, write_json_atomic

PASS = "pass"
FAIL = "fail"
GATES_DIR = "gates"
KEEP_REPORTS = 50


@dataclass
class CheckResult:
    """One rule of the gate: its name (``judged.ndcg@10``, ``canonical[2]``), the outcome,
    and a sentence saying why, in the operator's terms."""

    name: str
    passed: bool
    reason: str


@dataclass
class MetricRow:
    """One line of the side-by-side table; ``passed`` None = shown for information."""

    metric: str
    live: float | None
    candidate: float | None
    check: str = ""
    passed: bool | None = None
    unit: str = ""  # "" (a score), "ms", "items", "found"
    p_value: float | None = None
    # the latency row: [low, high] confidence interval of the candidate/live p95 ratio
    # (gate_latency.py); the gate refuses only when low is above the allowed ratio
    ratio_interval: list[float] | None = None

    @property
    def delta(self) -> float | None:
        if self.live is None or self.candidate is None:
            return None
        return self.candidate - self.live


@dataclass
class GateReport:
    collection: str
    candidate_build: str
    live_build: str | None
    verdict: str  # PASS | FAIL
    reasons: list[str]
    checks: list[CheckResult]
    metrics: list[MetricRow]
    notes: list[str] = field(default_factory=list)
    timings_s: dict[str, float] = field(default_factory=dict)
    queries: dict[str, int] = field(default_factory=dict)
    evaluated_at: str = ""
    gate_file: str | None = None
    gate_sha256: str | None = None
    report_file: str | None = None  # relative to the collection folder, once stored

    @property
    def passed(self) -> bool:
        return self.verdict == PASS

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for row, raw in zip(self.metrics, data["metrics"], strict=True):
            raw["delta"] = row.delta
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GateReport:
        values = dict(data)
        values["checks"] = [CheckResult(**c) for c in data.get("checks", [])]
        values["metrics"] = [
            MetricRow(**{k: v for k, v in m.items() if k != "delta"})
            for m in data.get("metrics", [])
        ]
        return cls(**values)

    def summary(self) -> dict[str, Any]:
        """What the manifest keeps: enough for a list of builds, and the way to the rest."""
        return {
            "verdict": self.verdict,
            "reasons": list(self.reasons),
            "live_build": self.live_build,
            "evaluated_at": self.evaluated_at,
            "checks": {check.name: check.passed for check in self.checks},
            "gate_file": self.gate_file,
            "gate_sha256": self.gate_sha256,
            "report": self.report_file,
            "seconds": self.timings_s.get("total"),
        }


def store_report(collection: CollectionDir, report: GateReport) -> Path:
    """Write the report beside the build and its summary into the build's manifest."""
    folder = collection.build_dir(report.candidate_build) / GATES_DIR
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    path = folder / f"{stamp}.json"
    report.report_file = path.relative_to(collection.folder).as_posix()
    write_json_atomic(path, report.as_dict())
    for old in sorted(folder.glob("*.json"))[:-KEEP_REPORTS]:
        old.unlink(missing_ok=True)
    manifest = collection.manifest(report.candidate_build)
    manifest.gate = GateSummary.model_validate(report.summary())
    collection.write_manifest(report.candidate_build, manifest)
    return path


def latest_gate_report(collection: CollectionDir, build_id: str) -> GateReport | None:
    """The build's newest stored gate report, or None if no gate ever ran on it."""
    folder = collection.build_dir(build_id) / GATES_DIR
    reports = sorted(folder.glob("*.json")) if folder.is_dir() else []
    for path in reversed(reports):
        try:
            return GateReport.from_dict(read_json(path))
        except (MMSearchError, TypeError, KeyError, ValueError):
            continue  # a damaged report file: the one before it still says something
    return None
