"""Timestamps as mmsearch stores them: UTC, ISO 8601, to the second.

Its own module, below everything, so that any layer (media's URL cache, the workspace,
run logs) can stamp a record without importing the storage layer.
"""

from __future__ import annotations

from datetime import UTC, datetime


def utc_now() -> str:
    """Now, as stored in manifests, logs and caches (``2026-01-31T12:00:00+00:00``)."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def utc_now_us() -> str:
    """Now to the microsecond: for records listed newest first that a second could hold
    several of (ingest jobs started one after another)."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


def utc_now_ms() -> str:
    """Now to the millisecond: for logs whose lines must keep their order on read."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")
