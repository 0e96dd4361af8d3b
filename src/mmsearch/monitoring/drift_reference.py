"""Reference statistics of a build's vectors, per encoder role: what drift is measured against.

A build's vectors are summarised once and kept beside its manifest, so that later
comparisons (a candidate build against live, recent queries against live) read a few
hundred kilobytes instead of scanning the table again::

    <collection>/builds/<build>/reference/<role>.npz     mean, principal components,
                                                         norm quantiles, a seeded sample
    <collection>/builds/<build>/reference/reference.json summary (counts, table version)

Vectors are read through the store protocol (``open_build_index`` + ``scan``), never
from LanceDB directly. Image-side columns hold one vector per image (a multivector),
so they are flattened: the reference describes images, not items. The sample is a
seeded uniform draw of row positions made before the pass, so memory stays bounded
by the scanned column plus the sample, whatever the build's size.

A reference describes the table version it was computed from; ``ensure_reference``
recomputes it when the build has moved on (upserts into a live build) or when the
build predates this feature and has none.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mmsearch.blas import one_blas_thread
from mmsearch.clock import utc_now
from mmsearch.config import Settings
from mmsearch.errors import MMSearchError
from mmsearch.index.open import open_build_index
from mmsearch.index.schema import vector_column
from mmsearch.manifest import BuildManifest
from mmsearch.workspace import CollectionDir, read_json, write_json_atomic

REFERENCE_DIR = "reference"
SUMMARY_FILE = "reference.json"
SAMPLE_SIZE = 2_000
COMPONENTS = 16
NORM_QUANTILES = (0.0, 0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99, 1.0)
SEED = 20240611
_BATCH_ROWS = 8_192


@dataclass(frozen=True)
class RoleReference:
    """What one role's vectors looked like in one build (at one table version)."""

    build_id: str
    role: str
    count: int
    dim: int
    mean: np.ndarray  # (dim,)
    components: np.ndarray  # (k, dim), rows are unit principal directions
    explained_variance: np.ndarray  # (k,)
    total_variance: float
    norm_quantiles: np.ndarray  # at NORM_QUANTILES
    sample: np.ndarray  # (n, dim) float32, seeded uniform draw
    encoder_spec: str = ""
    encoder_version: str = ""
    table_version: int | None = None

    def summary(self) -> dict[str, Any]:
        ratio = self.explained_variance / self.total_variance if self.total_variance > 0 else []
        return {
            "count": self.count,
            "dim": self.dim,
            "sample": int(self.sample.shape[0]),
            "encoder_spec": self.encoder_spec,
            "encoder_version": self.encoder_version,
            "norm_quantiles": dict(
                zip(
                    [str(q) for q in NORM_QUANTILES],
                    np.round(self.norm_quantiles, 6).tolist(),
                    strict=True,
                )
            ),
            "explained_variance_ratio": [round(float(r), 6) for r in ratio],
        }


def reference_dir(collection: CollectionDir, build_id: str) -> Path:
    return collection.build_dir(build_id) / REFERENCE_DIR


def reference_from_vectors(
    chunks: Iterator[np.ndarray] | list[np.ndarray],
    count: int,
    dim: int,
    *,
    build_id: str = "",
    role: str = "",
    sample_size: int = SAMPLE_SIZE,
    components: int = COMPONENTS,
    seed: int = SEED,
) -> RoleReference:
    """Summarise ``count`` vectors arriving in chunks (one pass, float64 accumulators).

    The sample positions are drawn before the pass from ``count`` alone, so the same
    vectors in the same order always give the same sample (reproducible tests)."""
    rng = np.random.default_rng(seed)
    take = min(sample_size, count)
    wanted = np.sort(rng.choice(count, size=take, replace=False)) if take else np.empty(0, int)
    sample = np.empty((take, dim), dtype=np.float32)
    total = np.zeros(dim, dtype=np.float64)
    gram = np.zeros((dim, dim), dtype=np.float64)
    norms = np.empty(count, dtype=np.float32)
    seen = filled = 0
    for chunk in chunks:
        rows = chunk.shape[0]
        if rows == 0:
            continue
        if seen + rows > count or chunk.shape[1] != dim:
            raise MMSearchError(f"Vectors of role '{role}' changed while being read; retry.")
        block = chunk.astype(np.float64, copy=False)
        total += block.sum(axis=0)
        gram += block.T @ block
        norms[seen : seen + rows] = np.linalg.norm(chunk, axis=1)
        hits = wanted[(wanted >= seen) & (wanted < seen + rows)]
        sample[filled : filled + hits.size] = chunk[hits - seen]
        filled += hits.size
        seen += rows
    if seen != count:
        raise MMSearchError(f"Vectors of role '{role}' changed while being read; retry.")
    mean = total / max(count, 1)
    covariance = gram / max(count, 1) - np.outer(mean, mean)
    with one_blas_thread():  # 10-40x faster than two contended threads (mmsearch/blas.py)
        values, vectors = np.linalg.eigh(covariance)
    order = np.argsort(values)[::-1][: min(components, dim)]
    return RoleReference(
        build_id=build_id,
        role=role,
        count=count,
        dim=dim,
        mean=mean.astype(np.float32),
        components=vectors[:, order].T.astype(np.float32),
        explained_variance=np.clip(values[order], 0.0, None).astype(np.float32),
        total_variance=float(max(np.trace(covariance), 0.0)),
        norm_quantiles=(
            np.quantile(norms, NORM_QUANTILES).astype(np.float32)
            if count
            else np.zeros(len(NORM_QUANTILES), np.float32)
        ),
        sample=sample,
    )


