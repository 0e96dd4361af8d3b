"""A new field mapping applied to a build's stored rows, for ``rebuild --mapping``.

A rebuild never reads the catalog again, so it can only change what the stored
columns can answer: which stored text fields (``texts_json``), the title or which
attribute columns feed the title and the embedded text, and which attribute columns
the new build keeps. The id, images and ACL come from catalog fields the build does
not keep in another form, and a new attribute would need the catalog's values: those
changes are refused, naming the ingest that can make them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from mmsearch.catalog.aliases import ALIAS_COLUMN, decode_keys
from mmsearch.catalog.item import AttributeValue, Item
from mmsearch.catalog.mapping import FieldMapping
from mmsearch.catalog.normalise import AttributeSpec
from mmsearch.errors import MMSearchError
from mmsearch.ingest.builds import live_specs
from mmsearch.manifest import BuildManifest


class RebuildRefused(MMSearchError):
    """A rebuild that cannot be made from the stored rows, or would change nothing."""


@dataclass(frozen=True)
class Remap:
    """The new build's mapping and attribute columns, and what differs from the source's."""

    source: FieldMapping
    mapping: FieldMapping
    specs: list[AttributeSpec]
    source_specs: list[AttributeSpec]
    text_changed: bool  # the text the encoder embeds (title + text fields) differs
    changed: bool  # anything in an item's content hash differs (texts or attributes)
    ocr: bool  # the source build read text in images: part of each record's hash

    def texts_of(self, row: dict[str, Any]) -> tuple[str, dict[str, str]]:
        """The title and text fields of one stored row under the new mapping."""
        if not self.text_changed:
            return row.get("title") or "", json.loads(row.get("texts_json") or "{}")
        stored: dict[str, str] = json.loads(row.get("texts_json") or "{}")
        title = self._field(row, stored, self.mapping.title) if self.mapping.title else ""
        texts = {name: self._field(row, stored, name) for name in self.mapping.text}
        return title, {name: text for name, text in texts.items() if text}

    def item_of(self, row: dict[str, Any]) -> Item:
        """The row as the Item it was ingested as (remapped): its texts compose the text to
        embed exactly as ingest does (``Item.semantic_text``), and it hashes the same way."""
        title, texts = self.texts_of(row)
        images = list(row.get("images") or [])
        attributes: dict[str, AttributeValue] = {
            spec.column: row.get(spec.column) for spec in self.specs
        }
        return Item(
            id=row["id"],
            title=title,
            texts=texts,
            attributes=attributes,
            images=images,
            source=row.get("source_file") or "",
            row=int(row.get("source_row") or 0),
            image_sha256=list(row.get("image_sha256") or []),
            image_text=row.get("image_text") or "",
            ocr=self.ocr and bool(images),
            acl=None if row.get("acl") is None else list(row["acl"]),
            aliases=decode_keys(row.get(ALIAS_COLUMN)) or None,
        )

    def _field(self, row: dict[str, Any], stored: dict[str, str], name: str) -> str:
        if name == self.source.title:
            return str(row.get("title") or "")
        if name in self.source.text:
            return stored.get(name, "")
        spec = next(spec for spec in self.source_specs if spec.field == name)
        value = row.get(spec.column)
        return "" if value is None else str(value).strip()


def plan_remap(source: BuildManifest, given: FieldMapping | None) -> Remap:
    """The new mapping: the source's, with the roles ``given`` sets (only those it sets)."""
    before = source.mapping.model_copy(deep=True)
    specs = live_specs(source)
    ocr = source.config.ocr
    if given is None:
        return Remap(before, before, specs, specs, False, False, ocr)
    mapping = before.model_copy(
        update={name: getattr(given, name) for name in given.model_fields_set}
    )
    problems = []
    for role in ("id", "acl"):
        if getattr(mapping, role) != getattr(before, role):
            problems.append(
                f"the {role} field ({getattr(before, role)} → {getattr(mapping, role)})"
            )
    if list(mapping.images) != list(before.images):
        problems.append("the image fields")
    if list(mapping.aliases) != list(before.aliases):
        problems.append("the alias fields")
    by_field = {spec.field: spec for spec in specs}
    attributes = list(mapping.attributes if mapping.attributes is not None else by_field)
    unknown = [name for name in attributes if name not in by_field]
    if unknown:
        problems.append(f"new attributes ({', '.join(unknown)}): the build does not store them")
    for name, kind in mapping.types.items():
        if name in by_field and by_field[name].kind != kind:
            problems.append(f"the type of {name} ({by_field[name].kind} → {kind})")
    if set(mapping.required) - set(before.required):
        problems.append("required attributes (rows were checked against the old list)")
    textual = {before.title, *before.text} | {
        spec.field for spec in specs if spec.kind in ("string", "int", "float")
    }
    wanted = ([mapping.title] if mapping.title else []) + list(mapping.text)
    missing = [name for name in wanted if name not in textual]
    if missing:
        problems.append(
            f"text from {', '.join(missing)}: the build keeps no such text field, title or "
            "text-like attribute"
        )
    if problems:
        raise RebuildRefused(
            f"A rebuild can only change text fields, the title and which stored attributes "
            f"are kept; this mapping changes {'; '.join(problems)}. Re-ingest the catalog "
            "with --new-build (or --stage) to make that change."
        )
    kept = [by_field[name] for name in attributes]
    mapping = mapping.model_copy(
        update={
            "attributes": [spec.field for spec in kept],
            "types": {name: kind for name, kind in mapping.types.items() if name in attributes},
            "required": [name for name in mapping.required if name in attributes],
        }
    )
    text_changed = (mapping.title, list(mapping.text)) != (before.title, list(before.text))
    changed = text_changed or [s.field for s in kept] != [s.field for s in specs]
    return Remap(before, mapping, kept, specs, text_changed, changed, ocr)
