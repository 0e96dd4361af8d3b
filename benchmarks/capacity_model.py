"""A capacity MODEL: measured per-shard figures in, deployment sizes for 10M-1B items out.

Why this exists: nothing in this repository has run on more than one machine or more
than 1M vectors, yet a team deploying mmsearch must size memory, Milvus query nodes,
the Ray cluster and object storage before it has the hardware to measure at scale.
This script makes that extrapolation explicit and repeatable: every input is either a
figure measured here (``benchmarks/store_compare.py``, docs/BENCHMARKS.md) or a named
assumption, each can be overridden (``--inputs file.json`` or ``--set key=value``), and
the arithmetic is in small pure functions that ``tests/test_capacity_model.py`` checks.
Its outputs are a model, not a measurement: docs/SCALING.md says which figures would
change them.

Usage::

    python benchmarks/capacity_model.py
    python benchmarks/capacity_model.py --set target_qps=1000 --set node_ram_gib=64
    python benchmarks/capacity_model.py --inputs measured.json   # keys of Inputs
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from statistics import NormalDist
from typing import Any

GIB = 1024**3
DAY_S = 86_400.0
Z99 = NormalDist().inv_cdf(0.99)


@dataclass
class ModeLatency:
    """One search mode on one shard (one store holding ``items`` rows), measured."""

    p50_ms: float
    p99_ms: float
    qps_per_core: float


@dataclass
class Inputs:
    """Measured figures (``measured_*``) and assumptions; all overridable."""

    # --- measured: benchmarks/store_compare.py --mode-budget 90, 100k items, LanceDB
    # (embedded, IVF-HNSW-SQ past 50k rows), shared 2-core host; QPS per core =
    # 1000 / the search process's CPU ms per query (LanceDB's threads included)
    measured_items: int = 100_000
    measured_modes: dict[str, ModeLatency] = field(
        default_factory=lambda: {
            "keyword": ModeLatency(p50_ms=7.1, p99_ms=9.2, qps_per_core=120.0),
            "vector": ModeLatency(p50_ms=15.4, p99_ms=33.3, qps_per_core=31.8),
            "hybrid": ModeLatency(p50_ms=17.7, p99_ms=57.9, qps_per_core=49.3),
            "filtered": ModeLatency(p50_ms=27.9, p99_ms=112.9, qps_per_core=17.7),
        }
    )
    # --- measured: docs/BENCHMARKS.md, encoder throughput
    minilm_texts_per_s_per_core: float = 20.0  # 40 texts/s on 2 cores, 60-80-word rows
    clip_texts_per_s_per_gpu: float = 3_000.0  # H200, ViT-B-32 text tower, batch 64-256
    clip_images_per_s_per_gpu: float = 500.0  # H200 + its 16 cores (CPU preprocessing)
    clip_images_per_s_per_core: float = 74.4 / 16  # ViT-B-32 on 16 CPU cores
    query_encode_ms: float = 10.0  # MiniLM, one query, quiet core (BENCHMARKS.md caveats)
    # --- assumptions: hardware and targets
    node_ram_gib: float = 24.0
    node_cores: int = 8
    os_reserve_gib: float = 2.0  # OS, Milvus process, caches
    memory_headroom: float = 0.35  # growing segments, compaction, query working memory
    dims: tuple[int, ...] = (384, 512, 768)
    text_dim: int = 384  # MiniLM
    image_dim: int = 512  # ViT-B-32
    serving_dims: tuple[int, ...] = (384, 512)  # vectors per item a query node holds
    scalar_bytes_per_item: int = 160  # id, attributes, BM25 postings share (in memory)
    hnsw_m: int = 16
    latency_growth_exponent: float = 0.15  # per-shard latency ~ (items/shard)^this
    network_ms: float = 1.0  # proxy -> query node -> proxy
    merge_ms_per_shard: float = 0.05  # proxy's reduce of S top-k lists
    target_qps: float = 500.0
    target_p99_ms: float = 250.0
    utilisation: float = 0.6  # fraction of a node's cores planned busy (queueing headroom)
    min_replicas: int = 2  # one can fail or be upgraded
    scales: tuple[int, ...] = (10_000_000, 100_000_000, 1_000_000_000)
    encode_efficiency: float = 0.7  # scheduling, I/O, retries in the Ray job
    cpu_node_cores: int = 16
    image_bytes_per_item: int = 150_000  # one product JPEG, as stored (assumption)
    retained_builds: int = 2  # live + previous (rollback)


# --------------------------------------------------------------------------- memory


def vector_bytes(dim: int, config: str) -> int:
    """Bytes of one vector as the index holds it.

    float32: 4 per dimension. SQ8: 1 per dimension (per-dimension min/max are per
    segment, negligible). PQ: ``m = dim / 8`` sub-quantizers of 8 bits, so 1 byte per
    8 dimensions (32x smaller than float32); m = d/8 keeps 8 dimensions per
    sub-vector, where recall usually holds up once the top candidates are re-scored
    with full vectors, and divides 384, 512 and 768 exactly, as Milvus requires.
    """
    if config == "float32":
        return 4 * dim
    if config == "sq8":
        return dim
    if config == "pq":
        if dim % 8:
            raise ValueError(f"PQ with m = d/8 needs d divisible by 8, got {dim}")
        return dim // 8
    raise ValueError(f"unknown vector configuration {config!r}")


def index_overhead_bytes(config: str, hnsw_m: int) -> int:
    """Per-vector bytes the index adds: HNSW's links (float32) or IVF's list ids (SQ8, PQ).

    HNSW keeps 2*M neighbour ids (4 bytes) on level 0; upper levels add ~1/M of that.
    IVF keeps an 8-byte id per vector in its inverted list.
    """
    if config == "float32":
        return math.ceil(2 * hnsw_m * 4 * (1 + 1 / hnsw_m))
    return 8


def bytes_per_item(dims: int | tuple[int, ...], config: str, inputs: Inputs) -> int:
    """In-memory bytes of one item on a query node: its vectors + their index + scalars."""
    roles = (dims,) if isinstance(dims, int) else dims
    vectors = sum(
        vector_bytes(d, config) + index_overhead_bytes(config, inputs.hnsw_m) for d in roles
    )
    return vectors + inputs.scalar_bytes_per_item


def usable_bytes(inputs: Inputs) -> float:
    """What a node can give to loaded segments after the OS and the headroom."""
    return (inputs.node_ram_gib - inputs.os_reserve_gib) * GIB * (1.0 - inputs.memory_headroom)


def items_per_node(dims: int | tuple[int, ...], config: str, inputs: Inputs) -> int:
    return int(usable_bytes(inputs) // bytes_per_item(dims, config, inputs))


# --------------------------------------------------------------------------- latency


def shard_latency(mode: ModeLatency, items_per_shard: float, inputs: Inputs) -> ModeLatency:
    """The measured shard scaled to another size: latency ~ n^e, QPS per core ~ n^-e."""
    scale = (max(items_per_shard, 1.0) / inputs.measured_items) ** inputs.latency_growth_exponent
    return ModeLatency(mode.p50_ms * scale, mode.p99_ms * scale, mode.qps_per_core / scale)


def fanout_quantile_ms(p50_ms: float, p99_ms: float, shards: int, q: float) -> float:
    """Quantile ``q`` of the slowest of ``shards`` independent shard latencies.

    Each shard's latency is taken as lognormal, fitted to the measured p50 and p99
    (mu = ln p50, sigma = (ln p99 - ln p50) / z_0.99). The maximum of S independent
    draws has CDF F(x)^S, so its q-quantile is F's quantile at q^(1/S). Independence
    is optimistic (shards share the network and the proxy; a GC pause or a noisy
    neighbour hits several at once), and lognormal tails may be lighter than the
    measured ones; both are why the plan keeps utilisation at 60%.
    """
    if shards < 1:
        raise ValueError("shards must be >= 1")
    if not 0 < p50_ms <= p99_ms:
        raise ValueError("need 0 < p50 <= p99")
    mu = math.log(p50_ms)
    sigma = (math.log(p99_ms) - mu) / Z99
    per_shard_q = q ** (1.0 / shards)
    return math.exp(mu + sigma * NormalDist().inv_cdf(per_shard_q))


@dataclass
class Deployment:
    items: int
    config: str
    dim: int
    shards: int
    replicas: int
    query_nodes: int
    items_per_shard: int
    p50_ms: float
    p99_ms: float
    node_qps: float
    meets_p99: bool


def plan_serving(
    items: int, dims: int | tuple[int, ...], config: str, mode: str, inputs: Inputs
) -> Deployment:
    """Shards from memory, replicas from QPS; latency of the fan-out over the shards.

    Every query visits every shard of one replica group, so a group answers as many
    queries per second as one of its nodes: node cores x QPS per core at the shard's
    size x planned utilisation. Replicas = target QPS / that, at least ``min_replicas``.
    """
    shards = max(1, math.ceil(items / items_per_node(dims, config, inputs)))
    per_shard = items / shards
    scaled = shard_latency(inputs.measured_modes[mode], per_shard, inputs)
    node_qps = inputs.node_cores * scaled.qps_per_core * inputs.utilisation
    replicas = max(inputs.min_replicas, math.ceil(inputs.target_qps / node_qps))
    fixed = inputs.query_encode_ms + inputs.network_ms + inputs.merge_ms_per_shard * shards
    p50 = fanout_quantile_ms(scaled.p50_ms, scaled.p99_ms, shards, 0.5) + fixed
    p99 = fanout_quantile_ms(scaled.p50_ms, scaled.p99_ms, shards, 0.99) + fixed
    total_dim = dims if isinstance(dims, int) else sum(dims)
    return Deployment(
        items, config, total_dim, shards, replicas, shards * replicas, round(per_shard),
        p50, p99, node_qps, p99 <= inputs.target_p99_ms,
    )  # fmt: skip


# --------------------------------------------------------------------------- encoding, storage


@dataclass
class EncodePlan:
    items: int
    cpu_nodes_text: int
    gpu_nodes_text: int
    gpu_nodes_text_image: int
    cpu_nodes_text_image: int


def encode_nodes(items: int, items_per_s_per_node: float, inputs: Inputs) -> int:
    """Nodes to encode ``items`` in 24 h at ``encode_efficiency`` of the measured rate."""
    return max(1, math.ceil(items / (items_per_s_per_node * DAY_S * inputs.encode_efficiency)))


def plan_encoding(items: int, inputs: Inputs) -> EncodePlan:
    """Ray cluster sizes to re-encode the catalog in a day, per encoder set.

    Text only: MiniLM on CPU nodes, or CLIP's text tower on GPU nodes (no MiniLM GPU
    figure is measured; MiniLM is about a third of that tower, so this is a ceiling).
    Text + image: both CLIP towers on one GPU node per worker (time per item adds up);
    on CPU, MiniLM + the CLIP image tower.
    """
    cpu_text = inputs.minilm_texts_per_s_per_core * inputs.cpu_node_cores
    gpu_text = inputs.clip_texts_per_s_per_gpu
    gpu_both = 1.0 / (
        1.0 / inputs.clip_texts_per_s_per_gpu + 1.0 / inputs.clip_images_per_s_per_gpu
    )
    cpu_both = inputs.cpu_node_cores / (
        1.0 / inputs.minilm_texts_per_s_per_core + 1.0 / inputs.clip_images_per_s_per_core
    )
    return EncodePlan(
        items,
        encode_nodes(items, cpu_text, inputs),
        encode_nodes(items, gpu_text, inputs),
        encode_nodes(items, gpu_both, inputs),
        encode_nodes(items, cpu_both, inputs),
    )


def storage_bytes(items: int, config: str, inputs: Inputs) -> dict[str, float]:
    """Object storage: images, raw float32 vectors (the rebuild source), store segments.

    Segments hold each retained build's serving vectors + index + scalar fields for
    both vector roles (text and image).
    """
    raw_vectors = items * 4 * (inputs.text_dim + inputs.image_dim)
    per_build = items * bytes_per_item((inputs.text_dim, inputs.image_dim), config, inputs)
    segments = per_build * inputs.retained_builds
    images = items * inputs.image_bytes_per_item
    return {
        "images": images,
        "raw_vectors": raw_vectors,
        "segments": segments,
        "total": images + raw_vectors + segments,
    }


# --------------------------------------------------------------------------- report


def _human(n: float) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.3g}{unit}"
    return f"{n:.3g}"


def _tb(n: float) -> str:
    return f"{n / 1e12:,.2f} TB" if n >= 1e11 else f"{n / 1e9:,.1f} GB"


def report(inputs: Inputs, mode: str = "hybrid") -> str:
    out: list[str] = ["# Capacity model (a MODEL from measured inputs, not a measurement)", ""]
    out += ["## Measured inputs (per shard, one store, "
            f"{inputs.measured_items:,} items)", ""]  # fmt: skip
    out += ["| mode | p50 ms | p99 ms | QPS per core |", "| --- | ---: | ---: | ---: |"]
    for name, m in inputs.measured_modes.items():
        out.append(f"| {name} | {m.p50_ms:.1f} | {m.p99_ms:.1f} | {m.qps_per_core:.1f} |")
    usable = usable_bytes(inputs) / GIB
    out += ["", f"## Bytes per item and items per {inputs.node_ram_gib:g} GiB node (model)", ""]
    out.append(
        f"Usable for segments: ({inputs.node_ram_gib:g} - {inputs.os_reserve_gib:g} GiB) x "
        f"(1 - {inputs.memory_headroom:g}) = {usable:.1f} GiB; scalar fields "
        f"{inputs.scalar_bytes_per_item} B/item; HNSW M={inputs.hnsw_m} for float32, IVF "
        "for SQ8 and PQ (m = d/8)."
    )
    out += ["", "| config | d | vector B | index B | total B/item | items per node |"]
    out.append("| --- | ---: | ---: | ---: | ---: | ---: |")
    for config in ("float32", "sq8", "pq"):
        for dim in inputs.dims:
            out.append(
                f"| {config} | {dim} | {vector_bytes(dim, config)} | "
                f"{index_overhead_bytes(config, inputs.hnsw_m)} | "
                f"{bytes_per_item(dim, config, inputs)} | "
                f"{_human(items_per_node(dim, config, inputs))} |"
            )
        both = inputs.serving_dims
        out.append(
            f"| {config} | {'+'.join(map(str, both))} (item) | "
            f"{sum(vector_bytes(d, config) for d in both)} | "
            f"{len(both) * index_overhead_bytes(config, inputs.hnsw_m)} | "
            f"{bytes_per_item(both, config, inputs)} | "
            f"{_human(items_per_node(both, config, inputs))} |"
        )
    out += [
        "",
        f"## Serving: Milvus query nodes ({inputs.node_cores} cores, {inputs.node_ram_gib:g} GiB), "
        f"mode '{mode}', vectors d={'+'.join(map(str, inputs.serving_dims))}, "
        f"target {inputs.target_qps:g} QPS, "
        f"p99 <= {inputs.target_p99_ms:g} ms (model)",
        "",
        "| items | config | shards | items/shard | replicas | query nodes | group QPS "
        "| p50 ms | p99 ms | p99 met |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for items in inputs.scales:
        for config in ("float32", "sq8", "pq"):
            d = plan_serving(items, inputs.serving_dims, config, mode, inputs)
            out.append(
                f"| {_human(items)} | {config} | {d.shards} | {_human(d.items_per_shard)} | "
                f"{d.replicas} | {d.query_nodes} | {d.node_qps:,.0f} | {d.p50_ms:.0f} | "
                f"{d.p99_ms:.0f} | {'yes' if d.meets_p99 else 'no'} |"
            )
    out += ["", "Fan-out p99 per mode, SQ8 shards (model):", ""]
    out.append("| items | " + " | ".join(inputs.measured_modes) + " |")
    out.append("| ---: |" + " ---: |" * len(inputs.measured_modes))
    for items in inputs.scales:
        cells = [
            f"{plan_serving(items, inputs.serving_dims, 'sq8', m, inputs).p99_ms:.0f} ms"
            for m in inputs.measured_modes
        ]
        out.append(f"| {_human(items)} | " + " | ".join(cells) + " |")
    out += ["", "## Ray cluster to re-encode the catalog in 24 h (model)", ""]
    out.append(
        f"At {inputs.encode_efficiency:.0%} of measured rates; CPU nodes of "
        f"{inputs.cpu_node_cores} cores; a GPU node = 1 H200 + 16 cores (as measured)."
    )
    out += [
        "",
        "| items | text: CPU nodes (MiniLM) | text: GPU nodes | text+image: GPU nodes "
        "| text+image: CPU nodes |",
        "| ---: | ---: | ---: | ---: | ---: |",
    ]
    for items in inputs.scales:
        e = plan_encoding(items, inputs)
        out.append(
            f"| {_human(items)} | {e.cpu_nodes_text:,} | {e.gpu_nodes_text:,} | "
            f"{e.gpu_nodes_text_image:,} | {e.cpu_nodes_text_image:,} |"
        )
    out += ["", "## Object storage, SQ8 segments (model)", ""]
    out.append(
        f"Images {inputs.image_bytes_per_item / 1e3:g} kB/item (assumed); raw float32 vectors "
        f"d={inputs.text_dim}+{inputs.image_dim}; segments of {inputs.retained_builds} builds."
    )
    out += ["", "| items | images | raw vectors | segments | total |"]
    out.append("| ---: | ---: | ---: | ---: | ---: |")
    for items in inputs.scales:
        s = storage_bytes(items, "sq8", inputs)
        out.append(
            f"| {_human(items)} | {_tb(s['images'])} | {_tb(s['raw_vectors'])} | "
            f"{_tb(s['segments'])} | {_tb(s['total'])} |"
        )
    return "\n".join(out)


def load_inputs(path: Path | None, overrides: list[str]) -> Inputs:
    """Defaults, then a JSON file of Inputs keys, then ``key=value`` overrides."""
    data: dict[str, Any] = json.loads(path.read_text()) if path else {}
    for item in overrides:
        key, _, value = item.partition("=")
        data[key] = json.loads(value)
    known = {f.name for f in fields(Inputs)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise SystemExit(
            f"unknown inputs: {', '.join(unknown)} (known: {', '.join(sorted(known))})"
        )
    if "measured_modes" in data:
        data["measured_modes"] = {k: ModeLatency(**v) for k, v in data["measured_modes"].items()}
    for key in ("dims", "scales", "serving_dims"):
        if key in data:
            data[key] = tuple(data[key])
    return Inputs(**data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=Path, default=None, help="JSON object of Inputs keys")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=JSON")
    parser.add_argument("--mode", default="hybrid", help="search mode the serving plan sizes for")
    parser.add_argument("--dump-inputs", action="store_true", help="print the inputs as JSON")
    args = parser.parse_args()
    inputs = load_inputs(args.inputs, args.set)
    if args.dump_inputs:
        print(json.dumps(asdict(inputs), indent=2))
        return
    print(report(inputs, args.mode))


if __name__ == "__main__":
    main()
