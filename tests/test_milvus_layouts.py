"""Milvus layouts that Milvus Lite cannot host, checked as far as the client goes.

Array-of-Structs fields (Milvus >= 2.6.4) are not in Milvus Lite 3.2, so the struct
layout of images is checked here without a server: the layout chosen per server
version, the collection schema and indexes pymilvus would send (serialised to the
real CreateCollection request), the rows written, the vectors read back, and the
embedding-list search request. The rows layout and the tenant partition key run on
Milvus Lite in ``test_store_contract.py``.
"""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.milvus
pymilvus = pytest.importorskip("pymilvus")

from mmsearch.errors import MMSearchError  # noqa: E402
from mmsearch.index.base import VectorField  # noqa: E402
from mmsearch.index.milvus_schema import (  # noqa: E402
    STRUCT_CAPACITY,
    add_image_struct,
    add_struct_indexes,
    from_struct,
    images_layout,
    item_fields,
    milvus_schema,
    struct_search,
    struct_value,
)
from mmsearch.index.schema import build_schema  # noqa: E402

MULTI = [VectorField("vector_image", 4, multi=True), VectorField("vector_clip", 3, multi=True)]


class _Server:
    """What ``images_layout`` asks of a client: its version string."""

    def __init__(self, version: str):
        self.version = version

    def get_server_version(self) -> str:
        return self.version


@pytest.mark.parametrize(
    ("version", "wanted", "layout"),
    [
        ("milvus_lite-3.2.2", "auto", "rows"),
        ("v2.5.14", "auto", "rows"),
        ("v2.6.3", "auto", "rows"),
        ("v2.6.4", "auto", "struct"),
        ("v2.6.11-gpu", "auto", "struct"),
        ("v3.0.0", "rows", "rows"),
        ("v2.6.4", "struct", "struct"),
    ],
)
def test_the_image_layout_follows_the_server(version, wanted, layout):
    assert images_layout(_Server(version), wanted) == layout


def test_asking_for_structs_on_an_older_server_says_what_is_needed():
    with pytest.raises(MMSearchError, match=r"2\.6\.4.*2\.5\.1"):
        images_layout(_Server("v2.5.1"), "struct")
    with pytest.raises(MMSearchError, match="Milvus Lite"):
        images_layout(_Server("milvus_lite-3.2.2"), "struct")


def test_the_struct_layout_is_a_valid_create_collection_request():
    from pymilvus import MilvusClient
    from pymilvus.client.prepare import Prepare

    schema = build_schema([], [VectorField("vector_text", 5), *MULTI])
    items = item_fields(schema)
    collection = milvus_schema(MilvusClient, items, primary="id", analyser=None, tenant=True)
    add_image_struct(MilvusClient, collection, MULTI)
    described = collection.to_dict()
    struct = described["struct_fields"][0]
    assert struct["name"] == "image_vectors" and struct["max_capacity"] == STRUCT_CAPACITY
    assert {f["name"]: f["params"]["dim"] for f in struct["fields"]} == {
        "vector_image": 4,
        "vector_clip": 3,
    }
    assert "vector_image" not in {f["name"] for f in described["fields"]}
    from pymilvus.grpc_gen import schema_pb2

    sent = schema_pb2.CollectionSchema()
    sent.ParseFromString(Prepare.create_collection_request("c", collection).schema)
    assert [f.name for f in sent.struct_array_fields] == ["image_vectors"]
    assert [f.name for f in sent.fields if f.is_partition_key] == ["_tenant"]
    indexes = MilvusClient.prepare_index_params()
    add_struct_indexes(indexes, MULTI, {"M": 8})
    described_indexes = [i.to_dict() for i in indexes]
    assert {(i["field_name"], i["metric_type"], i["index_type"]) for i in described_indexes} == {
        ("image_vectors[vector_image]", "MAX_SIM_COSINE", "HNSW"),
        ("image_vectors[vector_clip]", "MAX_SIM_COSINE", "HNSW"),
    }


def test_struct_rows_round_trip_the_images_in_catalog_order():
    row = {
        "id": "a",
        "vector_image": [[1.0, 0, 0, 0], [0, 1.0, 0, 0]],
        "vector_clip": [[1.0, 0, 0], [0, 0, 1.0]],
    }
    value = struct_value(row, ["vector_image", "vector_clip"])
    assert value == [
        {"vector_image": [1.0, 0, 0, 0], "vector_clip": [1.0, 0, 0]},
        {"vector_image": [0, 1.0, 0, 0], "vector_clip": [0, 0, 1.0]},
    ]
    assert from_struct(value, "vector_clip") == row["vector_clip"]
    assert struct_value({"id": "b", "vector_image": None}, ["vector_image"]) == []
    assert from_struct([], "vector_image") is None
    many = {"id": "big", "vector_image": [[0.0] * 4] * (STRUCT_CAPACITY + 1)}
    with pytest.raises(MMSearchError, match="Item big has 1001 images"):
        struct_value(many, ["vector_image"])


def test_an_image_search_is_an_embedding_list_request():
    from pymilvus.client.prepare import Prepare

    query = np.array([0.6, 0.8, 0.0], dtype=np.float32)
    params = {"metric_type": "MAX_SIM_COSINE", "params": {"ef": 64}}
    args = struct_search("vector_clip", query, params)
    assert args["anns_field"] == "image_vectors[vector_clip]"
    flat = [emb.to_flat_array() for emb in args["data"]]
    assert np.allclose(flat[0], query)
    request = Prepare.search_requests_with_expr(
        "c",
        args["anns_field"],
        params,
        10,
        data=flat,
        expr='id >= ""',
        is_embedding_list=True,
    )
    assert request.nq == 1 and request.dsl == 'id >= ""'
