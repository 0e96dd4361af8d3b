"""One batch of a rebuild: stored rows in, rows of the new build out.

Columns are carried over as Arrow data, untouched: provenance (source file and row,
the run that ingested the record, when), hashes, ACLs, attributes, and the vectors of
roles whose encoder did not change (byte for byte). Only the roles that changed are
computed, from the row itself: the text to embed is composed by ``Item.semantic_text``
(as ingest composes it), images are read back and decoded exactly as ingest decodes
them, so a rebuilt vector equals the one a fresh ingest would store.
"""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np
import pyarrow as pa
from PIL import Image

from mmsearch.catalog.item import Item, RowError
from mmsearch.config import Settings
from mmsearch.errors import ImageError
from mmsearch.filters.expr import InList
from mmsearch.index.base import BuildIndex
from mmsearch.index.schema import KEYWORD_COLUMN, vector_column
from mmsearch.ingest.encoders import EncoderSet, image_roles
from mmsearch.ingest.pipeline import _encode_images
from mmsearch.ingest.remap import Remap
from mmsearch.ingest.stored_images import StoredImages
from mmsearch.media.images import ImageLimits, decode_image

# A row the rebuild could not complete gets this record hash: no catalog row hashes to
# it, so the next ingest of the catalog encodes the item again instead of calling it
# unchanged and keeping its missing vectors for ever.
INCOMPLETE_RECORD = ""


class RowRebuilder:
    """Rebuilds batches of rows; keeps the counts and timings of the whole run."""

    def __init__(
        self,
        settings: Settings,
        encoders: EncoderSet,
        remap: Remap,
        reused: set[str],
        schema: pa.Schema,
        fetch: bool,
    ):
        self.settings = settings
        self.encoders = encoders
        self.remap = remap
        self.reused = reused
        self.schema = schema
        self.images = StoredImages(settings, fetch)
        self.limits = ImageLimits(settings.max_image_bytes, settings.max_image_pixels)
        roles = list(encoders.describe())
        self.encode_text = "text" in roles and "text" not in reused
        self.encode_images = [role for role in image_roles(encoders) if role not in reused]
        self.vector_columns = {vector_column(role) for role in roles}
        self.counts: dict[str, Any] = {
            "written": 0,
            "failed": 0,
            "reused": dict.fromkeys(sorted(reused), 0),
            "encoded": dict.fromkeys(sorted(set(roles) - reused), 0),
        }
        self.timings: dict[str, float] = dict.fromkeys(
            ("read", "decode", "encode_text", "encode_image", "write"), 0.0
        )

    def close(self) -> None:
        self.images.close()

    def rebuild(self, source: BuildIndex, ids: list[str]) -> tuple[pa.Table, list[RowError]]:
        tick = time.perf_counter()
        stored = [c for c in source.schema.names if c not in self.vector_columns]
        kept = [vector_column(role) for role in sorted(self.reused)]
        table = source.scan(stored + kept, InList("id", tuple(ids)))
        rows = table.select(stored).to_pylist()
        self.timings["read"] += time.perf_counter() - tick
        items = [self.remap.item_of(row) for row in rows]
        problems: list[RowError] = []
        failed: set[int] = set()
        if self.remap.text_changed:
            for n, item in enumerate(items):
                if not (item.title or item.texts or item.images):
                    failed.add(n)
                    problems.append(
                        _error(
                            item,
                            "under the new mapping the item has no title, text or "
                            "image to search; it is kept without a text vector",
                            "text",
                        )
                    )
        overrides: dict[str, list[Any]] = {}
        if self.encode_text:
            overrides[vector_column("text")] = self._texts(items)
        if self.encode_images:
            overrides.update(self._images(rows, items, failed, problems))
        for column in kept:
            role = column.removeprefix("vector_")
            self.counts["reused"][role] += len(table) - table.column(column).null_count
        if self.remap.changed:
            overrides["title"] = [item.title for item in items]
            overrides[KEYWORD_COLUMN] = [item.search_text for item in items]
            overrides["texts_json"] = [json.dumps(i.texts, ensure_ascii=False) for i in items]
        overrides["record_sha256"] = [
            INCOMPLETE_RECORD
            if n in failed
            else (item.content_sha256() if self.remap.changed else rows[n]["record_sha256"])
            for n, item in enumerate(items)
        ]
        self.counts["failed"] += len(failed)
        self.counts["written"] += len(items) - len(failed)
        # Moderation decisions are kept as stored; a source built before those columns
        # existed has none (NULL), as its rows had.
        arrays = [
            pa.array(overrides[f.name], type=f.type)
            if f.name in overrides
            else table.column(f.name).cast(f.type)
            if f.name in table.column_names
            else pa.nulls(len(table), f.type)
            for f in self.schema
        ]
        return pa.Table.from_arrays(arrays, schema=self.schema), problems

    def _texts(self, items: list[Item]) -> list[list[float] | None]:
        """Blank texts get no vector, as at ingest."""
        tick = time.perf_counter()
        texts = [item.semantic_text for item in items]
        present = [n for n, text in enumerate(texts) if text.strip()]
        vectors: list[list[float] | None] = [None] * len(items)
        encoder = self.encoders.encoders["text"]
        step = self.settings.batch_size
        for start in range(0, len(present), step):
            part = present[start : start + step]
            encoded = encoder.encode_texts([texts[n] for n in part])
            for n, vector in zip(part, encoded, strict=True):
                vectors[n] = np.asarray(vector, dtype=np.float32).tolist()
        self.counts["encoded"]["text"] += len(present)
        self.timings["encode_text"] += time.perf_counter() - tick
        return vectors

    def _images(
        self,
        rows: list[dict[str, Any]],
        items: list[Item],
        failed: set[int],
        problems: list[RowError],
    ) -> dict[str, list[Any]]:
        """Image-side vectors of the roles that changed, a batch of items at a time, so
        that decoded pixels never outlive their encoder batch."""
        out: dict[str, list[Any]] = {
            vector_column(r): [None] * len(items) for r in self.encode_images
        }
        step = self.settings.batch_size
        for start in range(0, len(items), step):
            positions = [n for n in range(start, min(start + step, len(items))) if items[n].images]
            decoded: list[list[Image.Image]] = []
            good: list[int] = []
            tick = time.perf_counter()
            for n in positions:
                try:
                    decoded.append(self._decode(rows[n]))
                    good.append(n)
                except ImageError as exc:
                    failed.add(n)
                    problems.append(_error(items[n], f"{exc}; kept without image vectors"))
            self.timings["decode"] += time.perf_counter() - tick
            tick = time.perf_counter()
            for role in self.encode_images:
                encoder = self.encoders.encoders[role]
                vectors = _encode_images(encoder, decoded, step)
                for n, found in zip(good, vectors, strict=True):
                    if found is not None:
                        out[vector_column(role)][n] = found.astype(np.float32).tolist()
                        self.counts["encoded"][role] += 1
            self.timings["encode_image"] += time.perf_counter() - tick
            del decoded
        return out

    def _decode(self, row: dict[str, Any]) -> list[Image.Image]:
        blobs = self.images.load(row)
        return [
            decode_image(
                blob,
                source=path,
                limits=self.limits,
                max_side=self.settings.ingest_image_max_side,
            )
            for blob, path in zip(blobs, row.get("images") or [], strict=True)
        ]


def _error(item: Item, reason: str, field: str = "image") -> RowError:
    return RowError(item.source, item.row, reason, field, item.id)
