"""The capacity model's arithmetic on known inputs (benchmarks/capacity_model.py).

Why: docs/SCALING.md quotes the model's outputs; a sign or unit slip there would size a
cluster wrongly without anything failing, so the formulas are pinned here.
"""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "capacity_model.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("capacity_model", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["capacity_model"] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


cm = _load()


def test_vector_bytes_per_configuration() -> None:
    assert cm.vector_bytes(384, "float32") == 1536
    assert cm.vector_bytes(768, "sq8") == 768
    assert cm.vector_bytes(512, "pq") == 64  # m = d/8 one-byte codes
    with pytest.raises(ValueError):
        cm.vector_bytes(100, "pq")
    with pytest.raises(ValueError):
        cm.vector_bytes(384, "fp16")


def test_bytes_per_item_adds_index_and_scalars() -> None:
    inputs = cm.Inputs(scalar_bytes_per_item=100, hnsw_m=16)
    # HNSW: 2*M 4-byte links on level 0, plus 1/M of that above: 128 * 17/16 = 136
    assert cm.bytes_per_item(384, "float32", inputs) == 1536 + 136 + 100
    assert cm.bytes_per_item(384, "sq8", inputs) == 384 + 8 + 100
    # two vector roles share one set of scalar fields
    assert cm.bytes_per_item((384, 512), "sq8", inputs) == 384 + 8 + 512 + 8 + 100


def test_items_per_node_from_usable_memory() -> None:
    inputs = cm.Inputs(
        node_ram_gib=24, os_reserve_gib=2, memory_headroom=0.5, scalar_bytes_per_item=0
    )
    usable = 22 * 1024**3 * 0.5
    assert cm.usable_bytes(inputs) == pytest.approx(usable)
    assert cm.items_per_node(384, "sq8", inputs) == int(usable // 392)
    assert (
        cm.items_per_node(384, "pq", inputs)
        > cm.items_per_node(384, "sq8", inputs)
        > cm.items_per_node(384, "float32", inputs)
    )


def test_fanout_latency_is_never_below_one_shard() -> None:
    p50, p99 = 10.0, 40.0
    assert cm.fanout_quantile_ms(p50, p99, 1, 0.5) == pytest.approx(p50)
    assert cm.fanout_quantile_ms(p50, p99, 1, 0.99) == pytest.approx(p99)
    previous = p99
    for shards in (2, 8, 64, 512):
        value = cm.fanout_quantile_ms(p50, p99, shards, 0.99)
        assert value >= previous
        previous = value
    # the max of S shards at q is one shard's quantile at q^(1/S)
    expected = math.exp(
        math.log(p50)
        + (math.log(p99) - math.log(p50)) / cm.Z99 * cm.NormalDist().inv_cdf(0.99**0.25)
    )
    assert cm.fanout_quantile_ms(p50, p99, 4, 0.99) == pytest.approx(expected)


def test_fanout_rejects_impossible_inputs() -> None:
    with pytest.raises(ValueError):
        cm.fanout_quantile_ms(10.0, 5.0, 4, 0.99)
    with pytest.raises(ValueError):
        cm.fanout_quantile_ms(10.0, 50.0, 0, 0.99)


def test_node_counts_grow_with_items() -> None:
    inputs = cm.Inputs()
    for config in ("float32", "sq8", "pq"):
        plans = [
            cm.plan_serving(n, inputs.serving_dims, config, "hybrid", inputs)
            for n in (10**6, 10**7, 10**8, 10**9)
        ]
        shards = [p.shards for p in plans]
        nodes = [p.query_nodes for p in plans]
        assert shards == sorted(shards) and shards[-1] > shards[0]
        assert nodes == sorted(nodes)
        assert all(p.replicas >= inputs.min_replicas for p in plans)
        assert all(p.p99_ms >= p.p50_ms for p in plans)
        per_node = cm.items_per_node(inputs.serving_dims, config, inputs)
        for plan in plans:  # the shards hold every item, with no node to spare
            assert plan.shards * per_node >= plan.items > (plan.shards - 1) * per_node


def test_replicas_follow_target_qps() -> None:
    inputs = cm.Inputs(target_qps=100.0)
    low = cm.plan_serving(10**8, 384, "sq8", "vector", inputs)
    inputs.target_qps = 10_000.0
    high = cm.plan_serving(10**8, 384, "sq8", "vector", inputs)
    assert high.shards == low.shards
    assert high.replicas > low.replicas
    assert high.replicas * high.node_qps >= 10_000.0


def test_encoding_nodes_cover_a_day() -> None:
    inputs = cm.Inputs(minilm_texts_per_s_per_core=10.0, cpu_node_cores=10, encode_efficiency=1.0)
    # 100 texts/s per node -> 8.64M per node per day
    assert cm.plan_encoding(8_640_000, inputs).cpu_nodes_text == 1
    assert cm.plan_encoding(8_640_001, inputs).cpu_nodes_text == 2
    plan = cm.plan_encoding(10**9, inputs)
    assert plan.gpu_nodes_text_image >= plan.gpu_nodes_text  # images only add time


def test_storage_adds_up() -> None:
    inputs = cm.Inputs()
    parts = cm.storage_bytes(10**6, "sq8", inputs)
    assert parts["total"] == pytest.approx(
        parts["images"] + parts["raw_vectors"] + parts["segments"]
    )
    assert parts["raw_vectors"] == 10**6 * 4 * (inputs.text_dim + inputs.image_dim)


def test_overrides_and_report() -> None:
    inputs = cm.load_inputs(None, ["target_qps=50", "scales=[1000000]"])
    assert inputs.target_qps == 50 and inputs.scales == (1_000_000,)
    with pytest.raises(SystemExit):
        cm.load_inputs(None, ["no_such_input=1"])
    text = cm.report(inputs)
    assert "MODEL" in text and "| 1M |" in text
