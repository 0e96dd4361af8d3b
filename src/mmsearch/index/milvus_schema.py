"""How a build's Arrow schema is laid out in Milvus: an item collection and an image one.

The item collection holds one row per item: every scalar and list column, the
single-vector columns, and ``search_sparse``, the BM25 function's output over the
analysed keyword column (Milvus's own full-text search). Multivector (per-image)
columns cannot live there on servers without array-of-vector fields (Milvus Lite,
Milvus < 2.6), so each image is a row of the image collection: ``pk`` = item id and
slot, ``id`` = the item id (so filters on ``id`` read the same), ``slot`` = catalog
order, one vector column per image role, and a copy of the item's filterable scalar
columns and ``acl``, so that filters are applied inside the image search too. An
image search groups by ``id`` and so scores each item by its best image, exactly what
LanceDB's MaxSim gives for one query vector.

Servers with Array-of-Structs fields (Milvus >= 2.6.4) keep an item's images on the
item row instead (``images_layout`` "struct"): ``image_vectors`` is an array of one
struct per image holding a vector per image role, indexed for embedding-list search
with ``MAX_SIM_COSINE``; a one-vector embedding list scores an item by its best image,
so both layouts rank alike. Which layout a build uses is fixed when it is created and
kept as a collection property.

Tenants: when ACLs are per tenant (an item's ``acl`` is one group, its tenant id), a
hidden ``_tenant`` column holds that group (``""`` for items with no ACL, an empty
one or several groups) and is the collection's partition key, so Milvus hashes each
tenant's rows into its own partition bucket. ``_tenant`` is never part of the Arrow
schema: no user filter can name it, and ``scan``/``get`` never return it.

The Arrow schema itself is kept as a collection property, so ``schema`` and ``scan``
return exactly the types a LanceDB build would.
"""

from __future__ import annotations

import base64
import functools
import re
from typing import Any

import numpy as np
import pyarrow as pa

from mmsearch.errors import MMSearchError
from mmsearch.index.base import VectorField
from mmsearch.index.schema import KEYWORD_COLUMN, vector_field_of

SPARSE_COLUMN = "search_sparse"
PK_COLUMN = "pk"
SLOT_COLUMN = "slot"
TENANT_COLUMN = "_tenant"  # attribute columns never start with "_" (attribute_column)
SHARED_TENANT = ""
SCHEMA_PROPERTY = "mmsearch.arrow_schema"
VERSION_PROPERTY = "mmsearch.version"
TENANT_PROPERTY = "mmsearch.tenant_partitions"
LAYOUT_PROPERTY = "mmsearch.images_layout"
STRUCT_FIELD = "image_vectors"
STRUCT_CAPACITY = 1_000  # images per item in the struct layout (Milvus's documented cap)
ROWS, STRUCT = "rows", "struct"
STRUCT_MIN_VERSION = (2, 6, 4)
MAX_VARCHAR = 65_535
MAX_ARRAY = 4_096
# Not copied to image rows: long texts nobody filters on.
NOT_ON_IMAGES = frozenset(
    {KEYWORD_COLUMN, "texts_json", "image_text", "image_fingerprints", "moderation_json"}
)
INDEX_TYPES = {
    "hnsw": "HNSW",
    "ivf_flat": "IVF_FLAT",
    "ivf_sq8": "IVF_SQ8",
    "ivf_pq": "IVF_PQ",
    "flat": "FLAT",
}
DEFAULT_INDEX_PARAMS: dict[str, dict[str, Any]] = {
    "hnsw": {"M": 16, "efConstruction": 200},
    "ivf_flat": {"nlist": 128},
    "ivf_sq8": {"nlist": 128},
    "ivf_pq": {"nlist": 128, "m": 8},
    "flat": {},
}


def encode_schema(schema: pa.Schema) -> str:
    return base64.b64encode(schema.serialize().to_pybytes()).decode("ascii")


def decode_schema(text: str) -> pa.Schema:
    return pa.ipc.read_schema(pa.py_buffer(base64.b64decode(text)))


def vector_fields(schema: pa.Schema) -> list[VectorField]:
    return [found for field in schema if (found := vector_field_of(field)) is not None]


def image_schema(schema: pa.Schema) -> pa.Schema:
    """The Arrow view of an image row: what filters on the image collection may read."""
    fields = [pa.field(PK_COLUMN, pa.string(), nullable=False)]
    fields.append(pa.field(SLOT_COLUMN, pa.int64(), nullable=False))
    for field in schema:
        if field.name in NOT_ON_IMAGES or vector_field_of(field) is not None:
            continue
        if _is_scalar(field.type) or field.name == "acl":
            fields.append(field)
    for vector in vector_fields(schema):
        if vector.multi:
            fields.append(pa.field(vector.column, pa.list_(pa.float32(), vector.dim)))
    return pa.schema(fields)


def item_fields(schema: pa.Schema) -> list[pa.Field]:
    """Columns stored on item rows (all but the multivectors)."""
    return [f for f in schema if not (vector_field_of(f) or VectorField("", 0)).multi]


