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

The Arrow schema itself is kept as a collection property, so ``schema`` and ``scan``
return exactly the types a LanceDB build would.
"""

from __future__ import annotations

import base64
from typing import Any

import pyarrow as pa

from mmsearch.index.base import VectorField
from mmsearch.index.schema import KEYWORD_COLUMN, vector_field_of

SPARSE_COLUMN = "search_sparse"
PK_COLUMN = "pk"
SLOT_COLUMN = "slot"
SCHEMA_PROPERTY = "mmsearch.arrow_schema"
VERSION_PROPERTY = "mmsearch.version"
MAX_VARCHAR = 65_535
MAX_ARRAY = 4_096
# Not copied to image rows: long texts nobody filters on.
NOT_ON_IMAGES = frozenset({KEYWORD_COLUMN, "texts_json", "image_text"})
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


def milvus_schema(client: Any, fields: list[pa.Field], *, primary: str, analyser: dict | None):
    """A pymilvus CollectionSchema for ``fields`` (pymilvus imported by the caller)."""
    from pymilvus import DataType, Function, FunctionType

    out = client.create_schema(auto_id=False, enable_dynamic_field=False)
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
            out.add_index(
                field.name, index_type=INDEX_TYPES[kind], metric_type="COSINE", params=build
            )
    if keyword:
        out.add_index(SPARSE_COLUMN, index_type="SPARSE_INVERTED_INDEX", metric_type="BM25")
    return out


def item_row(row: dict[str, Any]) -> dict[str, Any]:
    """An item row as Milvus takes it (the keyword column may not be NULL)."""
    if KEYWORD_COLUMN in row and row[KEYWORD_COLUMN] is None:
        row = {**row, KEYWORD_COLUMN: ""}
    return row


def image_rows(row: dict[str, Any], images: pa.Schema, multi: list[str]) -> list[dict[str, Any]]:
    """One row per image of an item: its vectors of every image role, plus the copies."""
    counts = {len(row.get(column) or []) for column in multi}
    slots = max(counts, default=0)
    shared = {
        f.name: row.get(f.name)
        for f in images
        if f.name not in multi and f.name not in (PK_COLUMN, SLOT_COLUMN)
    }
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
