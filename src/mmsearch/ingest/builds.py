"""Choosing the build an ingest writes into, and never replacing live by accident.

An ingest updates the live build when the catalog fits it: same field roles, same
attribute set, same encoders. Anything else would silently switch searches to a
different collection (six id+title rows replacing a 395-item catalog), so it is
refused with the differences named, unless a new build is asked for. A new build is
written "building" — invisible — and becomes live only once complete.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
from pathlib import Path

from mmsearch import __version__
from mmsearch.builds.lifecycle import publish
from mmsearch.catalog.mapping import FieldMapping
from mmsearch.catalog.normalise import AttributeSpec
from mmsearch.clock import utc_now
from mmsearch.config import Settings
from mmsearch.errors import MMSearchError
from mmsearch.index.base import BuildIndex, VectorField
from mmsearch.index.open import (
    create_build_index,
    drop_build_index,
    open_build_index,
    store_description,
)
from mmsearch.index.schema import KEYWORD_COLUMN, SCHEMA_VERSION, build_schema, vector_column
from mmsearch.ingest.encoders import EncoderSet, image_roles
from mmsearch.ingest.runlog import close_run, unfinished_runs
from mmsearch.manifest import (
    BUILDING,
    AttributeDescription,
    BuildConfig,
    BuildManifest,
    EncoderDescription,
    StoreDescription,
)
from mmsearch.monitoring.drift_reference import compute_reference
from mmsearch.workspace import CollectionDir, new_id

log = logging.getLogger("mmsearch.ingest")


class SchemaMismatch(MMSearchError):
    """The catalog or encoders do not fit the live build, and no new build was asked for."""


def live_specs(manifest: BuildManifest) -> list[AttributeSpec]:
    return [AttributeSpec(a.field, a.column, a.kind) for a in manifest.attributes]


def mapping_differences(
    live: BuildManifest, mapping: FieldMapping, pinned: dict[str, str]
) -> list[str]:
    """How this catalog's field roles differ from the live build's, in words."""
    before = live.mapping
    found: list[str] = []
    for role in ("id", "title", "acl"):
        old, new = getattr(before, role), getattr(mapping, role)
        if old != new:
            found.append(
                f"{role} field: live build uses {old or 'none'}, this catalog {new or 'none'}"
            )
    for role in ("text", "images"):
        old, new = list(getattr(before, role)), list(getattr(mapping, role))
        if old != new:
            found.append(
                f"{role} fields: live build [{', '.join(old)}], this catalog [{', '.join(new)}]"
            )
    kinds = {spec.field: spec.kind for spec in live_specs(live)}
    new_fields = list(mapping.attributes or [])
    missing = [name for name in kinds if name not in new_fields]
    added = [name for name in new_fields if name not in kinds]
    if missing:
        found.append(f"attributes the catalog lacks: {', '.join(missing)}")
    if added:
        found.append(f"attributes the live build lacks: {', '.join(added)}")
    for name, kind in pinned.items():
        if name in kinds and kinds[name] != kind:
            found.append(f"attribute {name}: live build stores {kinds[name]}, asked for {kind}")
    if live.schema_version != SCHEMA_VERSION:
        found.append(
            f"index schema: live build has version {live.schema_version}, "
            f"this mmsearch writes {SCHEMA_VERSION}"
        )
    return found


def encoder_differences(live: BuildManifest, described: dict[str, EncoderDescription]) -> list[str]:
    found = []
    before = live.encoders
    for role in sorted(set(before) | set(described)):
        old, new = before.get(role), described.get(role)
        if old is None or new is None:
            state = "has no" if old is None else "has"
            found.append(f"{role} encoder: live build {state} {role} vectors")
        elif (old.spec, old.version) != (new.spec, new.version):
            found.append(
                f"{role} encoder: live build {old.spec} ({old.version[:24]}), "
                f"now {new.spec} ({new.version[:24]})"
            )
    return found


def refuse(collection: str, differences: list[str]) -> SchemaMismatch:
    listed = "; ".join(differences)
    return SchemaMismatch(
        f"This ingest does not fit the live build of '{collection}': {listed}. Nothing was "
        "written. Map the fields to match (--id-field, --text-field, --attribute, ...), or "
        'add --new-build ("new_build": true over the API) to build a new version from '
        "this catalog: it becomes live once "
        "complete, and the current build stays available as 'previous'."
    )


def create_build(
    collection: CollectionDir,
    mapping: FieldMapping,
    specs: list[AttributeSpec],
    encoders: EncoderSet,
    settings: Settings,
) -> tuple[str, BuildManifest, BuildIndex]:
    """A new, invisible ("building") build with an empty table."""
    build_id = new_id("build")
    described = encoders.describe()
    vectors = [
        VectorField(vector_column(role), d.dim, multi=role in image_roles(encoders))
        for role, d in described.items()
    ]
    table = f"build_{build_id.replace('-', '_')}"
    manifest = BuildManifest(
        collection=collection.name,
        build_id=build_id,
        state=BUILDING,
        created_at=utc_now(),
        mmsearch_version=__version__,
        schema_version=SCHEMA_VERSION,
        table=table,
        store=StoreDescription.model_validate(store_description(collection, settings)),
        encoders=described,
        # Validated from its dump, so every role is set and written, as before.
        mapping=FieldMapping.model_validate(mapping.model_dump()),
        attributes=[AttributeDescription.model_validate(vars(spec)) for spec in specs],
        keyword_column=KEYWORD_COLUMN,
        config=BuildConfig.model_validate(
            settings.model_dump(
                mode="json", include={"candidates", "rrf_k", "ann_min_rows", "batch_size", "ocr"}
            )
        ),
        sources=[],
        runs=[],
    )
    # The manifest first: a crash after it leaves a build that is found and removed or
    # resumed; a table without a manifest would be found by nothing.
    collection.write_manifest(build_id, manifest)
    index = create_build_index(collection, table, build_schema(specs, vectors), settings)
    return build_id, manifest, index


def discard_build(collection: CollectionDir, build_id: str) -> None:
    """Remove a build that never became visible: its table, then its folder."""
    try:
        manifest = collection.manifest(build_id)
    except MMSearchError:
        manifest = None
    if manifest is not None and manifest.table:
        drop_build_index(collection, manifest)
    keep_errors_files(collection.folder, collection.build_dir(build_id))
    collection.remove_build_files(build_id)


def writable_live_index(
    collection: CollectionDir, manifest: BuildManifest, settings: Settings, keep_run: str = ""
) -> tuple[BuildIndex, list[str]]:
    """The live build's table for a writer, at exactly the version readers see.

    An interrupted run's writes past the manifest's version are undone first (unless it
    is ``keep_run``, being resumed), so no writer ever publishes another run's half."""
    notices = []
    index = open_build_index(collection, manifest, settings, for_writing=True)
    visible = manifest.table_version if manifest.table_version is not None else index.version()
    for run in unfinished_runs(collection, manifest.build_id):
        if run.run_id != keep_run:
            close_run(collection, manifest.build_id, run.run_id, "abandoned", "another write")
            notices.append(f"abandoned the interrupted run {run.run_id}: another write came first")
    if not keep_run and index.version() != visible:
        index.restore(visible)
        notices.append(
            "undid the unpublished writes of an interrupted run "
            f"(the table is back at version {visible})"
        )
    return index, notices


