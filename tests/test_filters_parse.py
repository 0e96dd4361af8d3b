"""The ``where`` parser: what it accepts, what it refuses, and what its messages say."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mmsearch.errors import QueryError
from mmsearch.filters import (
    And,
    Between,
    Compare,
    FilterError,
    InList,
    IsNull,
    Like,
    Not,
    Or,
    parse_where,
    structured_filter,
)
from mmsearch.filters.expr import columns_of
from mmsearch.filters.parse import MAX_CHARS, MAX_DEPTH, MAX_IN_VALUES, MAX_NODES
from mmsearch.manifest import AttributeDescription
from mmsearch.search.query import RangeFilter

COLUMNS = {
    "category": "string",
    "price": "float",
    "qty": "int",
    "in_stock": "bool",
    "date": "string",
}
ATTRIBUTES_HINT = "attributes of this collection: category, date, in_stock, price, qty"
INTERNAL = [
    "id",
    "title",
    "search_text",
    "texts_json",
    "source_file",
    "record_sha256",
    "vector_text",
    "acl",
]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("price < 5", Compare("price", "<", 5)),
        ("price <= 5.5", Compare("price", "<=", 5.5)),
        ("5 < price", Compare("price", ">", 5)),
        ("qty >= -3", Compare("qty", ">=", -3)),
        ("qty <> 2", Compare("qty", "!=", 2)),
        ("category = 'it''s'", Compare("category", "=", "it's")),
        ("Category = 'a'", Compare("category", "=", "a")),
        ("\"category\" = 'a'", Compare("category", "=", "a")),
        ("date = 'today'", Compare("date", "=", "today")),  # a SQL word as an attribute name
        ("in_stock", Compare("in_stock", "=", True)),
        ("in_stock = FALSE", Compare("in_stock", "=", False)),
        ("NOT in_stock", Not(Compare("in_stock", "=", True))),
        ("category IN ('a', 'b')", InList("category", ("a", "b"))),
        ("qty NOT IN (1, 2)", InList("qty", (1, 2), negated=True)),
        ("price BETWEEN 1 AND 2.5", Between("price", 1, 2.5)),
        ("price NOT BETWEEN -1 AND 1e3", Between("price", -1, 1000.0, negated=True)),
        ("category LIKE 'mu_%'", Like("category", "mu_%")),
        ("category NOT LIKE '%x'", Like("category", "%x", negated=True)),
        ("category IS NULL", IsNull("category")),
        ("category IS NOT NULL", IsNull("category", negated=True)),
        (
            "price < 5 AND (category = 'a' OR category = 'b') AND qty > 1",
            And(
                (
                    Compare("price", "<", 5),
                    Or((Compare("category", "=", "a"), Compare("category", "=", "b"))),
                    Compare("qty", ">", 1),
                )
            ),
        ),
        ("NOT (price < 5 OR qty = 1)", Not(Or((Compare("price", "<", 5), Compare("qty", "=", 1))))),
        ("((price < 5))", Compare("price", "<", 5)),
        ("price < 5\n  AND\tqty = 1", And((Compare("price", "<", 5), Compare("qty", "=", 1)))),
    ],
)
def test_accepted_filters_become_typed_nodes(text, expected):
    assert parse_where(text, COLUMNS) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "price < 10 AND size = 3",
            "The filter is not allowed at position 16 ('size'): unknown attribute; "
            f"{ATTRIBUTES_HINT}.",
        ),
        (
            "source_file LIKE '/%'",
            f"The filter is not allowed at position 1 ('source_file'): unknown attribute; "
            f"{ATTRIBUTES_HINT}.",
        ),
        (
            "price = 1 AND search_text = 'x'",
            f"The filter is not allowed at position 15 ('search_text'): unknown attribute; "
            f"{ATTRIBUTES_HINT}.",
        ),
        (
            "1=1",
            "The filter is not allowed at position 1 ('1=1'): "
            "a condition must compare an attribute with a value.",
        ),
        (
            "price < 5 OR 'a' = 'a'",
            "The filter is not allowed at position 14 (''a' = 'a''): "
            "a condition must compare an attribute with a value.",
        ),
        (
            "TRUE OR price < 5",
            "The filter is not allowed at position 1 ('TRUE'): "
            "a condition must compare an attribute with a value.",
        ),
        (
            "price = qty",
            "The filter is not allowed at position 1 ('price = qty'): "
            "compares two attributes; compare an attribute with a value.",
        ),
        ("lower(category) = 'a'", "position 1 ('lower'): functions are not allowed."),
        ("price + 1 < 5", "position 7 ('+'): arithmetic is not allowed."),
        ("price < 5 * 2", "position 11 ('*'): arithmetic is not allowed."),
        ("category || 'x' = 'ax'", "position 10 ('||'): arithmetic is not allowed."),
        (
            "price IN (SELECT price)",
            "position 11 ('SELECT'): subqueries and statements are not allowed.",
        ),
        ("price = 1; DROP TABLE t", "position 10 (';'): give one condition, without semicolons."),
        ("price = 1 -- and more", "position 11 ('--'): comments are not allowed."),
        ("price = /* x */ 1", "position 9 ('/*'): comments are not allowed."),
        ("t.price = 1", "position 2 ('.'): attribute names are plain names, without a table."),
        (
            "price = '5'",
            "position 9 (''5''): 'price' holds numbers; write the value without quotes.",
        ),
        (
            "category = 5",
            "position 12 ('5'): 'category' holds text; write the value in single quotes.",
        ),
        ("in_stock = 1", "position 12 ('1'): 'in_stock' is TRUE or FALSE."),
        ("in_stock < TRUE", "'in_stock' is TRUE or FALSE; compare it with = or !=."),
        (
            "qty LIKE '1%'",
            "position 1 ('qty LIKE '1%''): LIKE needs a text attribute; 'qty' is int.",
        ),
        ("price = NULL", "nothing equals NULL; use IS NULL or IS NOT NULL."),
        ("price IS TRUE", "only IS NULL and IS NOT NULL are allowed."),
        ("category ILIKE 'a'", "position 10 ('ILIKE'): only attribute names, values"),
        (
            'category = "office"',
            "('\"office\"'): unknown attribute (text values take single quotes)",
        ),
        ("category", "position 1 ('category'): an attribute alone is not a condition"),
        ("qty = 99999999999999999999", "('99999999999999999999'): the number is out of range."),
        ("price < 1e999", "('1e999'): the number is out of range."),
        ("price = -(-1)", "only numbers can be negative."),
    ],
)
def test_refused_filters_name_the_part_and_its_position(text, message):
    with pytest.raises(FilterError) as raised:
        parse_where(text, COLUMNS)
    assert message in str(raised.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "1=1) OR (1=1",
            "The filter has a syntax error at position 4 (near ') OR (1=1'): unexpected text; "
            "join conditions with AND or OR.",
        ),
        (
            "price <",
            "The filter has a syntax error at position 7 (near '<'): the condition is incomplete.",
        ),
        (
            "(price < 5",
            "syntax error at position 10 (near '5'): a parenthesis or list is not closed.",
        ),
        (
            "category = 'open",
            "syntax error at position 12 (near ''open'): a quoted value is not closed.",
        ),
        ("price < 5 qty > 1", "syntax error at position 15 (near '> 1'): unexpected text"),
        ("price < 5 AND\n  qty <", "syntax error at position 21 (near '<')"),
    ],
)
def test_syntax_errors_give_the_position_and_the_users_text(text, message):
    with pytest.raises(FilterError) as raised:
        parse_where(text, COLUMNS)
    text_of_error = str(raised.value)
    assert message in text_of_error
    assert "SELECT" not in text_of_error and "sqlglot" not in text_of_error
    assert "<class" not in text_of_error


def test_filter_errors_are_query_errors_so_the_api_answers_400():
    assert issubclass(FilterError, QueryError)


@pytest.mark.parametrize("column", INTERNAL)
def test_internal_columns_are_refused_without_being_listed(column):
    with pytest.raises(FilterError) as raised:
        parse_where(f"{column} = 'x' AND price < 3", COLUMNS)
    message = str(raised.value)
    assert f"position 1 ('{column}'): unknown attribute" in message
    listed = message.split("attributes of this collection:")[1]
    assert {name.strip(" .") for name in listed.split(",")} == set(COLUMNS)


def test_a_collection_without_attributes_says_so():
    with pytest.raises(FilterError, match="this collection has none"):
        parse_where("price < 3", {})


def test_limits_bound_the_work():
    with pytest.raises(FilterError, match=f"longer than {MAX_CHARS} characters"):
        parse_where("price < 1 OR " * 200 + "price < 1", COLUMNS)
    deep = "(" * (MAX_DEPTH + 1) + "price < 1" + ")" * (MAX_DEPTH + 1)
    with pytest.raises(FilterError, match=f"nested more than {MAX_DEPTH} levels"):
        parse_where(deep, COLUMNS)
    assert parse_where("(" * MAX_DEPTH + "price < 1" + ")" * MAX_DEPTH, COLUMNS)
    with pytest.raises(FilterError, match=f"nested more than {MAX_DEPTH} levels"):
        parse_where("NOT " * (MAX_DEPTH + 1) + "in_stock", COLUMNS)
    short = {"a": "int"}
    many = " OR ".join(["a=1"] * MAX_NODES)  # MAX_NODES comparisons + the OR
    assert len(many) <= MAX_CHARS
    with pytest.raises(FilterError, match=f"more than {MAX_NODES} conditions"):
        parse_where(many, short)
    assert parse_where(" OR ".join(["a=1"] * (MAX_NODES - 1)), short)
    values = ",".join("1" for _ in range(990))  # as many as 2,000 characters hold
    assert len(parse_where(f"a IN ({values})", short).values) == 990
    attributes = [AttributeDescription(field="qty", column="qty", kind="int")]
    assert structured_filter({"qty": [1] * MAX_IN_VALUES}, attributes) is not None
    with pytest.raises(FilterError, match=f"more than {MAX_IN_VALUES} values"):
        structured_filter({"qty": [1] * (MAX_IN_VALUES + 1)}, attributes)
    with pytest.raises(FilterError, match="empty"):
        parse_where("   ", COLUMNS)


def test_structured_filters_become_nodes_checked_against_the_attributes():
    attributes = [
        AttributeDescription(field="Category", column="category", kind="string"),
        AttributeDescription(field="price", column="price", kind="float"),
        AttributeDescription(field="in_stock", column="in_stock", kind="bool"),
    ]
    built = structured_filter(
        {
            "Category": ["a", "b"],
            "price": RangeFilter(min=1, max=5),
            "in_stock": True,
            "category": [],
        },
        attributes,
    )
    assert built == And(
        (InList("category", ("a", "b")), Between("price", 1.0, 5.0), Compare("in_stock", "=", True))
    )
    assert structured_filter({"price": {"max": 5}}, attributes) == Compare("price", "<=", 5)
    assert structured_filter({}, attributes) is None
    with pytest.raises(FilterError) as raised:
        structured_filter({"source_file": "x"}, attributes)
    assert str(raised.value) == (
        "Unknown filter attribute 'source_file'; attributes: Category, in_stock, price."
    )
    for bad, expected in [
        ({"price": "5"}, "does not fit attribute 'price'"),
        ({"price": True}, "does not fit attribute 'price'"),
        ({"price": float("nan")}, "finite numbers"),
        ({"price": {"min": float("inf")}}, "finite numbers"),
        ({"category": 5}, "does not fit attribute 'category'"),
        ({"in_stock": "true"}, "does not fit attribute 'in_stock'"),
        ({"category": {"min": 1}}, "needs a numeric attribute"),
        ({"price": {"low": 1}}, "only 'min' and 'max'"),
    ]:
        with pytest.raises(FilterError, match=expected):
            structured_filter(bad, attributes)


TOKENS = [
    "price", "qty", "category", "in_stock", "source_file", "(", ")", ",", "=", "!=", "<",
    ">=", "AND", "OR", "NOT", "IN", "BETWEEN", "LIKE", "IS", "NULL", "TRUE", "-", "1", "2.5",
    "'a'", "'it''s'", "'", '"', "--", "/*", "*/", ";", "SELECT", "f(", "+", "||", "`", "@x",
    "?", ":x", "#", "\\", "1e999", "\n",
]  # fmt: skip


@settings(max_examples=300, deadline=None, database=None)
@given(
    st.one_of(st.text(max_size=80), st.lists(st.sampled_from(TOKENS), max_size=14).map(" ".join))
)
def test_any_text_parses_or_is_a_filter_error_never_a_crash(text):
    try:
        result = parse_where(text, COLUMNS)
    except FilterError as exc:
        message = str(exc)
        assert "<class" not in message and "sqlglot" not in message
        assert "source_file, " not in message and "search_text" not in message.split(":")[-1]
        return
    assert columns_of(result) <= set(COLUMNS)
