"""Where a chunk's items are decoded and encoded: in this process, or on a Ray cluster.

The ingest engine keeps everything that decides what a run means (reading rows,
settling them as unchanged/updated/added/failed, committing chunks, progress records
for resume) and hands only the *encode step of one chunk* to an executor. That keeps
accounting and resumability identical whichever executor runs: an executor takes a
chunk's pending items and returns the table rows of those that encoded, plus one
``RowError`` per item that did not (an image that fails to decode).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, Protocol, get_args

import pyarrow as pa

from mmsearch.catalog.item import Item, RowError
from mmsearch.config import Settings
from mmsearch.errors import MMSearchError
from mmsearch.ingest.encoders import EncoderSet
from mmsearch.ingest.moderating import IngestModeration
from mmsearch.ingest.pipeline import ChunkEncoder, Pending

ExecutorName = Literal["local", "ray"]
EXECUTORS: tuple[str, ...] = get_args(ExecutorName)


class ExecutorError(MMSearchError):
    """The chosen executor cannot run (Ray not installed, cluster unreachable) or lost a
    worker mid-run (a Ray actor died); a run that fails so resumes like any other."""


class ChunkExecutor(Protocol):
    """Encodes the pending items of one chunk into table rows (what ``ChunkEncoder`` does)."""

    timings: dict[str, float]

    def encode(
        self,
        pending: list[Pending],
        errors: list[RowError],
        on_batch: Callable[[int, int], None],
    ) -> tuple[pa.Table | None, list[Item]]:
        """Rows of the items that encoded, in ``pending`` order, and those items; a row
        error appended to ``errors`` for each that did not; ``on_batch(items, images)``
        as batches finish (progress only)."""
        ...

    def close(self) -> None: ...


def create_executor(
    name: str,
    settings: Settings,
    encoders: EncoderSet,
    schema: pa.Schema,
    run_id: str,
    timings: dict[str, float],
    *,
    ray_address: str | None = None,
    moderation: IngestModeration | None = None,
) -> ChunkExecutor:
    """The executor named by ``--executor``; Ray is imported only when it is asked for.

    A collection that enforces a moderation policy is ingested locally: the policy's
    banned lists are not shipped to Ray workers."""
    if name == "local":
        if ray_address is not None:
            raise ExecutorError("--ray-address needs --executor ray.")
        return ChunkEncoder(settings, encoders, schema, run_id, timings, moderation)
    if name == "ray":
        if moderation is not None:
            raise ExecutorError(
                f"This collection enforces policy '{moderation.policy.name}', which ingest "
                "applies with the local executor only; run it without --executor ray."
            )
        from mmsearch.ingest.ray_executor import RayExecutor

        return RayExecutor(settings, encoders, schema, run_id, timings, address=ray_address)
    raise ExecutorError(f"Unknown executor {name!r}; use one of: {', '.join(EXECUTORS)}.")
