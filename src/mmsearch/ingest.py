"""Ingest: catalog rows → validated items → images → vectors → the build's table.

Every row either lands or becomes one line of the run's errors.jsonl, so nothing is
lost silently. Rows whose content hash is unchanged since the last run are neither
decoded nor re-encoded. The build's manifest records what was used to make it.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
from PIL import Image

from mmsearch import __version__
from mmsearch.catalog.item import Item, RawRecord, RowError
from mmsearch.catalog.mapping import FieldMapping, guess_mapping
from mmsearch.catalog.normalise import AttributeSpec, infer_attribute_specs, normalise_record
from mmsearch.catalog.readers import catalog_format, read_catalog
from mmsearch.config import Settings
from mmsearch.encoders.base import Encoder, create_encoder
from mmsearch.encoders.hashes import ImageHashes, image_hashes
from mmsearch.errors import CatalogError, ImageError, MMSearchError
from mmsearch.index.base import BuildIndex, VectorField
from mmsearch.index.open import create_build_index, open_build_index, store_description
from mmsearch.index.schema import KEYWORD_COLUMN, SCHEMA_VERSION, build_schema, vector_column
from mmsearch.media.fetch import FetchPolicy, ImageFetcher
from mmsearch.media.images import ImageLimits, decode_image, read_image_bytes
from mmsearch.media.paths import ImageRoots, is_url
from mmsearch.workspace import (
    CollectionDir,
    Workspace,
    check_collection_name,
    new_id,
    utc_now,
    write_json_atomic,
)

if TYPE_CHECKING:
    from mmsearch.encoders.ocr import ImageTextReader

SAMPLE_ROWS = 1000
ProgressCallback = Callable[[int], None]


@dataclass
class IngestOptions:
    catalog: Path
    collection: str
    mapping: FieldMapping = field(default_factory=FieldMapping)
    images_root: Path | None = None


@dataclass
class IngestReport:
    collection: str
    build_id: str
    run_id: str
    new_build: bool
    mapping: FieldMapping
    attributes: list[AttributeSpec]
    counts: dict[str, int]
    errors: list[RowError]
    errors_path: Path
    manifest_path: Path
    timings: dict[str, float]

    @property
    def ingested(self) -> int:
        return self.counts["added"] + self.counts["updated"]

    def as_dict(self) -> dict[str, Any]:
        return {
            "collection": self.collection,
            "build_id": self.build_id,
            "run_id": self.run_id,
            "new_build": self.new_build,
            "mapping": self.mapping.model_dump(),
            "counts": self.counts,
            "errors": [e.as_dict() for e in self.errors[:100]],
            "errors_file": str(self.errors_path),
            "manifest": str(self.manifest_path),
            "timings_s": {k: round(v, 4) for k, v in self.timings.items()},
        }


@dataclass
class EncoderSet:
    """The encoders of a build by role, with the specs they were created from."""

    specs: dict[str, str]
    encoders: dict[str, Encoder]

    @classmethod
    def load(cls, specs: dict[str, str]) -> EncoderSet:
        return cls(specs, {role: create_encoder(spec) for role, spec in specs.items()})

    def get(self, role: str) -> Encoder | None:
        return self.encoders.get(role)

    def describe(self) -> dict[str, dict[str, Any]]:
        """What the manifest records; two builds with equal descriptions share vectors."""
        return {
            role: {
                "spec": self.specs[role],
                "name": encoder.name,
                "version": encoder.version,
                "dim": encoder.dim,
                "modalities": sorted(encoder.modalities),
            }
            for role, encoder in self.encoders.items()
        }


def file_sha256(path: Path) -> str:
    if path.is_dir():
        digest = hashlib.sha256()
        for file in sorted(p for p in path.rglob("*") if p.is_file()):
            digest.update(file.relative_to(path).as_posix().encode())
            digest.update(str(file.stat().st_size).encode())
        return "listing:" + digest.hexdigest()
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def estimate_rows(path: Path) -> int | None:
    """A cheap row count for the progress bar; None where counting costs a full parse."""
    try:
        kind = catalog_format(path)
    except CatalogError:
        return None  # the ingest itself reports the problem, with its full message
    if not path.exists():
        return None
    if kind in {"jsonl", "csv"}:
        with path.open("rb") as handle:
            lines = sum(block.count(b"\n") for block in iter(lambda: handle.read(1 << 20), b""))
        return max(lines - (1 if kind == "csv" else 0), 0)
    if kind == "parquet":
        import pyarrow.parquet as pq

        return pq.ParquetFile(path).metadata.num_rows
    return None


class Ingestor:
    """Runs one ingest of one catalog into one collection."""

    def __init__(
        self,
        settings: Settings,
        progress: ProgressCallback | None = None,
        image_progress: ProgressCallback | None = None,
    ):
        self.settings = settings
        self.progress = progress or (lambda done: None)
        # Images embedded per chunk: the figure that bounds ingest with a CLIP encoder.
        self.image_progress = image_progress or (lambda done: None)
        self.limits = ImageLimits(settings.max_image_bytes, settings.max_image_pixels)
        self._fetcher: ImageFetcher | None = None

    @property
    def fetcher(self) -> ImageFetcher:
        """Created on the first image URL, so local-only catalogs never open the URL cache."""
        if self._fetcher is None:
            cache_dir = Path(self.settings.home) / "cache" / "images"
            self._fetcher = ImageFetcher(cache_dir, FetchPolicy.from_settings(self.settings))
        return self._fetcher

    def close(self) -> None:
        if self._fetcher is not None:
            self._fetcher.close()
            self._fetcher = None

    def run(self, options: IngestOptions) -> IngestReport:
        try:
            return self._run(options)
        finally:
            self.close()

    def _run(self, options: IngestOptions) -> IngestReport:
        check_collection_name(options.collection)
        catalog = options.catalog.expanduser().resolve()
        timings = dict.fromkeys(
            ("read", "decode", "encode_text", "encode_image", "write", "index"), 0.0
        )
        started = time.perf_counter()
        rows = read_catalog(catalog)
        sample = list(itertools.islice(rows, SAMPLE_ROWS))
        records = [r for r in sample if isinstance(r, RawRecord)]
        if not records:
            errors = [r for r in sample if isinstance(r, RowError)]
            detail = f" First problem: {errors[0].describe()}" if errors else ""
            raise MMSearchError(f"Catalog {catalog} has no readable rows.{detail}")
        mapping = guess_mapping((r.data for r in records), options.mapping)
        specs = infer_attribute_specs((r.data for r in records), mapping.attributes or [])
        timings["read"] += time.perf_counter() - started

        specs_by_role = {"text": self.settings.text_encoder}
        if mapping.images:
            specs_by_role["image"] = self.settings.image_encoder
        encoders = EncoderSet.load(specs_by_role)
        workspace = Workspace(self.settings.home)
        collection = workspace.create_or_open(options.collection)
        build_id, index, manifest, new_build = self._open_or_create_build(
            collection, mapping, specs, encoders
        )
        run_id = new_id("run")
        images_root = ImageRoots.of(
            options.images_root or (catalog if catalog.is_dir() else catalog.parent),
            self.settings.image_roots,
        )
        writer = _BatchWriter(self, index, encoders, run_id, timings)
        known = index.content_hashes()
        counts = {"rows": 0, "added": 0, "updated": 0, "unchanged": 0, "failed": 0}
        errors: list[RowError] = []
        seen: dict[str, int] = {}
        run_started_at = utc_now()

        for chunk in _chunks(itertools.chain(sample, rows), self.settings.write_batch_rows):
            tick = time.perf_counter()
            pending: list[tuple[Item, list[bytes]]] = []
            for row in chunk:
                counts["rows"] += 1
                result = (
                    row
                    if isinstance(row, RowError)
                    else normalise_record(row, mapping, specs, images_root)
                )
                if isinstance(result, RowError):
                    errors.append(result)
                    continue
                if result.id in seen:
                    errors.append(
                        RowError(
                            result.source,
                            result.row,
                            f"duplicate id: row {seen[result.id]} has the same id; kept that one",
                            field=mapping.id,
                            item_id=result.id,
                        )
                    )
                    continue
                seen[result.id] = result.row
                result.ocr = self.settings.ocr and bool(result.images)
                loaded = self._read_images(result, mapping, errors)
                if loaded is None:
                    continue
                if known.get(result.id) == result.content_sha256():
                    counts["unchanged"] += 1
                    continue
                pending.append((result, loaded))
            timings["read"] += time.perf_counter() - tick
            written = writer.write(pending, errors)
            for item in written:
                counts["updated" if item.id in known else "added"] += 1
            self.progress(len(chunk))
            self.image_progress(sum(len(item.images) for item in written))

        tick = time.perf_counter()
        index_info = index.refresh_indexes()
        timings["index"] += time.perf_counter() - tick
        errors.sort(key=lambda error: (error.source, error.row))
        counts["failed"] = len(errors)
        counts["items"] = index.row_count()

        run_dir = collection.build_dir(build_id) / "runs" / run_id
        errors_path = _write_errors(run_dir / "errors.jsonl", errors)
        run_record = {
            "run_id": run_id,
            "started_at": run_started_at,
            "finished_at": utc_now(),
            "source": {
                "path": str(catalog),
                "format": catalog_format(catalog),
                "sha256": file_sha256(catalog),
            },
            "mapping": mapping.model_dump(),
            "counts": counts,
            "timings_s": {k: round(v, 4) for k, v in timings.items()},
            "errors_file": str(errors_path.relative_to(collection.build_dir(build_id))),
            "table_version": index.version(),
        }
        write_json_atomic(run_dir / "run.json", run_record)
        manifest.update(
            {
                "updated_at": utc_now(),
                "counts": {"items": counts["items"], "last_run": counts},
                "errors": {"count": len(errors), "file": run_record["errors_file"]},
                "indexes": index_info,
                "table_version": index.version(),
            }
        )
        manifest["sources"].append({**run_record["source"], "run_id": run_id})
        manifest["runs"].append(run_record)
        manifest_path = collection.write_manifest(build_id, manifest)
        if counts["items"] > 0:
            collection.set_live(build_id)
        return IngestReport(
            options.collection,
            build_id,
            run_id,
            new_build,
            mapping,
            specs,
            counts,
            errors,
            errors_path,
            manifest_path,
            timings,
        )

    def _read_images(
        self, item: Item, mapping: FieldMapping, errors: list[RowError]
    ) -> list[bytes] | None:
        """Read image bytes (for hashing); a missing, refused or oversized image rejects the row.

        URLs come through the fetcher (address guard, limits, cache)."""
        loaded: list[bytes] = []
        for path in item.images:
            try:
                if is_url(path):
                    data = self.fetcher.fetch(path).data
                else:
                    data = read_image_bytes(Path(path), self.limits)
            except ImageError as exc:
                errors.append(_image_row_error(item, mapping, exc))
                return None
            loaded.append(data)
        item.image_sha256 = [hashlib.sha256(data).hexdigest() for data in loaded]
        return loaded

    def _open_or_create_build(
        self,
        collection: CollectionDir,
        mapping: FieldMapping,
        specs: list[AttributeSpec],
        encoders: EncoderSet,
    ) -> tuple[str, BuildIndex, dict[str, Any], bool]:
        """Reuse the live build when the schema and encoders match; else start a new build."""
        described = encoders.describe()
        attributes = [vars(spec) for spec in specs]
        live = collection.alias("live")
        if live is not None:
            manifest = collection.manifest(live)
            if (
                manifest["encoders"] == described
                and manifest["attributes"] == attributes
                and manifest.get("schema_version", 1) == SCHEMA_VERSION
            ):
                index = open_build_index(collection, manifest, self.settings)
                return live, index, manifest, False
        build_id = new_id("build")
        vectors = [
            VectorField(vector_column(role), d["dim"], multi=role in image_roles(encoders))
            for role, d in described.items()
        ]
        table = f"build_{build_id.replace('-', '_')}"
        index = create_build_index(collection, table, build_schema(specs, vectors), self.settings)
        manifest = {
            "collection": collection.name,
            "build_id": build_id,
            "created_at": utc_now(),
            "mmsearch_version": __version__,
            "schema_version": SCHEMA_VERSION,
            "table": table,
            "store": store_description(collection),
            "encoders": described,
            "mapping": mapping.model_dump(),
            "attributes": attributes,
            "keyword_column": KEYWORD_COLUMN,
            "config": self.settings.model_dump(
                mode="json", include={"candidates", "rrf_k", "ann_min_rows", "batch_size", "ocr"}
            ),
            "sources": [],
            "runs": [],
        }
        collection.write_manifest(build_id, manifest)
        return build_id, index, manifest, True


class _BatchWriter:
    """Decodes, encodes and writes one chunk of items; per-item image failures become errors."""

    def __init__(
        self,
        ingestor: Ingestor,
        index: BuildIndex,
        encoders: EncoderSet,
        run_id: str,
        timings: dict[str, float],
    ):
        self.ingestor = ingestor
        self.index = index
        self.encoders = encoders
        self.run_id = run_id
        self.timings = timings
        self._reader: ImageTextReader | None = None

    def write(self, pending: list[tuple[Item, list[bytes]]], errors: list[RowError]) -> list[Item]:
        tick = time.perf_counter()
        items: list[Item] = []
        images: list[list[Image.Image]] = []
        for item, blobs in pending:
            try:
                decoded = [
                    decode_image(blob, source=path, limits=self.ingestor.limits)
                    for blob, path in zip(blobs, item.images, strict=True)
                ]
            except ImageError as exc:
                errors.append(_image_row_error(item, None, exc))
                continue
            items.append(item)
            images.append(decoded)
        hashes = [[image_hashes(image) for image in decoded] for decoded in images]
        self.timings["decode"] += time.perf_counter() - tick
        if not items:
            return []
        if self.ingestor.settings.ocr:
            tick = time.perf_counter()
            reader = self._ocr_reader()
            for item, decoded in zip(items, images, strict=True):
                item.image_text = reader.read_all(decoded)
            self.timings["ocr"] = self.timings.get("ocr", 0.0) + time.perf_counter() - tick

        tick = time.perf_counter()
        text_vectors = self._encode_texts([item.semantic_text for item in items])
        self.timings["encode_text"] += time.perf_counter() - tick
        tick = time.perf_counter()
        image_vectors = {
            role: self._encode_images(self.encoders.encoders[role], images)
            for role in image_roles(self.encoders)
        }
        self.timings["encode_image"] += time.perf_counter() - tick

        tick = time.perf_counter()
        table = self._to_arrow(items, hashes, text_vectors, image_vectors)
        self.index.upsert(table)
        self.timings["write"] += time.perf_counter() - tick
        return items

    def _ocr_reader(self) -> ImageTextReader:
        from mmsearch.encoders.ocr import ImageTextReader

        if self._reader is None:
            self._reader = ImageTextReader()
        return self._reader

    def _encode_texts(self, texts: list[str]) -> list[np.ndarray | None]:
        present = [i for i, text in enumerate(texts) if text.strip()]
        vectors: list[np.ndarray | None] = [None] * len(texts)
        batch = self.ingestor.settings.batch_size
        for start in range(0, len(present), batch):
            positions = present[start : start + batch]
            encoded = self.encoders.encoders["text"].encode_texts([texts[i] for i in positions])
            for position, vector in zip(positions, encoded, strict=True):
                vectors[position] = vector
        return vectors

    def _encode_images(
        self, encoder: Encoder, images: list[list[Image.Image]]
    ) -> list[np.ndarray | None]:
        """Every image of every item, batched across items; (n_images, dim) per item."""
        flat = [(position, image) for position, decoded in enumerate(images) for image in decoded]
        per_item: list[list[np.ndarray]] = [[] for _ in images]
        batch = self.ingestor.settings.batch_size
        for start in range(0, len(flat), batch):
            part = flat[start : start + batch]
            encoded = encoder.encode_images([image for _position, image in part])
            for (position, _image), vector in zip(part, encoded, strict=True):
                per_item[position].append(vector)
        return [np.stack(vectors) if vectors else None for vectors in per_item]

    def _to_arrow(
        self,
        items: list[Item],
        hashes: list[list[ImageHashes]],
        text_vectors: list[np.ndarray | None],
        image_vectors: dict[str, list[np.ndarray | None]],
    ) -> pa.Table:
        now = utc_now()
        schema = self.index.schema
        records = []
        for position, (item, item_hashes, text_vector) in enumerate(
            zip(items, hashes, text_vectors, strict=True)
        ):
            record: dict[str, Any] = {
                "id": item.id,
                "title": item.title,
                KEYWORD_COLUMN: item.search_text,
                "texts_json": json.dumps(item.texts, ensure_ascii=False),
                "images": item.images,
                "image_sha256": item.image_sha256,
                "image_phash": [h.phash for h in item_hashes],
                "image_dhash": [h.dhash for h in item_hashes],
                "image_text": item.image_text or None,
                "source_file": item.source,
                "source_row": item.row,
                "record_sha256": item.content_sha256(),
                "ingest_run": self.run_id,
                "ingested_at": now,
                "acl": item.acl,
                **item.attributes,
                vector_column("text"): None if text_vector is None else text_vector.tolist(),
            }
            for role, vectors in image_vectors.items():
                found = vectors[position]
                record[vector_column(role)] = None if found is None else found.tolist()
            records.append(record)
        return pa.Table.from_pylist(records, schema=schema)


def image_roles(encoders: EncoderSet) -> list[str]:
    """Roles whose vectors come from the item's images: stored one vector per image."""
    return [
        role
        for role, encoder in encoders.encoders.items()
        if role != "text" and "image" in encoder.modalities
    ]


def _image_row_error(item: Item, mapping: FieldMapping | None, exc: ImageError) -> RowError:
    field_name = mapping.images[0] if mapping and len(mapping.images) == 1 else "image"
    return RowError(item.source, item.row, str(exc), field=field_name, item_id=item.id)


def _chunks(rows: Iterator[Any], size: int) -> Iterator[list[Any]]:
    iterator = iter(rows)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


def _write_errors(path: Path, errors: list[RowError]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for error in errors:
            handle.write(json.dumps(error.as_dict(), ensure_ascii=False) + "\n")
    return path
