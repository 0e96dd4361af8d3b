"""Staged ingest (``--stage``) and ``rebuild``: candidates written while live keeps serving."""

from __future__ import annotations

import hashlib
import json
import re
import time
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from typer.testing import CliRunner

from mmsearch.builds.lifecycle import CANDIDATE, build_status
from mmsearch.catalog.mapping import FieldMapping
from mmsearch.cli import app
from mmsearch.collection_state import DefaultGate
from mmsearch.encoders.base import l2_normalise, register, unsupported_modality
from mmsearch.index.open import open_build_index
from mmsearch.ingest import IngestOptions, Ingestor
from mmsearch.ingest.pipeline import ChunkEncoder
from mmsearch.ingest.rebuild import Rebuilder, RebuildOptions
from mmsearch.ingest.rebuild_rows import RowRebuilder
from mmsearch.ingest.remap import RebuildRefused
from mmsearch.manifest import BUILDING
from mmsearch.search.request import SearchRequest
from mmsearch.search.searcher import Searcher
from mmsearch.service.app import create_app
from mmsearch.workspace import Workspace

from conftest import FAKES, save_image, write_jsonl


class UpgradedTextEncoder:
    """ "The new model": another hashing of words, another dimension."""

    name = "fake-text-v2"
    version = "fake-text-v2"
    dim = 32
    modalities = frozenset({"text"})

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                out[row, int(hashlib.sha1(word.encode()).hexdigest(), 16) % self.dim] += 1.0
        return l2_normalise(out)

    def encode_images(self, images: list[Image.Image]) -> np.ndarray:
        raise unsupported_modality(self, "image")


class UpgradedImageEncoder:
    name = "fake-image-v2"
    version = "fake-image-v2"
    dim = 12
    modalities = frozenset({"image"})

    def encode_images(self, images: list[Image.Image]) -> np.ndarray:
        rows = [
            np.asarray(image.convert("RGB").resize((2, 2)), dtype=np.float32).reshape(-1) + 1.0
            for image in images
        ]
        return l2_normalise(np.stack(rows))

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        raise unsupported_modality(self, "text")


register("fake-text-v2")(lambda argument: UpgradedTextEncoder())
register("fake-image-v2")(lambda argument: UpgradedImageEncoder())


def rows_of(colours: dict[str, str], start: int = 0) -> list[dict[str, object]]:
    """Rows shaped like conftest's catalog (same fields), for deltas in its folder."""
    return [
        {
            "id": item_id,
            "title": f"{colour} ceramic mug",
            "description": f"A {colour} mug for coffee and tea",
            "tags": ["kitchen", colour],
            "category": "kitchen",
            "price": 9.0,
            "in_stock": True,
            "image": f"img/{colour}.png",
        }
        for item_id, colour in colours.items()
    ]


def delta(folder: Path, name: str, colours: dict[str, str]) -> Path:
    for colour in colours.values():
        if not (folder / "img" / f"{colour}.png").exists():
            save_image(folder / "img" / f"{colour}.png", (20, 160, 160))
    return write_jsonl(folder / name, rows_of(colours))


def top(settings, text: str, build_id: str | None = None, k: int = 3) -> list[str]:
    result = Searcher(settings, "shop", build_id=build_id).search(SearchRequest(text=text, k=k))
    return [hit.id for hit in result.hits]


def table(settings, build_id: str):
    collection = Workspace(settings.home).collection("shop")
    index = open_build_index(collection, collection.manifest(build_id), settings)
    return index.scan(index.schema.names).sort_by("id")


@pytest.fixture
def shop(settings, make_catalog) -> tuple[Path, str]:
    catalog = make_catalog()
    Ingestor(settings).run(IngestOptions(catalog, "shop"))
    return catalog, Workspace(settings.home).collection("shop").alias("live")


