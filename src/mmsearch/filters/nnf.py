"""What every store's filter compiler shares: the walk in negation normal form.

Each store (LanceDB SQL, Milvus expressions) writes the same tree the same way:
``NOT`` pushed down to the leaves, each of which has an exact negated form, and every
comparison on a nullable column guarded by ``x is not null``, so that every leaf is
two-valued. With no ``NOT`` above a nullable leaf, neither an engine's optimiser
rewrites (LanceDB's IN-list rewrites) nor its own NULL semantics under ``NOT`` (Milvus
versions disagree) can change which rows match. A store supplies the words and the
leaves; the walk, the integer-literal rules and the column kinds are here, once.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import pyarrow as pa

from mmsearch.filters.expr import (
    And,
    Between,
    Compare,
    Filter,
    InList,
    IsNull,
    Like,
    Not,
    Or,
    Value,
    Visible,
)

INT64_MAX = 2**63 - 1  # -2**63 cannot be written as a literal; bounds rewrite around it
CANNOT_APPLY = "The filter cannot be applied to this collection."
NEGATED_OP = {"=": "!=", "!=": "=", "<": ">=", "<=": ">", ">": "<=", ">=": "<"}


class Unusable(Exception):
    """A node that does not fit the table; the detail goes to the debug log only."""


class NnfCompiler(ABC):
    """The tree walk; subclasses write the store's words, columns, values and leaves."""

    AND = "AND"
    OR = "OR"
    TRUE = "true"
    FALSE = "false"
    IS_NULL = "IS NULL"
    IS_NOT_NULL = "IS NOT NULL"

    def __init__(self, schema: pa.Schema):
        self.schema = schema

    def node(self, node: Filter, negate: bool = False) -> str:
        if isinstance(node, And | Or):
            conjunction = isinstance(node, And) != negate  # De Morgan under negation
            if not node.parts:
                return self.TRUE if conjunction else self.FALSE
            word = self.AND if conjunction else self.OR
            return "(" + f") {word} (".join(self.node(p, negate) for p in node.parts) + ")"
        if isinstance(node, Not):
            return self.node(node.part, not negate)
        if isinstance(node, Visible):
            return self.visible(node, negate)
        if isinstance(node, IsNull):
            column, _ = self.column(node.column)
            return f"{column} {self.IS_NOT_NULL if node.negated != negate else self.IS_NULL}"
        return self.guarded(node.column, self.leaf(node, negate))

    def leaf(self, node: Filter, negate: bool) -> str:
        if isinstance(node, Compare):
            op = NEGATED_OP[node.op] if negate else node.op
            return self.compare(node.column, op, node.value)
        if isinstance(node, InList):
            return self.in_list(node, node.negated != negate)
        if isinstance(node, Between):
            return self.between(node, node.negated != negate)
        if isinstance(node, Like):
            column, kind = self.column(node.column)
            if kind != "string":
                raise Unusable(f"LIKE on the {kind} column {node.column}")
            return self.like(column, node.pattern, node.negated != negate)
        raise Unusable(f"unknown node {node!r}")

    @abstractmethod
    def column(self, name: str) -> tuple[str, str]:
        """The column as the store writes it, and its kind (string, int, float, bool)."""

    @abstractmethod
    def guarded(self, name: str, expr: str) -> str:
        """``expr`` made false (not unknown) for a NULL in a nullable column."""

    @abstractmethod
    def compare(self, name: str, op: str, value: Value) -> str: ...

    @abstractmethod
    def in_list(self, node: InList, negated: bool) -> str: ...

    @abstractmethod
    def between(self, node: Between, negated: bool) -> str: ...

    @abstractmethod
    def like(self, column: str, pattern: str, negated: bool) -> str: ...

    @abstractmethod
    def visible(self, node: Visible, negate: bool) -> str:
        """Visible, or (negated) hidden; neither is ever unknown."""


def column_kind(kind: pa.DataType) -> str | None:
    """The filter kind of an Arrow type; None for columns filters cannot name."""
    if pa.types.is_boolean(kind):
        return "bool"
    if pa.types.is_integer(kind):
        return "int"
    if pa.types.is_floating(kind):
        return "float"
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return "string"
    return None


def exact_int(value: Value) -> bool:
    """Whether an integer column can take this number as a literal as it is."""
    if isinstance(value, bool | str | float):
        return False
    return -INT64_MAX <= value <= INT64_MAX


def as_int_literal(value: Value) -> Value | None:
    """An IN-list value for an integer column; None when no integer can equal it."""
    if isinstance(value, bool | str):
        return value  # refused when rendered, with the detail logged
    if isinstance(value, float):
        if not value.is_integer():
            return None
        value = int(value)
    return value if -INT64_MAX <= value <= INT64_MAX else None