def finish_pending_publish(collection: CollectionDir) -> str | None:
    """Complete a publish a crash interrupted: a build marked ready-to-go-live that is not."""
    live = collection.alias("live")
    for build_id in reversed(collection.build_ids()):
        try:
            manifest = collection.manifest(build_id)
        except MMSearchError:
            continue
        if not manifest.pending_live:
            continue
        if build_id != live:
            collection.set_live(build_id)
        manifest.clear("pending_live")
        collection.write_manifest(build_id, manifest)
        return build_id
    return None


def publish_new_build(collection: CollectionDir, build_id: str, actor: str) -> None:
    """Make a build an ingest completed live, as a recorded switch (who, when, previous),
    then clear the crash marker that ``finish_pending_publish`` would otherwise act on."""
    publish(collection, build_id, actor, reason="ingest --new-build", record={"via": "ingest"})
    manifest = collection.manifest(build_id)
    manifest.clear("pending_live")
    collection.write_manifest(build_id, manifest)


def store_reference(collection: CollectionDir, build_id: str, settings: Settings) -> list[str]:
    """Drift reference statistics of a new build's vectors; a failure only costs a notice
    (``drift`` computes them on first use), never the ingest."""
    try:
        compute_reference(collection, collection.manifest(build_id), settings)
    except Exception as exc:
        log.warning("reference statistics failed", extra={"build_id": build_id}, exc_info=True)
        return [f"drift reference statistics were not stored ({exc}); drift computes them later"]
    return []


def kept_errors_file(folder: Path, run_id: str) -> Path:
    """Where the errors file of a run is kept when its new collection is removed again:
    beside the collections, ``<home>/failed-runs/<collection>/<run>.errors.jsonl``."""
    return folder.parent.parent / "failed-runs" / folder.name / f"{run_id}.errors.jsonl"


def keep_errors_files(folder: Path, under: Path) -> None:
    """Move the non-empty run errors files below ``under`` to ``kept_errors_file``.

    A build discarded because no row landed takes its folder with it, but the run's
    report names its errors file, and that file is the one place that says why."""
    for errors in under.glob("**/runs/*/errors.jsonl"):
        with contextlib.suppress(OSError):
            if errors.stat().st_size:
                kept = kept_errors_file(folder, errors.parent.name)
                kept.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(errors, kept)


def remove_if_empty(collection: CollectionDir) -> None:
    """A collection this run created and left without a build is removed again (all but
    its writer lock, which waiting writers may hold open). Its runs' errors files are
    moved out first: the run's report names them, and they say why nothing landed."""
    if collection.build_ids() or collection.alias("live") is not None:
        return
    keep_errors_files(collection.folder, collection.folder / "builds")
    for path in collection.folder.iterdir():
        if path.name.startswith(".writer"):
            continue
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
