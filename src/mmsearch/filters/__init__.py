"""Filters as one typed expression tree: parsed from user text, compiled by each store.

``expr`` holds the nodes, ``parse`` reads a user's ``where`` text, ``structured`` the
API's ``filters`` object, and ``evaluate`` is the reference evaluator (SQL NULL
semantics). Store compilers live next to their stores (``index/lance_filter.py``,
``index/milvus_filter.py``) and share the walk in negation normal form (``nnf.py``).
"""

from __future__ import annotations

from mmsearch.filters.evaluate import matches
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
    all_of,
)
from mmsearch.filters.parse import FilterError, parse_where
from mmsearch.filters.structured import structured_filter

__all__ = [
    "And",
    "Between",
    "Compare",
    "Filter",
    "FilterError",
    "InList",
    "IsNull",
    "Like",
    "Not",
    "Or",
    "Value",
    "Visible",
    "all_of",
    "matches",
    "parse_where",
    "structured_filter",
]
