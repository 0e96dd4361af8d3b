"""Lineage: where an item of a build came from, and which items came from a source or run.

Everything here is read from what ingest already recorded, never recomputed: the
row's provenance columns (``source_file``, ``source_row``, ``record_sha256``,
``ingest_run``, ``ingested_at``, ``images``, ``image_sha256``), the run's ``run.json``
and the build's manifest (encoder versions carry the sha256 of their weight files,
hashed once when the model was loaded). So a lineage answer costs one store read and
two small JSON files, whatever the model size, and it describes the item as indexed,
even when the catalog or the model files have changed since.

Reads go through the store protocol with an optional access filter, so an item the
caller may not see is reported exactly like a missing one.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pyarrow.compute as pc

from mmsearch.builds.run_records import read_summary
from mmsearch.config import Settings
from mmsearch.errors import MMSearchError
from mmsearch.filters.expr import Compare, Filter, Like, Or, all_of
from mmsearch.index.base import BuildIndex
from mmsearch.index.open import open_build_index
from mmsearch.manifest import BuildManifest
from mmsearch.media.paths import display_path
from mmsearch.workspace import CollectionDir

PROVENANCE_COLUMNS = ["source_file", "source_row", "record_sha256", "ingest_run", "ingested_at"]
ITEM_COLUMNS = ["id", "title", "images", "image_sha256", "image_phash", *PROVENANCE_COLUMNS]
DEFAULT_LIMIT = 1000
MAX_LIMIT = 100_000
RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
WEIGHTS_MARK = "@sha256:"
SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")


class LineageError(MMSearchError):
    """A lineage question that cannot be asked as given (no source or run, bad run id)."""


class ItemNotFound(MMSearchError):
    """No such item in the build, or not one the caller may see (the two look the same)."""


# --- one item ------------------------------------------------------------------------


def item_lineage(
    collection: CollectionDir,
    manifest: BuildManifest,
    settings: Settings | None,
    item_id: str,
    *,
    access: Filter | None = None,
    index: BuildIndex | None = None,
) -> dict[str, Any]:
    """Source, run, images, encoders and build of one item, as recorded at ingest.

    ``index`` lets a caller that holds the build open (the service's searcher) skip
    reopening it; ``access`` is applied inside the store query."""
    index = index or open_build_index(collection, manifest, settings)
    columns = [c for c in ITEM_COLUMNS if c in index.schema.names]
    rows = index.get([item_id], columns, access)
    if not rows:
        raise ItemNotFound(
            f"No item '{item_id}' in build {manifest.build_id} of collection "
            f"'{collection.name}'. Check the id (ids are case-sensitive) and the build."
        )
    row = rows[0]
    run = run_record(collection, manifest, row.get("ingest_run"))
    return {
        "collection": collection.name,
        "item_id": row["id"],
        "title": row.get("title"),
        "source": {
            "file": row.get("source_file"),
            "row": row.get("source_row"),
            "record_sha256": row.get("record_sha256"),
            # The catalog file's hash when the run that wrote this row read it.
            "file_sha256": _file_sha256(run, row.get("source_file")),
        },
        "ingest": {"run_id": row.get("ingest_run"), "ingested_at": row.get("ingested_at")},
        "run": run,
        "images": image_origins(row),
        "encoders": encoder_lineage(manifest),
        "build": build_lineage(manifest, index),
    }


def image_origins(row: dict[str, Any]) -> list[dict[str, Any]]:
    """Per image, in catalog order: where it came from (a local path or a URL) and hashes."""
    images = list(row.get("images") or [])
    digests = list(row.get("image_sha256") or [])
    phashes = list(row.get("image_phash") or [])
    out = []
    for position, source in enumerate(images):
        phash = phashes[position] if position < len(phashes) else None
        out.append(
            {
                "position": position,
                "origin": "url" if "://" in source else "path",
                "source": source,
                "sha256": digests[position] if position < len(digests) else None,
                # The stored int64 is the 64 hash bits read as signed; shown as 16 hex digits.
                "phash": None if phash is None else f"{phash & (2**64 - 1):016x}",
            }
        )
    return out


def encoder_lineage(manifest: BuildManifest) -> dict[str, dict[str, Any]]:
    """The build's encoders by role, with the sha256 of their weights where they have one.

    The sha256 comes from the version string the encoder reported at build time
    (``<model>@sha256:<hex>``); encoders without weight files (the visual descriptor,
    whose version digests its parameters) or whose weights could not be found have
    ``weights_sha256`` None, and their ``version`` is still what identifies them.
    A version with ``+<backend>`` after the digest (``+onnx-int8-r1``) ran the weights on
    that backend (``backend``; None: the model's own framework); ``note`` says why an
    automatic choice (``minilm:auto``) picked it."""
    out = {}
    for role, described in manifest.encoders.items():
        version = described.version
        tail = version.rpartition(WEIGHTS_MARK)[2] if WEIGHTS_MARK in version else ""
        digest, _, backend = tail.partition("+")
        out[role] = {
            "spec": described.spec,
            "name": described.name,
            "version": version,
            "weights_sha256": digest if SHA256_HEX.match(digest) else None,
            "backend": backend or None,
            "note": described.note,
            "dim": described.dim,
            "modalities": list(described.modalities),
        }
    return out


def build_lineage(manifest: BuildManifest, index: BuildIndex | None = None) -> dict[str, Any]:
    """The build and store versions the item was read from."""
    return {
        "build_id": manifest.build_id,
        "state": manifest.state,
        "created_at": manifest.created_at,
        "mmsearch_version": manifest.mmsearch_version,
        "schema_version": manifest.schema_version,
        "table": manifest.table,
        "table_version": manifest.table_version,
        "store": {"backend": manifest.store.backend, "path": manifest.store.path},
    }


def run_record(
    collection: CollectionDir, manifest: BuildManifest, run_id: str | None
) -> dict[str, Any] | None:
    """What the build recorded about a run: its run.json, else its manifest entry.

    The manifest keeps only the latest runs; every run keeps its own run.json, so that
    file is read first. A run with neither (files removed by hand) is reported as such."""
    if not run_id:
        return None
    build_id = manifest.build_id
    record: dict[str, Any] | None = None
    if RUN_ID.match(run_id):
        path = collection.build_dir(build_id) / "runs" / run_id / "run.json"
        try:
            record = read_summary(path).saved_json()
        except (FileNotFoundError, MMSearchError):
            record = None
    if record is None:
        entry = next((r for r in manifest.runs if r.run_id == run_id), None)
        record = None if entry is None else entry.as_json()
    if record is None:
        return {"run_id": run_id, "recorded": False}
    keep = ("started_at", "finished_at", "resumed", "source", "counts", "table_version")
    return {"run_id": run_id, "recorded": True, **{k: record.get(k) for k in keep}}


def _file_sha256(run: dict[str, Any] | None, source_file: str | None) -> str | None:
    source = (run or {}).get("source") or {}
    if source_file and source.get("path") == source_file:
        return source.get("sha256")
    return None


# --- what callers may see ------------------------------------------------------------


def redact_paths(lineage: dict[str, Any], roots: list[Path]) -> dict[str, Any]:
    """The lineage with server paths as the catalog named them (a copy).

    The catalog file becomes its name, local images their path relative to the first
    root holding them (the catalog's folder first), the store's folder is dropped.
    URLs stay: they were in the catalog and name no server folder."""
    out = {**lineage}
    source = {**out["source"]}
    catalog = source.get("file")
    if catalog:
        source["file"] = Path(catalog).name
        roots = [Path(catalog).parent, *roots]
    out["source"] = source
    if out.get("run") and isinstance(out["run"].get("source"), dict):
        run_source = {**out["run"]["source"]}
        if run_source.get("path"):
            run_source["path"] = Path(run_source["path"]).name
        out["run"] = {**out["run"], "source": run_source}
    out["images"] = [
        {**image, "source": display_path(image["source"], roots)} for image in out["images"]
    ]
    out["build"] = {**out["build"], "store": {"backend": out["build"]["store"]["backend"]}}
    return out


# --- the reverse: items from a source or run ---------------------------------------


def check_run_id(run_id: str) -> str:
    if not RUN_ID.match(run_id):
        raise LineageError(
            f"{run_id!r} is not a run id; run ids look like run-20261130T080000-1a2b3c "
            "(see the ingest report or `mmsearch lineage` of one of its items)."
        )
    return run_id


def origin_filter(source_file: str | None = None, run: str | None = None) -> Filter:
    """Items from a catalog file and/or ingest run, as a filter node on provenance columns.

    A path with a folder matches exactly (ingest stores resolved paths); a bare file name
    matches that name in any folder, so the name shown to readers can be asked about."""
    parts: list[Filter] = []
    if source_file:
        if "/" in source_file:
            parts.append(Compare("source_file", "=", source_file))
        else:
            escaped = re.sub(r"([\\%_])", r"\\\1", source_file)
            parts.append(
                Or((Compare("source_file", "=", source_file), Like("source_file", "%/" + escaped)))
            )
    if run:
        parts.append(Compare("ingest_run", "=", check_run_id(run)))
    combined = all_of(*parts)
    if combined is None:
        raise LineageError("Name a catalog file (--source), an ingest run (--run), or both.")
    return combined


def items_from(
    collection: CollectionDir,
    manifest: BuildManifest,
    settings: Settings | None,
    *,
    source_file: str | None = None,
    run: str | None = None,
    limit: int = DEFAULT_LIMIT,
    index: BuildIndex | None = None,
) -> list[dict[str, Any]]:
    """Items of the build that came from ``source_file`` and/or ``run``, in source order.

    Only ids and row numbers are scanned to order the matches; the provenance of the
    first ``limit`` is then read by id, so a source of millions of rows costs two
    narrow columns, not whole rows. Use ``count_from`` for the total."""
    if not 1 <= limit <= MAX_LIMIT:
        raise LineageError(f"The limit must be between 1 and {MAX_LIMIT}, not {limit}.")
    where = origin_filter(source_file, run)
    index = index or open_build_index(collection, manifest, settings)
    found = index.scan(["id", "source_file", "source_row"], where)
    if found.num_rows == 0:
        return []
    # pyarrow.compute defines its kernels at import time, so pyright cannot see them.
    order = pc.sort_indices(  # pyright: ignore[reportAttributeAccessIssue]
        found,
        sort_keys=[("source_file", "ascending"), ("source_row", "ascending"), ("id", "ascending")],
    )
    ids = found.take(order[:limit])["id"].to_pylist()
    rows = index.get(ids, ["id", *PROVENANCE_COLUMNS], where)
    by_id = {row["id"]: row for row in rows}
    return [by_id[i] for i in ids if i in by_id]


def count_from(
    collection: CollectionDir,
    manifest: BuildManifest,
    settings: Settings | None,
    *,
    source_file: str | None = None,
    run: str | None = None,
    index: BuildIndex | None = None,
) -> int:
    index = index or open_build_index(collection, manifest, settings)
    return index.count(origin_filter(source_file, run))


def build_of_run(collection: CollectionDir, run_id: str) -> str | None:
    """The build whose runs folder holds ``run_id`` (a run writes exactly one build)."""
    check_run_id(run_id)
    for build_id in reversed(collection.build_ids()):
        if (collection.build_dir(build_id) / "runs" / run_id).is_dir():
            return build_id
    return None


def runs_of(collection: CollectionDir, build_id: str) -> list[str]:
    runs = collection.build_dir(build_id) / "runs"
    return sorted(p.name for p in runs.iterdir() if p.is_dir()) if runs.is_dir() else []
