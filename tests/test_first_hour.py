"""The first hour of a new user: a CLI that answers at once, and mistakes caught before work.

Each mistake from the issue has its test: the message it now gets, and that nothing was
written (no collection folder, no lock file) and no encoder was loaded.
"""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mmsearch.catalog.normalise import infer_attribute_specs
from mmsearch.cli import app
from mmsearch.filters.expr import Compare, Not
from mmsearch.filters.parse import FilterError, parse_where
from mmsearch.ingest.encoders import EncoderSet
from mmsearch.writer_lock import collection_writer, lock_path, remove_unused_folder

from conftest import write_jsonl

runner = CliRunner()
FAKE = ["--text-encoder", "fake-text", "--image-encoder", "fake-image"]
HEAVY = ("lancedb", "torch", "scipy", "sklearn", "transformers", "pyarrow", "pymilvus")
COLUMNS = "brand, colour, description, id, in_stock, price, title"


def invoke(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def _loaded_after(code: str) -> list[str]:
    """Top-level packages of the heavy list that a fresh interpreter holds after ``code``."""
    script = (
        f"import sys, json\n{code}\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
    )
    loaded = set(json.loads(done.stdout.strip().splitlines()[-1]))
    return sorted(loaded & set(HEAVY))


def test_importing_the_cli_loads_no_store_model_or_science_library():
    assert _loaded_after("import mmsearch.cli") == []


def test_help_of_every_command_loads_none_of_them():
    code = (
        "from mmsearch.cli import app\n"
        "for args in (['--help'], ['search', '--help'], ['ingest', '--help'], "
        "['rebuild', '--help'], ['canary', '--help'], ['drift', '--help']):\n"
        "    try:\n"
        "        app(args)\n"
        "    except SystemExit as exc:\n"
        "        assert exc.code == 0, (args, exc.code)\n"
    )
    assert _loaded_after(code) == []


def test_defaults_repeated_for_a_light_cli_agree_with_their_sources():
    from mmsearch.builds.lineage import DEFAULT_LIMIT
    from mmsearch.commands import drift, lineage
    from mmsearch.commands.search import DEFAULT_IMAGE_WEIGHT
    from mmsearch.monitoring.drift import DEFAULT_THRESHOLD
    from mmsearch.monitoring.kpis import DEFAULT_K
    from mmsearch.retrieval import planner

    assert DEFAULT_IMAGE_WEIGHT == planner.DEFAULT_IMAGE_WEIGHT
    assert drift.DEFAULT_THRESHOLD == DEFAULT_THRESHOLD
    assert (lineage.DEFAULT_K, lineage.DEFAULT_LIMIT) == (DEFAULT_K, DEFAULT_LIMIT)


# --- the catalog of the issue: products.csv ----------------------------------------------


def write_products(path: Path, rows: int = 30, *, ids: bool = True) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "title", "description", "brand", "price", "colour", "in_stock"])
        for n in range(rows):
            colour = ("red", "blue", "green")[n % 3]
            writer.writerow(
                [
                    f"P{n:03d}" if ids else "",
                    f"{colour} mug {n}",
                    f"a {colour} ceramic mug",
                    ("Acme", "Globex")[n % 2],
                    f"{5 + n}.50",
                    colour,
                    ("true", "FALSE")[n % 2],
                ]
            )
    return path


