"""LanceDB and Milvus Lite side by side on one real 100k-item text catalog.

Why this exists: the capacity plan (docs/SCALING.md) needs per-store figures measured
on the same items, the same vectors and the same queries: ingest time, per-mode
latency (keyword, vector, hybrid, filtered) and the vector mode's recall@10 against
exact search. Encoding 100k texts with MiniLM takes longer on 2 cores than everything
else here together, and it is the same work for every store, so it is done once and
cached; the ingest then runs with a lookup encoder that returns the cached vectors,
which makes "ingest time" the time of the store path (read, validate, hash, write,
index), not of the model. On a shared 2-core host MiniLM runs at ~25 whole item
texts/s, so by default the distinct parts (sentences; emoji name + tags) are encoded
and each item's vector is composed from its parts' (see ``encode_or_load``; the
mean cosine to whole-text vectors is printed); ``--full-encode`` encodes every text.

The catalog: every Cranfield abstract split into sentences (9.8k distinct), each
paired with a different emoji record per round (name as the title, emojibase tags as
keywords), until ``--items`` distinct rows exist; two attributes: ``category`` (the
emoji's category, 9 values) and ``year`` (1950-1979, from the Cranfield document).
Queries: the 225 Cranfield queries and emoji tags, alternating.

Usage::

    python benchmarks/store_compare.py --encode-only        # build + encode once (cached)
    python benchmarks/store_compare.py                      # lancedb and milvus, 100k
    python benchmarks/store_compare.py --quick --backends lancedb
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ingest_throughput import SHARED  # the shared datasets folder, one definition

CACHED_FAMILY = "store-compare-cached"
MODES = ("keyword", "vector", "hybrid", "filtered")
MIN_QUERIES = 10  # per mode, even past the time budget
SIGNALS: dict[str, list[str] | None] = {
    "keyword": ["keyword"],
    "vector": ["text_vector"],
    "hybrid": None,
    "filtered": None,
}


# --------------------------------------------------------------------------- catalog


def _sentences() -> list[tuple[str, int]]:
    """(sentence, Cranfield document number) for every distinct abstract sentence."""
    from mmsearch.datasets.cranfield import parse_documents

    documents, _ = parse_documents(SHARED / "cranfield" / "cran.all.1400")
    seen: set[str] = set()
    out: list[tuple[str, int]] = []
    for number, document in enumerate(documents):
        for sentence in document.get("text", "").split(". "):
            sentence = sentence.strip().rstrip(".")
            if len(sentence) > 20 and sentence not in seen:
                seen.add(sentence)
                out.append((sentence, number))
    return out


def _pairs(items: int, n_s: int, n_e: int) -> tuple[np.ndarray, np.ndarray]:
    """Row n -> (sentence index, emoji index): every sentence once per round, a new emoji each."""
    n = np.arange(items)
    rounds, s = np.divmod(n, n_s)
    return s, (s + rounds * 389) % n_e  # 389 is prime: a different emoji every round


def build_catalog(work: Path, items: int) -> Path:
    """Write ``items`` distinct rows (sentence x emoji pairs) as JSONL, once per size."""
    from mmsearch.datasets.emoji import load_records

    path = work / f"catalog-{items}.jsonl"
    if path.exists():
        return path
    sentences = _sentences()
    emoji, _ = load_records(SHARED / "emoji")
    if items > len(sentences) * len(emoji):
        raise SystemExit(f"at most {len(sentences) * len(emoji)} distinct rows can be built")
    s_index, e_index = _pairs(items, len(sentences), len(emoji))
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        for n in range(items):
            sentence, doc = sentences[int(s_index[n])]
            record = emoji[int(e_index[n])]
            row = {
                "id": f"it-{n}",
                "title": record.name,
                "description": sentence,
                "keywords": _keywords(record.tags),
                "category": record.category or "Other",
                "year": 1950 + doc % 30,
            }
            handle.write(json.dumps(row) + "\n")
    tmp.replace(path)
    return path


def _keywords(tags: Sequence[str]) -> str:
    return ", ".join(tags[:4])


def load_items(catalog: Path) -> list[Any]:
    """Normalise the catalog exactly as an ingest does, so semantic texts match byte for byte."""
    from mmsearch.catalog.item import RawRecord
    from mmsearch.catalog.mapping import FieldMapping, guess_mapping
    from mmsearch.catalog.normalise import infer_attribute_specs, normalise_record
    from mmsearch.catalog.readers import open_catalog
    from mmsearch.media.paths import ImageRoots

    records = [r for r in open_catalog(catalog).rows() if isinstance(r, RawRecord)]
    mapping = guess_mapping((r.data for r in records[:1000]), FieldMapping())
    specs = infer_attribute_specs([r.data for r in records[:1000]], mapping.attributes or [])
    roots = ImageRoots.of(catalog.parent)
    return [normalise_record(r, mapping, specs, roots) for r in records]


def query_texts(count: int) -> list[str]:
    """Cranfield queries and emoji tags, alternating: long technical and short everyday text."""
    from mmsearch.datasets.cranfield import parse_queries
    from mmsearch.datasets.emoji import load_records

    cran = [q.text for q in parse_queries(SHARED / "cranfield" / "cran.qry") if q.text.strip()]
    emoji, _ = load_records(SHARED / "emoji")
    tags = sorted({t for r in emoji for t in r.tags if len(t) > 3 and t.replace(" ", "").isalpha()})
    tags = [tags[(i * 37) % len(tags)] for i in range(len(tags))]  # spread over the alphabet
    out: list[str] = []
    for i in range(count):
        source = cran if i % 2 == 0 else tags
        out.append(source[(i // 2) % len(source)])
    return out


# --------------------------------------------------------------------------- vectors


@dataclass
class Cache:
    """The encoded catalog and queries: texts, their MiniLM vectors and the model version."""

    texts: list[str]
    vectors: np.ndarray
    queries: list[str]
    query_vectors: np.ndarray
    version: str
    encode_s: float
    categories: list[str] = field(default_factory=list)
    years: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int32))
    compose_cosine: float | None = None  # composed vs whole-text vectors, on a sample
    kind: str = "composed"


def _compose(
    s_vec: np.ndarray, e_vec: np.ndarray, s_words: np.ndarray, e_words: np.ndarray
) -> np.ndarray:
    """Item vector from its two parts' MiniLM vectors, weighted by their word counts.

    MiniLM mean-pools token embeddings, so the embedding of "A + B" is close to the
    length-weighted mean of the pooled parts (minus the cross-attention between them);
    the script measures how close on a sample (``compose_cosine``).
    """
    mixed = s_vec * s_words[:, None] + e_vec * e_words[:, None]
    return (mixed / np.linalg.norm(mixed, axis=1, keepdims=True)).astype(np.float32)


def encode_or_load(work: Path, items: int, n_queries: int, full: bool = False) -> Cache:
    """Encode with the real MiniLM once; later runs read the ``.npy`` files.

    ``full`` encodes every item's whole text (about 25 texts/s on this shared 2-core
    host: over an hour for 100k). The default encodes the 9.8k distinct sentences and
    3.8k distinct emoji parts once and composes each item's vector from its two parts
    (``_compose``); a sample of 1,000 items is also encoded whole to report how close
    the composition is. Either way every vector comes from the real model.
    """
    from mmsearch.datasets.emoji import load_records

    catalog = build_catalog(work, items)
    loaded = load_items(catalog)
    texts = [item.semantic_text for item in loaded]
    categories = [str(item.attributes.get("category")) for item in loaded]
    years = np.array([int(item.attributes.get("year")) for item in loaded], dtype=np.int32)
    queries = query_texts(n_queries)
    kind = "full" if full else "composed"
    vec_path, q_path = work / f"vectors-{kind}-{items}.npy", work / f"queries-{n_queries}.npy"
    meta_path = work / f"vectors-{kind}-{items}.json"
    if q_path.exists() and not meta_path.exists():
        # Row n is the same for every catalog size, so a larger cache's prefix serves.
        for other in sorted(work.glob(f"vectors-{kind}-*.json")):
            size = int(other.stem.rsplit("-", 1)[1])
            if size >= items and other.with_suffix(".npy").exists():
                meta_path, vec_path = other, other.with_suffix(".npy")
                break
    if vec_path.exists() and q_path.exists() and meta_path.exists():
        meta = json.loads(meta_path.read_text())
        vectors = np.load(vec_path, mmap_mode="r")[:items].astype(np.float32)
        return Cache(
            texts, vectors, queries, np.load(q_path), meta["version"],
            meta["encode_s"], categories, years, meta.get("compose_cosine"), kind,
        )  # fmt: skip
    from mmsearch.encoders.base import create_encoder

    encoder = create_encoder("minilm")
    encoder.encode_texts(texts[:64])  # warm-up
    if full:
        inputs = texts
    else:
        sentences = [sentence for sentence, _ in _sentences()]
        emoji, _ = load_records(SHARED / "emoji")
        emoji_parts = [f"{r.name}\n{_keywords(r.tags)}" for r in emoji]
        inputs = sentences + emoji_parts
    tick = time.perf_counter()
    parts: list[np.ndarray] = []
    step = 1024
    for start in range(0, len(inputs), step):
        parts.append(encoder.encode_texts(inputs[start : start + step]))
        done = start + len(parts[-1])
        rate = done / (time.perf_counter() - tick)
        print(f"encoded {done:,}/{len(inputs):,} ({rate:,.0f} texts/s)", flush=True)
    encode_s = time.perf_counter() - tick
    encoded = np.concatenate(parts).astype(np.float32)
    compose_cosine: float | None = None
    if full:
        vectors = encoded
    else:
        s_index, e_index = _pairs(items, len(sentences), len(emoji))
        words = np.array([len(t.split()) for t in inputs], dtype=np.float32)
        e_off = len(sentences)
        vectors = _compose(
            encoded[s_index], encoded[e_off + e_index], words[s_index], words[e_off + e_index]
        )
        sample = np.random.default_rng(0).choice(items, size=min(1000, items), replace=False)
        whole = encoder.encode_texts([texts[int(n)] for n in sample])
        compose_cosine = float(np.mean(np.sum(whole * vectors[sample], axis=1)))
        print(f"composed vs whole-text MiniLM, mean cosine on 1,000 items: {compose_cosine:.3f}")
    query_vectors = encoder.encode_texts(queries).astype(np.float32)
    np.save(vec_path, vectors)
    np.save(q_path, query_vectors)
    meta = {"version": encoder.version, "encode_s": encode_s, "texts_encoded": len(inputs)}
    meta["compose_cosine"] = compose_cosine
    meta_path.write_text(json.dumps(meta))
    return Cache(
        texts, vectors, queries, query_vectors, encoder.version, encode_s, categories, years,
        compose_cosine, kind,
    )  # fmt: skip


class CachedEncoder:
    """Returns cached MiniLM vectors by exact text, so an ingest times the store, not the model.

    A text that is not in the cache (none is expected) falls back to the real MiniLM and
    is counted in ``misses``, which the report prints.
    """

    modalities = frozenset({"text"})

    def __init__(self, cache: Cache):
        self.name = CACHED_FAMILY
        self.version = cache.version
        self.dim = int(cache.vectors.shape[1])
        self._rows: dict[str, np.ndarray] = {}
        for text, vector in zip(cache.texts, cache.vectors, strict=True):
            self._rows[text] = vector
        for text, vector in zip(cache.queries, cache.query_vectors, strict=True):
            self._rows[text] = vector
        self.misses = 0

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        missing = [i for i, text in enumerate(texts) if text not in self._rows]
        for i, text in enumerate(texts):
            if text in self._rows:
                out[i] = self._rows[text]
        if missing:
            from mmsearch.encoders.base import create_encoder

            self.misses += len(missing)
            out[missing] = create_encoder("minilm").encode_texts([texts[i] for i in missing])
        return out

    def encode_images(self, images: list[Image.Image]) -> np.ndarray:
        raise NotImplementedError("text only")


def register_cached(cache: Cache) -> CachedEncoder:
    from mmsearch.encoders.base import register

    encoder = CachedEncoder(cache)
    register(CACHED_FAMILY)(lambda _argument: encoder)
    return encoder


# --------------------------------------------------------------------------- measuring


@dataclass
class ModeFigures:
    mode: str
    p50_ms: float
    p99_ms: float
    mean_ms: float
    qps_1: float  # 1 client: 1 / mean latency
    qps_2: float  # 2 client threads, completed queries / wall second
    cpu_ms: float  # this process's CPU time per query, 1 client (all of it for LanceDB)
    queries: int  # timed queries (fewer than asked when the mode's time budget ran out)
    recall_at_10: float | None = None


@dataclass
class StoreFigures:
    backend: str
    items: int
    ingest_s: float
    ingest_stages: dict[str, float]
    modes: list[ModeFigures]
    cached_misses: int
    disk_mb: float


def where_for(i: int, categories: Sequence[str]) -> tuple[str, str, int]:
    """A filter that varies per query: one category and a lower bound on ``year``."""
    category = categories[i % len(categories)]
    year = 1950 + (i * 7) % 20
    return f"category = '{category}' AND year >= {year}", category, year


def exact_top(
    cache: Cache, qi: int, k: int, mask: np.ndarray | None
) -> list[str]:  # ids of the exact top-k
    scores = cache.vectors @ cache.query_vectors[qi]
    if mask is not None:
        scores = np.where(mask, scores, -np.inf)
    top = np.argpartition(-scores, k)[:k]
    top = top[np.argsort(-scores[top])]
    return [f"it-{int(n)}" for n in top if np.isfinite(scores[n])]


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values), q))


def measure_store(
    backend: str,
    cache: Cache,
    work: Path,
    n_queries: int,
    budget_s: float,
    milvus_uri: str | None = None,
) -> StoreFigures:
    """Ingest, then time every mode; a mode stops early once it has used ``budget_s``.

    The budget keeps a slow store from taking hours (at least 20 queries run); the
    table says how many queries each figure rests on.
    """
    from mmsearch.config import Settings
    from mmsearch.ingest import IngestOptions, Ingestor
    from mmsearch.search.request import SearchRequest
    from mmsearch.search.searcher import Searcher

    home = Path(tempfile.mkdtemp(prefix=f"store-{backend}-", dir=work))
    options: dict[str, Any] = {"home": home, "text_encoder": CACHED_FAMILY, "query_cache_size": 0}
    if backend == "milvus":
        options |= {"backend": "milvus", "milvus_uri": milvus_uri}
    settings = Settings(**options)
    catalog = build_catalog(work, len(cache.texts))
    encoder = register_cached(cache)
    tick = time.perf_counter()
    report = Ingestor(settings).run(IngestOptions(catalog, "bench"))
    ingest_s = time.perf_counter() - tick
    assert report.counts["added"] == len(cache.texts), report.counts
    print(
        f"[{backend}] ingest {len(cache.texts):,} items in {ingest_s:.1f} s, "
        f"load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    disk_mb = sum(p.stat().st_size for p in home.rglob("*") if p.is_file()) / 2**20

    searcher = Searcher(settings, "bench")
    if backend == "milvus":
        settled = settle(lambda i: searcher.search(SearchRequest(text=cache.queries[i], k=10)))
        print(f"[{backend}] searches settled {settled:.0f} s after the ingest", flush=True)
    categories = sorted(set(cache.categories))
    cats = np.array(cache.categories)
    modes: list[ModeFigures] = []
    for mode in MODES:

        def request(i: int, mode: str = mode) -> Any:
            where = where_for(i, categories)[0] if mode == "filtered" else None
            return SearchRequest(
                text=cache.queries[i % len(cache.queries)],
                k=10,
                signals=SIGNALS[mode],
                where=where,
            )

        for i in range(5):  # warm-up
            searcher.search(request(i))
        latencies: list[float] = []
        recalls: list[float] = []
        cpu = 0.0
        started = time.perf_counter()
        for i in range(n_queries):
            if i >= MIN_QUERIES and time.perf_counter() - started > budget_s:
                break
            cpu_tick, tick = time.process_time(), time.perf_counter()
            result = searcher.search(request(i))
            latencies.append((time.perf_counter() - tick) * 1000)
            cpu += time.process_time() - cpu_tick
            if mode in ("vector", "filtered"):
                mask = None
                if mode == "filtered":
                    # Recall of the filtered vector retriever (what the store answers), in
                    # an extra, untimed search; hybrid results have no exact counterpart.
                    where, category, year = where_for(i, categories)
                    mask = (cats == category) & (cache.years >= year)
                    result = searcher.search(
                        SearchRequest(
                            text=cache.queries[i % len(cache.queries)],
                            k=10,
                            signals=["text_vector"],
                            where=where,
                        )
                    )
                truth = exact_top(cache, i % len(cache.queries), 10, mask)
                got = {hit.id for hit in result.hits}
                if truth:
                    recalls.append(len(got & set(truth)) / len(truth))
        done = len(latencies)
        qps_2 = _threaded_qps(lambda i: searcher.search(request(i)), done, 2, budget_s)
        mean = statistics.fmean(latencies)
        figures = ModeFigures(
            mode,
            _percentile(latencies, 50),
            _percentile(latencies, 99),
            mean,
            1000.0 / mean,
            qps_2,
            cpu * 1000 / done,
            done,
            statistics.fmean(recalls) if recalls else None,
        )
        print(f"[{backend}] {figures}, load {os.getloadavg()[0]:.1f}", flush=True)
        modes.append(figures)
    return StoreFigures(
        backend,
        len(cache.texts),
        ingest_s,
        {k: round(v, 2) for k, v in report.timings.items()},
        modes,
        encoder.misses,
        disk_mb,
    )


def settle(search: Callable[[int], Any], limit_s: float = 300.0) -> float:
    """Wait until probe searches stop getting faster; the seconds it took.

    The ingest flushed and waited for ``describe_index`` to report every row indexed,
    which on Milvus (and Milvus Lite 2.5) means the index serves the next search. Milvus
    Lite 3.x reports that at once and compacts and indexes in a background worker for a
    while after (at 3k items with images ~20 s, searches 5x slower meanwhile, see
    docs/MILVUS.md): timing that would measure the worker, not the store. So rounds of
    10 probe searches run every 10 s until a round's median is within 20% of the one
    before (or ``limit_s``)."""
    started = time.perf_counter()
    previous = None
    while True:
        times = []
        for i in range(10):
            tick = time.perf_counter()
            search(i)
            times.append(time.perf_counter() - tick)
        median = statistics.median(times)
        if previous is not None and abs(median - previous) <= 0.2 * previous:
            return time.perf_counter() - started
        if time.perf_counter() - started > limit_s:
            return time.perf_counter() - started
        previous = median
        time.sleep(10)


def _threaded_qps(call: Callable[[int], Any], n: int, threads: int, budget_s: float) -> float:
    """Completed queries per second with ``threads`` clients sharing one Searcher.

    Workers stop taking queries once ``budget_s`` has passed (after ``MIN_QUERIES``).
    """
    counter = iter(range(n))
    lock = threading.Lock()
    completed = [0]
    deadline = time.perf_counter() + budget_s

    def worker() -> None:
        while True:
            with lock:
                i = next(counter, None)
                late = completed[0] >= MIN_QUERIES and time.perf_counter() > deadline
            if i is None or late:
                return
            call(i)
            with lock:
                completed[0] += 1

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    tick = time.perf_counter()
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return completed[0] / (time.perf_counter() - tick)


def milvus_unavailable() -> str | None:
    """None when the Milvus backend can be used here, else why not."""
    try:
        import pymilvus  # noqa: F401
    except ImportError:
        return "pymilvus is not installed (the milvus extra)"
    try:
        import mmsearch.index.milvus  # noqa: F401
    except ImportError as error:
        return f"mmsearch.index.milvus cannot be imported: {error}"
    from mmsearch.config import Settings

    if "backend" not in Settings.model_fields:
        return "Settings has no 'backend' field"
    return None


@contextmanager
def milvus_server(work: Path) -> Iterator[str]:
    """MMSEARCH_MILVUS_URI when set; else a Milvus Lite server started like the tests' one."""
    given = os.environ.get("MMSEARCH_MILVUS_URI")
    if given:
        yield given
        return
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from milvus_server import milvus_lite_server  # the test suite's launcher, one definition

    data = Path(tempfile.mkdtemp(prefix="milvus-", dir=work))
    try:
        with milvus_lite_server(data) as uri:
            yield uri
    finally:
        shutil.rmtree(data, ignore_errors=True)


