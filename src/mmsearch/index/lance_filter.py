"""Compile the filter tree to a LanceDB (DataFusion SQL) predicate.

This is the only place where filter text for LanceDB is written, and it writes it
from typed nodes: every column name is checked against the table's schema and a
plain-identifier pattern (then quoted with backticks), every value is rendered here
(strings with quotes doubled, finite numbers, ``true``/``false``), so nothing a user
typed can reach the store as syntax.

Three LanceDB facts shape the output (checked against LanceDB 0.40):

- An integer column refuses a float literal (``qty < 2.5`` fails), so comparisons of
  integer columns with fractional or out-of-range numbers are rewritten to exact
  integer bounds (``qty < 2.5`` → ``qty <= 2``; ``qty = 2.5`` → ``false``).
- ``Visible`` uses ``array_has_any(acl, [...])``; its negation (hidden) is guarded by
  ``acl IS NOT NULL`` so that it is never unknown; a NULL ``acl`` follows
  ``default_public``. A table without an ``acl`` column has only default access.
- Its optimiser rewrites IN lists as if columns were never NULL:
  ``x NOT IN ('a') OR x NOT IN ('b')`` becomes ``true`` (NULL rows included) and
  ``x IN (1) AND NOT (x IN (1))`` becomes ``false`` (wrong under an outer ``NOT``).
  The output is therefore written so that no such rewrite can change the rows: in
  negation normal form, with every comparison on a nullable column guarded by
  ``x IS NOT NULL`` (see ``_Compiler``).

``LIKE`` patterns are passed as SQL strings only: ``%`` and ``_`` keep their meaning
and a backslash escapes the next character, as LanceDB reads them.
"""

from __future__ import annotations

import logging
import math
import re

import pyarrow as pa

from mmsearch.errors import QueryError
from mmsearch.filters.expr import ACL_COLUMN, Between, Filter, InList, Value, Visible
from mmsearch.filters.nnf import (
    CANNOT_APPLY,
    INT64_MAX,
    NnfCompiler,
    Unusable,
    as_int_literal,
    column_kind,
    exact_int,
)

log = logging.getLogger("mmsearch.index")

IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def to_lance_sql(filter: Filter, schema: pa.Schema) -> str:
    """The predicate for ``filter`` on a table of ``schema``; QueryError if it does not fit."""
    try:
        return _Compiler(schema).node(filter)
    except Unusable as exc:
        log.debug("filter not applicable: %s (filter %r)", exc, filter)
        raise QueryError(CANNOT_APPLY) from None


def quote_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


