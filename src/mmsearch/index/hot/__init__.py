"""The hot index: a build's searches in memory (faiss HNSW or exact NumPy, bm25s, masks
compiled from the filter tree), beside the durable store it is rebuilt from.

``reader.HotReader`` is the ``BuildIndex`` the Searcher uses when a collection (or
the server) turns it on (``hot.enabled``); ``mask`` compiles filter trees, ``text``
holds the keyword index and its LanceDB-like analyzer, ``vectors`` the vector indexes.
"""
