"""The bounds of one search, in a module that imports nothing.

``search.query`` (the request model every transport validates with) and
``search.request`` (the resolved form the Searcher runs) share them. They live apart
from both so that validating a query — what ``mmsearch search`` does before it hands
the query to a running server — does not import the request's PIL, NumPy and PyArrow
dependencies.
"""

from __future__ import annotations

MAX_QUERY_CHARS = 2000
MAX_K = 1000
