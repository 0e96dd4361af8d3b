"""Search orchestration: one request → retrieval → ranking → hits.

This package sits above ``retrieval/`` (retrievers, fusion functions, query planning)
and ``ranking/`` (reranker, rules, explanations) and is the only place that calls
both, so neither of them needs the other's orchestration. The CLI, the API and
evaluation describe a search with one model (``query.SearchQuery``) and turn it into
the resolved ``request.SearchRequest`` with one function (``query.build_request``).

Modules are imported directly (``mmsearch.search.searcher``...); nothing is re-exported
here, so importing the request model does not open an index.
"""
