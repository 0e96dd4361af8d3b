"""Build manifests as typed models: old files load, files round-trip, bad files say where."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from mmsearch.builds.listing import describe_build, list_builds
from mmsearch.errors import MMSearchError
from mmsearch.ingest import IngestOptions, Ingestor
from mmsearch.manifest import READY, BuildManifest, PublishRecord, manifest_json
from mmsearch.workspace import CollectionDir, Workspace

BUILD = "build-20261126T090000-a1b2c3"

# What the first mmsearch wrote (before states, schema versions, OCR, the run log, gates
# and publishes): runs kept whole run reports, the mapping had no acl/types/required.
OLD_MANIFEST: dict[str, Any] = {
    "collection": "shop",
    "build_id": BUILD,
    "created_at": "2026-11-26T09:00:00+00:00",
    "mmsearch_version": "0.0.1",
    "table": "build_build_20261126T090000_a1b2c3",
    "store": {"backend": "lancedb", "path": "/srv/mmsearch/collections/shop/lancedb"},
    "encoders": {
        "text": {
            "spec": "minilm",
            "name": "minilm",
            "version": "all-MiniLM-L6-v2@sha256:" + "ab" * 32,
            "dim": 384,
            "modalities": ["text"],
        }
    },
    "mapping": {"id": "sku", "title": "name", "text": ["blurb"], "attributes": ["colour"]},
    "attributes": [{"field": "colour", "column": "colour", "kind": "string"}],
    "keyword_column": "search_text",
    "config": {"candidates": 100, "rrf_k": 60, "ann_min_rows": 50000, "batch_size": 64},
    "sources": [
        {"path": "/data/shop.jsonl", "format": "jsonl", "sha256": "cd" * 32, "run_id": "run-1"}
    ],
    "runs": [
        {
            "run_id": "run-1",
            "started_at": "2026-11-26T09:00:00+00:00",
            "finished_at": "2026-11-26T09:00:05+00:00",
            "source": {"path": "/data/shop.jsonl", "format": "jsonl", "sha256": "cd" * 32},
            "mapping": {"id": "sku", "title": "name", "text": ["blurb"]},
            "counts": {"rows": 3, "added": 3, "items": 3},
            "timings_s": {"read": 0.01},
            "errors_file": "runs/run-1/errors.jsonl",
            "table_version": 2,
        }
    ],
    "updated_at": "2026-11-26T09:00:05+00:00",
    "counts": {"items": 3, "last_run": {"rows": 3, "added": 3, "items": 3}},
    "errors": {"count": 0, "file": "runs/run-1/errors.jsonl"},
    "indexes": {"created": ["search_text:fts"], "indexed_columns": ["search_text"], "rows": 3},
    "table_version": 2,
}


def _collection(tmp_path: Path, manifest: Any, build_id: str = BUILD) -> CollectionDir:
    """A collection whose build ``build_id`` has exactly this manifest.json, live."""
    folder = Workspace(tmp_path / "home").create_or_open("shop")
    path = folder.build_dir(build_id) / "manifest.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    folder.set_live(build_id)
    return folder


def _stored(folder: CollectionDir, build_id: str = BUILD) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(
        (folder.build_dir(build_id) / "manifest.json").read_text(encoding="utf-8")
    )
    return data


def test_an_old_manifest_loads_with_the_defaults_readers_used(tmp_path):
    folder = _collection(tmp_path, OLD_MANIFEST)
    manifest = folder.live_manifest()
    assert isinstance(manifest, BuildManifest)
    assert manifest.state == READY and folder.unfinished_builds() == []
    assert manifest.schema_version == 1  # layouts before the version was written
    assert manifest.config.ocr is False and manifest.config.rrf_k == 60
    assert manifest.mapping.acl is None and manifest.mapping.types == {}
    assert manifest.mapping.required == []
    assert manifest.encoders["text"].dim == 384
    assert manifest.attributes[0].kind == "string"
    assert manifest.counts.items == 3 and manifest.table_version == 2
    assert not manifest.pending_live and manifest.staged is None
    assert manifest.rebuilt_from is None and manifest.gate is None
    assert manifest.publishes == [] and manifest.published_at is None
    run = manifest.runs[0]
    assert run.kind == "ingest" and run.resumed is False and run.actor is None
    assert run.source is not None and run.source.path == "/data/shop.jsonl"
    assert "table_version_before" not in run.model_fields_set  # told apart from null
    # The views over it work as they did on the plain dict.
    [summary] = list_builds(folder)
    assert summary.status == "live" and summary.items == 3 and summary.table_version == 2
    described = describe_build(folder, BUILD)
    assert described["mapping"] == OLD_MANIFEST["mapping"]
    assert described["encoders_full"] == OLD_MANIFEST["encoders"]
    assert described["publishes"] == [] and described["gate_result"] is None


def test_an_old_manifest_is_written_back_as_it_was(tmp_path):
    folder = _collection(tmp_path, OLD_MANIFEST)
    folder.write_manifest(BUILD, folder.manifest(BUILD))
    assert _stored(folder) == OLD_MANIFEST  # no defaults added, no keys renamed

    manifest = folder.manifest(BUILD)
    manifest.publishes.append(PublishRecord(at="2026-12-01T00:00:00+00:00", by="tester"))
    manifest.counts.items = 4  # changed in place inside a part that was read
    folder.write_manifest(BUILD, manifest)
    stored = _stored(folder)
    assert stored["publishes"] == [{"at": "2026-12-01T00:00:00+00:00", "by": "tester"}]
    assert stored["counts"]["items"] == 4
    assert "pending_live" not in stored and "state" not in stored


def test_a_written_manifest_round_trips_to_the_same_json(settings, make_catalog):
    """Every build an ingest, a new build and a publish wrote reads back and writes out
    byte for byte the same."""
    Ingestor(settings).run(IngestOptions(make_catalog(), "shop"))
    Ingestor(settings).run(IngestOptions(make_catalog(), "shop", new_build=True))
    folder = Workspace(settings.home).collection("shop")
    assert len(folder.build_ids()) == 2
    for build_id in folder.build_ids():
        path = folder.build_dir(build_id) / "manifest.json"
        before = path.read_text(encoding="utf-8")
        manifest = folder.manifest(build_id)
        assert manifest.as_json() == json.loads(before)
        folder.write_manifest(build_id, manifest)
        assert path.read_text(encoding="utf-8") == before
    live = folder.live_manifest()
    assert live.publishes[-1].via == "ingest" and not live.pending_live
    assert "pending_live" not in _stored(folder, live.build_id)


def test_clearing_a_field_removes_it_from_the_file(tmp_path):
    folder = _collection(tmp_path, {**OLD_MANIFEST, "pending_live": True, "published_at": "x"})
    manifest = folder.manifest(BUILD)
    assert manifest.pending_live
    manifest.clear("pending_live")
    manifest.clear("published_at")
    folder.write_manifest(BUILD, manifest)
    stored = _stored(folder)
    assert "pending_live" not in stored and "published_at" not in stored
    assert stored == OLD_MANIFEST


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda m: m["encoders"]["text"].__setitem__("dim", "wide"), "encoders.text.dim"),
        (lambda m: m.pop("build_id"), "build_id"),
        (lambda m: m["attributes"][0].__setitem__("kind", "colour"), "attributes.0.kind"),
        (lambda m: m.__setitem__("state", "exploded"), "state"),
        (lambda m: m["runs"].__setitem__(0, "not a run"), "runs.0"),
    ],
)
def test_an_invalid_manifest_is_an_error_naming_the_build_and_the_field(tmp_path, change, field):
    broken = copy.deepcopy(OLD_MANIFEST)
    change(broken)
    folder = _collection(tmp_path, broken)
    with pytest.raises(MMSearchError) as raised:
        folder.manifest(BUILD)
    message = str(raised.value)
    assert f"build {BUILD} of collection 'shop'" in message
    assert f"{field}:" in message and "manifest.json" in message
    assert "pydantic" not in message and "errors.pydantic.dev" not in message
    assert raised.value.__cause__ is None and raised.value.__suppress_context__
    with pytest.raises(MMSearchError, match=BUILD):
        folder.live_manifest()


def test_a_manifest_that_is_not_an_object_is_an_error_too(tmp_path):
    folder = _collection(tmp_path, ["not", "a", "manifest"])
    with pytest.raises(MMSearchError, match=f"build {BUILD} .*the manifest: "):
        folder.manifest(BUILD)
    assert folder.unfinished_builds() == []  # an unreadable manifest is skipped there


def test_keys_of_a_newer_mmsearch_survive_a_rewrite(tmp_path):
    newer = copy.deepcopy(OLD_MANIFEST)
    newer["shards"] = {"count": 4, "by": "category"}
    newer["store"]["replicas"] = 3
    newer["encoders"]["text"]["quantisation"] = "int8"
    newer["runs"][0]["host"] = "worker-7"
    folder = _collection(tmp_path, newer)
    manifest = folder.manifest(BUILD)
    manifest.updated_at = "2026-12-01T10:00:00+00:00"
    manifest.table_version = 3
    folder.write_manifest(BUILD, manifest)
    stored = _stored(folder)
    assert stored["shards"] == {"count": 4, "by": "category"}
    assert stored["store"]["replicas"] == 3
    assert stored["encoders"]["text"]["quantisation"] == "int8"
    assert stored["runs"][0]["host"] == "worker-7"
    assert stored["table_version"] == 3
    assert stored == {**newer, "updated_at": "2026-12-01T10:00:00+00:00", "table_version": 3}
    # The API's full manifest is the file as stored, extra keys included.
    assert manifest_json(folder.manifest(BUILD)) == stored
