"""Ranking after retrieval: fusion, the learned reranker, business rules, explanations.

``pipeline.rank`` is the stage ``search.searcher.Searcher`` calls once the
retrievers have answered; the other modules are its parts.
"""
