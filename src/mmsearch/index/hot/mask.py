"""The filter tree as a boolean row mask over an in-memory Arrow table.

The hot index (``index/hot``) applies the same ``mmsearch.filters`` trees as the
durable store, ACL nodes included, but in memory: each tree becomes a NumPy mask of
the rows it accepts, used as the prefilter of the vector and keyword searches.

Semantics are ``filters/evaluate.py``'s (SQL three-valued logic), vectorised: every
node yields two masks, rows where it is definitely true and rows where it is
definitely false (neither: unknown, as a comparison with NULL). ``AND`` is true where
all parts are true and false where any is false, ``OR`` the reverse, ``NOT`` swaps
them, and a row matches only where the whole tree is true. Leaves are computed with
``pyarrow.compute``; integer columns compared with fractional numbers use exact
integer bounds (as ``lance_filter`` writes them), so a row is accepted exactly when
the reference evaluator accepts it.

Which trees are applicable is the durable store's decision, not this module's: the
reader first compiles the tree for the store (``to_lance_sql``), so a filter naming an
unknown column or a value of the wrong type is the same ``QueryError`` on both paths.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable
from threading import Lock
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as arrow_compute

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
    Value,
    Visible,
)
from mmsearch.filters.nnf import INT64_MAX, column_kind

# pyarrow.compute defines its kernels at import time, so pyright cannot see them.
pc: Any = arrow_compute

Truth = tuple[np.ndarray, np.ndarray]  # (definitely true, definitely false) per row
MASK_CACHE_SIZE = 256  # trees repeat (a caller's ACL node, moderation): masks are reused


class Unresident(Exception):
    """The tree names a column the hot index does not hold: the durable store answers."""


class AclIndex:
    """The ``acl`` column inverted: rows per group, and rows without an ACL (NULL).

    A ``Visible`` node is then a union of a few precomputed row sets instead of a test
    of every row's list."""

    def __init__(self, acl: pa.ChunkedArray | pa.Array, rows: int):
        column = acl.combine_chunks() if isinstance(acl, pa.ChunkedArray) else acl
        self.rows = rows
        self.null = np.asarray(column.is_null().to_numpy(zero_copy_only=False), dtype=bool)
        flat = pc.list_flatten(column)
        parents = np.asarray(pc.list_parent_indices(column).to_numpy(), dtype=np.int64)
        self.groups: dict[str, np.ndarray] = {}
        if len(flat):
            encoded = (
                pc.dictionary_encode(flat).combine_chunks()
                if isinstance(flat, pa.ChunkedArray)
                else pc.dictionary_encode(flat)
            )
            codes = np.asarray(encoded.indices.to_numpy(zero_copy_only=False))
            names = encoded.dictionary.to_pylist()
            order = np.argsort(codes, kind="stable")
            bounds = np.searchsorted(codes[order], np.arange(len(names) + 1))
            for code, name in enumerate(names):
                if name is not None:
                    self.groups[name] = np.unique(parents[order[bounds[code] : bounds[code + 1]]])

    def visible(self, node: Visible) -> np.ndarray:
        mask = self.null.copy() if node.default_public else np.zeros(self.rows, dtype=bool)
        for group in node.groups:
            rows = self.groups.get(group)
            if rows is not None:
                mask[rows] = True
        return mask


