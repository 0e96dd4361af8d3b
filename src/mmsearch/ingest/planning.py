"""Planning an ingest: what it will write, settled before any work (or progress bar).

The catalog is opened and sampled, field roles guessed, attribute types inferred (or
taken from the live build, so an update never retypes a column), encoders chosen, and
the catalog compared with the live build: a difference is refused here, naming it.
"""

from __future__ import annotations

import difflib
import itertools
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmsearch.catalog.item import RawRecord, RowError
from mmsearch.catalog.mapping import FieldMapping, guess_mapping, merge_mappings, nested_fields
from mmsearch.catalog.normalise import AttributeSpec, infer_attribute_specs, normalise_record
from mmsearch.catalog.readers import CatalogSource, JsonlSource
from mmsearch.config import Settings
from mmsearch.encoders.base import resolve_spec
from mmsearch.errors import CatalogError, MMSearchError
from mmsearch.ingest.builds import live_specs, mapping_differences, refuse
from mmsearch.ingest.documents import open_ingest_source
from mmsearch.ingest.report import IngestOptions
from mmsearch.manifest import BuildManifest
from mmsearch.media.paths import ImageRoots
from mmsearch.workspace import CollectionDir

SAMPLE_ROWS = 1000
# When this many first rows all fail for the same reason, the run stops before any work:
# one message instead of the same line per row (and a minute of encoding for nothing).
EARLY_FAILURE_ROWS = 20


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
    source = open_ingest_source(settings, catalog, options.more_files)
    sample = list(itertools.islice(source.rows(), source.sample_rows or SAMPLE_ROWS))
    records = [row.data for row in sample if isinstance(row, RawRecord)]
    if not records:
        errors = [row for row in sample if isinstance(row, RowError)]
        detail = f" First problem: {errors[0].describe()}" if errors else ""
        raise MMSearchError(f"Catalog {catalog} has no readable rows.{detail}")
    live = None
    if collection is not None and not options.new_build and collection.alias("live"):
        live = collection.live_manifest()
    check_named_fields(source, options.mapping, records, live)
    given = options.mapping
    if source.default_mapping is not None:  # fixed fields (PDF pages): the user's still win
        given = merge_mappings(source.default_mapping, given)
    mapping = guess_mapping(records, given)
    if live is not None:
        mapping = _keep_live_attributes(mapping, given, live, records)
        differences = mapping_differences(live, mapping, dict(mapping.types))
        specs = live_specs(live)
    else:
        differences = []
        specs = infer_attribute_specs(records, mapping.attributes or [], dict(mapping.types))
    encoder_specs = _encoder_specs(settings, options, mapping, live)
    if live is not None:
        live_roles = {role: d.spec for role, d in live.encoders.items()}
        if live_roles != {role: resolve_spec(spec)[0] for role, spec in encoder_specs.items()}:
            differences.append(
                f"encoders: live build {_roles(live_roles)}, this ingest {_roles(encoder_specs)}"
            )
    if differences:
        raise refuse(options.collection, differences)
    images_root = ImageRoots.of(
        options.images_root or (catalog if catalog.is_dir() else catalog.parent),
        [*settings.image_roots, *source.image_roots],
    )
    check_first_rows(sample, mapping, specs, images_root, source, records)
    return IngestPlan(
        collection=options.collection,
        catalog=catalog,
        source=source,
        total_rows=source.count_rows(),
        mapping=mapping,
        specs=specs,
        encoder_specs=encoder_specs,
        skipped_fields={**source.skipped_columns, **nested_fields(records, mapping)},
        images_root=images_root,
        live=live,
    )


def named_fields(mapping: FieldMapping) -> list[tuple[str, str]]:
    """Every (field, how it was named) of a mapping given by the user, in option order."""
    named: list[tuple[str, str]] = []
    for field, option in (
        (mapping.id, "--id-field / id"),
        (mapping.title, "--title-field / title"),
    ):
        if field:
            named.append((field, option))
    named += [(field, "--text-field / text") for field in mapping.text]
    named += [(field, "--attribute / attributes") for field in mapping.attributes or []]
    named += [(field, "--image-field / images") for field in mapping.images]
    if mapping.acl:
        named.append((mapping.acl, "--acl-field / acl"))
    named += [(field, "--required / required") for field in mapping.required]
    named += [(field, "--alias-field / aliases") for field in mapping.aliases]
    named += [(field, "--attribute NAME:TYPE / types") for field in mapping.types]
    return named