def tenant_of(acl: list[str] | None) -> str:
    """The partition key of a row: its one ACL group, else the shared bucket ``""``."""
    return acl[0] if acl is not None and len(acl) == 1 else SHARED_TENANT


def with_tenant(schema: pa.Schema) -> pa.Schema:
    """``schema`` plus ``_tenant``: what the store's own filters (never users') may name."""
    return schema.append(pa.field(TENANT_COLUMN, pa.string(), nullable=False))


def milvus_schema(
    client: Any,
    fields: list[pa.Field],
    *,
    primary: str,
    analyser: dict | None,
    tenant: bool = False,
):
    """A pymilvus CollectionSchema for ``fields`` (pymilvus imported by the caller)."""
    from pymilvus import DataType, Function, FunctionType

    out = client.create_schema(auto_id=False, enable_dynamic_field=False)
    if tenant:
        out.add_field(
            TENANT_COLUMN, DataType.VARCHAR, max_length=MAX_VARCHAR, is_partition_key=True
        )
    for field in fields:
        kind = field.type
        name = field.name
        if name == primary:
            out.add_field(name, DataType.VARCHAR, is_primary=True, max_length=MAX_VARCHAR)
        elif pa.types.is_fixed_size_list(kind):
            out.add_field(name, DataType.FLOAT_VECTOR, dim=kind.list_size)
        elif name == KEYWORD_COLUMN and analyser is not None:
            out.add_field(
                name,
                DataType.VARCHAR,
                max_length=MAX_VARCHAR,
                enable_analyzer=True,
                analyzer_params=analyser,
                nullable=False,
            )
        elif pa.types.is_list(kind):
            element = DataType.INT64 if pa.types.is_integer(kind.value_type) else DataType.VARCHAR
            extra = {"max_length": MAX_VARCHAR} if element == DataType.VARCHAR else {}
            out.add_field(
                name,
                DataType.ARRAY,
                element_type=element,
                max_capacity=MAX_ARRAY,
                nullable=True,
                **extra,
            )
        else:
            out.add_field(name, _scalar_type(kind, DataType), nullable=field.nullable, **_len(kind))
    if analyser is not None:
        out.add_field(SPARSE_COLUMN, DataType.SPARSE_FLOAT_VECTOR)
        out.add_function(
            Function(
                name="bm25",
                function_type=FunctionType.BM25,
                input_field_names=[KEYWORD_COLUMN],
                output_field_names=[SPARSE_COLUMN],
            )
        )
    return out


def index_params(client: Any, fields: list[pa.Field], kind: str, params: dict, keyword: bool):
    """One dense index per vector field (of the configured kind), BM25 on the sparse one."""
    out = client.prepare_index_params()
    build = {**DEFAULT_INDEX_PARAMS[kind], **params}
    for field in fields:
        if pa.types.is_fixed_size_list(field.type):
            out.append(nested_index(field.name, INDEX_TYPES[kind], "COSINE", build))
    if keyword:
        out.add_index(SPARSE_COLUMN, index_type="SPARSE_INVERTED_INDEX", metric_type="BM25")
    return out


def item_row(row: dict[str, Any], tenant: bool = False) -> dict[str, Any]:
    """An item row as Milvus takes it (the keyword column may not be NULL)."""
    if KEYWORD_COLUMN in row and row[KEYWORD_COLUMN] is None:
        row = {**row, KEYWORD_COLUMN: ""}
    if tenant:
        row = {**row, TENANT_COLUMN: tenant_of(row.get("acl"))}
    return row


def image_rows(
    row: dict[str, Any], images: pa.Schema, multi: list[str], tenant: bool = False
) -> list[dict[str, Any]]:
    """One row per image of an item: its vectors of every image role, plus the copies."""
    counts = {len(row.get(column) or []) for column in multi}
    slots = max(counts, default=0)
    shared = {
        f.name: row.get(f.name)
        for f in images
        if f.name not in multi and f.name not in (PK_COLUMN, SLOT_COLUMN)
    }
    if tenant:
        shared[TENANT_COLUMN] = tenant_of(row.get("acl"))
    out = []
    for slot in range(slots):
        vectors = {}
        for column in multi:
            values = row.get(column) or []
            if slot >= len(values):
                break
            vectors[column] = list(values[slot])
        else:
            out.append({PK_COLUMN: f"{row['id']}#{slot}", SLOT_COLUMN: slot, **shared, **vectors})
    return out


def _is_scalar(kind: pa.DataType) -> bool:
    return bool(
        pa.types.is_boolean(kind)
        or pa.types.is_integer(kind)
        or pa.types.is_floating(kind)
        or pa.types.is_string(kind)
    )


def _scalar_type(kind: pa.DataType, data_type: Any) -> Any:
    if pa.types.is_boolean(kind):
        return data_type.BOOL
    if pa.types.is_integer(kind):
        return data_type.INT64
    if pa.types.is_floating(kind):
        return data_type.DOUBLE
    return data_type.VARCHAR


