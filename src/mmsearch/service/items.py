"""Single-item reads and writes on a collection's live build.

A PUT goes through the same ``Ingestor`` as a catalog file (one-line JSONL in a
temporary folder, the live build's mapping and encoders), so an item written over
HTTP is validated, hashed, encoded and recorded exactly like one from a catalog.
Before ingesting, the record is checked against the build's attribute types: the
ingestor infers types from the rows it sees, and a single row that does not carry
every typed attribute would otherwise look like a new schema and start a new build.

Writes hold the collection's writer lock, but only for ``ITEM_WRITE_WAIT_S`` when
another writer has it: an HTTP client should get a prompt 409 it can retry rather than
hang behind a whole catalog ingest.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import io
import json
import logging
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from PIL import Image

from mmsearch.builds.history import record_item_write, recording
from mmsearch.catalog.mapping import FieldMapping
from mmsearch.catalog.normalise import infer_attribute_specs
from mmsearch.clock import utc_now
from mmsearch.errors import MMSearchError, QueryError
from mmsearch.filters.expr import all_of
from mmsearch.graph.make import remake_after_item_write
from mmsearch.ingest import IngestOptions, Ingestor
from mmsearch.ingest.builds import writable_live_index
from mmsearch.ingest.write_access import WriteAccess
from mmsearch.manifest import AttributeDescription, BuildManifest
from mmsearch.media.images import decode_image
from mmsearch.media.paths import display_path
from mmsearch.moderation.decisions import FINGERPRINTS_COLUMN, MODERATION_COLUMNS
from mmsearch.service.access import Caller
from mmsearch.service.errors import Conflict, Forbidden, NotFound, PayloadTooLarge, WriterBusy
from mmsearch.service.schemas import ItemBody
from mmsearch.service.searching import image_limits, image_url
from mmsearch.service.state import ServiceState
from mmsearch.workspace import new_id
from mmsearch.writer_lock import CollectionBusy

IMAGE_SUFFIXES = {"PNG": ".png", "JPEG": ".jpg", "GIF": ".gif", "WEBP": ".webp", "BMP": ".bmp"}
# Moderation columns are for reviewers (the review routes), not every reader of an item.
NOT_SHOWN = frozenset({*MODERATION_COLUMNS, FINGERPRINTS_COLUMN})
ITEM_WRITE_WAIT_S = 30.0  # long enough for another item write, short of a catalog ingest

log = logging.getLogger("mmsearch.service")


def _visible_row(
    state: ServiceState, collection: str, item_id: str, caller: Caller, columns: list[str]
) -> dict[str, Any]:
    """The item's row if this caller may see it; otherwise the same 404 as a missing item,
    so that nobody learns that an item they may not see exists. An item moderation hides
    is read only through the review routes."""
    searcher = state.searcher(collection)
    access = all_of(state.access_filter(caller, collection), searcher.moderation_filter())
    rows = searcher.index.get([item_id], columns, access)
    if not rows:
        raise NotFound(f"No item '{item_id}' in collection '{collection}'.")
    return rows[0]


def get_item(state: ServiceState, collection: str, item_id: str, caller: Caller) -> dict[str, Any]:
    """Every stored field of an item except its vectors, with image URLs.

    Server paths are shown relative to the folder they were ingested from (or the
    configured roots), never as absolute paths of the server."""
    searcher = state.searcher(collection)
    columns = [
        f.name
        for f in searcher.index.schema
        if not f.name.startswith("vector_") and f.name not in NOT_SHOWN
    ]
    row = _visible_row(state, collection, item_id, caller, columns)
    row["texts"] = json.loads(row.pop("texts_json", None) or "{}")
    row["image_urls"] = [image_url(collection, item_id, n) for n in range(len(row["images"] or []))]
    roots = _display_roots(state, row.get("source_file"))
    row["images"] = [display_path(p, roots) for p in row.get("images") or []]
    if row.get("source_file"):
        row["source_file"] = Path(row["source_file"]).name
    row["build_id"] = searcher.build_id
    return row


def _display_roots(state: ServiceState, source_file: str | None) -> list[Path]:
    roots = [Path(source_file).parent] if source_file else []
    return [*roots, *state.allowed_roots(), *state.settings.image_roots, state.uploads_dir]


def item_image_path(
    state: ServiceState, collection: str, item_id: str, n: int, caller: Caller
) -> Path:
    """The n-th image file of this item, and only files listed for it."""
    rows = [_visible_row(state, collection, item_id, caller, ["id", "images"])]
    images = list(rows[0].get("images") or [])
    if not 0 <= n < len(images):
        raise NotFound(f"Item '{item_id}' has {len(images)} image(s); there is no image {n}.")
    path = Path(images[n])
    if not path.is_file():
        raise NotFound(f"Image {n} of item '{item_id}' is not a local file that still exists.")
    return path


@contextlib.contextmanager
def _item_writer(state: ServiceState, collection: str, purpose: str) -> Iterator[None]:
    """Hold the collection's writer lock for one item write, or answer 409 (WriterBusy).

    Who holds the lock (pid, host, what it does) stays in the server log: API callers
    learn only that the collection is busy and that retrying will work."""
    try:
        with state.writer(collection, purpose=purpose, timeout_s=ITEM_WRITE_WAIT_S):
            yield
    except CollectionBusy as exc:
        holder = exc.holder.describe() if exc.holder else "an unrecorded writer"
        log.info("item write to %s gave up waiting for %s", collection, holder)
        raise WriterBusy(
            f"Collection '{collection}' is being written by another writer (an ingest or "
            f"another item write); waited {ITEM_WRITE_WAIT_S:g} s. Retry when it finishes."
        ) from None


def delete_item(
    state: ServiceState, collection: str, item_id: str, caller: Caller
) -> dict[str, Any]:
    access = state.access_filter(caller, collection)
    _visible_row(state, collection, item_id, caller, ["id"])
    with _item_writer(state, collection, f"DELETE item {item_id}"):
        folder = state.workspace.collection(collection)
        manifest = folder.live_manifest()
        index, _undone = writable_live_index(folder, manifest, state.settings)
        # Asked again under the lock, of the table written, with the caller's access node:
        # the item may have been relabelled since the check above.
        if not index.get([item_id], ["id"], access):
            raise NotFound(f"No item '{item_id}' in collection '{collection}'.")
        started_at, before = utc_now(), index.version()
        index.delete([item_id])
        # No entity, edge or cluster may name it: the graph again, before the manifest.
        remake_after_item_write(folder.build_dir(manifest.build_id), manifest, index)
        counts = {"removed": 1, "items": index.row_count()}
        manifest.counts = manifest.counts.model_copy(update={"items": counts["items"]})
        record_item_write(
            folder,
            manifest,
            kind="item_delete",
            run_id=new_id("run"),
            actor=caller.key_id,
            started_at=started_at,
            finished_at=utc_now(),
            counts=counts,
            version_before=before,
            version_after=index.version(),
            items=[item_id],
        )
    state.forget(collection)
    state.audit(caller.key_id, "item.delete", collection=collection, items=[item_id])
    return {"deleted": item_id, "build_id": manifest.build_id, "items": index.row_count()}


def upsert_item(
    state: ServiceState, collection: str, item_id: str, body: ItemBody, caller: Caller
) -> dict[str, Any]:
    try:
        result = _upsert_item(state, collection, item_id, body, caller)
    except MMSearchError as exc:
        state.audit(
            caller.key_id,
            "item.put",
            collection=collection,
            items=[item_id],
            outcome="failed",
            detail=str(exc)[:300],
        )
        raise
    state.audit(
        caller.key_id,
        "item.put",
        collection=collection,
        items=[item_id],
        detail=result["status"],
    )
    return result


def _upsert_item(
    state: ServiceState, collection: str, item_id: str, body: ItemBody, caller: Caller
) -> dict[str, Any]:
    with _item_writer(state, collection, f"PUT item {item_id}"):
        folder = state.workspace.collection(collection)
        manifest = folder.live_manifest()
        mapping = manifest.mapping.model_copy(deep=True)
        if not caller.unrestricted:
            _check_restricted_write(state, collection, item_id, body, mapping, caller)
        record = _prepare_record(state, collection, item_id, body, mapping, manifest)
        settings = state.settings.model_copy(
            update={
                "text_encoder": manifest.encoders["text"].spec,
                "image_encoder": (
                    manifest.encoders["image"].spec
                    if "image" in manifest.encoders
                    else state.settings.image_encoder
                ),
                "image_roots": [*state.allowed_roots(), state.uploads_dir / "images"],
            }
        )
        state.uploads_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=state.uploads_dir, prefix="put-") as tmp:
            catalog = Path(tmp) / "item.jsonl"
            catalog.write_text(json.dumps(record, ensure_ascii=False) + "\n", encoding="utf-8")
            options = IngestOptions(
                catalog,
                collection,
                mapping,
                writer_groups=None if caller.unrestricted else caller.groups,
            )
            with recording("item_put", caller.key_id, items=[item_id]):
                report = Ingestor(settings).run(options)
    state.forget(collection)
    if report.errors:
        raise QueryError(f"The item was not stored: {report.errors[0].reason}")
    counts = report.counts
    status = "unchanged" if counts["unchanged"] else "updated" if counts["updated"] else "added"
    return {"id": item_id, "status": status, "build_id": report.build_id, "run_id": report.run_id}


def _check_restricted_write(
    state: ServiceState,
    collection: str,
    item_id: str,
    body: ItemBody,
    mapping: FieldMapping,
    caller: Caller,
) -> None:
    """A key bound by ACLs may overwrite only items it can see, and label items only with
    its own groups: it can neither take over nor plant items in other groups.

    The ingest that follows applies the same rule (ingest/write_access.py) and gives an
    unlabelled item the key's groups; checking here first answers with the status codes
    of the item routes: 404 for an item the key cannot see, as for a missing one."""
    searcher = state.searcher(collection)
    exists = bool(searcher.index.get([item_id], ["id"]))
    if exists:
        _visible_row(state, collection, item_id, caller, ["id"])
    value = body.record.get(mapping.acl) if mapping.acl else None
    groups = [value] if isinstance(value, str | int) else value
    if not isinstance(groups, list):
        return  # no acl, or one the ingest refuses as malformed
    writer = WriteAccess(caller.groups, searcher.access_for(caller.groups).default_public)
    if not writer.may_label(sorted({str(g).strip() for g in groups if str(g).strip()})):
        raise Forbidden("This key may label items only with its own ACL groups.")


def _prepare_record(
    state: ServiceState,
    collection: str,
    item_id: str,
    body: ItemBody,
    mapping: FieldMapping,
    manifest: BuildManifest,
) -> dict[str, Any]:
    record = dict(body.record)
    id_field = mapping.id or "id"
    given = record.get(id_field)
    if given is not None and str(given) != item_id:
        raise QueryError(f"The record's {id_field} '{given}' differs from the URL's '{item_id}'.")
    record[id_field] = item_id
    _coerce_attributes(record, manifest.attributes)
    # Paths the caller named must lie in the configured roots; uploads are saved below.
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
    if body.images:
        if not mapping.images:
            raise QueryError(f"Collection '{collection}' has no image field; it is text-only.")
        record[mapping.images[0]] = [
            str(_save_upload(state, collection, n, upload.data))
            for n, upload in enumerate(body.images)
        ]
    return record


def _coerce_attributes(record: dict[str, Any], attributes: list[AttributeDescription]) -> None:
    """Make JSON numbers match the build's types, then insist every typed attribute fits."""
    for spec in attributes:
        value = record.get(spec.field)
        if spec.kind == "float" and isinstance(value, int) and not isinstance(value, bool):
            record[spec.field] = float(value)
        if spec.kind == "int" and isinstance(value, float) and value.is_integer():
            record[spec.field] = int(value)
    inferred = infer_attribute_specs([record], [a.field for a in attributes])
    problems = [
        f"{spec.field} must be {spec.kind} (got {record.get(spec.field)!r})"
        for spec, found in zip(attributes, inferred, strict=True)
        if found.kind != spec.kind
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
