"""A user's ``where`` text → a ``Filter`` tree, or a ``FilterError`` that points at the problem.

The text is read by a real SQL parser (sqlglot, its standard dialect), never pasted
into a store query: what comes out is a tree of typed nodes over the collection's
attribute columns, and the store quotes every value itself when it compiles the tree.
Only a small language is accepted: comparisons, ``IN``/``NOT IN``, ``BETWEEN``,
``LIKE``/``NOT LIKE``, ``IS [NOT] NULL``, ``AND``/``OR``/``NOT``, parentheses and
literals. Everything else (functions, subqueries, arithmetic, comparisons of two
columns or of two literals, comments, several statements) is refused.

Two passes keep error positions exact: the token stream is checked first (every
token knows where it is), then the parsed tree is converted node by node; tree nodes
get their positions from the tokens of their leaves. Messages quote the user's own
text and list only the user's attributes, never a generated query or an internal
column, so an error cannot tell a caller how the store is laid out.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import NoReturn

from sqlglot import Token, TokenType, exp
from sqlglot.dialects.dialect import Dialect
from sqlglot.errors import ParseError, TokenError

from mmsearch.errors import QueryError
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
    depth_of,
    size_of,
)

MAX_CHARS = 2000
MAX_DEPTH = 32
MAX_NODES = 256
MAX_IN_VALUES = 1000
INT64_MAX = 2**63 - 1
KINDS = frozenset({"string", "int", "float", "bool"})
_ECHO_CHARS = 40

# Tokens a filter may contain; anything else is refused where it stands.
_OPERATORS = {
    TokenType.AND,
    TokenType.OR,
    TokenType.NOT,
    TokenType.IN,
    TokenType.BETWEEN,
    TokenType.LIKE,
    TokenType.IS,
    TokenType.L_PAREN,
    TokenType.R_PAREN,
    TokenType.COMMA,
    TokenType.EQ,
    TokenType.NEQ,
    TokenType.LT,
    TokenType.LTE,
    TokenType.GT,
    TokenType.GTE,
    TokenType.DASH,
}
_LITERALS = {TokenType.STRING, TokenType.NUMBER, TokenType.TRUE, TokenType.FALSE, TokenType.NULL}
_NAMES = {TokenType.VAR, TokenType.IDENTIFIER}
_COMPARISONS: dict[type[exp.Expr], str] = {
    exp.EQ: "=",
    exp.NEQ: "!=",
    exp.LT: "<",
    exp.LTE: "<=",
    exp.GT: ">",
    exp.GTE: ">=",
}
_FLIPPED = {"=": "=", "!=": "!=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}
_DIALECT = Dialect.get_or_raise(None)


class FilterError(QueryError):
    """A ``where`` text or structured filter that cannot be used; the message points at it."""


def parse_where(text: str, columns: dict[str, str]) -> Filter:
    """Parse ``text`` into a filter over ``columns`` (attribute column → kind).

    Kinds are ``string``, ``int``, ``float`` and ``bool``. Only these columns may be
    named: the store's own columns (ids, text, provenance, vectors, ACLs) are not
    attributes and are refused like any unknown name.
    """
    if not isinstance(text, str):
        raise FilterError("The filter must be text.")
    if len(text) > MAX_CHARS:
        raise FilterError(f"The filter is longer than {MAX_CHARS} characters.")
    if not text.strip():
        raise FilterError("The filter is empty; leave it out to search everything.")
    reader = _Reader(text, columns)
    tree = reader.syntax_tree()
    result = reader.convert(tree)
    if depth_of(result) > MAX_DEPTH:
        raise FilterError(f"The filter is nested more than {MAX_DEPTH} levels deep.")
    if size_of(result) > MAX_NODES:
        raise FilterError(
            f"The filter has more than {MAX_NODES} conditions and operators; "
            "use IN lists or split the search."
        )
    return result


def echo(text: str) -> str:
    """The user's text, shortened for a message."""
    flat = " ".join(text.split())
    return flat if len(flat) <= _ECHO_CHARS else flat[: _ECHO_CHARS - 1] + "…"


