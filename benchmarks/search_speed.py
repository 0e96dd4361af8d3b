"""Search speed against its baselines: what mmsearch adds on top of the store, and the floor.

Three parts, in one run:

1. Synthetic catalog (``--items``, 10,000 by default; ``--full`` adds 100,000):
   ingest throughput split into read/decode/encode/write/index (IngestReport.timings),
   then query latency p50/p95/p99 per search mode through ``Searcher``.
2. Baselines on the same table and the same query vectors: raw LanceDB FTS and
   vector queries (our overhead = mmsearch time without query encoding / raw time),
   exact NumPy search and a faiss HNSW index over the same vectors (the lower bound).
3. The index alone: ``--vectors`` random unit vectors (1,000,000 x 64 float32 =
   256 MB by default, chosen so that the LanceDB IVF-HNSW-SQ build and the faiss HNSW
   build each finish in a few minutes on 2 cores) searched with LanceDB (ANN), faiss
   HNSW and exact NumPy, with recall@10 of the ANN results against the exact ones.

Peak resident memory (RSS) is reported after each part.

Usage::

    python benchmarks/search_speed.py                      # 10k items + 1M vectors
    python benchmarks/search_speed.py --full               # also 100k items
    python benchmarks/search_speed.py --items 2000 --vectors 0 --queries 50   # quick look
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from mmsearch.config import Settings
from mmsearch.encoders.base import create_encoder
from mmsearch.evaluation.latency import Latency, peak_rss_mb
from mmsearch.index.schema import KEYWORD_COLUMN, vector_column
from mmsearch.ingest import IngestOptions, Ingestor
from mmsearch.search.request import SearchRequest
from mmsearch.search.searcher import Searcher

K = 10
COLOURS = {
    "red": (200, 30, 40),
    "green": (40, 150, 60),
    "blue": (40, 90, 210),
    "yellow": (240, 210, 40),
    "black": (20, 20, 20),
    "white": (245, 245, 245),
    "purple": (120, 50, 160),
    "orange": (240, 130, 20),
}
MATERIALS = ("leather", "cotton", "wool", "linen", "steel", "oak", "glass", "ceramic", "canvas")
PRODUCTS = ("backpack", "jacket", "boots", "mug", "lamp", "tent", "hat", "scarf", "vase", "belt")
ADJECTIVES = ("lightweight", "durable", "handmade", "vintage", "waterproof", "classic", "compact")


def _render(colour: tuple[int, int, int], second: tuple[int, int, int], cut: int) -> Image.Image:
    image = Image.new("RGB", (32, 32), colour)
    image.paste(second, (cut, cut, 32, 32))
    return image


def make_catalog(folder: Path, count: int, seed: int) -> Path:
    """A seeded catalog of short product records, each with a real PNG on disk."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    names = list(COLOURS)
    with (folder / "catalog.jsonl").open("w", encoding="utf-8") as handle:
        for index in range(count):
            colour, second = rng.choice(names), rng.choice(names)
            title = (
                f"{rng.choice(ADJECTIVES)} {colour} {rng.choice(MATERIALS)} {rng.choice(PRODUCTS)}"
            )
            image = folder / "img" / f"{index % 4096}.png"
            if index < 4096:
                image.parent.mkdir(exist_ok=True)
                _render(COLOURS[colour], COLOURS[second], rng.randrange(8, 24)).save(image)
            row = {
                "id": f"item-{index}",
                "title": title,
                "description": f"{title} with {second} details, for everyday use",
                "price": round(rng.uniform(5, 200), 2),
                "image": f"img/{index % 4096}.png",
            }
            handle.write(json.dumps(row) + "\n")
    return folder / "catalog.jsonl"


def timed(run: Callable[[], Any]) -> float:
    tick = time.perf_counter()
    run()
    return (time.perf_counter() - tick) * 1000.0


