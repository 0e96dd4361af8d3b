"""Planning an ingest: what it will write, settled before any work (or progress bar).

The catalog is opened and sampled, field roles guessed, attribute types inferred (or
taken from the live build, so an update never retypes a column), encoders chosen, and
the catalog compared with the live build: a difference is refused here, naming it.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmsearch.catalog.item import RawRecord, RowError
from mmsearch.catalog.mapping import FieldMapping, guess_mapping, nested_fields
from mmsearch.catalog.normalise import AttributeSpec, infer_attribute_specs
from mmsearch.catalog.readers import CatalogSource, open_catalog
from mmsearch.config import Settings
from mmsearch.errors import MMSearchError
from mmsearch.ingest.builds import live_specs, mapping_differences, refuse
from mmsearch.ingest.report import IngestOptions
from mmsearch.manifest import BuildManifest
from mmsearch.media.paths import ImageRoots
from mmsearch.workspace import CollectionDir

SAMPLE_ROWS = 1000


@dataclass
class IngestPlan:
    """What a run will do, settled before any work starts (and before any progress bar)."""

    collection: str
    catalog: Path
    source: CatalogSource
    total_rows: int
    mapping: FieldMapping
    specs: list[AttributeSpec]
    encoder_specs: dict[str, str]
    skipped_fields: dict[str, str]
    images_root: ImageRoots
    live: BuildManifest | None  # the live manifest this run updates; None: a new build


def plan_ingest(
    settings: Settings, options: IngestOptions, collection: CollectionDir | None
) -> IngestPlan:
    """Everything decided before any work: every argument and schema problem raises here."""
    catalog = options.catalog.expanduser().resolve()
    source = open_catalog(catalog)
    sample = list(itertools.islice(source.rows(), SAMPLE_ROWS))
    records = [row.data for row in sample if isinstance(row, RawRecord)]
    if not records:
        errors = [row for row in sample if isinstance(row, RowError)]
        detail = f" First problem: {errors[0].describe()}" if errors else ""
        raise MMSearchError(f"Catalog {catalog} has no readable rows.{detail}")
    live = None
    if collection is not None and not options.new_build and collection.alias("live"):
        live = collection.live_manifest()
    mapping = guess_mapping(records, options.mapping)
    if live is not None:
        mapping = _keep_live_attributes(mapping, options.mapping, live, records)
        differences = mapping_differences(live, mapping, dict(mapping.types))
        specs = live_specs(live)
    else:
        differences = []
        specs = infer_attribute_specs(records, mapping.attributes or [], dict(mapping.types))
    encoder_specs = _encoder_specs(settings, options, mapping, live)
    if live is not None:
        live_roles = {role: d.spec for role, d in live.encoders.items()}
        if live_roles != encoder_specs:
            differences.append(
                f"encoders: live build {_roles(live_roles)}, this ingest {_roles(encoder_specs)}"
            )
    if differences:
        raise refuse(options.collection, differences)
    return IngestPlan(
        collection=options.collection,
        catalog=catalog,
        source=source,
        total_rows=source.count_rows(),
        mapping=mapping,
        specs=specs,
        encoder_specs=encoder_specs,
        skipped_fields={**source.skipped_columns, **nested_fields(records, mapping)},
        images_root=ImageRoots.of(
            options.images_root or (catalog if catalog.is_dir() else catalog.parent),
            settings.image_roots,
        ),
        live=live,
    )


def _encoder_specs(
    settings: Settings,
    options: IngestOptions,
    mapping: FieldMapping,
    live: BuildManifest | None,
) -> dict[str, str]:
    """The live build's encoders unless others are named (then it is a new build)."""
    before = {role: d.spec for role, d in (live.encoders if live else {}).items()}
    specs = {"text": options.text_encoder or before.get("text") or settings.text_encoder}
    if mapping.images:
        specs["image"] = options.image_encoder or before.get("image") or settings.image_encoder
    return specs


def _keep_live_attributes(
    mapping: FieldMapping,
    given: FieldMapping,
    live: BuildManifest,
    records: list[dict[str, Any]],
) -> FieldMapping:
    """A live attribute whose column is present but empty in the sample is still the same
    attribute: guessing would drop it and make the catalog look like a new schema."""
    if given.attributes is not None:
        return mapping
    present = {key for record in records for key in record}
    attributes = list(mapping.attributes or [])
    for spec in live_specs(live):
        if spec.field not in attributes and spec.field in present:
            attributes.append(spec.field)
    return mapping.model_copy(update={"attributes": attributes})


def _roles(specs: dict[str, str]) -> str:
    return ", ".join(f"{role}={spec}" for role, spec in sorted(specs.items()))
