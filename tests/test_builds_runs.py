"""Run history, run revert and the builds commands, over real LanceDB tables (fake encoders)."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from mmsearch.builds import history as history_module
from mmsearch.builds.history import RunNotFound, find_run, read_runs
from mmsearch.builds.lifecycle import publish, start_canary
from mmsearch.builds.listing import diff_builds, list_builds, prune_builds, prune_plan
from mmsearch.catalog.mapping import FieldMapping
from mmsearch.cli import app as cli_app
from mmsearch.collection_state import Aliases, CollectionState
from mmsearch.index.open import open_build_index
from mmsearch.ingest import IngestOptions, Ingestor
from mmsearch.ingest.builds import create_build
from mmsearch.ingest.encoders import EncoderSet
from mmsearch.ingest.revert import RevertRefused, revert_run
from mmsearch.manifest import GateSummary, RunRecord
from mmsearch.service.app import create_app
from mmsearch.workspace import CollectionDir, Workspace
from mmsearch.writer_lock import CollectionBusy, collection_writer

from conftest import write_jsonl


def _ingest(settings, catalog: Path, **options) -> str:
    report = Ingestor(settings).run(IngestOptions(catalog, "shop", **options))
    assert report.committed, report.notices
    return report.run_id


def _folder(settings) -> CollectionDir:
    return Workspace(settings.home).collection("shop")


def _hashes(settings) -> dict[str, str]:
    folder = _folder(settings)
    return open_build_index(folder, folder.live_manifest(), settings).content_hashes()


def _rows(catalog: Path) -> list[dict]:
    return [json.loads(line) for line in catalog.read_text().splitlines()]


def _batch_b(catalog: Path) -> Path:
    """The bad batch: item-0 retitled, item-4 dropped (with --sync), item-9 added. Same
    folder as the catalog, so the unchanged rows keep their image paths and hashes."""
    rows = _rows(catalog)
    rows[0]["title"] = "zebra striped mug"
    extra = {**rows[1], "id": "item-9", "title": "walrus shaped mug"}
    return write_jsonl(catalog.parent / "batch_b.jsonl", [*rows[:4], extra])


def _search_ids(client: TestClient, text: str) -> list[str]:
    response = client.post("/v1/collections/shop/search", json={"text": text, "k": 10})
    assert response.status_code == 200, response.text
    return [hit["id"] for hit in response.json()["hits"]]


@contextlib.contextmanager
def _held_elsewhere(folder: CollectionDir) -> Iterator[None]:
    """The collection's writer lock held by another thread (the lock re-enters in one)."""
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with collection_writer(folder.folder, purpose="test holder"):
            held.set()
            release.wait(10)

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        assert held.wait(10)
        yield
    finally:
        release.set()
        thread.join()


# -- run history -------------------------------------------------------------------------


