"""A pure-Python evaluator of the filter tree, with SQL's three-valued logic.

It is the reference the stores are tested against (every compiled filter must select
exactly the rows this function accepts), and it checks a filter on rows that were
already fetched. NULL rules follow SQL: a comparison with NULL is unknown, ``NOT``
of unknown is unknown, ``AND``/``OR`` short-circuit on false/true, and only a
definite true is a match. ``LIKE`` matches the whole value, case-sensitively: ``%``
is any run of characters (newlines too), ``_`` one character, and a backslash makes
the next character literal (a trailing backslash is itself literal), as in LanceDB.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from mmsearch.filters.expr import (
    ACL_COLUMN,
    And,
    Between,
    Compare,
    Filter,
    InList,
    IsNull,
    Like,
    Not,
    Or,
    Visible,
)


def matches(filter: Filter, row: dict[str, Any]) -> bool:
    """Whether ``row`` passes ``filter`` (unknown is not a match)."""
    return _truth(filter, row) is True


def _truth(node: Filter, row: dict[str, Any]) -> bool | None:
    if isinstance(node, And):
        results = [_truth(part, row) for part in node.parts]
        if any(r is False for r in results):
            return False
        return True if all(r is True for r in results) else None
    if isinstance(node, Or):
        results = [_truth(part, row) for part in node.parts]
        if any(r is True for r in results):
            return True
        return False if all(r is False for r in results) else None
    if isinstance(node, Not):
        inner = _truth(node.part, row)
        return None if inner is None else not inner
    if isinstance(node, Visible):
        acl = row.get(ACL_COLUMN)
        if acl is None:
            return node.default_public
        return bool(node.groups.intersection(acl))
    if isinstance(node, IsNull):
        return (row.get(node.column) is None) != node.negated
    value = row.get(node.column)
    if value is None:
        return None
    try:
        if isinstance(node, Compare):
            return _compare(value, node.op, node.value)
        if isinstance(node, InList):
            return any(_equal(value, v) for v in node.values) != node.negated
        if isinstance(node, Between):
            inside = bool(node.low <= value <= node.high)  # type: ignore[operator]
            return inside != node.negated
        if isinstance(node, Like):
            found = _like_regex(node.pattern).fullmatch(str(value)) is not None
            return found != node.negated
    except TypeError:  # a value of another type than the column's: SQL would refuse it
        return None
    raise TypeError(f"not a filter node: {node!r}")


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) != isinstance(b, bool):
        return False
    return bool(a == b)


def _compare(value: Any, op: str, literal: Any) -> bool:
    if op == "=":
        return _equal(value, literal)
    if op == "!=":
        return not _equal(value, literal)
    if op == "<":
        return bool(value < literal)
    if op == "<=":
        return bool(value <= literal)
    if op == ">":
        return bool(value > literal)
    return bool(value >= literal)


@lru_cache(maxsize=1024)
def _like_regex(pattern: str) -> re.Pattern[str]:
    parts: list[str] = []
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if char == "\\" and index + 1 < len(pattern):
            parts.append(re.escape(pattern[index + 1]))
            index += 2
            continue
        if char == "%":
            parts.append(".*")
        elif char == "_":
            parts.append(".")
        else:
            parts.append(re.escape(char))
        index += 1
    return re.compile("".join(parts), re.DOTALL)