def check_named_fields(
    source: CatalogSource,
    given: FieldMapping,
    records: list[dict[str, Any]],
    live: BuildManifest | None = None,
) -> None:
    """Every field the user named must be a column of the catalog.

    Without this check a typo (``--attribute colour_name``) was accepted: the run stored
    no such attribute, and, since naming attributes replaces the guessed ones, silently
    dropped every other column too; ``--id-field nosuch`` failed every row, one line
    each, after the models had loaded. Raised while planning: nothing is written yet.

    Fields of the live build's mapping are known already: a partial feed, or the one
    record of an item write, may leave out an optional text or image field.
    """
    known = {field for field, _ in named_fields(live.mapping)} if live is not None else set()
    named = [(field, option) for field, option in named_fields(given) if field not in known]
    if not named:
        return
    columns = catalog_columns(source, records)
    unknown = [(field, option) for field, option in named if field not in columns]
    if unknown and isinstance(source, JsonlSource):
        # A JSONL field may first appear after the sample: look through the whole file
        # (only when a name is missing, so a valid mapping costs nothing more).
        columns |= _all_jsonl_fields(source)
        unknown = [(field, option) for field, option in named if field not in columns]
    if not unknown:
        return
    first_option: dict[str, str] = {}
    for field, option in unknown:
        first_option.setdefault(field, option)
    problems = []
    for field, option in first_option.items():
        close = difflib.get_close_matches(field, sorted(columns), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        skipped = source.skipped_columns.get(field)
        if skipped:
            hint = f" (it is a column, but it cannot be read: {skipped})"
        problems.append(f"{field!r} ({option}){hint}")
    listed = ", ".join(sorted(columns)) or "none"
    noun = "field" if len(problems) == 1 else "fields"
    raise CatalogError(
        f"{source.path.name} has no {noun} {'; '.join(problems)}. Its fields: {listed}. "
        "Nothing was written."
    )


def catalog_columns(source: CatalogSource, records: list[dict[str, Any]]) -> set[str]:
    """The catalog's field names: the CSV header or Parquet schema where there is one,
    else every key of the sampled rows."""
    header = getattr(source, "columns", None)
    if isinstance(header, list):
        return {name for name in header if name}
    return {key for record in records for key in record}


def _all_jsonl_fields(source: JsonlSource) -> set[str]:
    fields: set[str] = set()
    for row in source.rows():
        if isinstance(row, RawRecord):
            fields.update(row.data)
    return fields


def check_first_rows(
    sample: list[RawRecord | RowError],
    mapping: FieldMapping,
    specs: list[AttributeSpec],
    images_root: ImageRoots,
    source: CatalogSource,
    records: list[dict[str, Any]],
) -> None:
    """Stop before any work when the first EARLY_FAILURE_ROWS rows all fail the same way.

    That is a mapping or catalog mistake (an id column that is empty, a required
    attribute nobody filled), not bad rows: running on would print the same line for
    every row and load the models to ingest nothing. A catalog with fewer rows, or whose
    first rows fail in different ways, runs as usual and reports each row."""
    first = sample[:EARLY_FAILURE_ROWS]
    if len(first) < EARLY_FAILURE_ROWS:
        return
    reasons: Counter[tuple[str | None, str]] = Counter()
    example: RowError | None = None
    for row in first:
        problem = (
            row if isinstance(row, RowError) else normalise_record(row, mapping, specs, images_root)
        )
        if not isinstance(problem, RowError):
            return  # a row that works: not a mapping mistake
        reasons[(problem.field, problem.reason)] += 1
        example = example or problem
    if len(reasons) != 1 or example is None:
        return
    columns = ", ".join(sorted(catalog_columns(source, records))) or "none"
    raise CatalogError(
        f"The first {len(first)} rows of {source.path.name} all fail the same way, so the "
        f"ingest stopped before any work: {example.describe()}. Check the mapping "
        f"(--id-field, --text-field, --attribute, --required, ...); the catalog's fields: "
        f"{columns}. Nothing was written."
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