def test_item_writes_keep_the_manifest_flat_and_the_log_bounded(
    settings, make_catalog, monkeypatch
):
    catalog = make_catalog()
    first_run = _ingest(settings, catalog)
    monkeypatch.setattr(history_module, "MAX_LOG_BYTES", 6000)
    folder = _folder(settings)
    build_id = folder.alias("live")
    manifest_path = folder.build_dir(build_id) / "manifest.json"
    sizes: list[int] = []
    put_runs: list[str] = []
    with TestClient(create_app(settings)) as client:
        for n in range(24):
            record = {"title": f"teapot {n}", "category": "kitchen", "price": 3.0, "in_stock": True}
            put = client.put(f"/v1/collections/shop/items/extra-{n}", json={"record": record})
            assert put.status_code == 200, put.text
            put_runs.append(put.json()["run_id"])
            if n % 2:
                deleted = client.delete(f"/v1/collections/shop/items/extra-{n}")
                assert deleted.status_code == 200, deleted.text
            sizes.append(manifest_path.stat().st_size)
    manifest = json.loads(manifest_path.read_text())
    assert len(manifest["runs"]) == history_module.RUNS_IN_MANIFEST
    assert [s["path"] for s in manifest["sources"]] == [str(catalog)]  # item writes add none
    assert manifest["last_run"]["kind"] == "item_delete"
    # flat: after a PUT (even n) or a DELETE (odd n) the manifest is the same size each time
    for same_kind in (sizes[6::2], sizes[7::2]):  # once the tail holds item writes only
        assert max(same_kind) - min(same_kind) < 64, same_kind

    log = folder.build_dir(build_id) / "runs.jsonl"
    backup = log.with_name("runs.jsonl.1")
    assert backup.is_file() and log.stat().st_size <= 6000 and backup.stat().st_size <= 6000
    entries = read_runs(folder, build_id)
    ids = [e.run_id for e in entries]
    assert first_run not in ids  # rotated out: the log is bounded
    assert entries[-2].run_id == put_runs[-1] and entries[-2].kind == "item_put"
    last = entries[-1]
    assert last.kind == "item_delete" and last.detail.items == ["extra-23"]
    assert last.as_dict()["detail"] == {"items": ["extra-23"]}  # the stored shape
    assert last.table_version_before == entries[-2].table_version_after
    assert last.table_version_after > last.table_version_before
    assert last.counts["removed"] == 1
    assert entries[-2].detail.items == ["extra-23"] and entries[-2].detail.reverted_run is None
    assert len(ids) == len(set(ids))
    assert find_run(folder, put_runs[-1])[0] == build_id


def test_old_manifest_runs_still_read_and_revert(settings, make_catalog):
    """A build written before the log: its manifest's run list is the history."""
    catalog = make_catalog()
    _ingest(settings, catalog)
    run_b = _ingest(settings, _batch_b(catalog), sync=True)
    folder = _folder(settings)
    build_id = folder.alias("live")
    manifest = folder.manifest(build_id)
    runs = [
        RunRecord.model_validate(
            {k: v for k, v in r.as_json().items() if k not in ("kind", "table_version_before")}
        )
        for r in manifest.runs
    ]
    manifest.runs = runs  # the old layout: no kind, no version before
    folder.write_manifest(build_id, manifest)
    (folder.build_dir(build_id) / "runs.jsonl").unlink()
    entries = read_runs(folder, build_id)
    assert [e.run_id for e in entries][-1] == run_b and all(e.legacy for e in entries)
    assert entries[-1].table_version_before == entries[0].table_version_after  # progress.json
    report = revert_run(settings, "shop", run_b, "tester")
    assert (report.restored, report.removed, report.changed) == (1, 1, 1)


# -- revert --------------------------------------------------------------------------------


def test_revert_undoes_a_bad_batch_and_searches_see_it(settings, make_catalog):
    catalog = make_catalog()
    _ingest(settings, catalog)
    after_a = _hashes(settings)
    run_b = _ingest(settings, _batch_b(catalog), sync=True)
    after_b = _hashes(settings)
    assert set(after_b) == set(after_a) - {"item-4"} | {"item-9"}
    with TestClient(create_app(settings)) as client:
        assert "item-9" in _search_ids(client, "walrus")
        report = revert_run(settings, "shop", run_b, "tester")
        assert _hashes(settings) == after_a
        assert (report.restored, report.removed, report.changed) == (1, 1, 1)
        assert report.restored_ids == ["item-4"] and report.removed_ids == ["item-9"]
        assert report.changed_ids == ["item-0"] and report.later_runs == []
        assert report.items_before == 5 and report.items_after == 5
        # the running service pins to the manifest's version: the revert is visible at once
        assert "item-9" not in _search_ids(client, "walrus")
        assert client.get("/v1/collections/shop/items/item-0").json()["title"] == "red ceramic mug"
        assert "item-4" in _search_ids(client, "black mug")
    manifest = _folder(settings).live_manifest()
    assert manifest.table_version == report.table_version_after
    assert manifest.last_run is not None
    assert manifest.counts.items == 5 and manifest.last_run["kind"] == "revert"
    entry = read_runs(_folder(settings), manifest.build_id)[-1]
    assert entry.kind == "revert" and entry.detail.reverted_run == run_b
    assert entry.actor == "tester"


