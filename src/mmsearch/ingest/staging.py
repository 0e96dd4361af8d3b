"""Staged ingest: write a candidate build while ``live`` keeps answering, untouched.

``ingest --stage`` is how a team prepares the next version of a collection without
showing it: the run writes a *candidate* (a ready build with no alias, never
published) and says how to publish it. Which candidate is "the" staged one is kept in
``collection.json`` under ``staged``, so successive staged runs add to the same
candidate while it fits the catalog (same field roles, attributes and encoders),
exactly as plain ingests add to ``live`` while it fits.

A staged run of a catalog that fits live starts its candidate as a copy of live's
rows (vectors reused, not encoded again) and upserts the catalog into it: publishing
a candidate replaces live, so a candidate holding only a delta feed would silently
drop every item the feed does not repeat. A catalog that fits neither starts an empty
candidate, as ``--new-build`` would; ``--stage --new-build`` asks for that explicitly.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import pyarrow as pa

from mmsearch.builds.lifecycle import CANDIDATE, build_status
from mmsearch.collection_state import CollectionState
from mmsearch.config import Settings
from mmsearch.filters.expr import InList
from mmsearch.index.base import BuildIndex
from mmsearch.index.open import open_build_index
from mmsearch.ingest.builds import (
    SchemaMismatch,
    encoder_differences,
    live_specs,
    mapping_differences,
)
from mmsearch.ingest.planning import IngestPlan, plan_ingest
from mmsearch.ingest.report import IngestOptions
from mmsearch.manifest import BuildManifest, EncoderDescription, StageMarker
from mmsearch.workspace import CollectionDir

COPY_BATCH_ROWS = 1024


@dataclass
class Staging:
    """How a staged run differs from a plain one; ``plan.live`` is the candidate it updates."""

    forced_by_gate: bool = False
    copy_from: BuildManifest | None = None  # the live manifest whose rows seed a new build
    notices: list[str] = field(default_factory=list)


def build_kind(manifest: BuildManifest) -> str:
    """How a build was made, from the manifest's markers (``rebuilt_from``, ``staged``), so
    that a writer resumes only an unfinished build of its own kind: a staged copy of live
    must never be resumed and published by a plain --new-build of the same catalog, nor a
    rebuild by any ingest."""
    if manifest.rebuilt_from is not None:
        return "rebuild"
    return "stage" if manifest.staged is not None else "ingest"


def must_stage(options: IngestOptions, collection: CollectionDir | None) -> bool:
    """``--stage``, or a ``--new-build`` into a collection whose publishes go through a gate."""
    if options.stage:
        return True
    return bool(options.new_build and collection is not None and collection.state().gate)


def plan_stage(
    settings: Settings, options: IngestOptions, collection: CollectionDir | None
) -> tuple[IngestPlan, Staging]:
    """The plan of a staged run: into the staged candidate when it fits, else a new one
    (seeded with live's rows when the catalog fits live)."""
    staging = Staging(forced_by_gate=not options.stage)
    fresh = options.new_build  # "this catalog only": no candidate reused, nothing copied
    plan: IngestPlan | None = None
    if collection is not None and collection.alias("live") and not fresh:
        try:
            plan = plan_ingest(settings, replace(options, new_build=False), collection)
            staging.copy_from = plan.live
        except SchemaMismatch:
            plan = None
    if plan is None:
        plan = plan_ingest(settings, replace(options, new_build=True), collection)
    candidate = None if fresh or collection is None else staged_candidate(collection)
    if candidate is not None:
        differences = candidate_differences(candidate, plan, options)
        if not differences:
            staging.copy_from = None
            cand_specs = {role: d.spec for role, d in candidate.encoders.items()}
            fitted = replace(
                plan, live=candidate, specs=live_specs(candidate), encoder_specs=cand_specs
            )
            return fitted, staging
        staging.notices.append(
            f"the staged build {candidate.build_id} does not fit this catalog "
            f"({'; '.join(differences)}), so a new candidate was staged; the old one is kept"
        )
    return replace(plan, live=None), staging


def settle_stage(
    plan: IngestPlan, staging: Staging, described: dict[str, EncoderDescription]
) -> IngestPlan:
    """Once the encoders are loaded: a model whose weights changed under the same spec
    cannot share vectors, so its run starts a new, empty candidate instead."""
    if plan.live is not None and encoder_differences(plan.live, described):
        staging.notices.append(
            f"the encoders of the staged build {plan.live.build_id} changed since it was "
            "written, so a new candidate was staged"
        )
        return replace(plan, live=None)
    if staging.copy_from is not None and encoder_differences(staging.copy_from, described):
        staging.copy_from = None
    return plan


def staged_candidate(collection: CollectionDir) -> BuildManifest | None:
    """The staged candidate, while it is still one (not published, aliased or removed)."""
    state = collection.state()
    build_id = state.staged
    if not build_id or build_id not in collection.build_ids():
        return None
    manifest = collection.manifest(build_id)
    return manifest if build_status(state, manifest) == CANDIDATE else None


def candidate_differences(
    candidate: BuildManifest, plan: IngestPlan, options: IngestOptions
) -> list[str]:
    """Why this catalog does not fit the candidate; encoders not named on this run are the
    candidate's, as an update of live keeps live's."""
    found = mapping_differences(candidate, plan.mapping, dict(plan.mapping.types))
    have = {role: d.spec for role, d in candidate.encoders.items()}
    named = {"text": options.text_encoder, "image": options.image_encoder}
    wanted = {
        role: named.get(role) or have.get(role) or spec for role, spec in plan.encoder_specs.items()
    }
    if wanted != have:
        found.append(f"encoders: staged build {_roles(have)}, this ingest {_roles(wanted)}")
    return [line.replace("live build", "staged build") for line in found]


def mark_staged(collection: CollectionDir, build_id: str) -> None:

    def change(state: CollectionState) -> None:
        state.staged = build_id

    collection.update_state(change)


def seed_candidate(
    collection: CollectionDir,
    manifest: BuildManifest,
    index: BuildIndex,
    copy_from: BuildManifest | None,
    settings: Settings,
) -> int | None:
    """Mark a new build as staged and copy live's rows into it; returns the table version
    the run compares with (its "before"), None for an empty candidate.

    The mark and the seeded version are written before any row of the run, so a crash
    during the copy leaves a build without a resumable run (removed by the next writer)
    and a crash after it is resumed with the copy complete."""
    marker = StageMarker(seeded_from=None)
    if copy_from is not None:
        source = open_build_index(collection, copy_from, settings)
        copied = copy_rows(source, index, settings.write_batch_rows or COPY_BATCH_ROWS)
        marker = StageMarker(
            seeded_from=copy_from.build_id,
            source_table_version=copy_from.table_version,
            rows_copied=copied,
            seeded_version=index.version(),
        )
    manifest.staged = marker
    collection.write_manifest(manifest.build_id, manifest)
    return seeded_version(manifest)


def seeded_version(manifest: BuildManifest) -> int | None:
    return None if manifest.staged is None else manifest.staged.seeded_version


def copy_rows(source: BuildIndex, target: BuildIndex, batch_rows: int) -> int:
    """Copy every row the target lacks, stored columns and vectors as they are, a batch
    of ids at a time (memory bounded by the batch, whatever the build's size)."""
    present = set(target.content_hashes())
    ids = [i for i in source.scan(["id"])["id"].to_pylist() if i not in present]
    columns = target.schema.names
    # A source built before a column was added (the moderation columns) lacks it: NULL.
    present = [name for name in columns if name in source.schema.names]
    for start in range(0, len(ids), batch_rows):
        part = ids[start : start + batch_rows]
        rows = source.scan(present, InList("id", tuple(part)))
        for name in columns:
            if name not in present:
                kind = target.schema.field(name).type
                rows = rows.append_column(name, pa.nulls(rows.num_rows, kind))
        target.upsert(rows.select(columns).cast(target.schema))
    return len(ids)


def stage_notices(collection: str, build_id: str, staging: Staging) -> list[str]:
    lines = [
        f"staged build {build_id}: live is unchanged; publish it with: "
        f"mmsearch publish -c {collection} {build_id}"
    ]
    if staging.forced_by_gate:
        lines.append(
            f"'{collection}' publishes through a gate, so this --new-build was staged instead "
            "of going live; publish it through the gate with the command above"
        )
    return lines


def _roles(specs: dict[str, str]) -> str:
    return ", ".join(f"{role}={spec}" for role, spec in sorted(specs.items()))


def plan_run(
    settings: Settings, options: IngestOptions, collection: CollectionDir | None
) -> tuple[IngestPlan, Staging | None]:
    """The plan of any ingest run: a plain one, or a staged one with how it is staged."""
    if not must_stage(options, collection):
        return plan_ingest(settings, options, collection), None
    return plan_stage(settings, options, collection)


def missed_by_candidate(collection: CollectionDir, build_id: str) -> str | None:
    """After a plain ingest changed ``build_id``: publishing the staged candidate as it is
    would undo these changes, so say so while there is time to stage them too."""
    candidate = staged_candidate(collection)
    if candidate is None or candidate.build_id == build_id:
        return None
    return (
        f"the staged build {candidate.build_id} does not have these changes; run this "
        "ingest again with --stage before publishing it"
    )


def kept_unfinished(collection: CollectionDir) -> list[str]:
    """What an update of a ready build says about the unfinished builds it leaves alone."""
    kinds = {build_kind(collection.manifest(b)) for b in collection.unfinished_builds()}
    notices = []
    if kinds - {"rebuild"}:
        notices.append(
            "an unfinished new build is kept; re-run its command with --new-build (or "
            "--stage) to resume it"
        )
    if "rebuild" in kinds:
        notices.append(
            "an unfinished rebuild is kept; re-run its mmsearch rebuild command to resume it"
        )
    return notices
