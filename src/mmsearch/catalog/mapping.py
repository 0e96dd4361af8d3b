"""Which catalog field plays which role: id, title, text, attribute, image.

A mapping can come from CLI options, a TOML/YAML file, or be guessed from common
field names; the guess is printed so the user can see and correct it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any, cast

from pydantic import BaseModel, Field, ValidationError, model_validator

from mmsearch.catalog.item import ATTRIBUTE_KINDS, AttributeKind
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
        "alias_keys",
        # moderation (moderation/decisions.py)
        "image_fingerprints",
        "moderation_action",
        "moderation_rule",
        "moderation_policy",
        "moderation_state",
        "moderation_hidden",
        "moderation_json",
    }
)
VECTOR_COLUMN_PREFIX = "vector_"


def is_reserved(column: str) -> bool:
    return column in RESERVED_COLUMNS or column.startswith(VECTOR_COLUMN_PREFIX)


class FieldMapping(BaseModel):
    """Roles of catalog fields. ``attributes=None`` means every other scalar field.

    ``types`` pins an attribute's kind (string, int, float, bool) instead of inferring it
    from a sample; an attribute may also be written ``"price:float"``. ``required`` names
    attributes whose missing or unfit value makes the row an error rather than a warning.
    """

    id: str | None = None
    title: str | None = None
    text: list[str] = Field(default_factory=list)
    attributes: list[str] | None = None
    images: list[str] = Field(default_factory=list)
    # ACL groups of the item (a list of group names, or one tenant id); stored per item
    # and applied inside every read query.
    acl: str | None = None
    types: dict[str, AttributeKind] = Field(default_factory=dict)
    required: list[str] = Field(default_factory=list)
    # Attribute or text fields whose values become entities of the build's graph
    # (``graph/``): one entity per value, a list or comma-separated value giving several.
    entities: list[str] = Field(default_factory=list)
    # The title or text fields where entity names are looked for: the names of the
    # entities above and phrases mined from these fields ("boundary layer"); each one
    # found becomes a ``text:`` entity of the item (``graph/text_entities.py``).
    entity_text_fields: list[str] = Field(default_factory=list)
    # How many phrases to mine for that, strongest first (0: only the known names).
    entity_phrases: int = Field(default=1000, ge=0, le=10_000)
    # Fields holding codes and aliases of the item (a list, or text split on , ; |):
    # stored normalised in ``alias_keys`` and matched whole, ahead of ranking, when a
    # query names one (``catalog/aliases.py``).
    aliases: list[str] = Field(default_factory=list)

    model_config = {"extra": "forbid"}

    @model_validator(mode="before")
    @classmethod
    def _split_pinned_types(cls, data: Any) -> Any:
        """``"price:float"`` in attributes is the attribute ``price`` pinned to float; a name
        whose last ``:`` part is not a kind (``"a:b"``) or that is already a key of ``types``
        is a plain name, so validating a dumped mapping again changes nothing."""
        if not isinstance(data, dict) or not isinstance(data.get("attributes"), list):
            return data
        types = dict(data.get("types") or {})
        names: list[object] = []
        pinned: dict[str, AttributeKind] = {}
        for entry in data["attributes"]:
            name, kind = entry, None
            if isinstance(entry, str) and entry not in types:
                name, kind = _split_kind(entry)
            if kind is not None:
                if types.get(name, kind) != kind:
                    raise ValueError(
                        f"attribute {name!r} is given the types {types[name]!r} and {kind!r}; "
                        "keep one"
                    )
                pinned[name] = kind
            names.append(name)
        if not pinned:
            return data
        return {**data, "attributes": names, "types": {**types, **pinned}}

    def describe(self) -> str:
        attributes = ", ".join(
            f"{name}:{self.types[name]}" if name in self.types else name
            for name in self.attributes or []
        )
        return (
            f"id={self.id or '-'}  title={self.title or '-'}  "
            f"text=[{', '.join(self.text)}]  attributes=[{attributes or '-'}]  "
            f"images=[{', '.join(self.images)}]"
            + (f"  acl={self.acl}" if self.acl else "")
            + (f"  required=[{', '.join(self.required)}]" if self.required else "")
            + (f"  entities=[{', '.join(self.entities)}]" if self.entities else "")
            + (
                f"  entity_text_fields=[{', '.join(self.entity_text_fields)}]"
                if self.entity_text_fields
                else ""
            )
            + (f"  aliases=[{', '.join(self.aliases)}]" if self.aliases else "")
        )


def _split_kind(entry: str) -> tuple[str, AttributeKind | None]:
    name, _, suffix = entry.rpartition(":")
    kind = suffix.strip().lower()
    if name.strip() and kind in ATTRIBUTE_KINDS:
        return name.strip(), cast(AttributeKind, kind)
    return entry, None


def load_mapping_file(path: Path) -> FieldMapping:
    """Read a mapping from TOML or YAML (chosen by suffix)."""
    data = read_table_file(path, "Mapping file", CatalogError)
    for key in (
        "text",
        "attributes",
        "images",
        "required",
        "entities",
        "entity_text_fields",
        "aliases",
    ):
        if isinstance(data.get(key), str):
            data[key] = [data[key]]
    try:
        return FieldMapping.model_validate(data)
    except ValidationError as exc:
        raise CatalogError(f"Mapping file {path} is not valid: {exc}") from exc


def merge_mappings(base: FieldMapping, override: FieldMapping) -> FieldMapping:
    """Fields set in ``override`` win; used for CLI options over a mapping file.

    Pinned ``types`` and ``required`` add up (an override's type for the same attribute
    wins), so a CLI pin does not unpin the file's other attributes.
    """
    data = base.model_dump()
    for key, value in override.model_dump(exclude_unset=True).items():
        if key in ("types", "required", "entities"):
            continue
        if value not in (None, []):
            data[key] = value
    data["types"] = {**base.types, **override.types}
    data["required"] = list(dict.fromkeys([*base.required, *override.required]))
    data["entities"] = list(dict.fromkeys([*base.entities, *override.entities]))
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
        # A pinned or required field is an attribute even when the sample holds no value.
        declared = [*given.types, *given.required]
        attributes += [n for n in dict.fromkeys(declared) if n not in taken | set(attributes)]
    mapping = FieldMapping(
        id=id_field,
        title=title,
        text=text,
        attributes=attributes,
        images=images,
        acl=acl,
        types=given.types,
        required=given.required,
        entities=given.entities,
        entity_text_fields=given.entity_text_fields,
        entity_phrases=given.entity_phrases,
        aliases=given.aliases,
    )
    validate_mapping(mapping)
    return mapping


def nested_fields(sample: Iterable[dict[str, object]], mapping: FieldMapping) -> dict[str, str]:
    """Fields of the sample holding objects or lists that no role takes, with the reason
    they are not stored: an attribute is one value, so such a field would otherwise
    vanish without a word. Attributes are left out (a value that does not fit is a
    per-row warning); with ``attributes=None`` a field with any single value counts as one.
    """
    taken = {mapping.id, mapping.title, *mapping.text, *mapping.images, mapping.acl}
    taken.update(mapping.attributes or [])
    taken.update(mapping.aliases)
    found: dict[str, str] = {}
    scalar: set[str] = set()
    for record in sample:
        for name, value in record.items():
            if name in taken or name in found:
                continue
            if isinstance(value, dict):
                found[name] = "nested object; not stored (attributes must be single values)"
            elif isinstance(value, list):
                found[name] = _list_reason(value)
            elif value is not None:
                scalar.add(name)
    if mapping.attributes is None:
        found = {name: reason for name, reason in found.items() if name not in scalar}
    return found


def _list_reason(value: list[object]) -> str:
    if all(isinstance(v, str | int | float) and not isinstance(v, bool) for v in value):
        return "list value; not stored (name it with --text-field to search it as text)"
    return "list of objects; not stored (attributes must be single values)"


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
    _validate_declared(mapping)
    _validate_entities(mapping)
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


def _validate_entities(mapping: FieldMapping) -> None:
    """Entity fields must be stored (an attribute or a text field): the graph is made
    from the build's rows, so a field that is not stored would give no entity; entity
    text fields must be the title or text fields, the stored text names are found in."""
    readable = {mapping.title, *mapping.text}
    unreadable = [name for name in mapping.entity_text_fields if name not in readable]
    if unreadable:
        raise CatalogError(
            f"Entity text field(s) {', '.join(unreadable)} are neither the title nor text "
            "fields; only stored text can be searched for entity names."
        )
    if mapping.attributes is None:
        return
    stored = {*mapping.attributes, *mapping.text}
    missing = [name for name in mapping.entities if name not in stored]
    if missing:
        raise CatalogError(
            f"Entity field(s) {', '.join(missing)} are neither attributes nor text fields; "
            "name them as attributes (or --text-field) to make entities of them."
        )


def _validate_declared(mapping: FieldMapping) -> None:
    """``types`` and ``required`` must name attributes: a pin on a field that is not
    stored would otherwise do nothing, and the user would believe it checked."""
    if mapping.attributes is None:
        return  # every scalar field is an attribute; guess_mapping resolves the list
    attributes = set(mapping.attributes)
    for option, names in (("types", list(mapping.types)), ("required", mapping.required)):
        stray = [name for name in names if name not in attributes]
        if stray:
            listed = ", ".join(repr(name) for name in stray)
            what = "which is not an attribute" if len(stray) == 1 else "which are not attributes"
            raise CatalogError(
                f"The mapping's {option} names {listed}, {what}: a field taken by another "
                f"role, or left out of the attributes. Add it to the attributes or drop it "
                f"from {option}."
            )


def attribute_column(name: str) -> str:
    """The store column for an attribute: usable unquoted in --where filters."""
    column = re.sub(r"\W+", "_", name.strip()).strip("_").lower() or "attribute"
    if column[0].isdigit():
        column = f"a_{column}"
    return column
