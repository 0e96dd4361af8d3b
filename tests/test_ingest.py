"""Ingest into real LanceDB with fake encoders: upserts, errors, manifests, indexes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mmsearch.catalog.mapping import FieldMapping
from mmsearch.config import Settings
from mmsearch.errors import CatalogError, MMSearchError
from mmsearch.index.lancedb import LanceBuildIndex
from mmsearch.ingest import IngestOptions, Ingestor
from mmsearch.workspace import Workspace

from conftest import FAKES, save_image, write_jsonl


def ingest(settings: Settings, catalog: Path, name: str = "shop", **kwargs: object):
    return Ingestor(settings).run(IngestOptions(catalog, name, **kwargs))


def open_index(settings: Settings, name: str = "shop") -> LanceBuildIndex:
    folder = Workspace(settings.home).collection(name)
    manifest = folder.live_manifest()
    return LanceBuildIndex.open(folder.lancedb_dir, manifest.table, settings.ann_min_rows)


def test_ingest_lands_every_good_row_with_provenance(settings, make_catalog):
    catalog = make_catalog()
    report = ingest(settings, catalog)

    assert report.counts["added"] == 5
    assert report.counts["failed"] == 0
    assert report.mapping.id == "id"
    assert report.mapping.title == "title"
    assert report.mapping.text == ["description", "tags"]
    assert report.mapping.images == ["image"]
    kinds = {spec.column: spec.kind for spec in report.attributes}
    assert kinds == {"category": "string", "price": "float", "in_stock": "bool"}

    row = open_index(settings).get(["item-2"])[0]
    assert row["title"] == "blue ceramic mug"
    assert row["source_file"] == str(catalog)
    assert row["source_row"] == 3
    assert row["ingest_run"] == report.run_id
    assert len(row["record_sha256"]) == 64
    assert len(row["image_sha256"]) == 1 and len(row["image_sha256"][0]) == 64
    assert row["images"] == [str((catalog.parent / "img" / "blue.png").resolve())]
    assert row["price"] == 7.0
    assert len(row["vector_text"]) == 64
    # one image vector per image (a multivector column)
    assert len(row["vector_image"]) == 1 and len(row["vector_image"][0]) == 48


def test_manifest_records_encoders_sources_counts_and_version(settings, make_catalog):
    catalog = make_catalog()
    report = ingest(settings, catalog)
    manifest = json.loads(report.manifest_path.read_text())

    assert manifest["collection"] == "shop"
    assert manifest["build_id"] == report.build_id
    assert manifest["encoders"]["text"] == {
        "spec": "fake-text",
        "name": "fake-text",
        "version": "fake-text-v1",
        "dim": 64,
        "modalities": ["text"],
    }
    assert manifest["encoders"]["image"]["version"] == "fake-image-v1"
    assert manifest["sources"][0]["path"] == str(catalog)
    assert len(manifest["sources"][0]["sha256"]) == 64
    assert manifest["counts"]["items"] == 5
    assert manifest["errors"]["count"] == 0
    assert manifest["mmsearch_version"]
    assert manifest["config"]["rrf_k"] == 60
    assert "search_text" in manifest["indexes"]["indexed_columns"]
    assert Workspace(settings.home).collection("shop").alias("live") == report.build_id


def test_reingest_upserts_without_duplicates_or_reencoding(settings, make_catalog):
    catalog = make_catalog()
    first = ingest(settings, catalog)
    texts_first = FAKES["text"].texts_seen
    images_first = FAKES["image"].images_seen
    assert texts_first == 5 and images_first == 5

    second = ingest(settings, catalog)
    assert second.build_id == first.build_id
    assert second.counts["unchanged"] == 5
    assert second.counts["added"] == second.counts["updated"] == 0
    assert FAKES["text"].texts_seen == texts_first  # nothing re-encoded
    assert FAKES["image"].images_seen == images_first
    assert open_index(settings).row_count() == 5


def test_changed_row_is_reencoded_and_updated(settings, make_catalog, tmp_path):
    catalog = make_catalog()
    ingest(settings, catalog)
    lines = catalog.read_text().splitlines()
    row = json.loads(lines[1])
    row["title"] = "green enamel mug"
    lines[1] = json.dumps(row)
    catalog.write_text("\n".join(lines) + "\n")
    before = FAKES["text"].texts_seen

    report = ingest(settings, catalog)
    assert report.counts == {
        "rows": 5,
        "added": 0,
        "updated": 1,
        "unchanged": 4,
        "failed": 0,
        "warnings": 0,
        "removed": 0,
        "resumed": 0,
        "items": 5,
    }
    assert FAKES["text"].texts_seen == before + 1
    assert open_index(settings).get(["item-1"])[0]["title"] == "green enamel mug"


def test_replaced_image_bytes_trigger_reencoding(settings, make_catalog):
    catalog = make_catalog()
    ingest(settings, catalog)
    save_image(catalog.parent / "img" / "red.png", (10, 240, 10))
    before = FAKES["image"].images_seen
    report = ingest(settings, catalog)
    assert report.counts["updated"] == 1
    assert FAKES["image"].images_seen == before + 1


def test_bad_rows_are_reported_and_good_rows_still_land(settings, make_catalog, tmp_path):
    folder = tmp_path / "cat"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "img").mkdir(exist_ok=True)
    (folder / "img" / "empty.png").write_bytes(b"")
    good = save_image(folder / "img" / "ok.png", (1, 2, 3))
    (folder / "img" / "truncated.png").write_bytes(good.read_bytes()[:40])
    (folder / "img" / "garbage.png").write_bytes(b"this is not a picture at all")
    bad_rows: list[dict[str, object] | str] = [
        "{not json",
        {"title": "no id here", "image": "img/ok.png"},
        {"id": "missing-image", "title": "ghost", "image": "img/nowhere.png"},
        {"id": "zero-bytes", "title": "empty file", "image": "img/empty.png"},
        {"id": "truncated", "title": "cut short", "image": "img/truncated.png"},
        {"id": "garbage", "title": "not an image", "image": "img/garbage.png"},
        {"id": "bad-price", "title": "pricey", "price": "a lot", "image": "img/ok.png"},
        {"id": "item-0", "title": "duplicate id", "image": "img/ok.png"},
        {"id": {"nested": 1}, "title": "object id"},
    ]
    catalog = make_catalog(bad_rows)
    report = ingest(settings, catalog)

    # The price that is not a number costs the field, not the row: a warning, stored as missing.
    assert report.counts["added"] == 6
    assert report.counts["failed"] == len(bad_rows) - 1
    lines = [json.loads(line) for line in report.errors_path.read_text().splitlines()]
    assert [line["severity"] for line in lines].count("error") == len(bad_rows) - 1
    by_row = {line["row"]: line for line in lines}
    assert "invalid JSON" in by_row[6]["reason"]
    assert by_row[7]["field"] == "id" and by_row[7]["reason"] == "missing id"
    assert by_row[8]["item_id"] == "missing-image" and "does not exist" in by_row[8]["reason"]
    assert by_row[8]["field"] == "image"
    assert by_row[9]["item_id"] == "zero-bytes" and "empty" in by_row[9]["reason"].lower()
    assert by_row[10]["item_id"] == "truncated"
    assert by_row[11]["item_id"] == "garbage"
    assert by_row[12]["field"] == "price" and "number" in by_row[12]["reason"]
    assert by_row[12]["severity"] == "warning"
    assert by_row[13]["item_id"] == "item-0" and "duplicate id" in by_row[13]["reason"]
    assert by_row[14]["field"] == "id"
    assert report.errors_path.parent.parent.parent.name == report.build_id
    assert open_index(settings).row_count() == 6


def test_catalog_without_readable_rows_is_refused(settings, tmp_path):
    catalog = write_jsonl(tmp_path / "broken.jsonl", ["{oops", "[1, 2]"])
    with pytest.raises(MMSearchError, match="no readable rows"):
        ingest(settings, catalog)


def test_missing_catalog_is_a_clear_error(settings, tmp_path):
    with pytest.raises(CatalogError, match="does not exist"):
        ingest(settings, tmp_path / "nope.jsonl")


def test_text_only_catalog_has_no_image_vectors(settings, tmp_path):
    catalog = write_jsonl(
        tmp_path / "docs.jsonl",
        [{"id": i, "title": f"doc {i}", "body": "aircraft wing lift"} for i in range(3)],
    )
    report = ingest(settings, catalog, name="docs")
    manifest = json.loads(report.manifest_path.read_text())
    assert set(manifest["encoders"]) == {"text"}
    assert "vector_image" not in open_index(settings, "docs").schema.names


def test_new_encoder_makes_a_new_build_and_keeps_the_previous(settings, make_catalog):
    catalog = make_catalog()
    first = ingest(settings, catalog)
    with pytest.raises(MMSearchError, match=r"encoders: live build"):
        ingest(settings, catalog, text_encoder="broken-text")
    assert Workspace(settings.home).collection("shop").alias("live") == first.build_id
    second = ingest(settings, catalog, text_encoder="broken-text", new_build=True)
    assert second.new_build and second.build_id != first.build_id
    aliases = Workspace(settings.home).collection("shop").aliases()
    assert aliases == {"live": second.build_id, "previous": first.build_id}


def test_image_folder_ingests_one_item_per_image(settings, tmp_path):
    folder = tmp_path / "photos"
    save_image(folder / "red_mug.png", (200, 0, 0))
    save_image(folder / "shoes" / "blue-sneaker.png", (0, 0, 200))
    (folder / "notes.txt").write_text("not an image")
    report = ingest(settings, folder, name="photos")
    assert report.counts["added"] == 2
    rows = open_index(settings, "photos").get(["red_mug.png", "shoes/blue-sneaker.png"])
    assert [r["title"] for r in rows] == ["red mug", "blue sneaker"]


def test_explicit_mapping_and_images_root(settings, tmp_path):
    images = tmp_path / "assets"
    save_image(images / "a.png", (255, 0, 0))
    catalog = write_jsonl(
        tmp_path / "products.jsonl",
        [{"sku": "A1", "label": "red lamp", "blurb": "desk lamp", "pic": "a.png", "brand": "Lux"}],
    )
    mapping = FieldMapping(id="sku", title="label", text=["blurb"], images=["pic"])
    report = ingest(settings, catalog, name="lamps", mapping=mapping, images_root=images)
    assert report.counts["added"] == 1
    assert report.mapping.attributes == ["brand"]
    row = open_index(settings, "lamps").get(["A1"])[0]
    assert row["images"] == [str((images / "a.png").resolve())]
    assert row["brand"] == "Lux"


def test_ann_index_is_built_once_the_collection_is_large_enough(settings, tmp_path):
    rows = [
        {"id": i, "title": f"part {i}", "description": f"bolt size {i % 17} thread {i % 7}"}
        for i in range(300)
    ]
    catalog = write_jsonl(tmp_path / "parts.jsonl", rows)
    small = settings.model_copy(update={"ann_min_rows": 1000, "write_batch_rows": 512})
    ingest(small, catalog, name="parts")
    assert open_index(small, "parts").ann_columns() == []

    large = settings.model_copy(update={"ann_min_rows": 256, "write_batch_rows": 512})
    rows.append({"id": 999, "title": "part 999", "description": "washer"})
    write_jsonl(catalog, rows)
    report = ingest(large, catalog, name="parts")
    assert "vector_text:ivf_hnsw_sq" in report_indexes(report)
    index = open_index(large, "parts")
    assert index.ann_columns() == ["vector_text"]

    # Scores through the ANN index are true cosine similarities, equal to exact numpy ones.
    data = index._table.to_arrow().select(["id", "vector_text"]).to_pylist()
    vectors = {row["id"]: np.asarray(row["vector_text"], dtype=np.float32) for row in data}
    query = vectors["7"]
    matches = index.vector_search("vector_text", query, 5)
    assert matches[0].id == "7" and matches[0].score == pytest.approx(1.0, abs=1e-4)
    for match in matches:
        assert match.score == pytest.approx(float(vectors[match.id] @ query), abs=1e-3)


def report_indexes(report) -> list[str]:
    return json.loads(report.manifest_path.read_text())["indexes"]["created"]


def test_progress_reports_rows_and_embedded_images(settings, make_catalog):
    rows: list[int] = []
    images: list[int] = []
    Ingestor(settings, progress=rows.append, image_progress=images.append).run(
        IngestOptions(make_catalog(["{broken"]), "shop")
    )
    assert sum(rows) == 6  # every row read, the broken one included
    assert sum(images) == 5  # only images that were embedded
