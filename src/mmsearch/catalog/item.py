"""The Item: one catalog record, normalised, with the provenance that traces it to its source."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Literal

AttributeValue = str | int | float | bool | None
# The typed column kinds an attribute can have; here so that mapping (pinned types) and
# normalise (inference, coercion) share it without importing each other.
AttributeKind = Literal["string", "int", "float", "bool"]
ATTRIBUTE_KINDS: tuple[AttributeKind, ...] = ("string", "int", "float", "bool")
Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class RowError:
    """One problem with one catalog row; written to the run's errors.jsonl.

    An "error" means the row was not stored; a "warning" means the row was stored but one
    of its fields was not (it is kept as missing), so the loss is still on record.
    """

    source: str
    row: int
    reason: str
    field: str | None = None
    item_id: str | None = None
    severity: Severity = "error"

    def as_dict(self) -> dict[str, object]:
        return {
            "source": self.source,
            "row": self.row,
            "item_id": self.item_id,
            "field": self.field,
            "reason": self.reason,
            "severity": self.severity,
        }

    def describe(self) -> str:
        where = f"{self.source}, row {self.row}"
        if self.item_id:
            where += f" (id {self.item_id!r})"
        if self.field:
            where += f", field {self.field!r}"
        label = "warning: " if self.severity == "warning" else ""
        return f"{where}: {label}{self.reason}"


@dataclass(frozen=True)
class RawRecord:
    """A row as read from a catalog, before mapping and validation.

    ``warnings`` are what the reader itself lost of the row while still yielding it (a PDF
    page with no text layer and no OCR installed): they reach the run's report and
    errors.jsonl like the per-field warnings of normalisation."""

    source: str
    row: int
    data: dict[str, object]
    warnings: tuple[RowError, ...] = ()


@dataclass
class Item:
    """A validated record. ``images`` hold resolved local paths in catalog order."""

    id: str
    title: str
    texts: dict[str, str]
    attributes: dict[str, AttributeValue]
    images: list[str]
    source: str
    row: int
    image_sha256: list[str] = field(default_factory=list)
    # Text read from the images by OCR (filled at ingest when OCR is on); ``ocr`` says
    # it was asked for, so that turning OCR on re-processes rows that were indexed without.
    image_text: str = ""
    ocr: bool = False
    # ACL groups; None means "no acl given": the collection's default access applies.
    acl: list[str] | None = None
    # Normalised codes and aliases (``catalog/aliases.py``); None when the mapping names
    # no alias field, so hashes of builds without aliases stay as they were.
    aliases: list[str] | None = None
    # Fields of this row stored as missing because their value did not fit (severity
    # "warning"); reported, never hashed: they describe the source, not the indexed content.
    warnings: list[RowError] = field(default_factory=list)

    @property
    def search_text(self) -> str:
        """What BM25 indexes: the title, then every text field, then text found in images."""
        parts = [self.title, *self.texts.values(), self.image_text]
        return "\n".join(part for part in parts if part)

    @property
    def semantic_text(self) -> str:
        """What the text encoder embeds; the same fields, in the same order."""
        return self.search_text

    def content_sha256(self) -> str:
        """Hash of everything that feeds the index, so unchanged rows can skip re-encoding."""
        canonical = json.dumps(
            {
                "id": self.id,
                "title": self.title,
                "texts": self.texts,
                "attributes": self.attributes,
                "image_paths": self.images,
                "image_sha256": self.image_sha256,
                # Only present when on, so hashes of rows ingested without OCR stay valid.
                **({"ocr": True} if self.ocr else {}),
                **({"acl": self.acl} if self.acl is not None else {}),
                **({"aliases": self.aliases} if self.aliases else {}),
            },
            sort_keys=True,
            ensure_ascii=False,
            default=str,
        )
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
