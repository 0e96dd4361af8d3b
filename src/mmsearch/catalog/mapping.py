"""Which catalog field plays which role: id, title, text, attribute, image.

A mapping can come from CLI options, a TOML/YAML file, or be guessed from common
field names; the guess is printed so the user can see and correct it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from pydantic import BaseModel, Field, ValidationError

from mmsearch.errors import CatalogError
from mmsearch.table_files import read_table_file

ID_NAMES = ("id", "item_id", "itemid", "sku", "uid", "_id", "key")
TITLE_NAMES = ("title", "name", "product_name", "label")
TEXT_NAMES = ("description", "text", "body", "summary", "content", "abstract", "tags", "keywords")
IMAGE_NAMES = ("image", "image_path", "images", "image_paths", "image_url", "image_urls", "img")
# Per-item permissions are never guessed from loose names like "groups": a wrong guess
# would expose or hide items. Only a field literally called "acl" is taken by default.
ACL_NAMES = ("acl",)

# Columns the index owns; attributes may not take these names.
RESERVED_COLUMNS = frozenset(
    {
        "id",
        "title",
        "search_text",
        "texts_json",
        "images",
        "image_sha256",
        "image_phash",
        "image_dhash",
        "image_text",
        "source_file",
        "source_row",
        "record_sha256",
        "ingest_run",
        "ingested_at",
        "acl",
    }
)
VECTOR_COLUMN_PREFIX = "vector_"


def is_reserved(column: str) -> bool:
    return column in RESERVED_COLUMNS or column.startswith(VECTOR_COLUMN_PREFIX)


class FieldMapping(BaseModel):
    """Roles of catalog fields. ``attributes=None`` means every other scalar field."""

    id: str | None = None
    title: str | None = None
    text: list[str] = Field(default_factory=list)
    attributes: list[str] | None = None
    images: list[str] = Field(default_factory=list)
    # ACL groups of the item (a list of group names, or one tenant id); stored per item
    # and applied inside every read query.
    acl: str | None = None

    model_config = {"extra": "forbid"}

    def describe(self) -> str:
        attributes = ", ".join(self.attributes or []) or "-"
        return (
            f"id={self.id or '-'}  title={self.title or '-'}  "
            f"text=[{', '.join(self.text)}]  attributes=[{attributes}]  "
            f"images=[{', '.join(self.images)}]" + (f"  acl={self.acl}" if self.acl else "")
        )


def load_mapping_file(path: Path) -> FieldMapping:
    """Read a mapping from TOML or YAML (chosen by suffix)."""
    data = read_table_file(path, "Mapping file", CatalogError)
    for key in ("text", "attributes", "images"):
        if isinstance(data.get(key), str):
            data[key] = [data[key]]
    try:
        return FieldMapping.model_validate(data)
    except ValidationError as exc:
        raise CatalogError(f"Mapping file {path} is not valid: {exc}") from exc


def merge_mappings(base: FieldMapping, override: FieldMapping) -> FieldMapping:
    """Fields set in ``override`` win; used for CLI options over a mapping file."""
    data = base.model_dump()
    for key, value in override.model_dump(exclude_unset=True).items():
        if value not in (None, []):
            data[key] = value
    return FieldMapping.model_validate(data)


def guess_mapping(sample: Iterable[dict[str, object]], given: FieldMapping) -> FieldMapping:
    """Fill the roles ``given`` leaves open from common field names seen in the sample rows."""
    names: dict[str, None] = {}
    scalar_names: set[str] = set()
    for record in sample:
        for key, value in record.items():
            names.setdefault(key, None)
            if isinstance(value, str | int | float | bool):
                scalar_names.add(key)
    by_lower = {name.lower(): name for name in names}

    def pick(candidates: tuple[str, ...]) -> str | None:
        return next((by_lower[c] for c in candidates if c in by_lower), None)

    id_field = given.id or pick(ID_NAMES)
    title = given.title or pick(TITLE_NAMES)
    text = given.text or [by_lower[c] for c in TEXT_NAMES if c in by_lower]
    images = given.images or [by_lower[c] for c in IMAGE_NAMES if c in by_lower]
    acl = given.acl or pick(ACL_NAMES)
    taken = {id_field, title, *text, *images, acl}
    if given.attributes is not None:
        attributes = given.attributes
    else:
        attributes = [
            n
            for n in names
            if n not in taken and n in scalar_names and not is_reserved(attribute_column(n))
        ]
    mapping = FieldMapping(
        id=id_field, title=title, text=text, attributes=attributes, images=images, acl=acl
    )
    validate_mapping(mapping)
    return mapping


def validate_mapping(mapping: FieldMapping) -> None:
    if not mapping.id:
        raise CatalogError(
            "No id field found. Name it with --id-field (or 'id' in the mapping file); "
            f"fields recognised as ids: {', '.join(ID_NAMES)}."
        )
    if mapping.acl and mapping.acl in (mapping.attributes or []):
        raise CatalogError(
            f"Field '{mapping.acl}' is the ACL field; it cannot also be an attribute."
        )
    columns: dict[str, str] = {}
    for name in mapping.attributes or []:
        column = attribute_column(name)
        if is_reserved(column):
            raise CatalogError(
                f"Attribute '{name}' would clash with the index column "
                f"'{column}'; rename the field or leave it out of attributes."
            )
        if column in columns:
            raise CatalogError(
                f"Attributes '{columns[column]}' and '{name}' would share the column "
                f"'{column}'; keep one of them."
            )
        columns[column] = name


def attribute_column(name: str) -> str:
    """The store column for an attribute: usable unquoted in --where filters."""
    column = re.sub(r"\W+", "_", name.strip()).strip("_").lower() or "attribute"
    if column[0].isdigit():
        column = f"a_{column}"
    return column