def test_stage_writes_a_full_candidate_and_leaves_live_alone(settings, shop):
    catalog, live = shop
    before = top(settings, "navy teal mug")
    encoded_before = FAKES["image"].images_seen
    changed = delta(catalog.parent, "delta.jsonl", {"item-2": "navy", "item-9": "teal"})
    report = Ingestor(settings).run(IngestOptions(changed, "shop", stage=True))

    collection = Workspace(settings.home).collection("shop")
    assert report.staged and report.new_build and report.build_id != live
    assert collection.alias("live") == live and "previous" not in collection.aliases()
    assert collection.state().staged == report.build_id
    manifest = collection.manifest(report.build_id)
    assert build_status(collection.state(), manifest) == CANDIDATE
    assert any(f"mmsearch publish -c shop {report.build_id}" in n for n in report.notices)
    # Live answers as before; the candidate holds live's rows plus the delta.
    assert top(settings, "navy teal mug") == before
    assert report.counts["added"] == 1 and report.counts["updated"] == 1
    assert report.counts["items"] == 6
    assert top(settings, "teal", build_id=report.build_id)[0] == "item-9"
    assert top(settings, "navy", build_id=report.build_id)[0] == "item-2"
    # Live's rows were copied, not encoded again: only the delta's two images were.
    assert FAKES["image"].images_seen - encoded_before == 2

    again = delta(catalog.parent, "delta2.jsonl", {"item-10": "olive"})
    second = Ingestor(settings).run(IngestOptions(again, "shop", stage=True))
    assert second.build_id == report.build_id and not second.new_build and second.staged
    assert second.counts["items"] == 7 and second.counts["added"] == 1
    assert collection.alias("live") == live and top(settings, "olive") != ["item-10"]

    texts = write_jsonl(catalog.parent / "texts.jsonl", [{"id": "t1", "title": "oak desk"}])
    other = Ingestor(settings).run(IngestOptions(texts, "shop", stage=True))
    assert other.build_id not in (live, report.build_id) and other.counts["items"] == 1
    assert any("does not fit" in n for n in other.notices)
    assert collection.state().staged == other.build_id
    assert collection.alias("live") == live

    plain = Ingestor(settings).run(IngestOptions(changed, "shop"))
    assert plain.build_id == live and not plain.staged
    assert any(f"staged build {other.build_id} does not have these" in n for n in plain.notices)
    assert top(settings, "teal")[0] == "item-9"
    assert table(settings, report.build_id).num_rows == 7  # the staged build is untouched