def test_reverting_an_earlier_run_reports_the_later_ones(settings, make_catalog):
    catalog = make_catalog()
    _ingest(settings, catalog)
    after_a = _hashes(settings)
    run_b = _ingest(settings, _batch_b(catalog), sync=True)
    with TestClient(create_app(settings)) as client:
        record = {"title": "late teapot", "category": "kitchen", "price": 3.0, "in_stock": True}
        put = client.put("/v1/collections/shop/items/late-1", json={"record": record})
        assert put.status_code == 200, put.text
    run_c = put.json()["run_id"]
    after_c = _hashes(settings)
    report = revert_run(settings, "shop", run_b, "tester")
    assert [(r.run_id, r.kind) for r in report.later_runs] == [(run_c, "item_put")]
    assert _hashes(settings) == after_a  # late-1 went too, and the report says so
    assert report.removed == 2 and "late-1" in report.removed_ids

    with pytest.raises(RevertRefused, match=f"already reverted by {report.revert_id}"):
        revert_run(settings, "shop", run_b, "tester")
    redo = revert_run(settings, "shop", report.revert_id, "tester")  # undo the revert
    assert _hashes(settings) == after_c and redo.later_runs == []


def test_cli_runs_list_and_revert(settings, make_catalog):
    catalog = make_catalog()
    run_a = _ingest(settings, catalog)
    run_b = _ingest(settings, _batch_b(catalog), sync=True)
    late = {**_rows(catalog)[2], "id": "late-1"}
    run_c = _ingest(settings, write_jsonl(catalog.parent / "late.jsonl", [late]))
    home = ["--home", str(settings.home)]
    runner = CliRunner()
    listed = runner.invoke(cli_app, ["runs", "list", "-c", "shop", "--json", *home])
    assert listed.exit_code == 0, listed.output
    assert [(r["run_id"], r["kind"]) for r in json.loads(listed.stdout)] == [
        (run_a, "ingest"),
        (run_b, "ingest"),
        (run_c, "ingest"),
    ]
    refused = runner.invoke(cli_app, ["runs", "revert", "-c", "shop", run_b, *home], input="n\n")
    said = " ".join(refused.output.split())
    assert refused.exit_code == 2 and "1 later run(s)" in said
    assert run_c in said and "nothing was reverted" in said
    assert "item-9" in _hashes(settings)  # unchanged
    done = runner.invoke(cli_app, ["runs", "revert", "-c", "shop", run_c, "--yes", *home])
    assert done.exit_code == 0, done.output
    assert "0 restored, 1 removed, 0 changed back" in " ".join(done.output.split())
    assert "late-1" not in _hashes(settings) and "item-9" in _hashes(settings)
    unknown = runner.invoke(cli_app, ["runs", "revert", "-c", "shop", "run-nope", "-y", *home])
    assert unknown.exit_code == 2
    assert "mmsearch runs list -c shop" in " ".join(unknown.output.split())


def test_revert_refuses_unknown_first_and_other_build_runs(settings, make_catalog):
    catalog = make_catalog()
    run_a = _ingest(settings, catalog)
    run_b = _ingest(settings, _batch_b(catalog), sync=True)
    folder = _folder(settings)
    old_build = folder.alias("live")
    with pytest.raises(RunNotFound, match="runs list"):
        revert_run(settings, "shop", "run-20990101T000000-abcdef", "tester")
    with pytest.raises(RevertRefused, match="created build"):
        revert_run(settings, "shop", run_a, "tester")
    _ingest(settings, catalog, new_build=True)
    new_build = folder.alias("live")
    with pytest.raises(RevertRefused, match=f"wrote build {old_build} \\(previous\\)") as refused:
        revert_run(settings, "shop", run_b, "tester")
    assert f"--build {old_build}" in str(refused.value)
    with pytest.raises(RevertRefused, match=f"not build {new_build}"):
        revert_run(settings, "shop", run_b, "tester", build_id=new_build)
    report = revert_run(settings, "shop", run_b, "tester", build_id=old_build)
    assert report.build_status == "previous" and folder.alias("live") == new_build
    hashes = open_build_index(folder, folder.manifest(old_build), settings).content_hashes()
    assert "item-9" not in hashes and "item-4" in hashes


