"""What a run saves about itself, as typed models: its progress record
(``runs/<run>/progress.json``), its summary (``runs/<run>/run.json``, and the manifest's
``last_run``) and its line in the build's history (``runs.jsonl``).

The files on disk are the ones written before these models existed, both ways:

- A record is written with the top-level keys it was given (``saved_json``), never with
  every default the model has, so a summary of an item write does not grow an ingest's
  keys and ``runs list --json`` shows what it showed before.
- Files written before a key existed load: every key added later has a default.
- A record that does not fit its model is an ``MMSearchError`` naming the file and the
  field (``SavedRecordError``), never a pydantic traceback.

These live with the build lifecycle rather than with ``ingest/`` because the history
(``builds/history.py``) reads summaries and progress records, and ``builds`` sits below
``ingest`` in the layer order.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    model_serializer,
)

from mmsearch.catalog.mapping import FieldMapping
from mmsearch.errors import MMSearchError
from mmsearch.manifest import RebuildOrigin, validation_problems
from mmsearch.workspace import read_json

# Every kind of write a build records; "rebuild" is the first run of a rebuilt build.
RunKind = Literal["ingest", "item_put", "item_delete", "revert", "rebuild", "moderation"]
# A progress record's ``state``: "running" until the run ends; a run that another write
# or a new plan superseded is "abandoned" (or "discarded").
RunState = Literal["running", "done", "failed", "refused", "abandoned", "discarded"]
# A run's counters: flat for an ingest (rows, added, updated, ...), with a nested count
# per encoder role for a rebuild (reused, encoded).
RunCounts = dict[str, int | dict[str, int]]

Record = TypeVar("Record", bound=BaseModel)


class SavedRecordError(MMSearchError):
    """A saved run record that does not fit its model."""


class SavedRecord(BaseModel):
    """A record a run saves: written with the keys it was given (see the module)."""

    model_config = ConfigDict(extra="ignore")

    def saved_json(self) -> dict[str, object]:
        """The record as its file stores it: top-level keys that were read or set."""
        data: dict[str, object] = self.model_dump(mode="json")
        return {name: data[name] for name in data if name in self.model_fields_set}


def load_record(
    model: type[Record], data: Any, where: Path | str, what: str, advice: str = ""
) -> Record:
    """``data`` read from ``where`` (a file, or a line of one) as ``model``, or an error
    naming the file, the fields and (``advice``) what to do about it."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise SavedRecordError(
            f"The {what} {where} is not valid: {validation_problems(exc, 'the record')}."
            + (f" {advice}" if advice else "")
        ) from None


class OmitsMissing(BaseModel):
    """A part stored with only the keys that have a value: a history line's ``detail``
    holds what its kind of run knows, not every key any run might have."""

    model_config = ConfigDict(extra="ignore")

    @model_serializer(mode="wrap")
    def _without_missing(self, handler: SerializerFunctionWrapHandler) -> dict[str, object]:
        data: dict[str, object] = handler(self)
        return {k: v for k, v in data.items() if v is not None}


class RunSource(OmitsMissing):
    """The catalog file a run read: path, format and sha256 (strings cut to 512 characters
    when a history line would be too long)."""

    path: str | None = None
    format: str | None = None
    sha256: str | None = None


class RunOptions(BaseModel):
    """The ingest options that decide which rows a run writes beyond the catalog."""

    model_config = ConfigDict(extra="ignore")

    sync: bool = False
    strict: bool = False


class ProgressRecord(SavedRecord):
    """``runs/<run>/progress.json``: rewritten after every committed chunk, so a killed run
    is found ("running") and resumed by the same command (same ``resume_key``).

    Unknown keys are kept (``extra="allow"``): ``close_run`` rewrites the file, and a
    record written by a newer mmsearch should survive that."""

    model_config = ConfigDict(extra="allow")

    run_id: str
    build_id: str
    kind: RunKind | None = None  # "rebuild" for a rebuild; an ingest's record has none
    resume_key: str = ""
    started_at: str | None = None
    source: RunSource | None = None
    rebuilt_from: str | None = None  # a rebuild: the build it re-encodes
    rows_total: int | None = None
    table_version_visible: int | None = None  # what readers saw when the run started
    options: RunOptions | None = None
    state: RunState = "running"
    updated_at: str | None = None
    rows_done: int = 0
    counts: RunCounts = Field(default_factory=dict)
    table_version: int | None = None  # after the last committed chunk
    closed_at: str | None = None  # set when an unfinished run is abandoned
    why: str | None = None

    def saved_json(self) -> dict[str, object]:
        data = super().saved_json()
        return {**data, **(self.model_extra or {})}


class RunSummary(SavedRecord):
    """A finished run's report (``run.json``; the manifest keeps it as ``last_run``
    without the mapping). Which keys a run has depends on its kind: an ingest has a
    source, mapping and timings, a revert the run it reverted, a rebuild its origin."""

    run_id: str
    kind: RunKind | None = None  # set by ``history.note_run`` when the engine left it out
    actor: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    resumed: bool = False
    source: RunSource | None = None
    rebuilt_from: RebuildOrigin | None = None
    mapping: FieldMapping | None = None
    counts: RunCounts = Field(default_factory=dict)
    skipped_fields: dict[str, str] = Field(default_factory=dict)  # field -> why not stored
    timings_s: dict[str, float] = Field(default_factory=dict)  # stage -> seconds
    errors_file: str | None = None  # relative to the build's folder
    table_version_before: int | None = None  # None: the run created the build
    table_version: int | None = None
    removed_ids_sample: list[str] = Field(default_factory=list)  # an ingest --sync
    reverted_run: str | None = None  # a revert: the run it undid
    later_runs_undone: list[str] = Field(default_factory=list)  # ... and the runs after it


class RunDetail(OmitsMissing):
    """What only the caller of a write knows about it (which items, which run it
    reverted); a history line stores the keys that are present."""

    items: list[str] | None = None  # item PUT and DELETE
    reverted_run: str | None = None  # revert
    restored_version: int | None = None
    later_runs_undone: list[str] | None = None
    removed_ids_sample: list[str] | None = None  # an ingest --sync: the first ids removed
    truncated: bool | None = None  # the line was too long and its detail dropped


class RunEntry(BaseModel):
    """One write to one build, as ``runs list`` shows it and ``runs revert`` uses it: a
    line of ``runs.jsonl``, or a run that only the manifest recorded (``legacy``)."""

    model_config = ConfigDict(extra="ignore")

    kind: RunKind
    run_id: str = Field(min_length=1)
    build_id: str = Field(min_length=1)
    started_at: str | None = None
    finished_at: str | None = None
    counts: RunCounts = Field(default_factory=dict)
    source: RunSource | None = None
    table_version_before: int | None = None  # None: the run created the build
    table_version_after: int | None = None
    actor: str | None = None
    detail: RunDetail = Field(default_factory=RunDetail)
    legacy: bool = False  # read from an old manifest's run list, not from the log

    def as_dict(self) -> dict[str, object]:
        """The entry as ``runs list --json`` and ``builds show --json`` print it."""
        data: dict[str, object] = self.model_dump(mode="json")
        return data


def read_summary(path: Path) -> RunSummary:
    """A finished run's ``run.json``, or an error naming the file and the field
    (``FileNotFoundError`` when the run wrote none)."""
    return load_record(RunSummary, read_json(path), path, "run summary")
