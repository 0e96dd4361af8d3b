"""A run's saved records as typed models: history lines, progress records and summaries
written by earlier versions still load, the files keep their layout, and a record that
does not fit is an error naming the file and the field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mmsearch.builds import history as history_module
from mmsearch.builds.history import append_run, entry_from_summary, note_run, read_runs
from mmsearch.builds.run_records import (
    ProgressRecord,
    RunDetail,
    RunEntry,
    RunSource,
    RunSummary,
    SavedRecordError,
    read_summary,
)
from mmsearch.ingest.runlog import RunLog, close_run, read_progress, unfinished_runs
from mmsearch.manifest import BuildManifest
from mmsearch.workspace import CollectionDir

BUILD = "b20261201T000000Z-aaaaaa"
SOURCE = {"path": "/data/shop.jsonl", "format": "jsonl", "sha256": "ab" * 32}

# Lines exactly as the history was written before it was typed (dataclass ``asdict``).
TODAY_LINES = [
    {
        "kind": "ingest",
        "run_id": "run-1",
        "build_id": BUILD,
        "started_at": "2026-12-01T10:00:00Z",
        "finished_at": "2026-12-01T10:01:00Z",
        "counts": {"rows": 5, "added": 5, "failed": 0, "items": 5},
        "source": SOURCE,
        "table_version_before": None,
        "table_version_after": 2,
        "actor": None,
        "detail": {},
    },
    {
        "kind": "item_put",
        "run_id": "run-2",
        "build_id": BUILD,
        "started_at": "2026-12-01T11:00:00Z",
        "finished_at": "2026-12-01T11:00:01Z",
        "counts": {"rows": 1, "added": 1, "items": 6},
        "source": {"path": "/tmp/put-x/item.jsonl", "format": "jsonl", "sha256": "cd" * 32},
        "table_version_before": 2,
        "table_version_after": 3,
        "actor": "key-1",
        "detail": {"items": ["extra-1"], "removed_ids_sample": ["gone-1"]},
    },
    {
        "kind": "revert",
        "run_id": "run-3",
        "build_id": BUILD,
        "started_at": "2026-12-01T12:00:00Z",
        "finished_at": "2026-12-01T12:00:02Z",
        "counts": {"restored": 0, "removed": 1, "changed": 0, "items": 5},
        "source": None,
        "table_version_before": 3,
        "table_version_after": 4,
        "actor": "operator",
        "detail": {"reverted_run": "run-2", "restored_version": 2, "later_runs_undone": []},
    },
    {
        "kind": "rebuild",
        "run_id": "run-4",
        "build_id": BUILD,
        "started_at": "2026-12-01T13:00:00Z",
        "finished_at": "2026-12-01T13:05:00Z",
        "counts": {"written": 5, "failed": 0, "reused": {"text": 5}, "encoded": {"image": 5}},
        "source": None,
        "table_version_before": None,
        "table_version_after": 1,
        "actor": None,
        "detail": {"truncated": True},
    },
]


@pytest.fixture
def collection(tmp_path: Path) -> CollectionDir:
    folder = CollectionDir(tmp_path / "shop")
    build = folder.build_dir(BUILD)
    build.mkdir(parents=True)
    (build / "manifest.json").write_text(json.dumps({"build_id": BUILD, "table": "t"}))
    return folder


def _write_log(collection: CollectionDir, lines: list[str]) -> Path:
    path = collection.build_dir(BUILD) / "runs.jsonl"
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def test_a_history_in_todays_format_loads_typed(collection: CollectionDir) -> None:
    torn = json.dumps(TODAY_LINES[0])[:40]  # a crash cut the last append short
    _write_log(collection, [json.dumps(line) for line in TODAY_LINES] + [torn])
    entries = read_runs(collection, BUILD)
    assert [e.run_id for e in entries] == ["run-1", "run-2", "run-3", "run-4"]
    ingest, put, revert, rebuild = entries
    assert ingest.source is not None and ingest.source.sha256 == "ab" * 32
    assert ingest.table_version_before is None and ingest.counts["items"] == 5
    assert put.detail.items == ["extra-1"] and put.detail.removed_ids_sample == ["gone-1"]
    assert revert.detail.reverted_run == "run-2" and revert.detail.restored_version == 2
    assert rebuild.counts["reused"] == {"text": 5} and rebuild.detail.truncated is True
    # what `runs list --json` prints is the line as it was stored (plus ``legacy``)
    for entry, line in zip(entries, TODAY_LINES, strict=True):
        assert entry.as_dict() == {**line, "legacy": False}


def test_a_line_that_does_not_fit_names_the_file_line_and_field(
    collection: CollectionDir,
) -> None:
    bad = {**TODAY_LINES[1], "kind": "teleport"}
    path = _write_log(collection, [json.dumps(TODAY_LINES[0]), json.dumps(bad)])
    with pytest.raises(SavedRecordError) as caught:
        read_runs(collection, BUILD)
    message = str(caught.value)
    assert f"{path}, line 2," in message and "kind:" in message
    assert "Traceback" not in message and "pydantic" not in message
    counts = {**TODAY_LINES[0], "counts": {"rows": "many"}}
    _write_log(collection, [json.dumps(counts)])
    with pytest.raises(SavedRecordError, match=r"line 1, is not valid: counts\.rows"):
        read_runs(collection, BUILD)


def test_appended_lines_keep_the_stored_layout(collection: CollectionDir) -> None:
    entry = RunEntry.model_validate(TODAY_LINES[2])
    append_run(collection, entry)
    stored = (collection.build_dir(BUILD) / "runs.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in stored] == [TODAY_LINES[2]]  # no ``legacy``, no nulls
    huge = entry.model_copy(update={"detail": RunDetail(items=["x" * 100] * 100), "source": None})
    append_run(collection, huge)
    last = json.loads((collection.build_dir(BUILD) / "runs.jsonl").read_text().splitlines()[-1])
    assert last["detail"] == {"truncated": True} and last["source"] is None


def test_a_summary_feeds_the_manifest_and_the_log_with_the_context(
    collection: CollectionDir,
) -> None:
    manifest = BuildManifest(build_id=BUILD, table="t")
    summary = RunSummary(
        run_id="run-9",
        started_at="2026-12-02T10:00:00Z",
        finished_at="2026-12-02T10:00:05Z",
        source=RunSource.model_validate(SOURCE),
        counts={"rows": 2, "added": 2, "items": 2},
        table_version=7,
        removed_ids_sample=[f"old-{n}" for n in range(30)],
    )
    with history_module.recording("item_put", "key-7", items=["one"]):
        note_run(manifest, summary, 6)
        entry = entry_from_summary(BUILD, summary)
    assert summary.kind == "item_put" and summary.actor == "key-7"
    assert manifest.last_run is not None and manifest.last_run["table_version_before"] == 6
    assert manifest.runs[-1].kind == "item_put" and manifest.sources == []  # not an ingest
    assert entry.detail.items == ["one"] and len(entry.detail.removed_ids_sample or []) == 20
    assert (entry.table_version_before, entry.table_version_after) == (6, 7)
    # the summary stores what it was given: no revert or rebuild keys on an ingest's run
    assert "reverted_run" not in summary.saved_json() and "mapping" not in summary.saved_json()


def test_progress_and_summary_files_in_todays_format_load(collection: CollectionDir) -> None:
    run_dir = collection.build_dir(BUILD) / "runs" / "run-5"
    run_dir.mkdir(parents=True)
    progress = {
        "run_id": "run-5",
        "build_id": BUILD,
        "resume_key": "k" * 64,
        "started_at": "2026-12-01T10:00:00Z",
        "source": SOURCE,
        "rows_total": 10,
        "table_version_visible": 3,
        "options": {"sync": False, "strict": True},
        "state": "running",
        "updated_at": "2026-12-01T10:00:09Z",
        "rows_done": 4,
        "counts": {"rows": 4, "added": 4},
        "table_version": 4,
        "host": "worker-2",  # written by a newer version: kept on rewrite
    }
    (run_dir / "progress.json").write_text(json.dumps(progress))
    (run_dir / "run.json").write_text(
        json.dumps({"run_id": "run-5", "kind": "ingest", "counts": {"items": 4}, "resumed": True})
    )
    [run] = unfinished_runs(collection, BUILD)
    assert (run.run_id, run.key, run.rows_done) == ("run-5", "k" * 64, 4)
    assert run.record.options is not None and run.record.options.strict
    summary = read_summary(run_dir / "run.json")
    assert summary.resumed and summary.saved_json() == {
        "run_id": "run-5",
        "kind": "ingest",
        "counts": {"items": 4},
        "resumed": True,
    }
    close_run(collection, BUILD, "run-5", "abandoned", "another write")
    closed = json.loads((run_dir / "progress.json").read_text())
    assert closed["state"] == "abandoned" and closed["why"] == "another write"
    assert closed["host"] == "worker-2" and closed["rows_done"] == 4
    assert unfinished_runs(collection, BUILD) == []


def test_a_running_record_that_does_not_fit_is_named(collection: CollectionDir) -> None:
    path = collection.build_dir(BUILD) / "runs" / "run-6" / "progress.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"run_id": "run-6", "state": "running", "rows_done": "x"}))
    with pytest.raises(SavedRecordError) as caught:
        unfinished_runs(collection, BUILD)
    assert str(path) in str(caught.value) and "build_id" in str(caught.value)
    assert "rows_done" in str(caught.value) and "Remove the run's folder" in str(caught.value)


def test_a_run_log_writes_progress_and_summary(tmp_path: Path) -> None:
    record = ProgressRecord(run_id="run-7", build_id=BUILD, resume_key="k")
    log = RunLog.start(tmp_path / "run-7", record, keep=5)
    log.commit(3, {"rows": 3, "encoded": {"text": 3}}, 9)
    stored = read_progress(tmp_path / "run-7" / "progress.json")
    assert (stored.state, stored.rows_done, stored.table_version) == ("running", 3, 9)
    assert stored.counts == {"rows": 3, "encoded": {"text": 3}}
    log.finish("done", RunSummary(run_id="run-7", kind="rebuild", counts={"items": 3}))
    assert read_progress(tmp_path / "run-7" / "progress.json").state == "done"
    assert read_summary(tmp_path / "run-7" / "run.json").kind == "rebuild"