@pytest.fixture
def no_models(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loading an encoder fails the test: these mistakes must be caught before."""

    def refuse(cls: type, specs: dict[str, str]) -> EncoderSet:
        raise AssertionError(f"an encoder was loaded: {specs}")

    monkeypatch.setattr(EncoderSet, "load", classmethod(refuse))


def assert_nothing_written(home: Path) -> None:
    collections = home / "collections"
    assert not collections.exists() or list(collections.iterdir()) == []


@pytest.mark.parametrize("dry_run", [True, False])
def test_an_unknown_attribute_is_an_error_listing_the_columns(tmp_path, no_models, dry_run):
    home = tmp_path / "ws"
    catalog = write_products(tmp_path / "products.csv")
    result = invoke(
        "ingest", str(catalog), "-c", "shop", "--home", str(home),
        "--attribute", "colour_name", *(["--dry-run"] if dry_run else []), *FAKE,
    )  # fmt: skip
    assert result.exit_code == 2
    assert "products.csv has no field 'colour_name' (--attribute" in result.output
    assert "did you mean 'colour'?" in result.output
    assert f"Its fields: {COLUMNS}." in " ".join(result.output.split())
    assert "would be added" not in result.output
    assert_nothing_written(home)


@pytest.mark.parametrize(
    ("option", "label"),
    [
        ("--id-field", "--id-field / id"),
        ("--title-field", "--title-field / title"),
        ("--text-field", "--text-field / text"),
        ("--image-field", "--image-field / images"),
        ("--acl-field", "--acl-field / acl"),
    ],
)
def test_every_unknown_field_option_fails_before_any_work(tmp_path, no_models, option, label):
    home = tmp_path / "ws"
    catalog = write_products(tmp_path / "products.csv")
    result = invoke("ingest", str(catalog), "-c", "shop", "--home", str(home), option, "nosuch")
    assert result.exit_code == 2
    flat = " ".join(result.output.split())
    assert f"products.csv has no field 'nosuch' ({label})" in flat
    assert f"Its fields: {COLUMNS}." in flat
    assert "missing id" not in flat and "error report" not in flat
    assert_nothing_written(home)


def test_unknown_fields_of_a_mapping_file_are_named_together(tmp_path, no_models):
    home = tmp_path / "ws"
    catalog = write_products(tmp_path / "products.csv")
    mapping = tmp_path / "mapping.toml"
    mapping.write_text('id = "sku"\ntext = ["blurb"]\nattributes = ["brand"]\n')
    result = invoke(
        "ingest", str(catalog), "-c", "shop", "--home", str(home), "--mapping", str(mapping)
    )
    assert result.exit_code == 2
    flat = " ".join(result.output.split())
    assert "no fields 'sku' (--id-field / id); 'blurb' (--text-field / text)." in flat
    assert_nothing_written(home)


def test_a_jsonl_field_first_seen_after_the_sample_is_known(tmp_path):
    from mmsearch.catalog.mapping import FieldMapping
    from mmsearch.catalog.readers import open_catalog
    from mmsearch.ingest.planning import check_named_fields

    rows: list[dict[str, object] | str] = [{"id": str(n), "title": "t"} for n in range(3)]
    rows.append({"id": "late", "title": "t", "groups": ["staff"]})
    source = open_catalog(write_jsonl(tmp_path / "c.jsonl", rows))
    sample = [{"id": "0", "title": "t"}]  # the sample did not reach the last row
    check_named_fields(source, FieldMapping(acl="groups"), sample)
    with pytest.raises(Exception, match=r"no field 'group'.*did you mean 'groups'"):
        check_named_fields(source, FieldMapping(acl="group"), sample)


def test_first_rows_failing_the_same_way_stop_with_one_message(tmp_path, no_models):
    home = tmp_path / "ws"
    catalog = write_products(tmp_path / "products.csv", rows=40, ids=False)
    result = invoke("ingest", str(catalog), "-c", "shop", "--home", str(home))
    assert result.exit_code == 2
    flat = " ".join(result.output.split())
    assert "The first 20 rows of products.csv all fail the same way" in flat
    assert "field 'id': missing id" in flat and f"fields: {COLUMNS}." in flat
    assert flat.count("missing id") == 1
    assert_nothing_written(home)


def test_a_failed_first_ingest_leaves_no_folder_and_keeps_its_errors_file(tmp_path):
    home = tmp_path / "ws"
    rows: list[dict[str, object] | str] = [{"id": "", "title": f"t{n}"} for n in range(3)]
    catalog = write_jsonl(tmp_path / "few.jsonl", rows)  # too few rows to stop early
    result = invoke("ingest", str(catalog), "-c", "fresh", "--home", str(home), *FAKE)
    assert result.exit_code == 1 and "nothing was ingested" in result.output
    assert_nothing_written(home)
    joined = "".join(result.stdout.split())  # the terminal may wrap the long path
    named = re.findall(r"errorreport:(.+?\.errors\.jsonl)", joined)
    assert len(named) == 1
    kept = Path(named[0])
    assert kept.is_file() and kept.parent.parent.name == "failed-runs"
    lines = [json.loads(line) for line in kept.read_text().splitlines()]
    assert [line["reason"] for line in lines] == ["missing id"] * 3


# --- booleans in CSV, and a bare boolean attribute as a condition ----------------------


def test_csv_booleans_are_inferred_in_one_spelling_per_column():
    sample = [
        {"a": "true", "b": "Yes", "c": "1", "d": "1", "e": "yes", "f": "1"},
        {"a": "FALSE", "b": "no", "c": "0", "d": "1", "e": "false", "f": "2"},
    ]
    specs = {s.field: s.kind for s in infer_attribute_specs(sample, list("abcdef"))}
    assert specs == {
        "a": "bool", "b": "bool", "c": "bool", "d": "int", "e": "string", "f": "int",
    }  # fmt: skip
    typed = infer_attribute_specs([{"n": 1}, {"n": 0}], ["n"])
    assert typed[0].kind == "int"  # JSON numbers stay numbers


def test_a_bare_boolean_attribute_is_a_condition():
    columns = {"in_stock": "bool", "brand": "string"}
    assert parse_where("in_stock", columns) == Compare("in_stock", "=", True)
    assert parse_where("NOT in_stock", columns) == Not(Compare("in_stock", "=", True))
    with pytest.raises(FilterError, match="an attribute alone is not a condition"):
        parse_where("brand", columns)


def test_where_in_stock_on_a_csv_catalog(tmp_path):
    home = str(tmp_path / "ws")
    catalog = write_products(tmp_path / "products.csv", rows=6)
    ingested = invoke("ingest", str(catalog), "-c", "shop", "--home", home, "--json", *FAKE)
    assert ingested.exit_code == 0, ingested.output
    assert json.loads(ingested.stdout)["attributes"]["in_stock"] == "bool"
    for where, expected in (("in_stock", True), ("NOT in_stock", False)):
        found = invoke("search", "mug", "-c", "shop", "--home", home, "--json", "--where", where)
        assert found.exit_code == 0, found.output
        hits = json.loads(found.stdout)["hits"]
        assert len(hits) == 3 and {h["attributes"]["in_stock"] for h in hits} == {expected}


# --- checked before the store or a model opens -----------------------------------------


def test_bad_search_options_fail_before_the_searcher_opens(tmp_path, monkeypatch):
    home = str(tmp_path / "ws")
    catalog = write_products(tmp_path / "products.csv", rows=3)
    assert invoke("ingest", str(catalog), "-c", "shop", "--home", home, *FAKE).exit_code == 0
    from mmsearch.search import searcher

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the Searcher was opened")

    monkeypatch.setattr(searcher.Searcher, "__init__", refuse)
    result = invoke("search", "mug", "-c", "shop", "--home", home, "--where", "colour = ")
    assert result.exit_code == 2 and "error:" in result.output
    unknown = invoke("search", "mug", "-c", "shop", "--home", home, "--where", "nosuch = 1")
    assert unknown.exit_code == 2 and "nosuch" in unknown.output
    missing = tmp_path / "nope.yaml"
    rules = invoke("search", "mug", "-c", "shop", "--home", home, "--rules", str(missing))
    assert rules.exit_code == 2 and "does not exist" in rules.output
    nothing = invoke("search", "-c", "shop", "--home", home)
    assert nothing.exit_code == 2 and "Give a text query, an image, or both" in nothing.output


def test_rebuild_with_nothing_to_do_loads_no_model(tmp_path, monkeypatch):
    home = str(tmp_path / "ws")
    catalog = write_products(tmp_path / "products.csv", rows=3)
    assert invoke("ingest", str(catalog), "-c", "shop", "--home", home, *FAKE).exit_code == 0

    def refuse(cls: type, specs: dict[str, str]) -> EncoderSet:
        raise AssertionError("an encoder was loaded")

    monkeypatch.setattr(EncoderSet, "load", classmethod(refuse))
    result = invoke("rebuild", "-c", "shop", "--home", home)
    assert result.exit_code == 2 and "Nothing to rebuild" in result.output


# --- the lock file of a collection that was never made ---------------------------------


def test_an_unused_collection_folder_is_removed_and_a_later_writer_still_locks(tmp_path):
    folder = tmp_path / "collections" / "fresh"
    with collection_writer(folder, purpose="first"):
        assert not remove_unused_folder(folder)  # held: in use
    assert lock_path(folder).exists()
    assert remove_unused_folder(folder) and not folder.exists()
    with collection_writer(folder, purpose="second"):
        assert lock_path(folder).exists()
    (folder / "collection.json").write_text("{}")
    assert not remove_unused_folder(folder) and folder.exists()  # not empty: kept


def test_a_writer_waiting_on_a_removed_lock_file_locks_the_new_one(tmp_path):
    """remove_unused_folder unlinks the lock file while it holds it; a writer that was
    already waiting on that file must not believe it holds the collection's lock."""
    import os
    import threading
    import time

    from mmsearch import writer_lock

    folder = tmp_path / "collections" / "fresh"
    held = writer_lock._lock_for(folder)
    held.acquire()  # this thread holds it, as the remover does
    seen: dict[str, bool] = {}

    def second_writer() -> None:
        with collection_writer(folder, purpose="second"):
            lock = writer_lock._lock_for(folder)
            seen["current"] = writer_lock._holds_current_file(lock, folder)
            seen["exists"] = lock_path(folder).exists()

    thread = threading.Thread(target=second_writer)
    thread.start()
    time.sleep(0.5)  # the second writer now waits on the file
    os.unlink(lock_path(folder))
    held.release()
    thread.join(timeout=10)
    assert seen == {"current": True, "exists": True}
