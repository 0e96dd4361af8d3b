"""Gated publish: a build goes live only when its gate passes, or an operator forces it.

The gate is the one given with the publish, else the collection's default gate, else
none (an ungated publish, as before gates existed). The CLI and the API both come
through ``gated_publish``, so a collection's default gate cannot be bypassed by
choosing another door. A failing gate raises ``GateFailed`` and live is untouched; with
``force`` (which needs a reason) the build goes live anyway and its manifest and the
switch log say who forced it, why, and what the gate said.

The switch itself is ``lifecycle.publish``, guarded so that it happens only if live is
still the build the gate compared with.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mmsearch.builds.gate import evaluate_gate
from mmsearch.builds.gate_config import GATE_FILE_NAME, Gate, copy_gate, load_gate
from mmsearch.builds.gate_report import GateReport
from mmsearch.builds.lifecycle import (
    LIVE,
    SwitchEvent,
    SwitchRefused,
    canary_of,
    publish,
    ready_manifest,
)
from mmsearch.clock import utc_now
from mmsearch.collection_state import CollectionState, DefaultGate
from mmsearch.config import Settings
from mmsearch.errors import MMSearchError
from mmsearch.workspace import CollectionDir, Workspace

DEFAULT_GATE_DIR = "gate"


class GateFailed(MMSearchError):
    """The build did not pass its gate; live is unchanged. ``report`` has the figures."""

    def __init__(self, message: str, report: GateReport | None, error: str | None = None):
        super().__init__(message)
        self.report = report
        self.error = error  # the gate could not be evaluated at all

    @property
    def reasons(self) -> list[str]:
        return list(self.report.reasons) if self.report else [self.error or "gate error"]


@dataclass
class PublishOutcome:
    collection: str
    build_id: str
    event: SwitchEvent
    report: GateReport | None
    gate: str | None  # "explicit", "default" or None (ungated)
    forced: bool

    def as_dict(self) -> dict[str, Any]:
        return {
            "collection": self.collection,
            "build_id": self.build_id,
            "published": True,
            "gate": self.gate,
            "forced": self.forced,
            "event": asdict(self.event),
            "report": self.report.as_dict() if self.report else None,
        }


def default_gate(collection: CollectionDir) -> Gate | None:
    """The collection's default gate (its copy inside the collection), or None."""
    entry = collection.state().gate
    if entry is None:
        return None
    path = collection.folder / entry.path
    try:
        return load_gate(path)
    except MMSearchError as exc:
        raise MMSearchError(
            f"The default gate of '{collection.name}' cannot be used: {exc} Set it again "
            f"with: mmsearch gate set -c {collection.name} FILE (or clear it)."
        ) from None


def default_gate_info(collection: CollectionDir) -> dict[str, Any] | None:
    """Who set the default gate, when, from which file, with which digest (as
    collection.json has it)."""
    entry = collection.state().gate
    return entry.as_json() if entry is not None else None


def set_default_gate(collection: CollectionDir, path: Path, actor: str = "unknown") -> Gate:
    """Make ``path`` the collection's default gate: it and the files it names are copied
    into ``<collection>/gate/``, so it keeps working when the originals move or change."""
    source = load_gate(path)
    copied = load_gate(copy_gate(source, collection.folder / DEFAULT_GATE_DIR))
    relative = copied.path.relative_to(collection.folder.resolve()).as_posix()
    entry = DefaultGate(
        path=relative,
        source=str(source.path),
        source_sha256=source.sha256,
        set_at=utc_now(),
        set_by=actor,
    )

    def change(state: CollectionState) -> None:
        state.gate = entry

    collection.update_state(change)
    return copied


def clear_default_gate(collection: CollectionDir) -> bool:
    """Remove the default gate; False when there was none. The copied files are kept
    (reports name them) until the next ``set_default_gate`` replaces them."""

    def change(state: CollectionState) -> bool:
        had = state.gate is not None
        state.clear("gate")
        return had

    return collection.update_state(change)


def resolve_gate(
    collection: CollectionDir, gate_path: Path | None
) -> tuple[Gate | None, str | None]:
    if gate_path is not None:
        return load_gate(gate_path), "explicit"
    gate = default_gate(collection)
    return (gate, "default") if gate is not None else (None, None)


