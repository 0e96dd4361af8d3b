"""What the governance commands share: every operator act lands in the audit trail.

An act that changes keys, rules or rankers is recorded whether it worked or not
(``ok`` / ``failed``), with ``cli:<os user>`` as the actor, so the trail also shows
attempts. Failing to write the audit line is itself an error: an act that cannot be
audited should not look like a quiet success.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmsearch.errors import MMSearchError
from mmsearch.governance.audit import record

if TYPE_CHECKING:
    from mmsearch.ingest import IngestReport


@dataclass
class Act:
    """What the command fills in while it runs, for the audit line written afterwards."""

    collection: str | None = None
    detail: str | None = None
    items: list[str] | None = None
    counts: dict[str, Any] | None = field(default=None)


@contextmanager
def operator_act(home: Path, action: str, *, collection: str | None = None) -> Iterator[Act]:
    """Run an operator act and audit it: ``ok`` when the block finishes, ``failed`` (with the
    error message) when it raises an ``MMSearchError``, which is re-raised."""
    act = Act(collection=collection)
    try:
        yield act
    except MMSearchError as exc:
        record(
            home,
            action,
            collection=act.collection,
            outcome="failed",
            detail=str(exc),
            items=act.items,
            counts=act.counts,
        )
        raise
    record(
        home,
        action,
        collection=act.collection,
        detail=act.detail,
        items=act.items,
        counts=act.counts,
    )


def audit_ingest(home: Path, collection: str, report: IngestReport, *, strict: bool) -> None:
    """Record a finished CLI ingest run with its counts; ``failed`` when the command will
    fail anyway (nothing ingested, or rows failed under ``--strict``)."""
    problem = None
    if strict and report.counts["failed"]:
        problem = f"{report.counts['failed']} rows failed and --strict was given; nothing written"
    elif report.ingested + report.counts["unchanged"] == 0:
        problem = "nothing was ingested"
    detail = f"build {report.build_id}" + (f": {problem}" if problem else "")
    record(
        home,
        "ingest",
        collection=collection,
        counts=dict(report.counts),
        outcome="failed" if problem else "ok",
        detail=detail,
    )


def audit_ingest_failure(home: Path, collection: str, error: BaseException) -> None:
    """Record an ingest run that stopped with ``error``. Never raises: the ingest's own
    error is the one the operator must see, not a second one about the audit line."""
    detail = str(error) if isinstance(error, MMSearchError) else type(error).__name__
    with suppress(MMSearchError, OSError):
        record(home, "ingest", collection=collection, outcome="failed", detail=detail)