def _vector_chunks(table: pa.Table, column: str, dim: int) -> tuple[int, Iterator[np.ndarray]]:
    """The number of vectors in ``column`` and an iterator over them as float32 blocks.

    Multivector columns are flattened (one row per image); null rows and null vectors
    (items without an image or text) are dropped."""
    values = table.column(column)
    multi = pa.types.is_list(values.type) or pa.types.is_large_list(values.type)
    if multi:
        # pyarrow.compute defines its kernels at import time, so pyright cannot see them.
        lengths = pc.list_value_length(values)  # pyright: ignore[reportAttributeAccessIssue]
        count = int(pc.sum(lengths).as_py() or 0)  # pyright: ignore[reportAttributeAccessIssue]
    else:
        count = len(values) - values.null_count

    def chunks() -> Iterator[np.ndarray]:
        for batch in table.select([column]).to_batches(max_chunksize=_BATCH_ROWS):
            array = batch.column(0)
            if multi:
                array = array.flatten()  # one entry per image; null lists contribute none
            array = array.drop_null()
            if len(array) == 0:
                continue
            flat = array.flatten().to_numpy(zero_copy_only=False)
            yield np.asarray(flat, dtype=np.float32).reshape(-1, dim)

    return count, chunks()


def compute_reference(
    collection: CollectionDir,
    manifest: BuildManifest,
    settings: Settings | None = None,
    *,
    sample_size: int = SAMPLE_SIZE,
) -> dict[str, RoleReference]:
    """Summarise every encoder role of a build and store it under ``builds/<id>/reference``.

    Call it once a build is ready (the ingest hook), or through ``ensure_reference``."""
    build_id = manifest.build_id
    index = open_build_index(collection, manifest, settings)
    columns = {f.column: f for f in index.vector_fields}
    found: dict[str, RoleReference] = {}
    for role, encoder in sorted(manifest.encoders.items()):
        field = columns.get(vector_column(role))
        if field is None:
            continue
        table = index.scan([field.column])
        count, chunks = _vector_chunks(table, field.column, field.dim)
        reference = reference_from_vectors(
            chunks, count, field.dim, build_id=build_id, role=role, sample_size=sample_size
        )
        del table
        found[role] = replace(
            reference,
            encoder_spec=encoder.spec,
            encoder_version=encoder.version,
            table_version=manifest.table_version,
        )
    _save(reference_dir(collection, build_id), manifest, found)
    return found


def _save(folder: Path, manifest: BuildManifest, found: dict[str, RoleReference]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for role, ref in found.items():
        # Temp file + rename: a reader (or a second process computing the same thing)
        # never sees half an archive.
        with tempfile.NamedTemporaryFile(dir=folder, prefix=f".{role}.", delete=False) as handle:
            np.savez(
                handle,
                mean=ref.mean,
                components=ref.components,
                explained_variance=ref.explained_variance,
                norm_quantiles=ref.norm_quantiles,
                sample=ref.sample,
                scalars=np.array([ref.count, ref.dim], dtype=np.int64),
                total_variance=np.array(ref.total_variance, dtype=np.float64),
            )
        os.replace(handle.name, folder / f"{role}.npz")
    write_json_atomic(
        folder / SUMMARY_FILE,
        {
            "build_id": manifest.build_id,
            "table_version": manifest.table_version,
            "computed_at": utc_now(),
            "seed": SEED,
            "roles": {role: ref.summary() for role, ref in found.items()},
        },
    )


def reference_summary(collection: CollectionDir, build_id: str) -> dict[str, Any] | None:
    path = reference_dir(collection, build_id) / SUMMARY_FILE
    try:
        data: dict[str, Any] = read_json(path)
    except FileNotFoundError:
        return None
    return data


def load_reference(collection: CollectionDir, build_id: str, role: str) -> RoleReference:
    """A stored reference; ``MMSearchError`` when the build has none for this role."""
    summary = reference_summary(collection, build_id)
    path = reference_dir(collection, build_id) / f"{role}.npz"
    if summary is None or role not in summary.get("roles", {}) or not path.is_file():
        raise MMSearchError(
            f"Build {build_id} of '{collection.name}' has no drift reference for role "
            f"'{role}'; compute it with: mmsearch drift reference -c {collection.name} {build_id}"
        )
    info = summary["roles"][role]
    with np.load(path) as data:
        count, dim = (int(v) for v in data["scalars"])
        return RoleReference(
            build_id=build_id,
            role=role,
            count=count,
            dim=dim,
            mean=data["mean"],
            components=data["components"],
            explained_variance=data["explained_variance"],
            total_variance=float(data["total_variance"]),
            norm_quantiles=data["norm_quantiles"],
            sample=data["sample"],
            encoder_spec=str(info.get("encoder_spec", "")),
            encoder_version=str(info.get("encoder_version", "")),
            table_version=summary.get("table_version"),
        )


def ensure_reference(
    collection: CollectionDir, manifest: BuildManifest, settings: Settings | None = None
) -> dict[str, RoleReference]:
    """The build's references, computed first when missing or older than the table version
    the manifest names (builds from before this feature, or a live build updated since)."""
    build_id = manifest.build_id
    summary = reference_summary(collection, build_id)
    roles = sorted(manifest.encoders)
    stored = (summary or {}).get("roles", {})
    current = (
        summary is not None
        and summary.get("table_version") == manifest.table_version
        and all(
            stored.get(role, {}).get("encoder_version") == manifest.encoders[role].version
            for role in roles
            if role in stored
        )
    )
    if current:
        try:
            return {role: load_reference(collection, build_id, role) for role in stored}
        except (MMSearchError, OSError, KeyError, ValueError):
            pass  # a damaged archive is recomputed below
    return compute_reference(collection, manifest, settings)