def catalog_part(items: int, queries: int, home: Path, seed: int) -> dict[str, Any]:
    catalog = make_catalog(home / f"catalog-{items}", items, seed)
    settings = Settings(home=home / f"ws-{items}").model_copy(update={"query_cache_size": 0})
    tick = time.perf_counter()
    report = Ingestor(settings).run(IngestOptions(catalog, "speed"))
    total_s = time.perf_counter() - tick
    searcher = Searcher(settings, "speed")
    table = searcher.index._table  # the raw LanceDB table, for the baseline queries
    text_encoder = create_encoder(settings.text_encoder)
    rng = random.Random(seed + 1)
    texts = [
        f"{rng.choice(list(COLOURS))} {rng.choice(PRODUCTS)} {rng.choice(MATERIALS)}"
        for _ in range(queries)
    ]
    images = [
        _render(COLOURS[rng.choice(list(COLOURS))], COLOURS[rng.choice(list(COLOURS))], 16)
        for _ in range(queries)
    ]
    text_vectors = text_encoder.encode_texts(texts)

    modes: dict[str, Callable[[int], SearchRequest]] = {
        "keyword": lambda i: SearchRequest(text=texts[i], k=K, signals=["keyword"]),
        "text_vector": lambda i: SearchRequest(text=texts[i], k=K, signals=["text_vector"]),
        "text_hybrid": lambda i: SearchRequest(text=texts[i], k=K),
        "image": lambda i: SearchRequest(image=images[i], k=K),
        "text+image": lambda i: SearchRequest(text=texts[i], image=images[i], k=K),
    }
    latencies: dict[str, dict[str, float]] = {}
    without_encode: dict[str, list[float]] = {}
    for mode, build in modes.items():
        for i in range(3):
            searcher.search(build(i))  # warm-up: model load, caches
        samples, store_side = [], []
        for i in range(queries):
            tick = time.perf_counter()
            result = searcher.search(build(i))
            elapsed = (time.perf_counter() - tick) * 1000.0
            samples.append(elapsed)
            encode = sum(v for key, v in result.timings_ms.items() if key.startswith("encode"))
            store_side.append(elapsed - encode)
        latencies[mode] = Latency.of(samples).as_dict()
        without_encode[mode] = store_side

    depth = settings.candidates
    raw = {
        "lancedb_fts": [
            timed(
                lambda t=t: (
                    table.search(t, query_type="fts", fts_columns=KEYWORD_COLUMN)
                    .select(["id", "_score"])
                    .limit(depth)
                    .to_list()
                )
            )
            for t in texts
        ],
        "lancedb_vector_text": [
            timed(
                lambda v=v: (
                    table.search(v, vector_column_name=vector_column("text"))
                    .distance_type("cosine")
                    .select(["id", "_distance"])
                    .limit(depth)
                    .to_list()
                )
            )
            for v in text_vectors
        ],
    }
    matrix = np.stack(
        table.to_lance()
        .to_table(columns=[vector_column("text")])[vector_column("text")]
        .to_numpy(zero_copy_only=False)
    ).astype(np.float32)
    floor = vector_floor(matrix, text_vectors, hnsw_m=32)
    overhead = {
        "keyword": _ratio(without_encode["keyword"], raw["lancedb_fts"]),
        "text_vector": _ratio(without_encode["text_vector"], raw["lancedb_vector_text"]),
    }
    stages = {key: round(value, 2) for key, value in report.timings.items()}
    return {
        "items": items,
        "ingest": {
            "seconds": round(total_s, 1),
            "items_per_s": round(items / total_s, 1),
            "stages_s": stages,
        },
        "latency_ms": latencies,
        "raw_lancedb_ms": {name: Latency.of(v).as_dict() for name, v in raw.items()},
        "overhead_p50_ratio": overhead,
        "vector_floor": floor,
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }


def _ratio(ours: list[float], raw: list[float]) -> float:
    return round(float(np.median(ours) / np.median(raw)), 2)


