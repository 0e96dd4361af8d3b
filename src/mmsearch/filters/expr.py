"""The filter tree: what a search may return, as typed nodes instead of query text.

Every source of a restriction (a user's ``where`` text, the API's structured
``filters``, business rules, blocked ids, the caller's permissions) becomes nodes of
this one tree, and each store compiles the tree to its own language, quoting every
value itself. No text a user typed is ever pasted into a store query, so a filter
cannot change the shape of the query around it (``1=1) OR (1=1`` is just a syntax
error), and access nodes cannot be escaped by a clever ``where``.

Nodes are frozen dataclasses: hashable (they key caches such as facets), comparable
in tests, and safe to share between threads.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

Value = str | int | float | bool
CompareOp = Literal["=", "!=", "<", "<=", ">", ">="]
COMPARE_OPS: frozenset[str] = frozenset({"=", "!=", "<", "<=", ">", ">="})


def check_value(value: object) -> None:
    """Only plain scalars may be values; non-finite numbers have no meaning in a filter."""
    if not isinstance(value, str | int | float):  # bool is an int
        raise TypeError(f"a filter value must be a string, number or boolean, not {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("a filter value must be a finite number")


@dataclass(frozen=True)
class Compare:
    """``column op value``; false or unknown (no match) when the column is NULL."""

    column: str
    op: CompareOp
    value: Value

    def __post_init__(self) -> None:
        if self.op not in COMPARE_OPS:
            raise ValueError(f"unknown comparison operator {self.op!r}")
        check_value(self.value)


@dataclass(frozen=True)
class InList:
    """``column [NOT] IN (values)``; the values are never empty."""

    column: str
    values: tuple[Value, ...]
    negated: bool = False

    def __post_init__(self) -> None:
        if not self.values:
            raise ValueError("an IN list needs at least one value")
        for value in self.values:
            check_value(value)


@dataclass(frozen=True)
class Between:
    """``column [NOT] BETWEEN low AND high`` (both bounds inclusive)."""

    column: str
    low: Value
    high: Value
    negated: bool = False

    def __post_init__(self) -> None:
        check_value(self.low)
        check_value(self.high)


@dataclass(frozen=True)
class Like:
    """``column [NOT] LIKE pattern``: ``%`` any run, ``_`` one character, ``\\`` escapes."""

    column: str
    pattern: str
    negated: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.pattern, str):
            raise TypeError("a LIKE pattern must be a string")


@dataclass(frozen=True)
class IsNull:
    """``column IS [NOT] NULL``: the only test that is never unknown."""

    column: str
    negated: bool = False


@dataclass(frozen=True)
class And:
    parts: tuple[Filter, ...]


@dataclass(frozen=True)
class Or:
    parts: tuple[Filter, ...]


@dataclass(frozen=True)
class Not:
    part: Filter


ACL_COLUMN = "acl"
"""The column holding an item's ACL groups: the one column a ``Visible`` node reads,
named here once for every store, the Python evaluator and the table schema."""


@dataclass(frozen=True)
class Visible:
    """What a caller may see: items whose ``acl`` shares a group with ``groups``.

    An item with a NULL ``acl`` follows the collection's default access
    (``default_public``); an empty ``acl`` list means nobody but unrestricted callers.
    Unrestricted callers (admins, the local operator) carry no ``Visible`` node at all.
    The node is never unknown, so ``Not(Visible(...))`` means exactly "hidden".
    """

    groups: frozenset[str]
    default_public: bool

    def __post_init__(self) -> None:
        if not isinstance(self.groups, frozenset):
            object.__setattr__(self, "groups", frozenset(self.groups))
        for group in self.groups:
            if not isinstance(group, str):
                raise TypeError(f"an ACL group must be a string, not {group!r}")


Filter = Compare | InList | Between | Like | IsNull | And | Or | Not | Visible


def all_of(*parts: Filter | None) -> Filter | None:
    """AND of the given filters, skipping None; nested ANDs are flattened."""
    flat: list[Filter] = []
    for part in parts:
        if part is None:
            continue
        if isinstance(part, And):
            flat.extend(part.parts)
        else:
            flat.append(part)
    if not flat:
        return None
    return flat[0] if len(flat) == 1 else And(tuple(flat))


def columns_of(node: Filter) -> set[str]:
    """Every column the filter reads (``Visible`` reads the store's ``acl`` column)."""
    if isinstance(node, And | Or):
        return set().union(*(columns_of(part) for part in node.parts))
    if isinstance(node, Not):
        return columns_of(node.part)
    if isinstance(node, Visible):
        return set()
    return {node.column}


def size_of(node: Filter) -> int:
    """Number of nodes (values of an IN list are not nodes)."""
    if isinstance(node, And | Or):
        return 1 + sum(size_of(part) for part in node.parts)
    if isinstance(node, Not):
        return 1 + size_of(node.part)
    return 1


def depth_of(node: Filter) -> int:
    if isinstance(node, And | Or):
        return 1 + max((depth_of(part) for part in node.parts), default=0)
    if isinstance(node, Not):
        return 1 + depth_of(node.part)
    return 1
