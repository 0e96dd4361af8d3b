"""A build's manifest (``builds/<build>/manifest.json``) as a typed model.

The manifest says what a build is (its table and store, encoders with their versions,
field mapping, attribute schema, config) and what happened to it (sources, runs,
counts, gate verdicts, publishes). ``CollectionDir.manifest`` reads it into a
``BuildManifest``; ``CollectionDir.write_manifest`` writes one back.

The JSON on disk is unchanged by the model, both ways:

- Manifests written before a key existed still load: every key a build gained later
  has a default, the one readers used to fall back to (``state`` "ready",
  ``schema_version`` 1, no ``table_version``: the table's latest version, ...).
- A manifest written back has the keys it was read with (plus those set since), with
  the same values: a key is written when it was read or set, or when its value no
  longer equals its default (a list appended to in place), never just because the
  model has a default for it. So an old manifest is not rewritten into a new layout
  behind its readers' backs, and ``pending_live`` disappears when it is cleared
  (``BuildManifest.clear``).
- Every model keeps keys it does not know (``extra="allow"``) only so that a manifest
  written by a newer mmsearch survives a read-modify-write by this one. No code reads
  them: a key code needs is declared here.

A manifest that does not fit the model is an ``MMSearchError`` naming the build, the
file and the field (``load_manifest``), never a pydantic traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mmsearch.catalog.item import AttributeKind
from mmsearch.catalog.mapping import FieldMapping
from mmsearch.errors import MMSearchError

# A build's ``state``: "building" until its first ingest completes (never visible to
# searches), then "ready". Manifests written before states existed are ready.
BUILDING: Final = "building"
READY: Final = "ready"
BuildState = Literal["building", "ready"]
DEFAULT_BACKEND = "lancedb"


class ManifestPart(BaseModel):
    """A part of a manifest: unknown keys are kept (see the module's docstring)."""

    model_config = ConfigDict(extra="allow")

    def as_json(self) -> dict[str, Any]:
        """The part as the manifest stores it (see ``manifest_json``)."""
        data: dict[str, Any] = manifest_json(self)
        return data


class StoreDescription(ManifestPart):
    """Where the build's table lives: ``index/open.py`` opens it from this, whatever the
    settings say now. Never a token (that always comes from the environment)."""

    backend: str = DEFAULT_BACKEND  # a str, not a Literal: an unknown store is refused
    path: str | None = None  # LanceDB: the database folder
    uri: str | None = None  # Milvus: the server address
    index: str | None = None  # Milvus: the dense index type (hnsw, ivf_flat, ...)


class EncoderDescription(ManifestPart):
    """One encoder role of the build (``EncoderSet.describe``): equal descriptions share
    vectors; ``version`` is the model id plus the sha256 of its weights where known."""

    spec: str
    name: str = ""
    version: str = ""
    dim: int
    modalities: list[str] = Field(default_factory=list)  # "text", "image" or both
    # Why this encoder, when the spec asked for let the machine choose (``minilm:auto``):
    # the backend it picked, or that it fell back to torch and why. Left out of the JSON
    # when there is none, so manifests of other encoders read as they always did.
    note: str | None = Field(default=None, exclude_if=lambda value: value is None)


class AttributeDescription(ManifestPart):
    """One typed, filterable attribute column (``catalog.normalise.AttributeSpec``)."""

    field: str
    column: str
    kind: AttributeKind


class BuildConfig(ManifestPart):
    """The settings the build was made with that matter for reading it again."""

    batch_size: int | None = None
    candidates: int | None = None
    rrf_k: int | None = None
    ann_min_rows: int | None = None
    ocr: bool = False  # image text read into ``image_text`` (absent before OCR existed)


class SourceRecord(ManifestPart):
    """A catalog file a run read: its path, format and sha256 (and, in ``sources``, the
    run that read it last)."""

    path: str | None = None
    format: str | None = None
    sha256: str | None = None
    run_id: str | None = None


class RunRecord(ManifestPart):
    """One entry of the manifest's short run tail (the full history is ``runs.jsonl``).

    Manifests written before the run log kept whole run reports here; their other keys
    (mapping, timings, errors file) are kept as they are and read by no one."""

    run_id: str = ""
    kind: str = "ingest"  # ingest | item_put | item_delete | revert | rebuild | moderation
    started_at: str | None = None
    finished_at: str | None = None
    resumed: bool = False
    source: SourceRecord | None = None
    # The run's counters: which ones a run has depends on its kind (an ingest counts
    # rows, added, encoded per role, ...; a revert restored and removed items), so they
    # are kept as the run wrote them.
    counts: dict[str, Any] = Field(default_factory=dict)
    table_version_before: int | None = None  # None: the run created the build
    table_version: int | None = None
    actor: str | None = None


class ManifestCounts(ManifestPart):
    items: int = 0
    # The latest run's counters, as ``RunRecord.counts`` (free-form for the same reason).
    last_run: dict[str, Any] | None = None


class ErrorSummary(ManifestPart):
    """Rows the latest run could not store: how many, and its errors file (relative)."""

    count: int = 0
    file: str | None = None


class IndexSummary(ManifestPart):
    """What the latest ``refresh_indexes`` did: indexes created, columns indexed."""

    created: list[str] = Field(default_factory=list)
    indexed_columns: list[str] = Field(default_factory=list)
    rows: int | None = None


class GateSummary(ManifestPart):
    """A gate's verdict on the build (``GateReport.summary``); the full report is the
    file ``report`` names. In a publish record it also says which gate (``origin``:
    "explicit" or "default"), and a gate that could not run has the verdict "error"."""

    origin: str | None = None  # first in a publish record, as it is written
    verdict: str  # pass | fail | error
    reasons: list[str] = Field(default_factory=list)
    live_build: str | None = None
    evaluated_at: str | None = None
    checks: dict[str, bool] = Field(default_factory=dict)  # check name -> passed
    gate_file: str | None = None
    gate_sha256: str | None = None
    report: str | None = None  # relative to the collection folder
    seconds: float | None = None


class PublishRecord(ManifestPart):
    """One time the build went live: who, when, through which gate, forced or not."""

    at: str
    by: str
    gate: GateSummary | None = None
    forced: bool = False
    forced_by: str | None = None
    reason: str | None = None
    via: str | None = None  # "ingest" for a --new-build that went live on completion


class StageMarker(ManifestPart):
    """An ``ingest --stage`` candidate: the live build it was seeded with, if any."""

    seeded_from: str | None = None  # None: an empty candidate ("this catalog only")
    source_table_version: int | None = None
    rows_copied: int | None = None
    seeded_version: int | None = None  # the table version the staged run compares with


class RebuildOrigin(ManifestPart):
    """A build ``mmsearch rebuild`` made from another: which, and what it re-encoded."""

    build: str
    table_version: int | None = None
    encoders_reused: list[str] = Field(default_factory=list)
    encoders_re_encoded: list[str] = Field(default_factory=list)
    mapping_changed: bool = False
    counts: dict[str, Any] | None = None  # the rebuild run's counters (see RunRecord)


class BuildManifest(ManifestPart):
    """One build's manifest. Fields in the order a build gains them, so a file written
    through the model reads like one written before it."""

    collection: str = ""
    build_id: str
    state: BuildState = READY
    created_at: str | None = None
    mmsearch_version: str | None = None
    schema_version: int = 1  # the table layout (``index.schema.SCHEMA_VERSION``)
    table: str
    store: StoreDescription = Field(default_factory=StoreDescription)
    encoders: dict[str, EncoderDescription] = Field(default_factory=dict)  # by role
    # FieldMapping round-trips (a dumped mapping validates to the same mapping), so the
    # model the catalog code uses is the one stored.
    mapping: FieldMapping = Field(default_factory=FieldMapping)
    attributes: list[AttributeDescription] = Field(default_factory=list)
    keyword_column: str | None = None
    config: BuildConfig = Field(default_factory=BuildConfig)
    sources: list[SourceRecord] = Field(default_factory=list)  # newest distinct catalogs
    runs: list[RunRecord] = Field(default_factory=list)  # the newest few runs
    staged: StageMarker | None = None
    rebuilt_from: RebuildOrigin | None = None
    updated_at: str | None = None
    counts: ManifestCounts = Field(default_factory=ManifestCounts)
    errors: ErrorSummary = Field(default_factory=ErrorSummary)
    indexes: IndexSummary | None = None
    table_version: int | None = None  # what readers see; None: the table's latest
    # The latest run's summary as the engine wrote it (its run.json less the mapping):
    # a report whose keys differ by kind of run and grow with the engine, so free-form.
    last_run: dict[str, Any] | None = None
    pending_live: bool = False  # a completed new build whose publish a crash interrupted
    published_at: str | None = None
    published_by: str | None = None
    publishes: list[PublishRecord] = Field(default_factory=list)  # the newest 20
    gate: GateSummary | None = None  # the latest gate verdict on this build

    def clear(self, name: str) -> None:
        """Back to the default, and absent from the file again (a crash marker)."""
        field = type(self).model_fields[name]
        setattr(self, name, field.get_default(call_default_factory=True))
        self.model_fields_set.discard(name)


def manifest_json(value: Any) -> Any:
    """A manifest or any part of it as the file stores it: keys read or set, and keys
    whose value differs from the default; models inside lists and dicts alike."""
    if isinstance(value, BaseModel):
        _mark_changed(value)
        return value.model_dump(mode="json", exclude_unset=True)
    if isinstance(value, list | tuple):
        return [manifest_json(v) for v in value]
    if isinstance(value, dict):
        return {k: manifest_json(v) for k, v in value.items()}
    return value


def _mark_changed(model: BaseModel) -> None:
    """Count a field as set once it no longer equals its default, so a list appended
    to in place (or a part changed inside a defaulted one) is written, not dropped."""
    fields_set = model.model_fields_set
    for name, info in type(model).model_fields.items():
        value = getattr(model, name)
        unset = name not in fields_set and not info.is_required()
        if unset and value != info.get_default(call_default_factory=True):
            fields_set.add(name)
        for part in value if isinstance(value, list | tuple) else [value]:
            _mark_nested(part)


def _mark_nested(value: Any) -> None:
    if isinstance(value, BaseModel):
        _mark_changed(value)
    elif isinstance(value, dict):
        for part in value.values():
            _mark_nested(part)


def validation_problems(exc: ValidationError, whole: str) -> str:
    """The first three problems of a saved file that does not fit its model, each as
    ``field.path: message`` (``whole`` names the file itself), for an error a user reads."""
    problems = exc.errors(include_url=False, include_input=False)
    listed = "; ".join(
        f"{'.'.join(str(part) for part in problem['loc']) or whole}: {problem['msg']}"
        for problem in problems[:3]
    )
    more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
    return listed + more


def load_manifest(data: Any, *, build_id: str, collection: str, path: Path) -> BuildManifest:
    """The manifest read from ``path``, or an error naming the build and the fields."""
    try:
        return BuildManifest.model_validate(data)
    except ValidationError as exc:
        raise MMSearchError(
            f"The manifest of build {build_id} of collection '{collection}' ({path}) is "
            f"not valid: {validation_problems(exc, 'the manifest')}. Restore it from a "
            "backup, or remove the build if it is not needed."
        ) from None