def vector_floor(matrix: np.ndarray, queries: np.ndarray, hnsw_m: int) -> dict[str, Any]:
    """Exact NumPy top-k and faiss HNSW over the same vectors; HNSW recall@10 vs exact."""
    import faiss

    exact_ids, exact_ms = [], []
    for vector in queries:
        tick = time.perf_counter()
        scores = matrix @ vector
        top = np.argpartition(-scores, K)[:K]
        exact_ids.append(set(top[np.argsort(-scores[top])].tolist()))
        exact_ms.append((time.perf_counter() - tick) * 1000.0)
    tick = time.perf_counter()
    index = faiss.IndexHNSWFlat(matrix.shape[1], hnsw_m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = 40
    index.add(matrix)
    build_s = time.perf_counter() - tick
    index.hnsw.efSearch = 64
    hnsw_ms, recall = [], []
    for vector, truth in zip(queries, exact_ids, strict=True):
        tick = time.perf_counter()
        _, ids = index.search(vector[None, :], K)
        hnsw_ms.append((time.perf_counter() - tick) * 1000.0)
        recall.append(len(truth & set(ids[0].tolist())) / K)
    return {
        "vectors": int(matrix.shape[0]),
        "dim": int(matrix.shape[1]),
        "numpy_exact_ms": Latency.of(exact_ms).as_dict(),
        "faiss_hnsw_ms": Latency.of(hnsw_ms).as_dict(),
        "faiss_hnsw_build_s": round(build_s, 1),
        "faiss_hnsw_recall@10": round(float(np.mean(recall)), 4),
    }


def vectors_part(count: int, dim: int, queries: int, home: Path, seed: int) -> dict[str, Any]:
    """The index alone: random unit vectors in LanceDB (IVF-HNSW-SQ) vs faiss vs NumPy."""
    import lancedb
    import pyarrow as pa
    from lancedb.index import IvfHnswSq

    rng = np.random.default_rng(seed)
    matrix = rng.standard_normal((count, dim), dtype=np.float32)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    probes = matrix[rng.choice(count, queries, replace=False)] + 0.1 * rng.standard_normal(
        (queries, dim), dtype=np.float32
    )
    probes /= np.linalg.norm(probes, axis=1, keepdims=True)
    db = lancedb.connect(str(home / "vectors"))
    tick = time.perf_counter()
    vectors = pa.FixedSizeListArray.from_arrays(pa.array(matrix.reshape(-1)), dim)
    table = db.create_table(
        "v", pa.table({"id": pa.array(np.arange(count)), "vector": vectors}), mode="overwrite"
    )
    write_s = time.perf_counter() - tick
    tick = time.perf_counter()
    table.create_index("vector", config=IvfHnswSq(distance_type="cosine"))
    index_s = time.perf_counter() - tick
    floor = vector_floor(matrix, probes, hnsw_m=16)
    exact = [set(np.argpartition(-(matrix @ p), K)[:K].tolist()) for p in probes]
    lance_ms, recall = [], []
    for probe, truth in zip(probes, exact, strict=True):
        tick = time.perf_counter()
        rows = (
            table.search(probe)
            .distance_type("cosine")
            .select(["id", "_distance"])
            .limit(K)
            .to_list()
        )
        lance_ms.append((time.perf_counter() - tick) * 1000.0)
        recall.append(len(truth & {row["id"] for row in rows}) / K)
    return {
        "vectors": count,
        "dim": dim,
        "lancedb_write_s": round(write_s, 1),
        "lancedb_index_s": round(index_s, 1),
        "lancedb_ann_ms": Latency.of(lance_ms).as_dict(),
        "lancedb_ann_recall@10": round(float(np.mean(recall)), 4),
        **{f"floor_{key}": value for key, value in floor.items() if key not in {"vectors", "dim"}},
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--full", action="store_true", help="also run 100,000 items")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--vectors", type=int, default=1_000_000, help="0 skips the part")
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()

    results: dict[str, Any] = {
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        },
        "catalogs": [],
    }
    sizes = [args.items] + ([100_000] if args.full and args.items != 100_000 else [])
    with tempfile.TemporaryDirectory(prefix="mmsearch-speed-") as tmp:
        for size in sizes:
            part = catalog_part(size, args.queries, Path(tmp), args.seed)
            results["catalogs"].append(part)
            print(json.dumps(part, indent=2))
        if args.vectors:
            results["vectors"] = vectors_part(
                args.vectors, args.dim, args.queries, Path(tmp), args.seed
            )
            print(json.dumps(results["vectors"], indent=2))
    results["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(results["machine"]))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
