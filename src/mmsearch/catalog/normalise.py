"""Turn raw rows into validated Items, one RowError per row that cannot be used.

Attribute types are inferred from a sample of rows (like dataframe readers do) so that
numeric attributes can be filtered with ``<`` and ``>``. A later value that does not fit
its attribute's type (text in a number column, NaN, an object) does not cost the row: the
attribute is stored as missing and the item carries a warning saying so, unless the
mapping makes the attribute required, in which case the row is an error.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from mmsearch.catalog.aliases import normalise_aliases
from mmsearch.catalog.item import AttributeKind, AttributeValue, Item, RawRecord, RowError
from mmsearch.catalog.mapping import FieldMapping, attribute_column
from mmsearch.media.paths import MAX_URL_CHARS, ImageRoots, PathRefused, is_url

__all__ = [
    "NUMERIC_SHARE",
    "AttributeKind",
    "AttributeSpec",
    "infer_attribute_specs",
    "normalise_record",
    "resolve_image",
]

TRUE_WORDS = frozenset({"true", "yes", "1"})
FALSE_WORDS = frozenset({"false", "no", "0"})
# Text a column may spell its booleans with (CSV has no other way), one pair per column.
BOOL_SPELLINGS = (("true", "false"), ("yes", "no"), ("1", "0"))
MAX_ID_LENGTH = 512
IMAGE_LIST_SEPARATOR = "|"  # several images in one CSV cell or string
MAX_TEXT_CHARS = 1_000_000
MAX_ACL_GROUPS = 64
MAX_GROUP_CHARS = 128
# A field is numeric when at least this share of its sample values are finite numbers, so
# that one stray "N/A" or "cheap" cannot turn a price column into text.
NUMERIC_SHARE = 0.9
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
_SHOWN_CHARS = 60


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
    sample: Iterable[dict[str, object]],
    attributes: list[str],
    types: dict[str, AttributeKind] | None = None,
) -> list[AttributeSpec]:
    """One spec per attribute, in order; a pinned type (``types``) wins over inference."""
    pinned = types or {}
    values: dict[str, list[object]] = {name: [] for name in attributes}
    for record in sample:
        for name in attributes:
            value = record.get(name)
            if value is not None:
                values[name].append(value)
    return [
        AttributeSpec(name, attribute_column(name), pinned.get(name) or _infer_kind(values[name]))
        for name in attributes
    ]


def _infer_kind(values: list[object]) -> AttributeKind:
    """Numeric when at least NUMERIC_SHARE of the values are finite numbers (numbers or
    numeric text); also when real (typed) numbers are the majority, as a JSON or Parquet
    number is stronger evidence than digits in text. Int when every such number is whole.
    A NaN or infinite float is a number type with no value: it marks the field as typed
    numeric but is neither counted for nor against. Bool when every value is a bool, or
    text that spells one (see _spells_booleans)."""
    typed = any(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
    values = [v for v in values if not (isinstance(v, float) and not math.isfinite(v))]
    if not values:
        return "string"
    if all(isinstance(v, bool) for v in values) or _spells_booleans(values):
        return "bool"
    floats = sum(_as_float(v) is not None for v in values)
    numeric = floats >= NUMERIC_SHARE * len(values) or (typed and floats * 2 > len(values))
    if floats == 0 or not numeric:
        return "string"
    ints = sum(_as_int(v) is not None for v in values)
    return "int" if ints == floats else "float"


def _spells_booleans(values: list[object]) -> bool:
    """Text values that are all words of one BOOL_SPELLINGS pair, in any case.

    CSV has no booleans: without this an ``in_stock`` column of ``true``/``false`` became
    text, and ``--where "in_stock"`` was refused. One pair per column, so that a column
    mixing ``yes`` and ``false`` stays text; ``1``/``0`` needs both values, so that a
    column of ``1`` (a quantity, say) stays a number."""
    if not all(isinstance(v, str) for v in values):
        return False
    words = {str(v).strip().lower() for v in values}
    for true, false in BOOL_SPELLINGS:
        if words <= {true, false} and (true != "1" or words == {true, false}):
            return True
    return False


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
        except (ValueError, OverflowError):
            return None
    else:
        return None
    return number if math.isfinite(number) else None


def _shown(value: object) -> str:
    shown = repr(value)
    return shown if len(shown) <= _SHOWN_CHARS else shown[: _SHOWN_CHARS - 3] + "..."


def _coerce(spec: AttributeSpec, value: object) -> AttributeValue:
    """The value in the attribute's kind; _Invalid says why it does not fit."""
    if isinstance(value, dict | list):
        raise _Invalid(spec.field, f"expected a single value, got {_type_name(value)}")
    if isinstance(value, float) and not math.isfinite(value):
        raise _Invalid(spec.field, f"expected a finite number, got {_shown(value)}")
    if spec.kind == "string":
        if isinstance(value, str | int | float | bool):
            return str(value)
        raise _Invalid(spec.field, f"expected a single value, got {type(value).__name__}")
    if spec.kind == "bool":
        if isinstance(value, bool):
            return value
        word = str(value).strip().lower()
        if word in TRUE_WORDS | FALSE_WORDS:
            return word in TRUE_WORDS
        raise _Invalid(spec.field, f"expected true or false, got {_shown(value)}")
    if spec.kind == "int":
        whole = int(value) if isinstance(value, float) and value.is_integer() else _as_int(value)
        if whole is not None and not INT64_MIN <= whole <= INT64_MAX:
            raise _Invalid(spec.field, f"whole number out of the 64-bit range: {_shown(value)}")
        if whole is None:
            raise _Invalid(spec.field, f"expected a whole number, got {_shown(value)}")
        return whole
    number = _as_float(value)
    if number is None:
        finite = isinstance(value, str) and _is_non_finite_word(value)
        noun = "a finite number" if finite else "a number"
        raise _Invalid(spec.field, f"expected {noun}, got {_shown(value)}")
    return number