class _Compiler(NnfCompiler):
    """Writes the tree so that LanceDB's rewrites cannot change which rows match.

    1. Negation normal form: ``NOT`` is pushed down to the leaves, each of which has an
       exact negated form in SQL's three-valued logic (``a < 1`` ↔ ``a >= 1``, ``IN`` ↔
       ``NOT IN``...), so no ``NOT`` stands above an AND/OR.
    2. Two-valued leaves: a comparison on a nullable column ``x`` is written
       ``(x IS NOT NULL AND ...)``, false instead of unknown for a NULL. Without outer
       negations a row matches exactly when the same leaves are true, so this changes
       no answer, and rewrites that assume ``x`` is not NULL become sound.
    """

    def guarded(self, name: str, expr: str) -> str:
        """``expr`` made false (not unknown) for a NULL in a nullable column."""
        column = f"`{name}`"
        if not self.schema.field(name).nullable or expr in ("false", _always(column)):
            return expr
        return f"({column} IS NOT NULL AND {expr})"

    # --- columns and values ----------------------------------------------------------

    def column(self, name: str) -> tuple[str, str]:
        """The quoted column and its kind (string, int, float, bool)."""
        if not IDENTIFIER.match(name) or name not in self.schema.names:
            raise Unusable(f"no column {name!r}")
        kind = column_kind(self.schema.field(name).type)
        if kind is None:
            raise Unusable(f"column {name!r} is not a scalar column")
        return f"`{name}`", kind

    @staticmethod
    def value(value: Value, kind: str) -> str:
        if kind == "string" and isinstance(value, str):
            return quote_string(value)
        if kind == "bool" and isinstance(value, bool):
            return "true" if value else "false"
        if kind in ("int", "float") and not isinstance(value, bool | str):
            if isinstance(value, float):
                if not math.isfinite(value):
                    raise Unusable("a non-finite number")
                return repr(value)
            if kind == "int" and abs(value) > INT64_MAX:
                raise Unusable(f"{value} is out of the int64 range")
            return str(int(value))
        raise Unusable(f"the value {value!r} does not fit a {kind} column")

    # --- leaves ----------------------------------------------------------------------

    def like(self, column: str, pattern: str, negated: bool) -> str:
        return f"{column} {'NOT LIKE' if negated else 'LIKE'} {quote_string(pattern)}"

    def compare(self, name: str, op: str, value: Value) -> str:
        column, kind = self.column(name)
        if kind == "int" and not isinstance(value, bool | str) and not exact_int(value):
            return _int_bound(column, op, value)
        return f"{column} {op} {self.value(value, kind)}"

    def in_list(self, node: InList, negated: bool) -> str:
        column, kind = self.column(node.column)
        values: list[Value] = list(node.values)
        if kind == "int":
            values = [v for v in map(as_int_literal, values) if v is not None]
            if not values:  # nothing an integer can equal: never (or, negated, always)
                return _always(column) if negated else _never(column)
        rendered = ", ".join(self.value(v, kind) for v in dict.fromkeys(values))
        return f"{column} {'NOT ' if negated else ''}IN ({rendered})"

    def between(self, node: Between, negated: bool) -> str:
        column, kind = self.column(node.column)
        if kind == "int" and not all(exact_int(v) for v in (node.low, node.high)):
            # c BETWEEN low AND high is (c >= low AND c <= high); negated, (c < low OR c > high)
            below = self.compare(node.column, "<" if negated else ">=", node.low)
            above = self.compare(node.column, ">" if negated else "<=", node.high)
            return f"({below} {'OR' if negated else 'AND'} {above})"
        low, high = self.value(node.low, kind), self.value(node.high, kind)
        return f"{column} {'NOT ' if negated else ''}BETWEEN {low} AND {high}"

    def visible(self, node: Visible, negate: bool) -> str:
        """Visible, or (negated) hidden; neither is ever unknown."""
        public = node.default_public
        if ACL_COLUMN not in self.schema.names:
            return "true" if public != negate else "false"
        kind = self.schema.field(ACL_COLUMN).type
        if not (pa.types.is_list(kind) or pa.types.is_large_list(kind)):
            raise Unusable("the acl column is not a list")
        acl = f"`{ACL_COLUMN}`"
        groups = ", ".join(quote_string(g) for g in sorted(node.groups))
        shares = f"array_has_any({acl}, [{groups}])"
        if not negate:
            # Unguarded on purpose: in negation normal form an unknown (NULL acl) leaf
            # drops the row exactly like false, and the guard costs LanceDB ~5% per query.
            parts = [f"{acl} IS NULL"] if public else []
            if node.groups:
                parts.append(shares)
            return "(" + " OR ".join(parts) + ")" if parts else "false"
        # Hidden: a listed ACL without any of the groups, or no ACL when the default is private.
        if not node.groups:
            return f"{acl} IS NOT NULL" if public else "true"
        if public:
            return f"({acl} IS NOT NULL AND NOT {shares})"
        return f"({acl} IS NULL OR NOT {shares})"


def _never(column: str) -> str:
    """A comparison no integer satisfies (leaves are two-valued: NULL is false too)."""
    return "false"


def _always(column: str) -> str:
    """A comparison every integer satisfies: true unless the value is NULL."""
    return f"{column} IS NOT NULL"


def _int_bound(column: str, op: str, value: int | float) -> str:
    """``column op value`` for an integer column and a fractional or huge number, exactly."""
    if isinstance(value, float) and not math.isfinite(value):
        raise Unusable("a non-finite number")
    integral = float(value).is_integer() if isinstance(value, float) else True
    if op in ("=", "!="):
        if integral and -INT64_MAX <= value <= INT64_MAX:
            return f"{column} {op} {int(value)}"
        return _always(column) if op == "!=" else _never(column)
    if op == "<":
        return _at_most(column, math.ceil(value) - 1)
    if op == "<=":
        return _at_most(column, math.floor(value))
    if op == ">":
        return _at_least(column, math.floor(value) + 1)
    return _at_least(column, math.ceil(value))


def _at_most(column: str, bound: int) -> str:
    if bound >= INT64_MAX:
        return _always(column)
    if bound < -INT64_MAX:
        return f"{column} < {-INT64_MAX}" if bound == -INT64_MAX - 1 else _never(column)
    return f"{column} <= {bound}"


def _at_least(column: str, bound: int) -> str:
    if bound <= -INT64_MAX - 1:
        return _always(column)
    if bound > INT64_MAX:
        return _never(column)
    return f"{column} >= {bound}"
