"""Single-item reads and writes on a collection's live build.

A PUT goes through the same ``Ingestor`` as a catalog file (one-line JSONL in a
temporary folder, the live build's mapping and encoders), so an item written over
HTTP is validated, hashed, encoded and recorded exactly like one from a catalog.
Before ingesting, the record is checked against the build's attribute types: the
ingestor infers types from the rows it sees, and a single row that does not carry
every typed attribute would otherwise look like a new schema and start a new build.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import json
import tempfile
from pathlib import Path
from typing import Any

from PIL import Image

from mmsearch.catalog.mapping import FieldMapping
from mmsearch.catalog.normalise import infer_attribute_specs
from mmsearch.errors import QueryError
from mmsearch.index.lancedb import LanceBuildIndex
from mmsearch.ingest import IngestOptions, Ingestor
from mmsearch.media.images import decode_image
from mmsearch.service.errors import Conflict, NotFound, PayloadTooLarge
from mmsearch.service.schemas import ItemBody
from mmsearch.service.searching import image_limits, image_url
from mmsearch.service.state import ServiceState
from mmsearch.workspace import utc_now

IMAGE_SUFFIXES = {"PNG": ".png", "JPEG": ".jpg", "GIF": ".gif", "WEBP": ".webp", "BMP": ".bmp"}


def get_item(state: ServiceState, collection: str, item_id: str) -> dict[str, Any]:
    """Every stored field of an item except its vectors, with image URLs."""
    searcher = state.searcher(collection)
    columns = [f.name for f in searcher.index.schema if not f.name.startswith("vector_")]
    rows = searcher.index.get([item_id], columns)
    if not rows:
        raise NotFound(f"No item '{item_id}' in collection '{collection}'.")
    row = rows[0]
    row["texts"] = json.loads(row.pop("texts_json", None) or "{}")
    row["image_urls"] = [image_url(collection, item_id, n) for n in range(len(row["images"] or []))]
    row["build_id"] = searcher.build_id
    return row


def item_image_path(state: ServiceState, collection: str, item_id: str, n: int) -> Path:
    """The n-th image file of this item, and only files listed for it."""
    rows = state.searcher(collection).index.get([item_id], ["id", "images"])
    if not rows:
        raise NotFound(f"No item '{item_id}' in collection '{collection}'.")
    images = list(rows[0].get("images") or [])
    if not 0 <= n < len(images):
        raise NotFound(f"Item '{item_id}' has {len(images)} image(s); there is no image {n}.")
    path = Path(images[n])
    if not path.is_file():
        raise NotFound(f"Image {n} of item '{item_id}' is not a local file that still exists.")
    return path


def delete_item(state: ServiceState, collection: str, item_id: str) -> dict[str, Any]:
    with state.write_lock(collection):
        folder = state.workspace.collection(collection)
        manifest = folder.live_manifest()
        index = LanceBuildIndex.open(
            folder.lancedb_dir, manifest["table"], state.settings.ann_min_rows
        )
        if not index.get([item_id], ["id"]):
            raise NotFound(f"No item '{item_id}' in collection '{collection}'.")
        index.delete([item_id])
        manifest.setdefault("counts", {})["items"] = index.row_count()
        manifest["table_version"] = index.version()
        manifest["updated_at"] = utc_now()
        folder.write_manifest(manifest["build_id"], manifest)
    state.forget(collection)
    return {"deleted": item_id, "build_id": manifest["build_id"], "items": index.row_count()}


def upsert_item(
    state: ServiceState, collection: str, item_id: str, body: ItemBody
) -> dict[str, Any]:
    with state.write_lock(collection):
        folder = state.workspace.collection(collection)
        manifest = folder.live_manifest()
        mapping = FieldMapping(**manifest["mapping"])
        record = _prepare_record(state, collection, item_id, body, mapping, manifest)
        settings = state.settings.model_copy(
            update={
                "text_encoder": manifest["encoders"]["text"]["spec"],
                "image_encoder": manifest["encoders"]
                .get("image", {})
                .get("spec", state.settings.image_encoder),
                "image_roots": state.allowed_roots(),
            }
        )
        state.uploads_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=state.uploads_dir, prefix="put-") as tmp:
            catalog = Path(tmp) / "item.jsonl"
            catalog.write_text(json.dumps(record, ensure_ascii=False) + "\n", encoding="utf-8")
            report = Ingestor(settings).run(IngestOptions(catalog, collection, mapping))
    state.forget(collection)
    if report.errors:
        raise QueryError(f"The item was not stored: {report.errors[0].reason}")
    counts = report.counts
    status = "unchanged" if counts["unchanged"] else "updated" if counts["updated"] else "added"
    return {"id": item_id, "status": status, "build_id": report.build_id, "run_id": report.run_id}


def _prepare_record(
    state: ServiceState,
    collection: str,
    item_id: str,
    body: ItemBody,
    mapping: FieldMapping,
    manifest: dict[str, Any],
) -> dict[str, Any]:
    record = dict(body.record)
    id_field = mapping.id or "id"
    given = record.get(id_field)
    if given is not None and str(given) != item_id:
        raise QueryError(f"The record's {id_field} '{given}' differs from the URL's '{item_id}'.")
    record[id_field] = item_id
    _coerce_attributes(record, manifest["attributes"])
    if body.images:
        if not mapping.images:
            raise QueryError(f"Collection '{collection}' has no image field; it is text-only.")
        record[mapping.images[0]] = [
            str(_save_upload(state, collection, n, upload.data))
            for n, upload in enumerate(body.images)
        ]
    for field in mapping.images:
        value = record.get(field)
        refs = value if isinstance(value, list) else [value] if isinstance(value, str) else []
        checked = []
        for ref in refs:
            if not isinstance(ref, str) or ref.lower().startswith(("http://", "https://")):
                checked.append(ref)
                continue
            checked.append(str(state.check_allowed(Path(ref), "image")))
        if refs:
            record[field] = checked
    return record


def _coerce_attributes(record: dict[str, Any], attributes: list[dict[str, Any]]) -> None:
    """Make JSON numbers match the build's types, then insist every typed attribute fits."""
    for spec in attributes:
        value = record.get(spec["field"])
        if spec["kind"] == "float" and isinstance(value, int) and not isinstance(value, bool):
            record[spec["field"]] = float(value)
        if spec["kind"] == "int" and isinstance(value, float) and value.is_integer():
            record[spec["field"]] = int(value)
    inferred = infer_attribute_specs([record], [a["field"] for a in attributes])
    problems = [
        f"{spec['field']} must be {spec['kind']} (got {record.get(spec['field'])!r})"
        for spec, found in zip(attributes, inferred, strict=True)
        if found.kind != spec["kind"]
    ]
    if problems:
        raise Conflict(
            "The record does not fit the live build's attribute types: "
            + "; ".join(problems)
            + ". Give every typed attribute a value of its type."
        )


def _save_upload(state: ServiceState, collection: str, n: int, encoded: str) -> Path:
    """Validate an uploaded image and keep it under the workspace, named by its content."""
    limit = state.settings.max_image_bytes
    if encoded.startswith("data:"):
        encoded = encoded.partition(",")[2]
    if len(encoded) * 3 // 4 > limit:
        raise PayloadTooLarge(f"Image {n} is over the limit of {limit} bytes.")
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise QueryError(f"Image {n} is not valid base64.") from None
    decode_image(data, source=f"uploaded image {n}", limits=image_limits(state.settings))
    with Image.open(io.BytesIO(data)) as probe:  # already validated: only the format is read
        suffix = IMAGE_SUFFIXES.get(probe.format or "", ".img")
    folder = state.uploads_dir / "images" / collection
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{hashlib.sha256(data).hexdigest()}{suffix}"
    if not path.exists():
        path.write_bytes(data)
    return path
