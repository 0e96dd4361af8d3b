"""Decode, hash, read and encode one chunk of items with bounded memory.

A chunk is cut into encoder batches bounded both by count (the encoder's batch size)
and by the bytes their decoded pixels will take, so that a batch of 36-megapixel
photos costs no more memory than a batch of icons. Images are decoded at most at
``ingest_image_max_side`` (the encoders never look closer), the next batch is decoded
on a worker thread while this one is encoded, and decoded images are dropped as soon
as their batch is encoded: only vectors outlive a batch.

When the collection enforces a moderation policy (``ingest/moderating.py``), each
image is fingerprinted from the same decoded pixels, and each item is judged after
OCR and before encoding: a blocked item becomes a row error and costs no encoding.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
from PIL import Image

from mmsearch.catalog.aliases import ALIAS_COLUMN, encode_keys
from mmsearch.catalog.item import Item, RowError
from mmsearch.clock import utc_now
from mmsearch.config import Settings
from mmsearch.encoders.base import Encoder
from mmsearch.encoders.hashes import ImageHashes, image_hashes
from mmsearch.errors import ImageError
from mmsearch.index.schema import KEYWORD_COLUMN, vector_column
from mmsearch.ingest.encoders import EncoderSet, image_roles
from mmsearch.ingest.moderating import IngestModeration, blocked
from mmsearch.media.images import ImageLimits, decode_image

if TYPE_CHECKING:
    from mmsearch.encoders.ocr import ImageTextReader
    from mmsearch.moderation.fingerprints import Fingerprint

BYTES_PER_PIXEL = 4  # RGBA, the widest mode decode_image returns


@dataclass
class Pending:
    """An item to encode, with the raw bytes of its images (already hashed)."""

    item: Item
    blobs: list[bytes]

    @property
    def raw_bytes(self) -> int:
        return sum(len(blob) for blob in self.blobs)


@dataclass
class _Decoded:
    pending: Pending
    images: list[Image.Image] | None
    hashes: list[ImageHashes]
    error: ImageError | None = None
    fingerprints: list[Fingerprint] | None = None  # when a policy is enforced
    moderation: dict[str, Any] | None = None  # the row's moderation columns


def decoded_size(blob: bytes, max_side: int) -> int:
    """Bytes the decoded image will take, from its header alone (no pixels decoded)."""
    try:
        with Image.open(io.BytesIO(blob)) as probe:
            width, height = probe.size
    except Exception:  # the decode proper reports what is wrong with it
        return 0
    scale = min(1.0, max_side / max(width, height, 1))
    return int(width * scale) * int(height * scale) * BYTES_PER_PIXEL


class ChunkEncoder:
    """Turns pending items into table rows; an image that fails to decode fails its row."""

    def __init__(
        self,
        settings: Settings,
        encoders: EncoderSet,
        schema: pa.Schema,
        run_id: str,
        timings: dict[str, float],
        moderation: IngestModeration | None = None,
    ):
        self.settings = settings
        self.moderation = moderation
        self.encoders = encoders
        self.schema = schema
        self.run_id = run_id
        self.timings = timings
        self.limits = ImageLimits(settings.max_image_bytes, settings.max_image_pixels)
        self.max_side = settings.ingest_image_max_side
        # Two batches are decoded at once at most (this one and the next).
        self.batch_pixel_bytes = settings.ingest_memory_mb * 1024 * 1024 // 4
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mmsearch-decode")
        self._reader: ImageTextReader | None = None

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def encode(
        self,
        pending: list[Pending],
        errors: list[RowError],
        on_batch: Callable[[int, int], None],
    ) -> tuple[pa.Table | None, list[Item]]:
        """Rows for every item that decoded; ``on_batch(items, images)`` after each batch."""
        records: list[dict[str, Any]] = []
        written: list[Item] = []
        batches = list(self._batches(pending))
        future: Future[list[_Decoded]] | None = None
        if batches:
            future = self._pool.submit(self._decode, batches[0])
        for number in range(len(batches)):
            assert future is not None
            decoded = future.result()
            if number + 1 < len(batches):
                future = self._pool.submit(self._decode, batches[number + 1])
            good = []
            for entry in decoded:
                if entry.error is not None:
                    item = entry.pending.item
                    errors.append(
                        RowError(item.source, item.row, str(entry.error), "image", item.id)
                    )
                else:
                    good.append(entry)
            if self.moderation is not None:
                good = self._moderate(good, errors)
            records.extend(self._encode_batch(good))
            written.extend(entry.pending.item for entry in good)
            on_batch(len(decoded), sum(len(e.pending.blobs) for e in good))
            del decoded, good  # drop this batch's pixels before the next is encoded
        if not records:
            return None, []
        tick = time.perf_counter()
        table = pa.Table.from_pylist(records, schema=self.schema)
        self.timings["write"] += time.perf_counter() - tick
        return table, written

    def _batches(self, pending: list[Pending]) -> Iterator[list[Pending]]:
        batch: list[Pending] = []
        pixels = 0
        for entry in pending:
            size = sum(decoded_size(blob, self.max_side) for blob in entry.blobs)
            if batch and (
                len(batch) >= self.settings.batch_size or pixels + size > self.batch_pixel_bytes
            ):
                yield batch
                batch, pixels = [], 0
            batch.append(entry)
            pixels += size
        if batch:
            yield batch

    def _decode(self, batch: list[Pending]) -> list[_Decoded]:
        tick = time.perf_counter()
        out = []
        for entry in batch:
            try:
                images = [
                    decode_image(blob, source=path, limits=self.limits, max_side=self.max_side)
                    for blob, path in zip(entry.blobs, entry.item.images, strict=True)
                ]
            except ImageError as exc:
                out.append(_Decoded(entry, None, [], exc))
                continue
            decoded = _Decoded(entry, images, [image_hashes(image) for image in images])
            if self.moderation is not None:
                tick_moderation = time.perf_counter()
                decoded.fingerprints = self.moderation.fingerprints(images, _image_digests(entry))
                self.timings["moderate"] = (
                    self.timings.get("moderate", 0.0) + time.perf_counter() - tick_moderation
                )
            out.append(decoded)
        self.timings["decode"] += time.perf_counter() - tick
        return out

    def _moderate(self, batch: list[_Decoded], errors: list[RowError]) -> list[_Decoded]:
        """The items the policy lets in, each with its decision; a blocked one is a row
        error. OCR runs first when it is on, so text rules read the text in images."""
        assert self.moderation is not None
        self._read_image_text(batch)
        tick = time.perf_counter()
        kept: list[_Decoded] = []
        at = utc_now()
        for entry in batch:
            item = entry.pending.item
            fingerprints = entry.fingerprints or []
            decision = self.moderation.decide(item, fingerprints, at)
            if decision is not None and decision.action == "block":
                errors.append(blocked(item, decision))
                continue
            entry.moderation = self.moderation.columns(fingerprints, decision)
            kept.append(entry)
        self.timings["moderate"] = self.timings.get("moderate", 0.0) + time.perf_counter() - tick
        return kept

    def _read_image_text(self, batch: list[_Decoded]) -> None:
        """Text read from each item's images, when OCR is on."""
        if not self.settings.ocr:
            return
        tick = time.perf_counter()
        reader = self._ocr_reader()
        for entry in batch:
            entry.pending.item.image_text = reader.read_all(entry.images or [])
        self.timings["ocr"] = self.timings.get("ocr", 0.0) + time.perf_counter() - tick

    def _encode_batch(self, batch: list[_Decoded]) -> list[dict[str, Any]]:
        if not batch:
            return []
        items = [entry.pending.item for entry in batch]
        images = [entry.images or [] for entry in batch]
        if self.moderation is None:  # else _moderate has read them
            self._read_image_text(batch)
        tick = time.perf_counter()
        text_vectors = self._encode_texts([item.semantic_text for item in items])
        self.timings["encode_text"] += time.perf_counter() - tick
        tick = time.perf_counter()
        image_vectors = {
            role: _encode_images(self.encoders.encoders[role], images, self.settings.batch_size)
            for role in image_roles(self.encoders)
        }
        self.timings["encode_image"] += time.perf_counter() - tick
        return [
            {
                **self._record(item, entry.hashes, text_vectors[n], image_vectors, n),
                **(entry.moderation or {}),
            }
            for n, (item, entry) in enumerate(zip(items, batch, strict=True))
        ]

    def _ocr_reader(self) -> ImageTextReader:
        from mmsearch.encoders.ocr import ImageTextReader

        if self._reader is None:
            self._reader = ImageTextReader()
        return self._reader

    def _encode_texts(self, texts: list[str]) -> list[np.ndarray | None]:
        present = [i for i, text in enumerate(texts) if text.strip()]
        vectors: list[np.ndarray | None] = [None] * len(texts)
        if present:
            encoded = self.encoders.encoders["text"].encode_texts([texts[i] for i in present])
            for position, vector in zip(present, encoded, strict=True):
                vectors[position] = vector
        return vectors

    def _record(
        self,
        item: Item,
        hashes: list[ImageHashes],
        text_vector: np.ndarray | None,
        image_vectors: dict[str, list[np.ndarray | None]],
        position: int,
    ) -> dict[str, Any]:
        record: dict[str, Any] = {
            "id": item.id,
            "title": item.title,
            KEYWORD_COLUMN: item.search_text,
            "texts_json": json.dumps(item.texts, ensure_ascii=False),
            "images": item.images,
            "image_sha256": item.image_sha256,
            "image_phash": [h.phash for h in hashes],
            "image_dhash": [h.dhash for h in hashes],
            "image_text": item.image_text or None,
            "source_file": item.source,
            "source_row": item.row,
            "record_sha256": item.content_sha256(),
            "ingest_run": self.run_id,
            "ingested_at": utc_now(),
            "acl": item.acl,
            ALIAS_COLUMN: encode_keys(item.aliases or []),
            **item.attributes,
            vector_column("text"): None if text_vector is None else text_vector.tolist(),
        }
        for role, vectors in image_vectors.items():
            found = vectors[position]
            record[vector_column(role)] = None if found is None else found.tolist()
        return record


def _image_digests(entry: Pending) -> list[str]:
    """The sha256 of each image's bytes (hashed when the item was read)."""
    known = entry.item.image_sha256
    if len(known) == len(entry.blobs):
        return list(known)
    return [hashlib.sha256(blob).hexdigest() for blob in entry.blobs]


def _encode_images(
    encoder: Encoder, images: list[list[Image.Image]], batch: int
) -> list[np.ndarray | None]:
    """Every image of every item, batched across items; (n_images, dim) per item."""
    flat = [(position, image) for position, decoded in enumerate(images) for image in decoded]
    per_item: list[list[np.ndarray]] = [[] for _ in images]
    for start in range(0, len(flat), batch):
        part = flat[start : start + batch]
        encoded = encoder.encode_images([image for _position, image in part])
        for (position, _image), vector in zip(part, encoded, strict=True):
            per_item[position].append(vector)
    return [np.stack(vectors) if vectors else None for vectors in per_item]
