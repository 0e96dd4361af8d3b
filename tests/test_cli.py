"""The CLI in-process (Typer's runner) with fake encoders: exit codes, JSON, messages."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from mmsearch.cli import app

from conftest import write_jsonl

runner = CliRunner()
FAKE = ["--text-encoder", "fake-text", "--image-encoder", "fake-image"]


def invoke(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def test_ingest_search_and_collections_in_json(tmp_path, make_catalog):
    home = str(tmp_path / "ws")
    catalog = make_catalog()
    result = invoke("ingest", str(catalog), "-c", "shop", "--home", home, "--json", *FAKE)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["counts"]["added"] == 5
    assert report["mapping"]["images"] == ["image"]

    found = invoke("search", "blue", "-c", "shop", "--home", home, "--json", "--k", "2")
    assert found.exit_code == 0, found.output
    hits = json.loads(found.stdout)["hits"]
    assert hits[0]["id"] == "item-2"
    assert set(hits[0]["signals"]) == {"keyword", "text_vector"}

    listed = json.loads(invoke("collections", "--home", home, "--json").stdout)
    assert listed[0]["name"] == "shop" and listed[0]["items"] == 5
    assert set(listed[0]["encoders"]) == {"text", "image"}


def test_image_search_and_where_from_the_command_line(tmp_path, make_catalog):
    home = str(tmp_path / "ws")
    catalog = make_catalog()
    invoke("ingest", str(catalog), "-c", "shop", "--home", home, *FAKE)
    image = catalog.parent / "img" / "black.png"
    result = invoke(
        "search", "--image", str(image), "-c", "shop", "--home", home, "--json",
        "--where", "category = 'kitchen'",
    )  # fmt: skip
    hits = json.loads(result.stdout)["hits"]
    assert hits[0]["id"] == "item-4"
    assert all(h["attributes"]["category"] == "kitchen" for h in hits)


def test_table_output_shows_every_signal(tmp_path, make_catalog):
    home = str(tmp_path / "ws")
    invoke("ingest", str(make_catalog()), "-c", "shop", "--home", home, *FAKE)
    result = invoke("search", "red mug", "-c", "shop", "--home", home)
    assert result.exit_code == 0
    assert "red ceramic mug" in result.stdout
    assert "keyword" in result.stdout and "text_vector" in result.stdout


def test_partial_failure_exits_zero_but_strict_fails(tmp_path, make_catalog):
    home = str(tmp_path / "ws")
    catalog = make_catalog(["{broken"])
    relaxed = invoke("ingest", str(catalog), "-c", "a", "--home", home, *FAKE)
    assert relaxed.exit_code == 0
    assert "1 failed" in relaxed.stdout
    assert "invalid JSON" in relaxed.stderr
    strict = invoke("ingest", str(catalog), "-c", "b", "--home", home, "--strict", *FAKE)
    assert strict.exit_code == 1
    assert "--strict" in strict.stderr


def test_nothing_ingested_is_a_failure(tmp_path):
    catalog = write_jsonl(tmp_path / "c.jsonl", [{"id": "x", "title": "t", "image": "gone.png"}])
    result = invoke("ingest", str(catalog), "-c", "x", "--home", str(tmp_path / "ws"), *FAKE)
    assert result.exit_code == 1
    assert "nothing was ingested" in result.stderr


def test_user_errors_print_a_message_not_a_traceback(tmp_path):
    home = str(tmp_path / "ws")
    missing = invoke("search", "x", "-c", "ghost", "--home", home)
    assert missing.exit_code == 2
    assert "No collection named 'ghost'" in missing.stderr
    assert "Traceback" not in missing.output

    bad_format = tmp_path / "c.txt"
    bad_format.write_text("hello")
    unknown = invoke("ingest", str(bad_format), "-c", "x", "--home", home, *FAKE)
    assert unknown.exit_code == 2 and "Cannot tell the format" in unknown.stderr

    bad_name = invoke("ingest", str(bad_format), "-c", "../etc", "--home", home, *FAKE)
    assert bad_name.exit_code == 2 and "Invalid collection name" in bad_name.stderr


def test_mapping_file_and_options(tmp_path):
    catalog = write_jsonl(
        tmp_path / "c.jsonl",
        [{"sku": "1", "label": "wing spar", "notes": "carbon", "plant": "Toulouse"}],
    )
    mapping = tmp_path / "mapping.toml"
    mapping.write_text('id = "sku"\ntitle = "label"\n')
    home = str(tmp_path / "ws")
    result = invoke(
        "ingest", str(catalog), "-c", "parts", "--home", home, "--mapping", str(mapping),
        "--text-field", "notes", "--json", *FAKE,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    mapping_used = json.loads(result.stdout)["mapping"]
    assert mapping_used["id"] == "sku" and mapping_used["text"] == ["notes"]
    assert mapping_used["attributes"] == ["plant"]
    hits = json.loads(invoke("search", "carbon", "-c", "parts", "--home", home, "--json").stdout)
    assert hits["hits"][0]["id"] == "1"


def test_collections_when_empty(tmp_path):
    result = invoke("collections", "--home", str(tmp_path / "none"))
    assert result.exit_code == 0 and "no collections" in result.stdout


def test_ingest_progress_shows_items_and_images_per_second(tmp_path, make_catalog):
    result = invoke("ingest", str(make_catalog()), "-c", "shop", "--home", str(tmp_path), *FAKE)
    assert result.exit_code == 0
    assert "items/s" in result.stderr and "images/s" in result.stderr


def test_catalog_text_that_looks_like_markup_prints_as_written(tmp_path):
    catalog = write_jsonl(
        tmp_path / "c.jsonl", [{"id": "[b]1", "title": "[red] shirt", "tags": ["[x]"]}]
    )
    home = str(tmp_path / "ws")
    ingested = invoke("ingest", str(catalog), "-c", "m", "--home", home, *FAKE)
    assert "text=[tags]" in ingested.stdout
    found = invoke("search", "shirt", "-c", "m", "--home", home)
    assert "[red] shirt" in found.stdout and "[b]1" in found.stdout


def test_bad_where_prints_the_filter_error_without_internals(tmp_path, make_catalog):
    home = str(tmp_path / "ws")
    invoke("ingest", str(make_catalog()), "-c", "shop", "--home", home, *FAKE)
    result = invoke("search", "mug", "-c", "shop", "--home", home, "--where", "size = 3")
    assert result.exit_code == 2
    message = " ".join(result.stderr.split())
    assert "not allowed at position 1 ('size'): unknown attribute" in message
    assert "attributes of this collection: category, in_stock, price" in message
    for internal in ("search_text", "texts_json", "record_sha256", "vector_text", "SELECT"):
        assert internal not in result.output
    assert "Traceback" not in result.output
    syntax = invoke("search", "mug", "-c", "shop", "--home", home, "--where", "price <")
    assert syntax.exit_code == 2 and "syntax error at position 7" in syntax.stderr
    empty = invoke("search", "-c", "shop", "--home", home)
    assert empty.exit_code == 2 and "Give a text query, an image, or both." in empty.stderr
    assert "--image" not in empty.stderr


def test_groups_search_as_a_caller_with_those_acl_groups(tmp_path):
    rows = [
        {"id": "open", "title": "open mug", "price": 1},
        {"id": "staff", "title": "staff mug", "price": 2, "acl": ["staff"]},
        {"id": "nobody", "title": "hidden mug", "price": 3, "acl": []},
    ]
    catalog = write_jsonl(tmp_path / "acl.jsonl", rows)
    home = str(tmp_path / "ws")
    ingested = invoke("ingest", str(catalog), "-c", "acl", "--home", home, *FAKE)
    assert ingested.exit_code == 0, ingested.output

    def ids(*extra: str) -> set[str]:
        found = invoke("search", "mug", "-c", "acl", "--home", home, "--json", *extra)
        assert found.exit_code == 0, found.output
        return {hit["id"] for hit in json.loads(found.stdout)["hits"]}

    assert ids() == {"open", "staff", "nobody"}  # the operator is unrestricted
    assert ids("--groups", "staff") == {"open", "staff"}
    assert ids("--groups", "") == {"open"}
    assert ids("--groups", "other,staff", "--where", "price > 1") == {"staff"}


def test_argument_and_schema_errors_show_no_progress_bar(tmp_path, make_catalog):
    home = str(tmp_path / "ws")
    missing = invoke("ingest", str(tmp_path / "nope.jsonl"), "-c", "shop", "--home", home, *FAKE)
    assert missing.exit_code == 2 and "does not exist" in missing.stderr
    assert "━" not in missing.stderr and "ingest" not in missing.stderr.split("error:")[0]

    assert invoke("ingest", str(make_catalog()), "-c", "shop", "--home", home, *FAKE).exit_code == 0
    other = write_jsonl(tmp_path / "other.jsonl", [{"id": "x", "title": "only a title"}])
    refused = invoke("ingest", str(other), "-c", "shop", "--home", home, *FAKE)
    assert refused.exit_code == 2
    assert "--new-build" in refused.stderr and "━" not in refused.stderr


def test_sync_dry_run_and_strict_from_the_command_line(tmp_path, make_catalog):
    home = str(tmp_path / "ws")
    catalog = make_catalog()
    assert invoke("ingest", str(catalog), "-c", "shop", "--home", home, *FAKE).exit_code == 0
    fewer = catalog.with_name("fewer.jsonl")
    fewer.write_text("\n".join(catalog.read_text().splitlines()[:2]) + "\n")

    preview = invoke(
        "ingest", str(fewer), "-c", "shop", "--home", home, "--sync", "--dry-run", *FAKE
    )
    assert preview.exit_code == 0, preview.output
    assert "dry run, nothing written" in preview.stdout and "3 would be removed" in preview.stdout

    synced = invoke("ingest", str(fewer), "-c", "shop", "--home", home, "--sync", "--json", *FAKE)
    report = json.loads(synced.stdout)
    assert report["counts"]["removed"] == 3 and report["counts"]["items"] == 2

    broken = write_jsonl(tmp_path / "broken.jsonl", [{"id": "a", "title": "fine"}, "{bad"])
    strict = invoke("ingest", str(broken), "-c", "fresh", "--home", home, "--strict", *FAKE)
    assert strict.exit_code == 1 and "nothing written" in strict.stdout
    listed = json.loads(invoke("collections", "--home", home, "--json").stdout)
    assert [c["name"] for c in listed] == ["shop"]


def test_rate_column_reports_the_recent_rate_not_zero(monkeypatch):
    from rich.progress import Progress

    from mmsearch.commands import ingest as ingest_command

    clock = {"now": 100.0}
    monkeypatch.setattr(ingest_command.time, "monotonic", lambda: clock["now"])
    column = ingest_command.RateColumn()
    progress = Progress(get_time=lambda: clock["now"])
    task_id = progress.add_task("ingest", total=None, unit="items")
    task = progress.tasks[0]
    column.render(task)
    for _ in range(5):  # 100 items per second for 5 s
        clock["now"] += 1.0
        progress.advance(task_id, 100)
        rendered = column.render(task).plain
    assert rendered == "100 items/s"
    for _ in range(20):  # then 10 items per second: the old rate leaves the window
        clock["now"] += 1.0
        progress.advance(task_id, 10)
        rendered = column.render(task).plain
    assert rendered == "10 items/s"