def _len(kind: pa.DataType) -> dict[str, int]:
    return {"max_length": MAX_VARCHAR} if pa.types.is_string(kind) else {}


def server_version(client: Any) -> tuple[int, ...] | None:
    """Milvus's version as numbers ("v2.6.4" -> (2, 6, 4)); None for Milvus Lite or unknown."""
    try:
        text = str(client.get_server_version())
    except Exception:  # servers without the call predate every feature asked about here
        return None
    if text.startswith("milvus_lite"):
        return None
    numbers = [int(part) for part in re.findall(r"\d+", text.split("-")[0])[:3]]
    return tuple(numbers) if numbers else None


def images_layout(client: Any, wanted: str) -> str:
    """The layout of a new build's images: "struct" where the server has Array-of-Structs
    ("auto" picks it there), "rows" (an image collection with group-by) elsewhere."""
    version = server_version(client)
    native = version is not None and version >= STRUCT_MIN_VERSION
    if wanted == ROWS or (wanted == "auto" and not native):
        return ROWS
    if not native:
        shown = ".".join(map(str, version)) if version else "Milvus Lite"
        raise MMSearchError(
            f"MMSEARCH_MILVUS_IMAGE_LAYOUT=struct needs Milvus 2.6.4 or later (Array of "
            f"Structs); this server is {shown}. Use 'auto' or 'rows'."
        )
    return STRUCT


def add_image_struct(client: Any, schema: Any, multi: list[VectorField]) -> None:
    """The ``image_vectors`` array of structs: one struct per image, a vector per role."""
    from pymilvus import DataType

    element = client.create_struct_field_schema()
    for vector in multi:
        element.add_field(vector.column, DataType.FLOAT_VECTOR, dim=vector.dim)
    schema.add_field(
        STRUCT_FIELD,
        DataType.ARRAY,
        element_type=DataType.STRUCT,
        struct_schema=element,
        max_capacity=STRUCT_CAPACITY,
    )


def add_struct_indexes(index: Any, multi: list[VectorField], params: dict) -> None:
    """Embedding-list indexes (HNSW, the kind Array-of-Structs vectors take) per role."""
    build = {**DEFAULT_INDEX_PARAMS["hnsw"], **params}
    for vector in multi:
        index.append(nested_index(struct_path(vector.column), "HNSW", "MAX_SIM_COSINE", build))


def nested_index(field: str, index_type: str, metric: str, build: dict[str, Any]) -> Any:
    """An index whose build parameters travel as one ``params`` JSON entry.

    ``IndexParams.add_index(params=...)`` flattens them into top-level key/value pairs
    (``M``, ``efConstruction``), which Milvus reads but Milvus Lite 3.x ignores (it
    reads only ``params``): the index was built with its engine's defaults and
    ``describe_index`` showed no parameters. Milvus itself unpacks a ``params`` entry
    into the same keys, so this one form reaches every engine."""
    return _nested_index_class()(field, index_type, metric, build)


@functools.cache
def _nested_index_class() -> type:
    from pymilvus.milvus_client.index import IndexParam

    class NestedIndexParam(IndexParam):
        """``IndexParam`` sending its build parameters nested under ``params``."""

        def __init__(self, field: str, index_type: str, metric: str, build: dict[str, Any]):
            super().__init__(field, index_type, "", metric_type=metric)
            self.build = dict(build)

        def get_index_configs(self) -> dict[str, Any]:
            configs = dict(super().get_index_configs())
            return {**configs, "params": dict(self.build)} if self.build else configs

    return NestedIndexParam


def struct_path(column: str) -> str:
    return f"{STRUCT_FIELD}[{column}]"


def struct_search(column: str, query: np.ndarray, params: dict[str, Any]) -> dict[str, Any]:
    """Search arguments for one role of ``image_vectors``: the query as a one-vector
    embedding list, whose MAX_SIM score is the item's best image's cosine."""
    from pymilvus.client.embedding_list import EmbeddingList

    return {
        "data": [EmbeddingList(np.asarray(query, dtype=np.float32).reshape(1, -1))],
        "anns_field": struct_path(column),
        "search_params": params,
    }


def struct_value(row: dict[str, Any], multi: list[str]) -> list[dict[str, list[float]]]:
    """The ``image_vectors`` of an item row: its images in catalog order."""
    slots = max((len(row.get(column) or []) for column in multi), default=0)
    if slots > STRUCT_CAPACITY:
        raise MMSearchError(
            f"Item {row['id']} has {slots} images; a Milvus build keeps at most "
            f"{STRUCT_CAPACITY} per item in the struct layout."
        )
    out = []
    for slot in range(slots):
        element = {}
        for column in multi:
            values = row.get(column) or []
            if slot >= len(values):
                break
            element[column] = list(values[slot])
        else:
            out.append(element)
    return out


def from_struct(value: list[dict] | None, column: str) -> list | None:
    """One role's vectors of an item back from ``image_vectors`` (None: no images)."""
    vectors = [element[column] for element in value or []]
    return vectors or None
