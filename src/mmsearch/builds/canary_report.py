"""A canary beside live, from the query and click logs: what every worker served.

The guards in ``monitoring.canary`` act on one worker's counts within seconds; this
report is the considered view across workers and restarts, for the operator deciding
whether to promote: both builds' figures since the canary started, side by side, and
a test of whether their click-through rates differ.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mmsearch.builds.canary import CanaryGuards
from mmsearch.builds.lifecycle import canary_of, switch_history
from mmsearch.monitoring.kpis import collection_kpis, compare_builds
from mmsearch.workspace import CollectionDir


def canary_report(home: Path, folder: CollectionDir) -> dict[str, Any]:
    state = folder.state()
    canary = canary_of(state)
    live = state.aliases.live
    report: dict[str, Any] = {
        "collection": folder.name,
        "live": live,
        "canary": canary.__dict__ if canary else None,
        "guards": CanaryGuards.of(state).model_dump(),
        "switches": switch_history(folder, 20),
        "builds": [],
        "ctr_p_value": None,
        "ctr_test": None,
    }
    if canary is None:
        return report
    roles = {live: "live", canary.build_id: "canary"}
    kpis = {
        k.build_id: k
        for k in collection_kpis(home, folder.name, since=canary.started_at)
        if k.build_id in roles
    }
    report["builds"] = [
        {"role": roles[build], **kpis[build].as_dict()} for build in roles if build in kpis
    ]
    if live in kpis and canary.build_id in kpis:
        compared = compare_builds(kpis[live], kpis[canary.build_id])
        report["ctr_p_value"] = compared["ctr_p_value"]
        report["ctr_test"] = compared["ctr_test"]
        report["ctr_difference"] = compared["ctr_difference"]
    return report
