"""Ingest: catalogs into collections, accounted row by row, resumable, one writer at a time."""

from mmsearch.ingest.encoders import EncoderSet, image_roles
from mmsearch.ingest.engine import Ingestor
from mmsearch.ingest.planning import SAMPLE_ROWS, IngestPlan
from mmsearch.ingest.report import IngestOptions, IngestReport
from mmsearch.ingest.sources import file_sha256

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