def test_an_interrupted_stage_resumes_only_as_a_stage(settings, shop, monkeypatch):
    catalog, live = shop
    settings = settings.model_copy(update={"write_batch_rows": 1})
    colours = {"item-7": "teal", "item-8": "olive", "item-9": "plum"}
    changed = delta(catalog.parent, "delta.jsonl", colours)
    dry = Ingestor(settings).run(IngestOptions(changed, "shop", stage=True, dry_run=True))
    assert dry.counts["added"] == 3 and not dry.committed
    assert Workspace(settings.home).collection("shop").build_ids() == [live]

    original = ChunkEncoder.encode
    calls = {"n": 0}

    def killed_after_one(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 1:
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(ChunkEncoder, "encode", killed_after_one)
    with pytest.raises(KeyboardInterrupt):
        Ingestor(settings).run(IngestOptions(changed, "shop", stage=True))
    monkeypatch.undo()
    collection = Workspace(settings.home).collection("shop")
    (unfinished,) = collection.unfinished_builds()
    assert collection.alias("live") == live

    resumed = Ingestor(settings).run(IngestOptions(changed, "shop", stage=True))
    assert resumed.build_id == unfinished and resumed.resumed and resumed.staged
    assert resumed.counts["resumed"] == 1 and resumed.counts["added"] == 3
    assert resumed.counts["items"] == 8 and collection.alias("live") == live
    assert top(settings, "plum", build_id=unfinished)[0] == "item-9"


def test_a_new_build_in_a_gated_collection_is_staged(settings, shop):
    catalog, live = shop
    collection = Workspace(settings.home).collection("shop")
    collection.update_state(
        lambda state: setattr(state, "gate", DefaultGate(path="gate/gate.toml"))
    )
    report = Ingestor(settings).run(IngestOptions(catalog, "shop", new_build=True))
    assert report.staged and report.build_id != live
    assert collection.alias("live") == live
    assert any("publishes through a gate" in n for n in report.notices)
    assert report.counts["items"] == 5 and report.counts["added"] == 5  # this catalog only


def test_rebuild_with_a_new_text_model_reuses_image_vectors(settings, shop):
    catalog, live = shop
    catalog.unlink()  # a rebuild needs the build, not the catalog
    progress: list[int] = []
    report = Rebuilder(settings, progress=progress.append).run(
        RebuildOptions("shop", text_encoder="fake-text-v2")
    )
    collection = Workspace(settings.home).collection("shop")
    assert collection.alias("live") == live and report.build_id != live
    manifest = collection.manifest(report.build_id)
    assert build_status(collection.state(), manifest) == CANDIDATE
    assert manifest.rebuilt_from is not None
    assert manifest.rebuilt_from.build == live
    assert manifest.rebuilt_from.encoders_reused == ["image"]
    assert manifest.rebuilt_from.encoders_re_encoded == ["text"]
    assert manifest.encoders["text"].spec == "fake-text-v2"
    counts = report.counts
    assert counts["items"] == 5 and counts["failed"] == 0 and sum(progress) == 5
    assert counts["reused"] == {"image": 5} and counts["encoded"] == {"text": 5}

    old, new = table(settings, live), table(settings, report.build_id)
    assert new.column("vector_image").equals(old.column("vector_image"))
    for column in ("id", "search_text", "record_sha256", "ingest_run", "source_row", "price"):
        assert new.column(column).equals(old.column(column)), column
    expected = UpgradedTextEncoder().encode_texts(new.column("search_text").to_pylist())
    stored = np.asarray(new.column("vector_text").to_pylist(), dtype=np.float32)
    assert stored.shape == (5, 32) and np.array_equal(stored, expected)
    assert top(settings, "blue mug", build_id=report.build_id)[0] == "item-2"
    assert top(settings, "blue mug")[0] == "item-2"

    with pytest.raises(RebuildRefused, match="Nothing to rebuild"):
        Rebuilder(settings).run(RebuildOptions("shop"))


def test_rebuild_reports_missing_and_changed_images_and_keeps_the_items(settings, shop):
    catalog, _live = shop
    (catalog.parent / "img" / "red.png").unlink()
    save_image(catalog.parent / "img" / "green.png", (0, 0, 0))  # edited since the ingest
    report = Rebuilder(settings).run(RebuildOptions("shop", image_encoder="fake-image-v2"))
    assert report.counts["failed"] == 2 and report.counts["items"] == 5
    assert report.counts["encoded"] == {"image": 3} and report.counts["reused"] == {"text": 5}
    reasons = {error.item_id: error.reason for error in report.errors}
    assert "does not exist" in reasons["item-0"] and "changed since" in reasons["item-1"]
    logged = report.errors_path.read_text().splitlines()
    assert {json.loads(line)["item_id"] for line in logged} == {"item-0", "item-1"}

    rows = {row["id"]: row for row in table(settings, report.build_id).to_pylist()}
    assert set(rows) == {f"item-{n}" for n in range(5)}
    assert rows["item-0"]["vector_image"] is None and rows["item-0"]["vector_text"] is not None
    assert rows["item-0"]["record_sha256"] == ""  # the next ingest encodes it again
    assert len(rows["item-2"]["vector_image"][0]) == 12


def test_rebuild_with_a_mapping_re_encodes_text_and_refuses_what_it_cannot_know(settings, shop):
    _catalog, _live = shop
    mapping = {"text": ["description"], "attributes": ["category", "price"]}
    report = Rebuilder(settings).run(
        RebuildOptions("shop", mapping=FieldMapping.model_validate(mapping))
    )
    assert report.counts["encoded"] == {"text": 5} and report.counts["reused"] == {"image": 5}
    row = next(r for r in table(settings, report.build_id).to_pylist() if r["id"] == "item-2")
    assert json.loads(row["texts_json"]) == {"description": "A blue mug for coffee and tea"}
    assert "in_stock" not in row and row["price"] == 7.0
    assert row["search_text"] == "blue ceramic mug\nA blue mug for coffee and tea"

    for bad, words in [
        ({"id": "title"}, "the id field"),
        ({"text": ["colourway"]}, "text from colourway"),
        ({"attributes": ["weight"]}, "new attributes (weight)"),
    ]:
        with pytest.raises(RebuildRefused, match=re.escape(words)):
            Rebuilder(settings).run(
                RebuildOptions("shop", mapping=FieldMapping.model_validate(bad))
            )


def test_an_interrupted_rebuild_is_left_alone_by_ingests_and_resumes(settings, shop, monkeypatch):
    catalog, live = shop
    settings = settings.model_copy(update={"write_batch_rows": 2})
    original = RowRebuilder.rebuild
    calls = {"n": 0}

    def killed_after_one(self, source, ids):
        calls["n"] += 1
        if calls["n"] > 1:
            raise KeyboardInterrupt
        return original(self, source, ids)

    monkeypatch.setattr(RowRebuilder, "rebuild", killed_after_one)
    options = RebuildOptions("shop", text_encoder="fake-text-v2", source_build=live)
    with pytest.raises(KeyboardInterrupt):
        Rebuilder(settings).run(options)
    monkeypatch.undo()
    collection = Workspace(settings.home).collection("shop")
    (unfinished,) = collection.unfinished_builds()
    assert collection.manifest(unfinished).state == BUILDING
    with pytest.raises(Exception, match="still being built"):
        Searcher(settings, "shop", build_id=unfinished)

    other = Ingestor(settings).run(IngestOptions(catalog, "shop", new_build=True))
    assert collection.unfinished_builds() == [unfinished]
    assert any(f"unfinished rebuild {unfinished} is kept" in n for n in other.notices)

    report = Rebuilder(settings).run(options)
    assert report.build_id == unfinished and report.resumed
    assert report.counts["resumed"] == 2 and report.counts["encoded"] == {"text": 3}
    assert report.counts["items"] == 5 and collection.unfinished_builds() == []


def test_ingest_job_stage_over_the_api(settings, shop, tmp_path):
    catalog, live = shop
    changed = delta(catalog.parent, "delta.jsonl", {"item-9": "teal"})
    app_settings = settings.model_copy(update={"allowed_roots": [tmp_path / "cat"]})
    with TestClient(create_app(app_settings)) as client:
        started = client.post(
            "/v1/collections/shop/ingest", json={"catalog": str(changed), "stage": True}
        )
        assert started.status_code == 202, started.text
        for _ in range(400):
            job = client.get(started.json()["url"]).json()
            if job["status"] in ("succeeded", "failed"):
                break
            time.sleep(0.05)
        assert job["status"] == "succeeded", job
        assert job["report"]["staged"] and job["report"]["build_id"] != live
        found = client.post("/v1/collections/shop/search", json={"text": "teal", "k": 3})
        assert "item-9" not in [hit["id"] for hit in found.json()["hits"]]
    collection = Workspace(settings.home).collection("shop")
    assert collection.alias("live") == live
    assert collection.state().staged == job["report"]["build_id"]


def test_cli_stage_and_rebuild(settings, shop):
    catalog, live = shop
    runner = CliRunner()
    home = str(settings.home)
    staged = runner.invoke(app, ["ingest", str(catalog), "-c", "shop", "--stage", "--home", home])
    assert staged.exit_code == 0, staged.output
    assert "staged new build" in staged.output and "mmsearch publish -c shop" in staged.output
    rebuilt = runner.invoke(
        app,
        ["rebuild", "-c", "shop", "--text-encoder", "fake-text-v2", "--home", home, "--json"],
    )
    assert rebuilt.exit_code == 0, rebuilt.output
    data = json.loads(rebuilt.stdout)
    assert data["source_build"] == live and data["counts"]["reused"] == {"image": 5}
    refused = runner.invoke(app, ["rebuild", "-c", "shop", "--home", home])
    assert refused.exit_code == 2 and "Nothing to rebuild" in refused.output
