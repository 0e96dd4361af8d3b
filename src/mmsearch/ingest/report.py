"""What an ingest is asked to do, and what it reports back."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from mmsearch.catalog.item import RowError
from mmsearch.catalog.mapping import FieldMapping
from mmsearch.catalog.normalise import AttributeSpec

# Every input row lands in exactly one of these; "rows" is their sum.
ROW_OUTCOMES = ("added", "updated", "unchanged", "failed")
ERRORS_KEPT_IN_REPORT = 1000


@dataclass
class IngestOptions:
    catalog: Path
    collection: str
    mapping: FieldMapping = field(default_factory=FieldMapping)
    images_root: Path | None = None
    # Start a new build even though the collection has a live one (a new schema or
    # encoder); it becomes live only when complete. Without it such a change is refused.
    new_build: bool = False
    # Remove items the catalog no longer holds (a product dropped from the feed).
    sync: bool = False
    # Write a candidate build and leave live as it is: into the staged candidate when it
    # fits, else a new one (a copy of live's rows when the catalog fits live). See staging.py.
    stage: bool = False
    # Read, validate and compare everything; write nothing.
    dry_run: bool = False
    # Any failed row makes the whole run fail and leaves the collection as it was.
    strict: bool = False
    # Wait for another writer of the collection (else fail at once).
    wait: bool = True
    purpose: str = "mmsearch ingest"
    # Encoders named for this run; unset, an update keeps the live build's encoders and a
    # new build takes the settings' defaults.
    text_encoder: str | None = None
    image_encoder: str | None = None
    # Where a chunk's items are decoded and encoded (ingest/executors.py): this process,
    # or a Ray cluster (the ``ray`` extra); ``ray_address`` None starts a local instance.
    executor: Literal["local", "ray"] = "local"
    ray_address: str | None = None
    # The ACL groups of a restricted writer (an API key bound by groups): it writes only
    # items it can see, labelled with its own groups (ingest/write_access.py). None: an
    # unrestricted writer (the CLI, an admin key).
    writer_groups: frozenset[str] | None = None
    # Further PDF files read with ``catalog`` as one document catalog (ingest/documents.py).
    more_files: tuple[Path, ...] = ()


@dataclass
class IngestReport:
    collection: str
    build_id: str | None
    run_id: str
    new_build: bool
    mapping: FieldMapping
    attributes: list[AttributeSpec]
    counts: dict[str, int]
    errors: list[RowError]
    warnings: list[RowError]
    errors_path: Path | None
    manifest_path: Path | None
    timings: dict[str, float]
    skipped_fields: dict[str, str] = field(default_factory=dict)
    notices: list[str] = field(default_factory=list)
    dry_run: bool = False
    committed: bool = True  # False: a refused --strict run or a dry run; nothing visible changed
    resumed: bool = False
    staged: bool = False  # written as a candidate: live did not change

    @property
    def ingested(self) -> int:
        return self.counts["added"] + self.counts["updated"]

    def as_dict(self) -> dict[str, Any]:
        return {
            "collection": self.collection,
            "build_id": self.build_id,
            "run_id": self.run_id,
            "new_build": self.new_build,
            "dry_run": self.dry_run,
            "committed": self.committed,
            "resumed": self.resumed,
            "staged": self.staged,
            "mapping": self.mapping.model_dump(),
            "attributes": {spec.column: spec.kind for spec in self.attributes},
            "counts": self.counts,
            "skipped_fields": self.skipped_fields,
            "notices": self.notices,
            "errors": [e.as_dict() for e in self.errors[:100]],
            "warnings": [w.as_dict() for w in self.warnings[:100]],
            "errors_file": None if self.errors_path is None else str(self.errors_path),
            "manifest": None if self.manifest_path is None else str(self.manifest_path),
            "timings_s": {k: round(v, 4) for k, v in self.timings.items()},
        }


def new_counts() -> dict[str, int]:
    """Row outcomes plus: warnings (fields stored as missing), removed (--sync), resumed
    (rows an interrupted attempt of this run had already written: not encoded again)."""
    return dict.fromkeys(("rows", *ROW_OUTCOMES, "warnings", "removed", "resumed"), 0)


def check_accounting(counts: dict[str, int]) -> None:
    """rows read = rows landed + rows unchanged + row errors, or the run is not trusted."""
    settled = sum(counts[key] for key in ROW_OUTCOMES)
    if settled != counts["rows"]:
        raise RuntimeError(
            f"ingest accounting is off: {counts['rows']} rows read but {settled} settled ({counts})"
        )
