"""Ingest: catalogs into collections, accounted row by row, resumable, one writer at a time.

The names below are loaded on first use (PEP 562): ``mmsearch.ingest.report`` or
``.planning`` alone must not pull in the engine, the index store and the encoders, so
that the CLI can check a command's arguments before any of them loads.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mmsearch.ingest.encoders import EncoderSet, image_roles
    from mmsearch.ingest.engine import Ingestor
    from mmsearch.ingest.planning import SAMPLE_ROWS, IngestPlan
    from mmsearch.ingest.report import IngestOptions, IngestReport
    from mmsearch.ingest.sources import file_sha256

_WHERE = {
    "SAMPLE_ROWS": "mmsearch.ingest.planning",
    "EncoderSet": "mmsearch.ingest.encoders",
    "IngestOptions": "mmsearch.ingest.report",
    "IngestPlan": "mmsearch.ingest.planning",
    "IngestReport": "mmsearch.ingest.report",
    "Ingestor": "mmsearch.ingest.engine",
    "file_sha256": "mmsearch.ingest.sources",
    "image_roles": "mmsearch.ingest.encoders",
}

__all__ = [
    "SAMPLE_ROWS",
    "EncoderSet",
    "IngestOptions",
    "IngestPlan",
    "IngestReport",
    "Ingestor",
    "file_sha256",
    "image_roles",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this hook
    return value