# --------------------------------------------------------------------------- report


def table(results: list[StoreFigures], cores: int) -> str:
    lines = [
        "| store | mode | queries | p50 ms | p99 ms | QPS (1 client) | QPS (2 threads) "
        f"| QPS per core (2 threads / {cores}) | client CPU ms/query | 1000 / CPU ms "
        "| recall@10 vs exact |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        for m in r.modes:
            recall = f"{m.recall_at_10:.3f}" if m.recall_at_10 is not None else "-"
            lines.append(
                f"| {r.backend} | {m.mode} | {m.queries} | {m.p50_ms:.1f} | {m.p99_ms:.1f} "
                f"| {m.qps_1:.1f} "
                f"| {m.qps_2:.1f} | {m.qps_2 / cores:.1f} | {m.cpu_ms:.1f} "
                f"| {1000 / m.cpu_ms:.1f} | {recall} |"
            )
    lines += [
        "",
        "| store | items | ingest s | items/s | stages (s) | on disk MB | lookup misses |",
    ]
    lines.append("| --- | ---: | ---: | ---: | --- | ---: | ---: |")
    for r in results:
        stages = ", ".join(f"{k} {v:.1f}" for k, v in r.ingest_stages.items() if v >= 0.05)
        lines.append(
            f"| {r.backend} | {r.items:,} | {r.ingest_s:.1f} | {r.items / r.ingest_s:,.0f} "
            f"| {stages} | {r.disk_mb:,.0f} | {r.cached_misses} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--quick", action="store_true", help="10k items, 100 queries")
    parser.add_argument("--queries", type=int, default=200, help="timed queries per mode")
    parser.add_argument(
        "--mode-budget", type=float, default=120.0, help="seconds of timed queries per mode"
    )
    parser.add_argument("--backends", nargs="+", default=["lancedb", "milvus"])
    parser.add_argument("--cache", type=Path, default=Path("/tmp/mmsearch-store-compare"))
    parser.add_argument("--encode-only", action="store_true", help="build and encode, then stop")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument(
        "--full-encode", action="store_true", help="encode every item's whole text (slow)"
    )
    args = parser.parse_args()
    if args.quick:
        args.items, args.queries = 10_000, 100
    args.cache.mkdir(parents=True, exist_ok=True)
    cache = encode_or_load(args.cache, args.items, max(args.queries, 400), args.full_encode)
    closeness = (
        f", composed vs whole cosine {cache.compose_cosine:.3f}" if cache.compose_cosine else ""
    )
    print(
        f"{len(cache.texts):,} items, dim {cache.vectors.shape[1]}, {cache.kind} MiniLM vectors "
        f"(encoding took {cache.encode_s:.0f} s when first cached{closeness})",
        flush=True,
    )
    if args.encode_only:
        return
    import torch

    cores = os.cpu_count() or 1
    print(f"{cores} CPUs, torch threads {torch.get_num_threads()}, load {os.getloadavg()}")
    results: list[StoreFigures] = []
    for backend in args.backends:
        if backend == "milvus":
            if (why := milvus_unavailable()) is not None:
                print(f"[milvus] skipped: {why}", flush=True)
                continue
            with milvus_server(args.cache) as uri:
                results.append(
                    measure_store(backend, cache, args.cache, args.queries, args.mode_budget, uri)
                )
        else:
            results.append(
                measure_store(backend, cache, args.cache, args.queries, args.mode_budget)
            )
        gc_home = [p for p in args.cache.glob(f"store-{backend}-*") if p.is_dir()]
        for path in gc_home:
            shutil.rmtree(path, ignore_errors=True)
    print()
    print(table(results, cores))
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=2))


if __name__ == "__main__":
    main()