def attributes_hint(columns: dict[str, str]) -> str:
    names = ", ".join(sorted(columns))
    return f"attributes of this collection: {names}" if names else "this collection has none"


class _Reader:
    """One parse: the text, its tokens, and the positions of the tree's leaves."""

    def __init__(self, text: str, columns: dict[str, str]):
        self.text = text
        self.columns = {name: kind for name, kind in columns.items() if kind in KINDS}
        self.tokens: list[Token] = []
        self.spans: dict[int, tuple[int, int]] = {}  # id(node) -> (start, end), inclusive

    # --- errors ----------------------------------------------------------------------

    def fail(self, start: int, end: int, reason: str) -> NoReturn:
        part = echo(self.text[start : end + 1])
        raise FilterError(
            f"The filter is not allowed at position {start + 1} ('{part}'): {reason}."
        )

    def fail_node(self, node: exp.Expr, reason: str) -> NoReturn:
        start, end = self.span(node)
        self.fail(start, end, reason)

    def syntax_error(self, start: int, reason: str) -> NoReturn:
        near = echo(self.text[start : start + 24]) or "the end"
        raise FilterError(
            f"The filter has a syntax error at position {start + 1} (near '{near}'): {reason}."
        )

    # --- tokens ----------------------------------------------------------------------

    def syntax_tree(self) -> exp.Expr:
        try:
            self.tokens = _DIALECT.tokenize(self.text)
        except TokenError:
            self.syntax_error(*_unterminated(self.text))
        self._check_tokens(self._first_comment())
        try:
            trees = _DIALECT.parser().parse(self.tokens, self.text)
        except ParseError as exc:
            self.syntax_error(*self._parse_error_at(exc))
        except RecursionError:
            raise FilterError("The filter is nested too deeply.") from None
        if len(trees) != 1 or trees[0] is None:
            raise FilterError("The filter is empty; leave it out to search everything.")
        self._place_leaves(trees[0])
        return trees[0]

    def _first_comment(self) -> int | None:
        """Where the first comment starts: between tokens there may be only white space."""
        position = 0
        for token in [*self.tokens, None]:
            stop = token.start if token is not None else len(self.text)
            gap = self.text[position:stop]
            if gap.strip():
                return position + (len(gap) - len(gap.lstrip()))
            if token is not None:
                position = token.end + 1
        return None

    def _check_tokens(self, comment: int | None) -> None:
        """Refuse the first token (or comment) that has no place in a filter, where it stands."""
        depth = 0
        prefix_run = 0
        for index, token in enumerate(self.tokens):
            if comment is not None and comment < token.start:
                break
            kind = token.token_type
            if kind == TokenType.SEMICOLON:
                self.fail(token.start, token.end, "give one condition, without semicolons")
            if kind not in _OPERATORS and kind not in _LITERALS and not self._is_name(token):
                self.fail(token.start, token.end, _token_reason(token))
            if kind == TokenType.NOT and token.text.upper() != "NOT":
                self.fail(token.start, token.end, "write NOT")
            if self._is_name(token):
                following = self.tokens[index + 1] if index + 1 < len(self.tokens) else None
                if following is not None and following.token_type == TokenType.L_PAREN:
                    self.fail(token.start, token.end, "functions are not allowed")
            if kind == TokenType.L_PAREN:
                depth += 1
            elif kind == TokenType.R_PAREN:
                depth -= 1
            prefix_run = prefix_run + 1 if kind in (TokenType.NOT, TokenType.DASH) else 0
            if depth > MAX_DEPTH or prefix_run > MAX_DEPTH:
                self.fail(token.start, token.end, f"nested more than {MAX_DEPTH} levels deep")
        if comment is not None:
            self.fail(comment, comment + 1, "comments are not allowed")

    def _is_name(self, token: Token) -> bool:
        """Identifiers, and SQL words that happen to be this collection's attribute names."""
        kind = token.token_type
        if kind in _NAMES:
            return True
        if kind in _OPERATORS or kind in _LITERALS:
            return False
        return token.text.isidentifier() and token.text.lower() in self.columns

    def _parse_error_at(self, exc: ParseError) -> tuple[int, str]:
        error = exc.errors[0] if exc.errors else {}
        description = str(error.get("description") or "")
        reason = "this cannot be read as a filter"
        if description.startswith("Required keyword"):
            reason = "the condition is incomplete"
        elif description.startswith("Expecting )"):
            reason = "a parenthesis or list is not closed"
        elif description.startswith("Invalid expression"):
            reason = "unexpected text; join conditions with AND or OR"
        line, col = error.get("line"), error.get("col")
        for token in self.tokens:
            if token.line == line and token.col == col:
                return token.start, reason
        return (self.tokens[-1].start if self.tokens else 0), reason

    def _place_leaves(self, tree: exp.Expr) -> None:
        """Give every leaf of the tree the position of its token (leaves come in text order)."""
        leaves = [node for node in tree.dfs() if _is_leaf(node)]
        tokens = [t for t in self.tokens if t.token_type in _LITERALS or self._is_name(t)]
        if len(leaves) == len(tokens) and all(
            leaf.meta.get("start") in (None, token.start)
            for leaf, token in zip(leaves, tokens, strict=True)
        ):
            for leaf, token in zip(leaves, tokens, strict=True):
                self.spans[id(leaf)] = (token.start, token.end)
            return
        for leaf in leaves:  # the tokenizer and parser disagree: keep the parser's positions
            if "start" in leaf.meta and "end" in leaf.meta:
                self.spans[id(leaf)] = (int(leaf.meta["start"]), int(leaf.meta["end"]))

    def span(self, node: exp.Expr) -> tuple[int, int]:
        found = [self.spans[id(n)] for n in node.dfs() if id(n) in self.spans]
        if not found:
            return 0, len(self.text) - 1
        return min(s for s, _ in found), max(e for _, e in found)

    # --- tree → Filter ---------------------------------------------------------------

    def convert(self, node: exp.Expr, depth: int = 0) -> Filter:
        if depth > MAX_DEPTH:
            self.fail_node(node, f"nested more than {MAX_DEPTH} levels deep")
        node = _unwrap(node)
        if isinstance(node, exp.And | exp.Or):
            kind = type(node)
            parts = tuple(self.convert(part, depth + 1) for part in _chain(node, kind))
            return And(parts) if kind is exp.And else Or(parts)
        if isinstance(node, exp.Not):
            return self._negation(node, depth)
        if type(node) in _COMPARISONS:
            return self._compare(node)
        if isinstance(node, exp.In):
            return self._in(node, negated=False)
        if isinstance(node, exp.Between):
            return self._between(node, negated=False)
        if isinstance(node, exp.Like):
            return self._like(node, negated=bool(node.args.get("negate")))
        if isinstance(node, exp.Is):
            return self._is_null(node, negated=False)
        if isinstance(node, exp.Column):
            column = self._column(node)
            if self.columns[column] != "bool":
                self.fail_node(node, "an attribute alone is not a condition; give it a value")
            return Compare(column, "=", True)
        self.fail_node(node, _node_reason(node))

    def _negation(self, node: exp.Not, depth: int) -> Filter:
        inner = _unwrap(node.this)
        if isinstance(inner, exp.In):
            return self._in(inner, negated=True)
        if isinstance(inner, exp.Between):
            return self._between(inner, negated=True)
        if isinstance(inner, exp.Is):
            return self._is_null(inner, negated=True)
        if isinstance(inner, exp.Like):
            return self._like(inner, negated=not inner.args.get("negate"))
        return Not(self.convert(inner, depth + 1))

    def _compare(self, node: exp.Expr) -> Filter:
        op = _COMPARISONS[type(node)]
        left, right = _unwrap(node.this), _unwrap(node.expression)
        left_is_column, right_is_column = _is_column(left), _is_column(right)
        if left_is_column and right_is_column:
            # an unknown name is the clearer error
            self._column(left)
            self._column(right)
            self.fail_node(node, "compares two attributes; compare an attribute with a value")
        if not left_is_column and not right_is_column:
            self.fail_node(node, "a condition must compare an attribute with a value")
        if right_is_column:
            left, right, op = right, left, _FLIPPED[op]
        column = self._column(left)
        if isinstance(right, exp.Null):
            self.fail_node(node, "nothing equals NULL; use IS NULL or IS NOT NULL")
        kind = self.columns[column]
        if kind == "bool" and op not in ("=", "!="):
            self.fail_node(node, f"'{column}' is TRUE or FALSE; compare it with = or !=")
        return Compare(column, op, self._value(right, column))  # type: ignore[arg-type]

    def _in(self, node: exp.In, negated: bool) -> Filter:
        column = self._column_operand(node, node.this)
        if node.args.get("query") is not None or node.args.get("unnest") is not None:
            self.fail_node(node, "subqueries are not allowed; list the values")
        items = list(node.expressions or [])
        if not items:
            self.fail_node(node, "an IN list needs at least one value")
        if len(items) > MAX_IN_VALUES:
            self.fail_node(node, f"an IN list may hold at most {MAX_IN_VALUES} values")
        values = tuple(self._value(_unwrap(item), column) for item in items)
        return InList(column, values, negated=negated)

    def _between(self, node: exp.Between, negated: bool) -> Filter:
        column = self._column_operand(node, node.this)
        if self.columns[column] == "bool":
            self.fail_node(node, f"'{column}' is TRUE or FALSE; compare it with = or !=")
        low = self._value(_unwrap(node.args["low"]), column)
        high = self._value(_unwrap(node.args["high"]), column)
        return Between(column, low, high, negated=negated)

    def _like(self, node: exp.Like, negated: bool) -> Filter:
        column = self._column_operand(node, node.this)
        if self.columns[column] != "string":
            kind = self.columns[column]
            self.fail_node(node, f"LIKE needs a text attribute; '{column}' is {kind}")
        pattern = _unwrap(node.expression)
        if not (isinstance(pattern, exp.Literal) and pattern.is_string):
            self.fail_node(node, "LIKE needs a pattern in single quotes")
        return Like(column, pattern.this, negated=negated)

    def _is_null(self, node: exp.Is, negated: bool) -> Filter:
        column = self._column_operand(node, node.this)
        if not isinstance(node.expression, exp.Null):
            self.fail_node(node, "only IS NULL and IS NOT NULL are allowed")
        return IsNull(column, negated=negated)

    # --- operands --------------------------------------------------------------------

    def _column_operand(self, node: exp.Expr, operand: exp.Expr) -> str:
        operand = _unwrap(operand)
        if not _is_column(operand):
            self.fail_node(node, "the condition must start with an attribute name")
        return self._column(operand)

    def _column(self, node: exp.Expr) -> str:
        if (
            not isinstance(node, exp.Column)
            or node.table
            or not isinstance(node.this, exp.Identifier)
        ):
            self.fail_node(node, "not an attribute name")
        identifier = node.this
        name = identifier.this if identifier.quoted else str(identifier.this).lower()
        if name not in self.columns:
            hint = " (text values take single quotes)" if identifier.quoted else ""
            self.fail_node(node, f"unknown attribute{hint}; {attributes_hint(self.columns)}")
        return name

    def _value(self, node: exp.Expr, column: str) -> Value:
        value = self._literal(node)
        kind = self.columns[column]
        if kind == "string" and not isinstance(value, str):
            self.fail_node(node, f"'{column}' holds text; write the value in single quotes")
        if kind in ("int", "float") and isinstance(value, bool | str):
            self.fail_node(node, f"'{column}' holds numbers; write the value without quotes")
        if kind == "bool" and not isinstance(value, bool):
            self.fail_node(node, f"'{column}' is TRUE or FALSE")
        return value

    def _literal(self, node: exp.Expr) -> Value:
        negative = False
        if isinstance(node, exp.Neg):
            inner = _unwrap(node.this)
            if not (isinstance(inner, exp.Literal) and not inner.is_string):
                self.fail_node(node, "only numbers can be negative")
            negative, node = True, inner
        if isinstance(node, exp.Boolean):
            return bool(node.this)
        if isinstance(node, exp.Null):
            self.fail_node(node, "NULL is not a value here; use IS NULL or IS NOT NULL")
        if isinstance(node, exp.Literal):
            if node.is_string:
                return str(node.this)
            number = self._number(node)
            return -number if negative else number
        if _is_column(node):
            self.fail_node(node, "compares two attributes; compare an attribute with a value")
        self.fail_node(node, _node_reason(node))

    def _number(self, node: exp.Literal) -> int | float:
        text = str(node.this)
        try:
            number: int | float = int(text) if text.isdigit() else float(text)
        except ValueError:
            self.fail_node(node, "not a number")
        if isinstance(number, int) and number > INT64_MAX:
            self.fail_node(node, "the number is out of range")
        if isinstance(number, float) and not math.isfinite(number):
            self.fail_node(node, "the number is out of range")
        return number