class MaskCompiler:
    """Masks for the rows of one immutable table (one version of a build)."""

    def __init__(self, table: pa.Table):
        self.table = table
        self.rows = table.num_rows
        has_acl = ACL_COLUMN in table.schema.names
        self._acl = AclIndex(table[ACL_COLUMN], self.rows) if has_acl else None
        self._cache: OrderedDict[Filter, np.ndarray] = OrderedDict()
        self._lock = Lock()

    def mask(self, filter: Filter, check: Callable[[Filter], object] | None = None) -> np.ndarray:
        """The rows ``filter`` accepts (unknown is not accepted); cached per tree.
        ``check`` vets a tree before its first use (it raises for one not to apply)."""
        with self._lock:
            found = self._cache.get(filter)
            if found is not None:
                self._cache.move_to_end(filter)
                return found
        if check is not None:
            check(filter)
        true, _ = self._truth(filter)
        true.setflags(write=False)
        with self._lock:
            self._cache[filter] = true
            while len(self._cache) > MASK_CACHE_SIZE:
                self._cache.popitem(last=False)
        return true

    # --- the tree ----------------------------------------------------------------------

    def _truth(self, node: Filter) -> Truth:
        if isinstance(node, And | Or):
            parts = [self._truth(part) for part in node.parts]
            if not parts:  # an empty AND is true, an empty OR false (as nnf.py writes them)
                every = np.ones(self.rows, dtype=bool)
                return (every, ~every) if isinstance(node, And) else (~every, every)
            trues = np.logical_and.reduce if isinstance(node, And) else np.logical_or.reduce
            falses = np.logical_or.reduce if isinstance(node, And) else np.logical_and.reduce
            return trues([t for t, _ in parts]), falses([f for _, f in parts])
        if isinstance(node, Not):
            true, false = self._truth(node.part)
            return false, true
        if isinstance(node, Visible):
            if self._acl is None:  # no acl column: only the default access
                every = np.full(self.rows, node.default_public, dtype=bool)
            else:
                every = self._acl.visible(node)
            return every, ~every
        if isinstance(node, IsNull):
            null = np.asarray(self._column(node.column).is_null().to_numpy(zero_copy_only=False))
            true = ~null if node.negated else null
            return true, ~true
        if isinstance(node, Compare):
            return self._compare(node.column, node.op, node.value)
        if isinstance(node, InList):
            return self._in_list(node)
        if isinstance(node, Between):
            inside = And(
                (Compare(node.column, ">=", node.low), Compare(node.column, "<=", node.high))
            )
            true, false = self._truth(inside)
            return (false, true) if node.negated else (true, false)
        if isinstance(node, Like):
            column = self._column(node.column)
            found = pc.match_substring_regex(column, pattern=like_to_re2(node.pattern))
            true, false = _two_valued(found)
            return (false, true) if node.negated else (true, false)
        raise TypeError(f"not a filter node: {node!r}")

    def _column(self, name: str) -> pa.Array:
        if name not in self.table.schema.names:
            raise Unresident(name)
        column = self.table[name]
        return column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column

    # --- leaves ------------------------------------------------------------------------

    def _compare(self, name: str, op: str, value: Value) -> Truth:
        column = self._column(name)
        kind = column_kind(column.type)
        valid = np.asarray(column.is_valid().to_numpy(zero_copy_only=False))
        if kind == "int" and not isinstance(value, bool | str):
            bound = _int_bound(op, value)
            if isinstance(bound, bool):  # every integer (or none) satisfies it
                return (valid, np.zeros_like(valid)) if bound else (np.zeros_like(valid), valid)
            op, value = bound
        elif kind == "float" and isinstance(value, int) and not isinstance(value, bool):
            bound = _float_bound(op, value)
            if isinstance(bound, bool):
                return (valid, np.zeros_like(valid)) if bound else (np.zeros_like(valid), valid)
            op, value = bound
        scalar = pa.scalar(value, type=column.type)
        result = _OPS[op](column, scalar)
        return _two_valued(result)

    def _in_list(self, node: InList) -> Truth:
        column = self._column(node.column)
        kind = column_kind(column.type)
        values: list[Value] = list(node.values)
        if kind == "int":
            values = [_as_int(v) for v in values if _as_int(v) is not None]  # type: ignore[misc]
        elif kind == "float":  # an integer no double equals is left out
            values = [v for v in values if not isinstance(v, int) or float(v) == v]
        valid = np.asarray(column.is_valid().to_numpy(zero_copy_only=False))
        if values:
            found = pc.is_in(column, value_set=pa.array(values, type=column.type))
            inside = np.asarray(found.fill_null(False).to_numpy(zero_copy_only=False)) & valid
        else:
            inside = np.zeros(self.rows, dtype=bool)
        outside = valid & ~inside
        return (outside, inside) if node.negated else (inside, outside)


_OPS = {
    "=": pc.equal,
    "!=": pc.not_equal,
    "<": pc.less,
    "<=": pc.less_equal,
    ">": pc.greater,
    ">=": pc.greater_equal,
}


def _two_valued(result: pa.Array | pa.ChunkedArray) -> Truth:
    """A boolean Arrow result (NULL = unknown) as (true, false) masks."""
    if isinstance(result, pa.ChunkedArray):
        result = result.combine_chunks()
    valid = np.asarray(result.is_valid().to_numpy(zero_copy_only=False))
    values = np.asarray(result.fill_null(False).to_numpy(zero_copy_only=False), dtype=bool)
    return values & valid, valid & ~values


def _as_int(value: Value) -> int | None:
    """An IN-list value as an integer an int64 column can equal, else None."""
    if isinstance(value, bool | str):
        return None
    if isinstance(value, float):
        if not value.is_integer():
            return None
        value = int(value)
    return value if -INT64_MAX - 1 <= value <= INT64_MAX else None


def _int_bound(op: str, value: int | float) -> tuple[str, int] | bool:
    """``x op value`` for an int64 ``x``, as an exact integer comparison, or True/False
    where every (or no) integer satisfies it."""
    integral = isinstance(value, int) or float(value).is_integer()
    if op in ("=", "!="):
        if integral and -INT64_MAX - 1 <= value <= INT64_MAX:
            return op, int(value)
        return op == "!="
    if op in ("<", "<="):
        bound = math.ceil(value) - 1 if op == "<" else math.floor(value)
        if bound >= INT64_MAX:
            return True
        return ("<=", bound) if bound >= -INT64_MAX - 1 else False
    bound = math.floor(value) + 1 if op == ">" else math.ceil(value)
    if bound <= -INT64_MAX - 1:
        return True
    return (">=", bound) if bound <= INT64_MAX else False


def _float_bound(op: str, value: int) -> tuple[str, float] | bool:
    """``x op value`` for a float64 ``x`` and an integer, exactly (as Python compares
    them), also for integers no double represents: against the nearest doubles."""
    nearest = float(value)
    if nearest == value:
        return op, nearest
    below = nearest if nearest < value else math.nextafter(nearest, -math.inf)
    above = nearest if nearest > value else math.nextafter(nearest, math.inf)
    if op in ("=", "!="):
        return op == "!="
    if op in ("<", "<="):
        return "<=", below
    return ">=", above


def like_to_re2(pattern: str) -> str:
    """A LIKE pattern as an anchored RE2 regex: ``%`` any run (newlines too), ``_`` one
    character, a backslash makes the next character literal (a trailing one is itself
    literal); every literal character is written as a code point escape."""
    parts: list[str] = []
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if char == "\\" and index + 1 < len(pattern):
            parts.append(_literal(pattern[index + 1]))
            index += 2
            continue
        parts.append(".*" if char == "%" else "." if char == "_" else _literal(char))
        index += 1
    return "(?s)\\A" + "".join(parts) + "\\z"


def _literal(char: str) -> str:
    return char if char.isascii() and char.isalnum() else f"\\x{{{ord(char):x}}}"
