"""The Arrow schema of a build: fixed columns, typed attributes, one vector per encoder role.

Image-side roles store a *multivector* (a list of fixed-size vectors, one per image
of the item, in catalog order): LanceDB scores such a column by MaxSim, which for a
single query vector is the best image's cosine similarity. Perceptual hashes are
stored per image in the same order (``image_phash``, ``image_dhash``: int64 lists).

The moderation columns (``moderation/decisions.py``) and ``image_fingerprints`` were
added without a new ``SCHEMA_VERSION``: they are NULL for every item no policy
decided, and readers test for them (``MODERATION_COLUMNS``) as for ``acl``. A build
made before them still searches and updates; enforcing a policy on it needs a new
build (``mmsearch ingest --new-build``), which ingest says when a policy is bound.
``alias_keys`` was added the same way: readers test for it before matching aliases.
"""

from __future__ import annotations

import pyarrow as pa

from mmsearch.catalog.aliases import ALIAS_COLUMN
from mmsearch.catalog.normalise import AttributeSpec
from mmsearch.filters.expr import ACL_COLUMN
from mmsearch.index.base import VectorField
from mmsearch.moderation.decisions import (
    ACTION_COLUMN,
    DECISION_COLUMN,
    FINGERPRINTS_COLUMN,
    HIDDEN_COLUMN,
    POLICY_COLUMN,
    RULE_COLUMN,
    STATE_COLUMN,
)

KEYWORD_COLUMN = "search_text"
# Bumped when the column layout changes; a live build of another version is not reused.
# 3: the per-item ``acl`` column.
SCHEMA_VERSION = 3
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
        pa.field("image_phash", pa.list_(pa.int64())),
        pa.field("image_dhash", pa.list_(pa.int64())),
        pa.field("image_text", pa.string()),
        pa.field("source_file", pa.string()),
        pa.field("source_row", pa.int64()),
        pa.field("record_sha256", pa.string()),
        pa.field("ingest_run", pa.string()),
        pa.field("ingested_at", pa.string()),
        # ACL groups of the item; NULL = the collection's default access (public/private).
        pa.field(ACL_COLUMN, pa.list_(pa.string())),
        # Codes and aliases, normalised, as ``|key|key|`` (catalog/aliases.py); NULL = none.
        pa.field(ALIAS_COLUMN, pa.string()),
        # Moderation: each image's fingerprint (JSON), the policy's decision, its review.
        pa.field(FINGERPRINTS_COLUMN, pa.string()),
        pa.field(ACTION_COLUMN, pa.string()),
        pa.field(RULE_COLUMN, pa.string()),
        pa.field(POLICY_COLUMN, pa.string()),
        pa.field(STATE_COLUMN, pa.string()),
        pa.field(HIDDEN_COLUMN, pa.bool_()),
        pa.field(DECISION_COLUMN, pa.string()),
    ]
    fields += [pa.field(spec.column, ARROW_TYPES[spec.kind]) for spec in attributes]
    fields += [pa.field(v.column, vector_type(v)) for v in vectors]
    return pa.schema(fields)


def vector_type(field: VectorField) -> pa.DataType:
    single = pa.list_(pa.float32(), field.dim)
    return pa.list_(single) if field.multi else single


def vector_field_of(field: pa.Field) -> VectorField | None:
    """The VectorField a schema field stores, or None when it is not a vector column."""
    kind = field.type
    if pa.types.is_fixed_size_list(kind):
        return VectorField(field.name, kind.list_size)
    if pa.types.is_list(kind) and pa.types.is_fixed_size_list(kind.value_type):
        return VectorField(field.name, kind.value_type.list_size, multi=True)
    return None
