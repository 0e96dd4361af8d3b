"""Ingest that loses nothing: schema changes refused, strict and dry runs write nothing,
--sync removes dropped items, interrupted runs resume without re-encoding, and readers
only ever see the table version the manifest names."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mmsearch.config import Settings
from mmsearch.errors import MMSearchError
from mmsearch.index.open import open_build_index
from mmsearch.ingest import IngestOptions, Ingestor
from mmsearch.ingest.builds import SchemaMismatch
from mmsearch.ingest.pipeline import ChunkEncoder
from mmsearch.workspace import Workspace
from mmsearch.writer_lock import CollectionBusy, collection_writer

from conftest import FAKES, save_image, write_jsonl


def ingest(settings: Settings, catalog: Path, name: str = "shop", **kwargs: object):
    return Ingestor(settings).run(IngestOptions(catalog, name, **kwargs))


def live_items(settings: Settings, name: str = "shop") -> set[str]:
    folder = Workspace(settings.home).collection(name)
    index = open_build_index(folder, folder.live_manifest(), settings)
    return set(index.content_hashes())


def text_catalog(path: Path, count: int, *, start: int = 0, word: str = "mug") -> Path:
    rows = [
        {"id": f"t{n}", "title": f"{word} number {n}", "category": ["a", "b"][n % 2]}
        for n in range(start, start + count)
    ]
    return write_jsonl(path, rows)


def test_a_catalog_with_another_schema_is_refused_and_live_stays(settings, make_catalog, tmp_path):
    ingest(settings, make_catalog())
    small = write_jsonl(tmp_path / "small.jsonl", [{"id": f"s{n}", "title": "x"} for n in range(6)])

    with pytest.raises(SchemaMismatch) as caught:
        ingest(settings, small)

    message = str(caught.value)
    assert "attributes the catalog lacks: category, price, in_stock" in message
    assert "--new-build" in message
    assert len(live_items(settings)) == 5
    assert len(Workspace(settings.home).collection("shop").build_ids()) == 1


def test_new_build_replaces_live_only_when_asked_and_keeps_previous(
    settings, make_catalog, tmp_path
):
    first = ingest(settings, make_catalog())
    small = write_jsonl(tmp_path / "small.jsonl", [{"id": f"s{n}", "title": "x"} for n in range(6)])

    report = ingest(settings, small, new_build=True)

    folder = Workspace(settings.home).collection("shop")
    assert report.new_build and report.build_id != first.build_id
    assert folder.aliases() == {"live": report.build_id, "previous": first.build_id}
    assert live_items(settings) == {f"s{n}" for n in range(6)}


def test_a_pinned_type_that_differs_from_live_is_a_schema_change(settings, make_catalog):
    catalog = make_catalog()
    ingest(settings, catalog)
    mapping = {"attributes": ["category", "price:int", "in_stock"]}
    from mmsearch.catalog.mapping import FieldMapping

    with pytest.raises(SchemaMismatch, match="attribute price: live build stores float"):
        ingest(settings, catalog, mapping=FieldMapping(**mapping))


def test_strict_on_a_new_collection_leaves_no_collection(settings, make_catalog):
    catalog = make_catalog(extra_rows=["{not json", {"id": "x1"}])

    report = ingest(settings, catalog, strict=True)

    assert not report.committed
    assert report.counts["failed"] == 2
    assert Workspace(settings.home).find("shop") is None


def test_strict_on_an_existing_collection_changes_nothing(settings, make_catalog, tmp_path):
    ingest(settings, make_catalog())
    folder = Workspace(settings.home).collection("shop")
    before = folder.live_manifest()
    rows = [json.loads(line) for line in make_catalog().read_text().splitlines()]
    rows[0]["title"] = "changed title"
    rows.append({"id": "new-1", "title": "new", "image": "img/missing.png"})
    changed = write_jsonl(tmp_path / "cat" / "changed.jsonl", rows)

    report = ingest(settings, changed, strict=True)

    assert not report.committed and report.counts["failed"] == 1
    after = folder.live_manifest()
    assert after.table_version == before.table_version
    index = open_build_index(folder, after, settings, for_writing=True)
    assert index.get(["item-0"], ["id", "title"])[0]["title"] == "red ceramic mug"
    assert "new-1" not in index.content_hashes()


def test_dry_run_reports_what_would_change_and_writes_nothing(settings, make_catalog, tmp_path):
    assert ingest(settings, make_catalog(), dry_run=True).counts["added"] == 5
    assert Workspace(settings.home).find("shop") is None

    ingest(settings, make_catalog())
    rows = [json.loads(line) for line in make_catalog().read_text().splitlines()][:3]
    rows[0]["title"] = "renamed"
    smaller = write_jsonl(tmp_path / "cat" / "smaller.jsonl", rows)
    folder = Workspace(settings.home).collection("shop")
    version = folder.live_manifest().table_version

    report = ingest(settings, smaller, sync=True, dry_run=True)

    assert report.dry_run and not report.committed
    assert report.counts == {**report.counts, "updated": 1, "unchanged": 2, "removed": 2}
    assert folder.live_manifest().table_version == version
    assert len(live_items(settings)) == 5


def test_sync_removes_items_dropped_from_the_catalog(settings, make_catalog, tmp_path):
    ingest(settings, make_catalog())
    rows = [json.loads(line) for line in make_catalog().read_text().splitlines()][:3]
    smaller = write_jsonl(tmp_path / "cat" / "smaller.jsonl", rows)

    plain = ingest(settings, smaller)
    assert plain.counts["removed"] == 0 and len(live_items(settings)) == 5

    report = ingest(settings, smaller, sync=True)

    assert report.counts["removed"] == 2
    assert live_items(settings) == {"item-0", "item-1", "item-2"}


def test_sync_removes_nothing_when_some_rows_have_no_readable_id(settings, make_catalog, tmp_path):
    ingest(settings, make_catalog())
    rows = [*make_catalog().read_text().splitlines()[:3], "{broken"]
    smaller = write_jsonl(tmp_path / "cat" / "smaller.jsonl", rows)

    report = ingest(settings, smaller, sync=True)

    assert report.counts["removed"] == 0
    assert any("--sync removed nothing" in notice for notice in report.notices)
    assert len(live_items(settings)) == 5


class Interrupt(BaseException):
    """Stands in for a kill: raised from inside the pipeline, caught by nothing."""


def interrupt_after(monkeypatch: pytest.MonkeyPatch, chunks: int) -> None:
    original = ChunkEncoder.encode
    calls = {"n": 0}

    def encode(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] > chunks:
            raise Interrupt()
        return original(self, *args, **kwargs)

    monkeypatch.setattr(ChunkEncoder, "encode", encode)


def test_an_interrupted_first_ingest_is_invisible_then_resumes_without_reencoding(
    settings, tmp_path, monkeypatch
):
    catalog = text_catalog(tmp_path / "c.jsonl", 100)
    interrupt_after(monkeypatch, 3)  # 3 chunks of 16 rows written, then "killed"
    with pytest.raises(Interrupt):
        ingest(settings, catalog)
    monkeypatch.undo()

    folder = Workspace(settings.home).collection("shop")
    assert folder.alias("live") is None
    with pytest.raises(MMSearchError, match="Re-run the same ingest command to resume"):
        folder.live_manifest()

    from typer.testing import CliRunner

    from mmsearch.cli import app

    listed = CliRunner().invoke(app, ["collections", "--home", str(settings.home), "--json"])
    (shown,) = json.loads(listed.stdout)
    assert shown["live_build"] is None and shown["unfinished_builds"] == folder.build_ids()

    encoded_before = FAKES["text"].texts_seen
    report = ingest(settings, catalog)

    assert report.resumed
    assert report.counts["resumed"] == 48
    assert report.counts["added"] == 100
    assert FAKES["text"].texts_seen - encoded_before == 52  # only rows not written before
    assert folder.build_ids() == [report.build_id]
    assert len(live_items(settings)) == 100


def test_an_interrupted_update_stays_invisible_and_resumes(settings, tmp_path, monkeypatch):
    ingest(settings, text_catalog(tmp_path / "a.jsonl", 40))
    folder = Workspace(settings.home).collection("shop")
    visible = folder.live_manifest().table_version
    update = text_catalog(tmp_path / "b.jsonl", 80, word="cup")

    interrupt_after(monkeypatch, 2)
    with pytest.raises(Interrupt):
        ingest(settings, update)
    monkeypatch.undo()

    manifest = folder.live_manifest()
    assert manifest.table_version == visible
    reader = open_build_index(folder, manifest, settings)
    assert reader.version() == visible and reader.row_count() == 40
    assert open_build_index(folder, manifest, settings, for_writing=True).version() > visible

    report = ingest(settings, update)

    assert report.resumed and report.counts["resumed"] == 32
    assert report.counts["updated"] == 40 and report.counts["added"] == 40
    assert len(live_items(settings)) == 80


def test_another_ingest_abandons_an_interrupted_update(settings, tmp_path, monkeypatch):
    ingest(settings, text_catalog(tmp_path / "a.jsonl", 20))
    interrupt_after(monkeypatch, 1)
    with pytest.raises(Interrupt):
        ingest(settings, text_catalog(tmp_path / "b.jsonl", 40, start=100))
    monkeypatch.undo()

    report = ingest(settings, text_catalog(tmp_path / "c.jsonl", 5, start=500))

    assert any("undid the unpublished writes" in n or "abandoned" in n for n in report.notices)
    assert live_items(settings) == {f"t{n}" for n in range(20)} | {f"t{n}" for n in range(500, 505)}


def test_an_unfinished_build_of_another_catalog_is_removed(settings, tmp_path, monkeypatch):
    interrupt_after(monkeypatch, 1)
    with pytest.raises(Interrupt):
        ingest(settings, text_catalog(tmp_path / "a.jsonl", 40))
    monkeypatch.undo()
    folder = Workspace(settings.home).collection("shop")
    stale = folder.unfinished_builds()
    assert len(stale) == 1

    report = ingest(settings, text_catalog(tmp_path / "b.jsonl", 10, start=300))

    assert folder.build_ids() == [report.build_id] and report.build_id not in stale
    assert any("removed the unfinished build" in n for n in report.notices)


def test_a_run_where_every_row_fails_leaves_no_build_and_no_collection(settings, tmp_path):
    catalog = write_jsonl(tmp_path / "bad.jsonl", [{"id": "a"}, "{oops", {"title": "no id"}])
    (tmp_path / "img").mkdir()

    report = ingest(settings, catalog)

    assert report.counts == {**report.counts, "rows": 3, "failed": 3, "added": 0}
    assert not report.committed
    assert Workspace(settings.home).find("shop") is None


def test_a_second_writer_fails_clearly_with_no_wait(settings, tmp_path):
    catalog = text_catalog(tmp_path / "a.jsonl", 5)
    folder = Workspace(settings.home).folder_of("shop")
    with collection_writer(folder, purpose="test holder"), pytest.raises(CollectionBusy) as caught:
        import threading

        errors: list[BaseException] = []

        def other() -> None:
            try:
                ingest(settings, catalog, wait=False)
            except BaseException as exc:
                errors.append(exc)

        thread = threading.Thread(target=other)
        thread.start()
        thread.join()
        raise errors[0]
    assert "test holder" in str(caught.value)


def test_accounting_adds_up_with_warnings_duplicates_and_image_failures(settings, tmp_path):
    folder = tmp_path / "c"
    save_image(folder / "ok.png", (200, 10, 10))
    (folder / "corrupt.png").write_bytes(b"\x89PNG not really")
    rows: list[dict[str, object] | str] = [
        {"id": "a", "title": "good", "price": 3.5, "image": "ok.png"},
        {"id": "b", "title": "cheap one", "price": "cheap", "image": "ok.png"},
        {"id": "a", "title": "duplicate", "price": 1.0, "image": "ok.png"},
        {"id": "c", "title": "missing image", "price": 2.0, "image": "nope.png"},
        {"id": "d", "title": "corrupt image", "price": 2.0, "image": "corrupt.png"},
        "[1, 2]",
    ]
    rows += [{"id": f"n{n}", "title": f"n {n}", "price": n, "image": "ok.png"} for n in range(20)]
    report = ingest(settings, write_jsonl(folder / "c.jsonl", rows))

    counts = report.counts
    assert counts["rows"] == 26
    assert counts["added"] + counts["updated"] + counts["unchanged"] + counts["failed"] == 26
    assert counts["failed"] == 4 and counts["added"] == 22
    assert counts["warnings"] == 1
    assert [w.item_id for w in report.warnings] == ["b"]
    lines = [json.loads(line) for line in report.errors_path.read_text().splitlines()]
    assert sorted(line["row"] for line in lines) == [2, 3, 4, 5, 6]
    assert {line["severity"] for line in lines} == {"error", "warning"}
    assert len(live_items(settings)) == 22


def test_a_publish_cut_short_before_live_moved_is_finished_by_the_next_writer(
    settings, tmp_path, monkeypatch
):
    from mmsearch.workspace import CollectionDir

    catalog = text_catalog(tmp_path / "a.jsonl", 20)

    def crash(self, change):
        raise Interrupt()

    monkeypatch.setattr(CollectionDir, "update_state", crash)  # the switch of live
    with pytest.raises(Interrupt):
        ingest(settings, catalog)
    monkeypatch.undo()
    folder = Workspace(settings.home).collection("shop")
    (built,) = folder.build_ids()
    assert folder.alias("live") is None and folder.manifest(built).pending_live

    report = ingest(settings, catalog)

    assert folder.alias("live") == built == report.build_id
    assert report.counts["unchanged"] == 20
    assert not folder.manifest(built).pending_live
    stored = json.loads((folder.build_dir(built) / "manifest.json").read_text())
    assert "pending_live" not in stored  # the crash marker leaves the file, not set to false


def test_a_kill_after_the_index_refresh_still_publishes_nothing(settings, tmp_path, monkeypatch):
    from mmsearch.index.lancedb import LanceBuildIndex

    ingest(settings, text_catalog(tmp_path / "a.jsonl", 30))
    folder = Workspace(settings.home).collection("shop")
    visible = folder.live_manifest().table_version
    refresh = LanceBuildIndex.refresh_indexes

    def refresh_then_die(self):
        refresh(self)
        raise Interrupt()

    monkeypatch.setattr(LanceBuildIndex, "refresh_indexes", refresh_then_die)
    update = text_catalog(tmp_path / "b.jsonl", 50, word="cup")
    with pytest.raises(Interrupt):
        ingest(settings, update)
    monkeypatch.undo()

    reader = open_build_index(folder, folder.live_manifest(), settings)
    assert reader.version() == visible and reader.row_count() == 30
    report = ingest(settings, update)
    assert report.resumed and report.counts["resumed"] == 50
    assert len(live_items(settings)) == 50


def test_a_manifest_naming_a_version_the_table_lost_is_an_error_not_the_latest(settings, tmp_path):
    ingest(settings, text_catalog(tmp_path / "a.jsonl", 5))
    folder = Workspace(settings.home).collection("shop")
    manifest = folder.live_manifest()
    manifest.table_version = 999

    with pytest.raises(MMSearchError, match="no longer has version 999"):
        open_build_index(folder, manifest, settings)