def test_revert_after_the_version_was_pruned_is_a_clear_error(settings, make_catalog, monkeypatch):
    monkeypatch.setattr("mmsearch.index.lancedb.PRUNE_VERSIONS_OLDER_THAN", timedelta(0))
    catalog = make_catalog()
    _ingest(settings, catalog)
    run_b = _ingest(settings, _batch_b(catalog), sync=True)  # its publish prunes the rest
    before = _hashes(settings)
    version = _folder(settings).live_manifest().table_version
    with pytest.raises(RevertRefused, match="no longer has table version") as refused:
        revert_run(settings, "shop", run_b, "tester")
    assert "--sync" in str(refused.value) and "Nothing was changed" in str(refused.value)
    assert _hashes(settings) == before
    assert _folder(settings).live_manifest().table_version == version


def test_revert_waits_for_no_one_when_asked(settings, make_catalog):
    catalog = make_catalog()
    _ingest(settings, catalog)
    run_b = _ingest(settings, _batch_b(catalog), sync=True)
    with _held_elsewhere(_folder(settings)), pytest.raises(CollectionBusy):
        revert_run(settings, "shop", run_b, "tester", wait=False)
    assert "item-9" in _hashes(settings)


# -- builds ----------------------------------------------------------------------------------


def _stage(folder: CollectionDir, build_id: str, live: str, previous: str) -> None:
    """Make ``build_id`` a ready build that was never published (a staged candidate)."""

    def change(state: CollectionState) -> None:
        state.aliases = Aliases(live=live, previous=previous)

    folder.update_state(change)
    manifest = folder.manifest(build_id)
    manifest.clear("published_at")
    folder.write_manifest(build_id, manifest)


@pytest.fixture
def six_builds(settings, make_catalog, monkeypatch):
    """retired, canary, previous, live, candidate and building builds, oldest first."""
    # Build ids sort by creation time to the second; these builds come within one.
    numbers = iter(range(10, 99))
    monkeypatch.setattr(
        "mmsearch.ingest.builds.new_id", lambda prefix: f"{prefix}-20260101T0000{next(numbers)}-0"
    )
    catalog = make_catalog()
    _ingest(settings, catalog)
    folder = _folder(settings)
    b1 = folder.alias("live")
    _ingest(settings, catalog, new_build=True)
    b2 = folder.alias("live")
    publish(folder, b1, "tester")  # b1 was published: retired once it is neither alias
    _ingest(settings, catalog, new_build=True)
    b3 = folder.alias("live")
    _ingest(settings, catalog, new_build=True)
    b4 = folder.alias("live")
    _ingest(settings, catalog, new_build=True)
    b5 = folder.alias("live")
    _stage(folder, b5, live=b4, previous=b3)
    start_canary(folder, b2, 10.0, "tester")
    encoders = EncoderSet.load({"text": "fake-text", "image": "fake-image"})
    b6, _manifest, _index = create_build(folder, FieldMapping(), [], encoders, settings)
    gated = folder.manifest(b4)
    gated.gate = GateSummary(verdict="pass", reasons=[])
    folder.write_manifest(b4, gated)
    return folder, [b1, b2, b3, b4, b5, b6]


