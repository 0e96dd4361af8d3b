"""Turn raw rows into validated Items, one RowError per row that cannot be used.

Attribute types are inferred from a sample of rows (like dataframe readers do) so
that numeric attributes can be filtered with ``<`` and ``>``; a later value that
does not fit the inferred type is a row error, not a silent string.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from mmsearch.catalog.item import AttributeValue, Item, RawRecord, RowError
from mmsearch.catalog.mapping import FieldMapping, attribute_column
from mmsearch.media.paths import MAX_URL_CHARS, ImageRoots, PathRefused, is_url

AttributeKind = Literal["string", "int", "float", "bool"]
TRUE_WORDS = frozenset({"true", "yes", "1"})
FALSE_WORDS = frozenset({"false", "no", "0"})
MAX_ID_LENGTH = 512
IMAGE_LIST_SEPARATOR = "|"  # several images in one CSV cell or string
MAX_TEXT_CHARS = 1_000_000
MAX_ACL_GROUPS = 64
MAX_GROUP_CHARS = 128


@dataclass(frozen=True)
class AttributeSpec:
    """A catalog field stored as a typed, filterable column."""

    field: str
    column: str
    kind: AttributeKind


class _Invalid(ValueError):
    """A value that does not fit its field; carries the field name for the error report."""

    def __init__(self, field: str, reason: str):
        super().__init__(reason)
        self.field = field


def infer_attribute_specs(
    sample: Iterable[dict[str, object]], attributes: list[str]
) -> list[AttributeSpec]:
    values: dict[str, list[object]] = {name: [] for name in attributes}
    for record in sample:
        for name in attributes:
            value = record.get(name)
            if value is not None:
                values[name].append(value)
    return [
        AttributeSpec(name, attribute_column(name), _infer_kind(values[name]))
        for name in attributes
    ]


def _infer_kind(values: list[object]) -> AttributeKind:
    """All-numeric means numeric; so does a mostly-numeric field with real JSON numbers in it,
    where the odd text value is then a row error rather than a reason to give up on ranges."""
    if not values:
        return "string"
    if all(isinstance(v, bool) for v in values):
        return "bool"
    ints = sum(_as_int(v) is not None for v in values)
    floats = sum(_as_float(v) is not None for v in values)
    typed_numbers = any(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
    if floats == len(values) or (typed_numbers and floats * 2 > len(values)):
        return "int" if ints == floats else "float"
    return "string"


def _as_int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            return None
    return None


def _as_float(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        try:
            number = float(value)
        except OverflowError:
            return None
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


def _coerce(spec: AttributeSpec, value: object) -> AttributeValue:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None  # NaN is how dataframes write a missing number
    if spec.kind == "string":
        if isinstance(value, str | int | float | bool):
            return str(value)
        raise _Invalid(spec.field, f"expected a single value, got {_type_name(value)}")
    if spec.kind == "bool":
        if isinstance(value, bool):
            return value
        word = str(value).strip().lower()
        if word in TRUE_WORDS | FALSE_WORDS:
            return word in TRUE_WORDS
        raise _Invalid(spec.field, f"expected true or false, got {value!r}")
    converted = _as_int(value) if spec.kind == "int" else _as_float(value)
    if converted is None:
        noun = "a whole number" if spec.kind == "int" else "a number"
        raise _Invalid(spec.field, f"expected {noun}, got {value!r}")
    return converted


def _type_name(value: object) -> str:
    return {dict: "an object", list: "a list"}.get(type(value), type(value).__name__)


def _id_of(mapping: FieldMapping, data: dict[str, object]) -> str:
    field = mapping.id or "id"
    value = data.get(field)
    if value is None or (isinstance(value, str) and not value.strip()):
        raise _Invalid(field, "missing id")
    if isinstance(value, bool) or not isinstance(value, str | int):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise _Invalid(field, f"id must be text or a whole number, got {_type_name(value)}")
    item_id = str(value).strip()
    if len(item_id) > MAX_ID_LENGTH:
        raise _Invalid(field, f"id is longer than {MAX_ID_LENGTH} characters")
    return item_id


def _text_of(field: str, value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        text = value
    elif isinstance(value, int | float) and not isinstance(value, bool):
        text = str(value)
    elif isinstance(value, list) and all(isinstance(v, str | int | float) for v in value):
        text = ", ".join(str(v) for v in value)
    else:
        raise _Invalid(field, f"expected text or a list of texts, got {_type_name(value)}")
    if len(text) > MAX_TEXT_CHARS:
        raise _Invalid(field, f"text is longer than {MAX_TEXT_CHARS} characters")
    return text.strip()


def _image_refs(field: str, value: object) -> list[str]:
    if value is None or value == "":
        return []
    refs = value.split(IMAGE_LIST_SEPARATOR) if isinstance(value, str) else value
    if not isinstance(refs, list) or not all(isinstance(r, str) for r in refs):
        raise _Invalid(field, f"expected an image path or a list of paths, got {_type_name(value)}")
    return [r.strip() for r in refs if r.strip()]


def _acl_of(field: str, value: object) -> list[str] | None:
    """ACL groups: a list of names, or one name (a tenant id). Missing means "default access"."""
    if value is None:
        return None
    if isinstance(value, str | int) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, list) or not all(
        isinstance(v, str | int) and not isinstance(v, bool) for v in value
    ):
        raise _Invalid(field, f"expected a group name or a list of group names, got {value!r}")
    groups = sorted({str(v).strip() for v in value if str(v).strip()})
    if len(groups) > MAX_ACL_GROUPS:
        raise _Invalid(field, f"at most {MAX_ACL_GROUPS} ACL groups per item")
    long = [g for g in groups if len(g) > MAX_GROUP_CHARS]
    if long:
        raise _Invalid(field, f"ACL group names are at most {MAX_GROUP_CHARS} characters")
    return groups


def resolve_image(field: str, ref: str, images_root: Path | ImageRoots) -> str:
    """A URL as given (fetched later, behind the address guard) or a path inside the roots."""
    if is_url(ref):
        if len(ref) > MAX_URL_CHARS:
            raise _Invalid(field, f"image URL is longer than {MAX_URL_CHARS} characters")
        return ref
    roots = images_root if isinstance(images_root, ImageRoots) else ImageRoots.of(images_root)
    try:
        return roots.resolve(ref)
    except PathRefused as exc:
        raise _Invalid(field, str(exc)) from None


def normalise_record(
    record: RawRecord,
    mapping: FieldMapping,
    specs: list[AttributeSpec],
    images_root: Path | ImageRoots,
) -> Item | RowError:
    """Validate one row; every problem names the field so the user can fix the catalog."""
    data = record.data
    item_id: str | None = None
    if not isinstance(images_root, ImageRoots):
        images_root = ImageRoots.of(images_root)
    try:
        item_id = _id_of(mapping, data)
        title = _text_of(mapping.title, data.get(mapping.title)) if mapping.title else ""
        texts = {field: _text_of(field, data.get(field)) for field in mapping.text}
        attributes = {spec.column: _coerce(spec, data.get(spec.field)) for spec in specs}
        images = [
            resolve_image(field, ref, images_root)
            for field in mapping.images
            for ref in _image_refs(field, data.get(field))
        ]
        acl = _acl_of(mapping.acl, data.get(mapping.acl)) if mapping.acl else None
    except _Invalid as exc:
        return RowError(record.source, record.row, str(exc), field=exc.field, item_id=item_id)
    if not title and not any(texts.values()) and not images:
        return RowError(
            record.source, record.row, "row has no title, text or image to search", item_id=item_id
        )
    texts = {field: text for field, text in texts.items() if text}
    return Item(item_id, title, texts, attributes, images, record.source, record.row, acl=acl)