def gated_publish(
    settings: Settings,
    collection_name: str,
    build_id: str,
    actor: str,
    *,
    gate_path: Path | None = None,
    force: bool = False,
    reason: str | None = None,
    action: str = "publish",
    progress: Callable[[str], None] | None = None,
) -> PublishOutcome:
    """Evaluate the build's gate and make it live if it passes (or ``force``).

    Raises ``GateFailed`` (live unchanged, report stored with the build) when it fails,
    ``SwitchRefused`` when the build cannot be published at all or live changed while
    the gate ran, and ``MMSearchError`` for ``force`` without a reason."""
    reason = reason.strip() if reason and reason.strip() else None
    if force and reason is None:
        raise MMSearchError(
            "Forcing a publish past its gate needs a reason for the record: add --reason TEXT."
        )
    folder = Workspace(settings.home).collection(collection_name)
    ready_manifest(folder, build_id)
    live_before = folder.alias(LIVE)
    if live_before == build_id:
        raise SwitchRefused(f"Build {build_id} is already live in '{collection_name}'.")
    gate, origin = resolve_gate(folder, gate_path)
    report: GateReport | None = None
    error: str | None = None
    if gate is not None:
        try:
            report = evaluate_gate(settings, collection_name, build_id, gate, progress=progress)
        except MMSearchError as exc:
            if not force:
                raise
            error = str(exc)  # a gate that cannot run is a failing gate; force overrides it
    failed = error is not None or (report is not None and not report.passed)
    if failed and not force:
        assert report is not None
        raise GateFailed(_refusal(collection_name, build_id, report, live_before), report)
    forced = failed and force
    record: dict[str, Any] = {"gate": _gate_record(origin, report, error), "forced": forced}
    if forced:
        record.update(forced_by=actor, reason=reason)
    elif reason:
        record["reason"] = reason
    if action == "promote":
        _check_still_canary(folder, build_id)
    event = publish(
        folder,
        build_id,
        actor,
        reason=f"forced past a failing gate: {reason}" if forced else reason,
        action=action,
        record=record,
        guard_live=gate is not None,
        expect_live=report.live_build if report is not None else live_before,
    )
    return PublishOutcome(collection_name, build_id, event, report, origin, forced)


def promote(
    settings: Settings,
    collection_name: str,
    actor: str,
    *,
    gate_path: Path | None = None,
    force: bool = False,
    reason: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> PublishOutcome:
    """Make the running canary live, through the same gate as any publish."""
    folder = Workspace(settings.home).collection(collection_name)
    canary = canary_of(folder.state())
    if canary is None:
        raise SwitchRefused(
            f"No canary runs in '{collection_name}'; start one with: mmsearch canary -c "
            f"{collection_name} BUILD --percent 5, or publish a build with: mmsearch publish."
        )
    return gated_publish(
        settings,
        collection_name,
        canary.build_id,
        actor,
        gate_path=gate_path,
        force=force,
        reason=reason,
        action="promote",
        progress=progress,
    )


def _check_still_canary(folder: CollectionDir, build_id: str) -> None:
    """A canary stopped while its gate ran (a rollback guard tripped, an operator
    stopped it) must not go live on a promote that started before."""
    now = canary_of(folder.state())
    if now is None or now.build_id != build_id:
        raise SwitchRefused(
            f"The canary {build_id} of '{folder.name}' was stopped or replaced while it was "
            "being promoted; check 'mmsearch canary status' and try again."
        )


def _gate_record(
    origin: str | None, report: GateReport | None, error: str | None
) -> dict[str, Any] | None:
    if report is not None:
        return {"origin": origin, **report.summary()}
    if error is not None:
        return {"origin": origin, "verdict": "error", "reasons": [error]}
    return None


def _refusal(collection: str, build_id: str, report: GateReport, live: str | None) -> str:
    reasons = "; ".join(report.reasons)
    return (
        f"Build {build_id} failed its gate, so it was not published (live is still "
        f"{live or 'none'}): {reasons}. The report is stored with the build "
        f"({report.report_file}). To publish it anyway: mmsearch publish -c {collection} "
        f"{build_id} --force --reason TEXT"
    )


__all__ = [
    "GATE_FILE_NAME",
    "GateFailed",
    "PublishOutcome",
    "clear_default_gate",
    "default_gate",
    "default_gate_info",
    "gated_publish",
    "promote",
    "resolve_gate",
    "set_default_gate",
]