def _unwrap(node: exp.Expr) -> exp.Expr:
    while isinstance(node, exp.Paren):
        node = node.this
    return node


def _chain(node: exp.Expr, kind: type[exp.Expr]) -> Iterator[exp.Expr]:
    """The operands of a run of the same operator (``a AND b AND c``), in text order."""
    node = _unwrap(node)
    if isinstance(node, kind):
        yield from _chain(node.this, kind)
        yield from _chain(node.expression, kind)
    else:
        yield node


def _is_column(node: exp.Expr) -> bool:
    return isinstance(node, exp.Column)


def _is_leaf(node: exp.Expr) -> bool:
    return isinstance(node, exp.Identifier | exp.Literal | exp.Boolean | exp.Null)


def _token_reason(token: Token) -> str:
    kind = token.token_type
    if kind in (TokenType.PLUS, TokenType.STAR, TokenType.SLASH, TokenType.MOD, TokenType.DPIPE):
        return "arithmetic is not allowed"
    if kind in (TokenType.SELECT, TokenType.UNION, TokenType.FROM, TokenType.WITH):
        return "subqueries and statements are not allowed"
    if kind == TokenType.DOT:
        return "attribute names are plain names, without a table"
    return (
        "only attribute names, values, comparisons, IN, BETWEEN, LIKE, IS NULL, "
        "AND, OR, NOT and parentheses are allowed"
    )


