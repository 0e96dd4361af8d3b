"""The API's structured ``filters`` → ``Filter`` nodes, checked against the build's attributes.

``{"category": "mugs", "colour": ["red", "blue"], "price": {"min": 5, "max": 20}}``
means ``category = 'mugs' AND colour IN ('red', 'blue') AND price BETWEEN 5 AND 20``.
Names may be the attribute's catalog field or its column; anything else (including
the store's own columns) is an unknown attribute, and the message lists only the
user's attributes. Values must fit the attribute's kind: no guessing that ``"5"``
was meant as a number, because a wrong guess silently changes what matches.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from mmsearch.filters.expr import Between, Compare, Filter, InList, Value, all_of
from mmsearch.filters.parse import INT64_MAX, MAX_IN_VALUES, FilterError
from mmsearch.manifest import AttributeDescription


def structured_filter(
    filters: Mapping[str, Any] | None, attributes: Sequence[AttributeDescription]
) -> Filter | None:
    """AND of one node per named attribute; None when nothing restricts the search.

    A value is a scalar (equality), a list of scalars (any of them; an empty list is
    ignored), or numeric bounds ``{"min", "max"}`` (a ``RangeFilter`` or a dict), both
    inclusive and either optional.
    """
    if not filters:
        return None
    by_name = {a.field: a for a in attributes} | {a.column: a for a in attributes}
    parts: list[Filter | None] = []
    for name, value in filters.items():
        spec = by_name.get(name)
        if spec is None:
            known = ", ".join(sorted(a.field for a in attributes)) or "none"
            raise FilterError(f"Unknown filter attribute '{name}'; attributes: {known}.")
        parts.append(_one(str(name), spec.column, spec.kind, value))
    return all_of(*parts)


def _one(name: str, column: str, kind: str, value: Any) -> Filter | None:
    bounds = _bounds(value)
    if bounds is not None:
        if kind not in ("int", "float"):
            raise FilterError(f"A min/max filter needs a numeric attribute; '{name}' is {kind}.")
        low, high = (_scalar(b, kind, name) if b is not None else None for b in bounds)
        if low is not None and high is not None:
            return Between(column, low, high)
        if low is not None:
            return Compare(column, ">=", low)
        if high is not None:
            return Compare(column, "<=", high)
        return None
    if isinstance(value, list | tuple):
        if not value:
            return None
        if len(value) > MAX_IN_VALUES:
            raise FilterError(f"The filter '{name}' lists more than {MAX_IN_VALUES} values.")
        return InList(column, tuple(_scalar(v, kind, name) for v in value))
    return Compare(column, "=", _scalar(value, kind, name))


def _bounds(value: Any) -> tuple[Any, Any] | None:
    """(min, max) of a RangeFilter-like value, or None for scalars and lists."""
    if isinstance(value, Mapping):
        extra = sorted(set(value) - {"min", "max"})
        if extra:
            raise FilterError(
                f"A range filter takes only 'min' and 'max', not {', '.join(map(str, extra))}."
            )
        return value.get("min"), value.get("max")
    fields = getattr(type(value), "model_fields", None)
    if isinstance(fields, dict) and {"min", "max"} <= set(fields):  # a RangeFilter
        return value.min, value.max
    return None


def _scalar(value: Any, kind: str, name: str) -> Value:
    if kind == "bool":
        if isinstance(value, bool):
            return value
    elif kind in ("int", "float"):
        if isinstance(value, int | float) and not isinstance(value, bool):
            if isinstance(value, float) and not math.isfinite(value):
                raise FilterError(f"The filter '{name}' needs finite numbers.")
            if isinstance(value, int) and abs(value) > INT64_MAX:
                raise FilterError(f"The filter value {value!r} for '{name}' is out of range.")
            return value
    elif kind == "string" and isinstance(value, str):
        return value
    described = {"bool": "true or false", "int": "a number", "float": "a number"}
    raise FilterError(
        f"The filter value {_short(value)} does not fit attribute '{name}' "
        f"({kind}: give {described.get(kind, 'text')})."
    )


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:39] + "…"