def test_builds_list_shows_every_status_and_the_gate(settings, six_builds):
    folder, builds = six_builds
    summaries = list_builds(folder)
    assert [s.build_id for s in summaries] == builds[::-1]
    statuses = {s.build_id: s.status for s in summaries}
    assert [statuses[b] for b in builds] == [
        "retired",
        "canary",
        "previous",
        "live",
        "candidate",
        "building",
    ]
    live = next(s for s in summaries if s.status == "live")
    assert live.gate == "pass" and live.items == 5
    assert live.encoders == {"text": "fake-text@fake-text-v1", "image": "fake-image@fake-image-v1"}
    result = CliRunner().invoke(
        cli_app, ["builds", "list", "-c", "shop", "--json", "--home", str(settings.home)]
    )
    assert result.exit_code == 0, result.output
    assert [row["status"] for row in json.loads(result.stdout)] == [
        "building",
        "candidate",
        "live",
        "previous",
        "canary",
        "retired",
    ]


def test_prune_keeps_protected_building_and_newest(settings, six_builds):
    folder, (b1, b2, b3, b4, b5, b6) = six_builds
    assert prune_plan(folder, 1) == [b1]  # b5 is the newest ready; b2-b4 are protected
    assert prune_plan(folder, 0) == [b1, b5]
    folder.update_state(lambda state: setattr(state, "staged", b5))
    assert prune_plan(folder, 0) == [b1]  # the staged candidate is still being filled
    folder.update_state(lambda state: state.clear("staged"))
    with _held_elsewhere(folder), pytest.raises(CollectionBusy):
        prune_builds(folder, 0, wait=False)
    assert folder.build_ids() == [b1, b2, b3, b4, b5, b6]  # refused: nothing removed
    table = folder.manifest(b1).table
    assert prune_builds(folder, 1) == [b1]
    assert folder.build_ids() == [b2, b3, b4, b5, b6]
    assert not (folder.lancedb_dir / f"{table}.lance").exists()
    result = CliRunner().invoke(
        cli_app, ["builds", "prune", "-c", "shop", "--keep", "0", "--home", str(settings.home)]
    )
    assert result.exit_code == 0, result.output
    assert folder.build_ids() == [b2, b3, b4, b6]
    assert {s.status for s in list_builds(folder)} == {"canary", "previous", "live", "building"}


def test_builds_diff_counts_exactly(settings, make_catalog):
    catalog = make_catalog()
    _ingest(settings, catalog)
    folder = _folder(settings)
    a = folder.alias("live")
    _ingest(settings, _batch_b(catalog), new_build=True)
    b = folder.alias("live")
    diff = diff_builds(folder, a, b, settings)
    assert diff.encoders == [] and diff.schema == [] and diff.mapping == []
    items = diff.items
    assert (items.added, items.removed, items.changed, items.unchanged) == (1, 1, 1, 3)
    assert (items.added_ids, items.removed_ids, items.changed_ids) == (
        ["item-9"],
        ["item-4"],
        ["item-0"],
    )
    mapping = FieldMapping(attributes=["category", "price"])
    _ingest(settings, catalog, new_build=True, mapping=mapping, text_encoder="broken-text")
    c = folder.alias("live")
    other = diff_builds(folder, a, c, settings)
    assert "text spec: fake-text -> broken-text" in other.encoders
    assert "attribute in_stock (bool): only in A" in other.schema
    assert any(line.startswith("attributes:") for line in other.mapping)
    assert (other.items.changed, other.items.added, other.items.removed) == (5, 0, 0)
    result = CliRunner().invoke(
        cli_app, ["builds", "diff", "-c", "shop", a, b, "--json", "--home", str(settings.home)]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["items"]["changed_ids"] == ["item-0"]
    shown = CliRunner().invoke(
        cli_app, ["builds", "show", "-c", "shop", b, "--json", "--home", str(settings.home)]
    )
    assert shown.exit_code == 0, shown.output
    info = json.loads(shown.stdout)
    assert info["status"] == "previous" and info["runs_total"] == 1 and info["items"] == 5