def _node_reason(node: exp.Expr) -> str:
    if isinstance(node, exp.Func):
        return "functions are not allowed"
    if isinstance(node, exp.Subquery | exp.Query):
        return "subqueries are not allowed"
    if isinstance(node, exp.Add | exp.Sub | exp.Mul | exp.Div | exp.Mod | exp.DPipe | exp.Neg):
        return "arithmetic is not allowed"
    if isinstance(node, exp.Literal | exp.Boolean | exp.Null):
        return "a condition must compare an attribute with a value"
    if isinstance(node, exp.ILike):
        return "ILIKE is not supported; use LIKE"
    if isinstance(node, exp.Alias):
        return "unexpected text; join conditions with AND or OR"
    return "this is not allowed in a filter"


def _unterminated(text: str) -> tuple[int, str]:
    """Where the tokenizer gave up: an unclosed quote or comment (it does not say itself)."""
    index, quote, opened = 0, "", 0
    while index < len(text):
        char = text[index]
        if quote:
            if char == quote:
                if text[index + 1 : index + 2] == quote:
                    index += 1  # a doubled quote inside the string
                else:
                    quote = ""
        elif char in "'\"":
            quote, opened = char, index
        elif text.startswith("/*", index):
            return index, "comments are not allowed"
        index += 1
    if quote:
        return opened, "a quoted value is not closed"
    return 0, "the text cannot be read"
