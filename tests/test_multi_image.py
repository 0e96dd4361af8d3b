"""Items with several images: one vector per image, best image wins, the hit names it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from mmsearch.config import Settings
from mmsearch.encoders.base import create_encoder
from mmsearch.index.lancedb import LanceBuildIndex
from mmsearch.ingest import IngestOptions, Ingestor
from mmsearch.search.request import SearchRequest
from mmsearch.search.searcher import Searcher
from mmsearch.workspace import Workspace

from conftest import save_image, write_jsonl

RGB = {
    "red": (220, 30, 30),
    "green": (30, 200, 60),
    "blue": (30, 60, 220),
    "yellow": (240, 220, 30),
    "black": (10, 10, 10),
}


def _catalog(tmp_path: Path) -> Path:
    folder = tmp_path / "multi"
    for name, rgb in RGB.items():
        save_image(folder / f"{name}.png", rgb)
    return write_jsonl(
        folder / "catalog.jsonl",
        [
            {"id": "rg", "title": "red and green", "image": ["red.png", "green.png"]},
            {"id": "by", "title": "blue and yellow", "image": ["blue.png", "yellow.png"]},
            {"id": "k", "title": "black", "image": "black.png"},
            {"id": "none", "title": "no picture at all"},
        ],
    )


def _index(settings: Settings, name: str) -> LanceBuildIndex:
    folder = Workspace(settings.home).collection(name)
    return LanceBuildIndex.open(
        folder.lancedb_dir, folder.live_manifest().table, settings.ann_min_rows
    )


def test_every_image_gets_a_vector_and_hashes(settings: Settings, tmp_path: Path) -> None:
    report = Ingestor(settings).run(IngestOptions(_catalog(tmp_path), "multi"))
    assert report.counts["added"] == 4
    rows = {row["id"]: row for row in _index(settings, "multi").get(["rg", "k", "none"])}
    assert len(rows["rg"]["vector_image"]) == 2 and len(rows["k"]["vector_image"]) == 1
    assert rows["none"]["vector_image"] is None
    assert len(rows["rg"]["image_phash"]) == 2 and len(rows["rg"]["image_dhash"]) == 2
    assert rows["none"]["image_phash"] == []


def test_second_image_matches_and_the_hit_says_so(settings: Settings, tmp_path: Path) -> None:
    catalog = _catalog(tmp_path)
    Ingestor(settings).run(IngestOptions(catalog, "multi"))
    query = Image.open(catalog.parent / "yellow.png").convert("RGB")
    result = Searcher(settings, "multi").search(SearchRequest(image=query, k=3))

    top = result.hits[0]
    assert top.id == "by"
    assert top.matched_image is not None
    assert top.matched_image.index == 1
    assert top.matched_image.path.endswith("yellow.png")
    # the item's image score is its best image's cosine
    expected = float(create_encoder("fake-image").encode_images([query])[0] @ _vector("yellow"))
    assert abs(top.signals["image_vector"].score - expected) < 1e-4
    assert abs(top.matched_image.score - expected) < 1e-4
    assert "none" not in [hit.id for hit in result.hits]  # no image, no image match


def _vector(name: str) -> np.ndarray:
    image = Image.new("RGB", (16, 16), RGB[name])
    image.putpixel((0, 0), (255, 255, 255))
    return create_encoder("fake-image").encode_images([image])[0]


def test_query_by_image_marks_exact_and_near_duplicates(settings: Settings, tmp_path: Path) -> None:
    catalog = _catalog(tmp_path)
    Ingestor(settings).run(IngestOptions(catalog, "multi"))
    query_path = catalog.parent / "black.png"
    query = Image.open(query_path).convert("RGB")
    searcher = Searcher(settings, "multi")
    hashes = {hit.id: hit for hit in searcher.search(SearchRequest(image=query, k=3)).hits}
    assert hashes["k"].duplicate == "exact" and hashes["k"].duplicate_distance == 0

    # a resized, re-encoded copy of a real photo-like image is a near duplicate
    rng = np.random.default_rng(3)
    pattern = Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).resize((128, 128))
    pattern.save(catalog.parent / "pattern.png")
    write_jsonl(catalog, [{"id": "p", "title": "noise pattern", "image": "pattern.png"}])
    Ingestor(settings).run(IngestOptions(catalog, "noise"))
    copy = pattern.resize((100, 100)).convert("RGB")
    hit = Searcher(settings, "noise").search(SearchRequest(image=copy, k=1)).hits[0]
    assert hit.duplicate in {"near", "exact"}
    assert hit.duplicate_distance is not None and hit.duplicate_distance <= 8


def test_text_only_builds_stay_single_vector(settings: Settings, tmp_path: Path) -> None:
    catalog = write_jsonl(tmp_path / "t.jsonl", [{"id": "1", "title": "plain mug"}])
    Ingestor(settings).run(IngestOptions(catalog, "text"))
    index = _index(settings, "text")
    assert [(v.column, v.multi) for v in index.vector_fields] == [("vector_text", False)]
    hits = Searcher(settings, "text").search(SearchRequest(text="mug")).hits
    assert hits[0].id == "1" and hits[0].matched_image is None and hits[0].duplicate is None


def test_ann_index_on_the_multivector_column(settings: Settings, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    folder = tmp_path / "many"
    rows: list[dict[str, object]] = []
    for number in range(260):
        colours = [tuple(int(c) for c in rng.integers(0, 255, 3)) for _ in range(2)]
        names = [f"{number}-{i}.png" for i in range(2)]
        for name, colour in zip(names, colours, strict=True):
            save_image(folder / name, colour, size=8)
        rows.append({"id": str(number), "title": f"thing {number}", "image": names})
    catalog = write_jsonl(folder / "catalog.jsonl", rows)
    settings = settings.model_copy(update={"ann_min_rows": 256, "write_batch_rows": 512})
    Ingestor(settings).run(IngestOptions(catalog, "ann"))
    assert "vector_image" in _index(settings, "ann").ann_columns()

    query = Image.open(folder / "17-1.png").convert("RGB")
    hit = Searcher(settings, "ann").search(SearchRequest(image=query, k=5)).hits[0]
    assert hit.id == "17" and hit.matched_image is not None and hit.matched_image.index == 1
