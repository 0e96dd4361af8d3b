"""Text encoder backends: MiniLM on torch, ONNX and ONNX-int8, on the same texts.

For each backend: encode throughput (texts/s) on Cranfield abstracts (title and
abstract, what ingest embeds) and on its queries, one query at a time latency, the
cosine of every vector with torch's (min and mean), and dense-retrieval nDCG@10 on
Cranfield (exact cosine search over the encoded abstracts, ranx). Backends are timed
interleaved, chunk by chunk in a rotating order, so a noisy machine slows them alike.
A backend passes when every cosine is >= 0.99 and its nDCG@10 is within 0.005 of
torch's; ``minilm:auto`` should pick the fastest passing backend.

Usage::

    python benchmarks/text_encoder_backends.py --source ../shared/datasets/cranfield
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
import warnings
from pathlib import Path

import numpy as np

from mmsearch.datasets.cranfield import parse_documents, parse_qrels, parse_queries
from mmsearch.encoders.base import Encoder, create_encoder
from mmsearch.ranking.ranx_import import import_ranx

DEFAULT_SOURCE = Path(__file__).resolve().parents[1] / ".." / "shared" / "datasets" / "cranfield"
BACKENDS = {"torch": "minilm", "onnx": "minilm:onnx", "onnx-int8": "minilm:onnx-int8"}
MIN_COSINE = 0.99
MAX_NDCG_DROP = 0.005
CHUNK = 64
DEPTH = 100


def timed_interleaved(
    encoders: dict[str, Encoder], texts: list[str]
) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Every backend encodes every chunk; the order rotates from chunk to chunk."""
    names = list(encoders)
    parts: dict[str, list[np.ndarray]] = {name: [] for name in names}
    seconds = dict.fromkeys(names, 0.0)
    for number, start in enumerate(range(0, len(texts), CHUNK)):
        chunk = texts[start : start + CHUNK]
        shift = number % len(names)
        for name in names[shift:] + names[:shift]:
            tick = time.perf_counter()
            parts[name].append(encoders[name].encode_texts(chunk))
            seconds[name] += time.perf_counter() - tick
    return {name: np.concatenate(parts[name]) for name in names}, seconds


def single_query_ms(encoders: dict[str, Encoder], queries: list[str]) -> dict[str, float]:
    """Median latency of embedding one query, as a search does (no query cache)."""
    names = list(encoders)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for number, query in enumerate(queries):
        shift = number % len(names)
        for name in names[shift:] + names[:shift]:
            tick = time.perf_counter()
            encoders[name].encode_texts([query])
            samples[name].append((time.perf_counter() - tick) * 1000)
    return {name: statistics.median(values) for name, values in samples.items()}


def ndcg_at_10(
    doc_vectors: np.ndarray,
    doc_ids: list[str],
    query_vectors: np.ndarray,
    query_ids: list[str],
    qrels: dict[str, dict[str, int]],
) -> float:
    ranx = import_ranx()
    scores = query_vectors @ doc_vectors.T
    run: dict[str, dict[str, float]] = {}
    for row, query_id in enumerate(query_ids):
        top = np.argsort(-scores[row])[:DEPTH]
        run[query_id] = {doc_ids[i]: float(scores[row, i]) for i in top}
    judged = [q for q in query_ids if q in qrels]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(
            ranx.evaluate(
                ranx.Qrels({q: qrels[q] for q in judged}),
                ranx.Run({q: run[q] for q in judged}),
                "ndcg@10",
                make_comparable=True,
            )
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE.resolve())
    parser.add_argument("--docs", type=int, default=None, help="first N abstracts only")
    parser.add_argument("--single", type=int, default=100, help="queries timed one at a time")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args()

    documents, _ = parse_documents(args.source / "cran.all.1400")
    documents = documents[: args.docs] if args.docs else documents
    doc_texts = ["\n".join(p for p in (d["title"], d["text"]) if p) for d in documents]
    doc_ids = [d["id"] for d in documents]
    kept = set(doc_ids)
    qrels = {
        q: {d: g for d, g in judged.items() if d in kept}
        for q, judged in parse_qrels(args.source / "cranqrel").items()
    }
    queries = [q for q in parse_queries(args.source / "cran.qry") if q.text and qrels.get(q.id)]
    query_texts = [q.text or "" for q in queries]

    load_s: dict[str, float] = {}
    encoders: dict[str, Encoder] = {}
    for name, spec in BACKENDS.items():
        tick = time.perf_counter()
        encoders[name] = create_encoder(spec)
        encoders[name].encode_texts(["warm up"])
        load_s[name] = time.perf_counter() - tick

    print(f"loaded (s): {load_s}", flush=True)
    doc_vectors, doc_seconds = timed_interleaved(encoders, doc_texts)
    print(f"abstracts encoded (s): {doc_seconds}", flush=True)
    query_vectors, query_seconds = timed_interleaved(encoders, query_texts)
    print(f"queries encoded (s): {query_seconds}", flush=True)
    single = single_query_ms(encoders, query_texts[: args.single])

    results = {}
    for name in BACKENDS:
        doc_cos = (doc_vectors[name] * doc_vectors["torch"]).sum(axis=1)
        query_cos = (query_vectors[name] * query_vectors["torch"]).sum(axis=1)
        every = np.concatenate([doc_cos, query_cos])
        results[name] = {
            "spec": BACKENDS[name],
            "version": encoders[name].version,
            "load_s": load_s[name],
            "docs_per_s": len(doc_texts) / doc_seconds[name],
            "queries_per_s": len(query_texts) / query_seconds[name],
            "single_query_ms": single[name],
            "cosine_min": float(every.min()),
            "cosine_mean": float(every.mean()),
            "ndcg@10": ndcg_at_10(
                doc_vectors[name], doc_ids, query_vectors[name], [q.id for q in queries], qrels
            ),
        }
    base = results["torch"]
    for values in results.values():
        values["passes"] = bool(
            values["cosine_min"] >= MIN_COSINE
            and abs(values["ndcg@10"] - base["ndcg@10"]) <= MAX_NDCG_DROP
        )

    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"load {os.getloadavg()[0]:.1f}; {len(doc_texts)} abstracts, {len(query_texts)} "
        "queries; first-load times include a first ONNX export only if none was cached"
    )
    print(
        "| backend | abstracts/s | vs torch | queries/s | vs torch | one query (p50 ms) "
        "| cosine min / mean | nDCG@10 | passes |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for name, v in results.items():
        print(
            f"| {name} | {v['docs_per_s']:.1f} | {v['docs_per_s'] / base['docs_per_s']:.2f}x "
            f"| {v['queries_per_s']:.1f} | {v['queries_per_s'] / base['queries_per_s']:.2f}x "
            f"| {v['single_query_ms']:.1f} | {v['cosine_min']:.4f} / {v['cosine_mean']:.4f} "
            f"| {v['ndcg@10']:.4f} | {'yes' if v['passes'] else 'no'} |"
        )
    passing = [n for n, v in results.items() if v["passes"]]
    for measure, label in (("docs_per_s", "abstracts/s"), ("queries_per_s", "queries/s")):
        fastest = max(passing, key=lambda n: results[n][measure])
        print(f"fastest passing backend by {label}: {fastest}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
