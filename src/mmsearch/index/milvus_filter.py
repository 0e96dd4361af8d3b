"""Compile the filter tree to a Milvus boolean expression (values as template parameters).

The tree is written the way ``lance_filter`` writes it, for the same reason: in
negation normal form, with every comparison on a nullable column guarded by
``x is not null``, every leaf is two-valued. Milvus versions disagree on how NULL
behaves under ``not`` (Milvus Lite 3.2 counts ``not (x > 1)`` as false for a NULL
``x``, but ``not array_contains_any(acl, ...)`` as true for a NULL ``acl``); with no
``not`` above a nullable leaf, none of that can change which rows match.

Values are never pasted as user text: with ``templated=True`` (Milvus ≥ 2.5) every
value is a ``{vN}`` placeholder and travels in ``filter_params``; servers without
expression templates (Milvus Lite) get literals rendered here from typed values.
``LIKE`` patterns are always literals (templates cannot carry them) and are refused
when they need a literal ``%``, ``_`` or backslash: Milvus versions escape those
differently, so no exact pattern exists for them.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

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
# Constant truth values written on the primary key (never NULL, every string >= ""),
# because older Milvus parsers refuse a bare ``true``/``false`` as a whole expression.
ALWAYS = 'id >= ""'
NEVER = 'id < ""'
_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_MILVUS_OP = {"=": "==", "!=": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}


@dataclass(frozen=True)
class MilvusExpr:
    """A filter expression and the values of its ``{vN}`` placeholders."""

    text: str
    params: dict[str, Any] = field(default_factory=dict)


def to_milvus_expr(filter: Filter, schema: pa.Schema, *, templated: bool = True) -> MilvusExpr:
    """The expression for ``filter`` on rows of ``schema``; QueryError if it does not fit."""
    compiler = _Compiler(schema, templated)
    try:
        text = compiler.node(filter)
    except Unusable as exc:
        log.debug("filter not applicable on Milvus: %s (filter %r)", exc, filter)
        raise QueryError(CANNOT_APPLY) from None
    return MilvusExpr(text, compiler.params)


def quote_string(value: str) -> str:
    """A Milvus string literal (double quotes, backslash escapes)."""
    out = []
    for char in value:
        if char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif ord(char) < 32:
            raise Unusable("a control character in a string value")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


class _Compiler(NnfCompiler):
    AND = "and"
    OR = "or"
    TRUE = ALWAYS
    FALSE = NEVER
    IS_NULL = "is null"
    IS_NOT_NULL = "is not null"

    def __init__(self, schema: pa.Schema, templated: bool):
        super().__init__(schema)
        self.templated = templated
        self.params: dict[str, Any] = {}

    def like(self, column: str, pattern: str, negated: bool) -> str:
        like = f"{column} like {quote_string(_like_pattern(pattern))}"
        return f"not ({like})" if negated else like

    def guarded(self, name: str, expr: str) -> str:
        """``expr`` made false (not unknown) for a NULL in a nullable column."""
        if not self.schema.field(name).nullable or expr in (NEVER, f"{name} is not null"):
            return expr
        return f"({name} is not null and {expr})"

    def column(self, name: str) -> tuple[str, str]:
        if not IDENTIFIER.match(name) or name not in self.schema.names:
            raise Unusable(f"no column {name!r}")
        kind = column_kind(self.schema.field(name).type)
        if kind is None:
            raise Unusable(f"column {name!r} is not a scalar column")
        return name, kind

    def value(self, value: Value | list[Value], kind: str) -> str:
        """A placeholder (templated) or a literal for a value already checked to fit."""
        if self.templated:
            name = f"v{len(self.params)}"
            self.params[name] = value
            return "{" + name + "}"
        if isinstance(value, list):
            return "[" + ", ".join(self.value(v, kind) for v in value) + "]"
        if isinstance(value, str):
            return quote_string(value)
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, float):
            text = format(Decimal(repr(value)), "f")
            return text if "." in text else text + ".0"
        return str(value)

    def typed(self, value: Value, kind: str) -> Value:
        """``value`` as the column's kind takes it, or Unusable."""
        if kind == "string" and isinstance(value, str):
            return value
        if kind == "bool" and isinstance(value, bool):
            return value
        if kind in ("int", "float") and not isinstance(value, bool | str):
            if isinstance(value, float) and not math.isfinite(value):
                raise Unusable("a non-finite number")
            if kind == "float":
                return float(value)
            if abs(value) > INT64_MAX:
                raise Unusable(f"{value} is out of the int64 range")
            return int(value)
        raise Unusable(f"the value {value!r} does not fit a {kind} column")

    def compare(self, name: str, op: str, value: Value) -> str:
        column, kind = self.column(name)
        if kind == "int" and not isinstance(value, bool | str) and not exact_int(value):
            return self.int_bound(column, op, value)
        if kind == "bool" and op not in ("=", "!="):
            raise Unusable("an order comparison on a boolean column")
        return f"{column} {_MILVUS_OP[op]} {self.value(self.typed(value, kind), kind)}"

    def in_list(self, node: InList, negated: bool) -> str:
        column, kind = self.column(node.column)
        values: list[Value] = list(node.values)
        if kind == "int":
            values = [v for v in map(as_int_literal, values) if v is not None]
            if not values:  # nothing an integer can equal: never (or, negated, always)
                return f"{column} is not null" if negated else NEVER
        typed = list(dict.fromkeys(self.typed(v, kind) for v in values))
        return f"{column} {'not in' if negated else 'in'} {self.value(typed, kind)}"

    def between(self, node: Between, negated: bool) -> str:
        self.column(node.column)
        below = self.compare(node.column, "<" if negated else ">=", node.low)
        above = self.compare(node.column, ">" if negated else "<=", node.high)
        return f"({below} {'or' if negated else 'and'} {above})"

    def visible(self, node: Visible, negate: bool) -> str:
        """Visible, or (negated) hidden; neither is ever unknown."""
        public = node.default_public
        if ACL_COLUMN not in self.schema.names:
            return ALWAYS if public != negate else NEVER
        kind = self.schema.field(ACL_COLUMN).type
        if not (pa.types.is_list(kind) or pa.types.is_large_list(kind)):
            raise Unusable("the acl column is not a list")
        shares = ""
        if node.groups:
            groups = self.value(sorted(node.groups), "string")
            shares = f"array_contains_any({ACL_COLUMN}, {groups})"
        if not negate:
            parts = [f"{ACL_COLUMN} is null"] if public else []
            if shares:
                parts.append(f"({ACL_COLUMN} is not null and {shares})")
            return "(" + " or ".join(parts) + ")" if parts else NEVER
        if not shares:
            return f"{ACL_COLUMN} is not null" if public else ALWAYS
        hidden = f"({ACL_COLUMN} is not null and not ({shares}))"
        return hidden if public else f"({ACL_COLUMN} is null or {hidden})"

    def int_bound(self, column: str, op: str, value: int | float) -> str:
        """``column op value`` for an integer column and a fractional or huge number."""
        if isinstance(value, float) and not math.isfinite(value):
            raise Unusable("a non-finite number")
        always, never = f"{column} is not null", NEVER
        integral = float(value).is_integer() if isinstance(value, float) else True
        if op in ("=", "!="):
            if integral and -INT64_MAX <= value <= INT64_MAX:
                return f"{column} {_MILVUS_OP[op]} {self.value(int(value), 'int')}"
            return always if op == "!=" else never
        if op in ("<", "<="):
            bound = math.ceil(value) - 1 if op == "<" else math.floor(value)
            if bound >= INT64_MAX:
                return always
            if bound < -INT64_MAX:
                return never if bound < -INT64_MAX - 1 else f"{column} < {-INT64_MAX}"
            return f"{column} <= {self.value(bound, 'int')}"
        bound = math.floor(value) + 1 if op == ">" else math.ceil(value)
        if bound <= -INT64_MAX - 1:
            return always
        if bound > INT64_MAX:
            return never
        return f"{column} >= {self.value(bound, 'int')}"


def _like_pattern(pattern: str) -> str:
    """The pattern with the evaluator's escapes resolved; Unusable when a literal
    ``%``, ``_`` or backslash would have to be escaped for Milvus."""
    out: list[str] = []
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if char == "\\":
            literal = pattern[index + 1] if index + 1 < len(pattern) else "\\"
            if literal in "%_\\":
                raise Unusable("a LIKE pattern with an escaped wildcard or backslash")
            out.append(literal)
            index += 2
            continue
        out.append(char)
        index += 1
    return "".join(out)