def _is_non_finite_word(text: str) -> bool:
    try:
        return not math.isfinite(float(text.strip()))
    except ValueError:
        return False


def _is_missing(value: object) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _attributes(
    record: RawRecord, mapping: FieldMapping, specs: list[AttributeSpec], item_id: str
) -> tuple[dict[str, AttributeValue], list[RowError]]:
    """Every attribute's value, or None with a warning when it does not fit; a required
    attribute that is missing or does not fit raises instead."""
    required = set(mapping.required)
    attributes: dict[str, AttributeValue] = {}
    warnings: list[RowError] = []
    for spec in specs:
        value = record.data.get(spec.field)
        if spec.field in required and _is_missing(value):
            raise _Invalid(spec.field, "required attribute missing")
        if value is None:
            attributes[spec.column] = None
            continue
        try:
            attributes[spec.column] = _coerce(spec, value)
        except _Invalid as exc:
            if spec.field in required:
                raise _Invalid(spec.field, f"required attribute: {exc}") from None
            attributes[spec.column] = None
            warnings.append(
                RowError(
                    record.source,
                    record.row,
                    f"{exc}; stored as missing",
                    field=spec.field,
                    item_id=item_id,
                    severity="warning",
                )
            )
    return attributes, warnings


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
        attributes, warnings = _attributes(record, mapping, specs, item_id)
        images = [
            resolve_image(field, ref, images_root)
            for field in mapping.images
            for ref in _image_refs(field, data.get(field))
        ]
        acl = _acl_of(mapping.acl, data.get(mapping.acl)) if mapping.acl else None
        keys = [key for field in mapping.aliases for key in normalise_aliases(data.get(field))]
    except _Invalid as exc:
        return RowError(record.source, record.row, str(exc), field=exc.field, item_id=item_id)
    if not title and not any(texts.values()) and not images:
        return RowError(
            record.source, record.row, "row has no title, text or image to search", item_id=item_id
        )
    texts = {field: text for field, text in texts.items() if text}
    return Item(
        item_id,
        title,
        texts,
        attributes,
        images,
        record.source,
        record.row,
        acl=acl,
        aliases=list(dict.fromkeys(keys)) if mapping.aliases else None,
        warnings=[*record.warnings, *warnings],
    )
