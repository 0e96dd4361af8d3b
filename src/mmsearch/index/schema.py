"""The Arrow schema of a build: fixed columns, typed attributes, one vector per encoder role."""

from __future__ import annotations

import pyarrow as pa

from mmsearch.catalog.normalise import AttributeSpec
from mmsearch.index.base import VectorField

KEYWORD_COLUMN = "search_text"
ARROW_TYPES: dict[str, pa.DataType] = {
    "string": pa.string(),
    "int": pa.int64(),
    "float": pa.float64(),
    "bool": pa.bool_(),
}


def vector_column(role: str) -> str:
    return f"vector_{role}"


def build_schema(attributes: list[AttributeSpec], vectors: list[VectorField]) -> pa.Schema:
    fields = [
        pa.field("id", pa.string(), nullable=False),
        pa.field("title", pa.string()),
        pa.field(KEYWORD_COLUMN, pa.string()),
        pa.field("texts_json", pa.string()),
        pa.field("images", pa.list_(pa.string())),
        pa.field("image_sha256", pa.list_(pa.string())),
        pa.field("source_file", pa.string()),
        pa.field("source_row", pa.int64()),
        pa.field("record_sha256", pa.string()),
        pa.field("ingest_run", pa.string()),
        pa.field("ingested_at", pa.string()),
    ]
    fields += [pa.field(spec.column, ARROW_TYPES[spec.kind]) for spec in attributes]
    fields += [pa.field(v.column, pa.list_(pa.float32(), v.dim)) for v in vectors]
    return pa.schema(fields)
