"""``mmsearch ingest --split-by acl``: one collection per tenant from one catalog.

Each tenant's collection must hold its own items and the shared (unlabelled) ones and
nothing of another tenant, and its keyword statistics must not move with words that
only another tenant's items hold (the reason to split at all). Bad input stops the
split before any collection exists.
"""

from __future__ import annotations

import json

from typer.testing import CliRunner

from mmsearch.cli import app
from mmsearch.config import Settings
from mmsearch.index.open import open_build_index
from mmsearch.ingest.tenants import tenants_of
from mmsearch.workspace import Workspace

from conftest import save_image, write_jsonl

runner = CliRunner()
FAKE = ["--text-encoder", "fake-text", "--image-encoder", "fake-image"]


def invoke(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def catalog(tmp_path, extra=()):
    save_image(tmp_path / "cat" / "img" / "red.png", (220, 30, 30))
    rows = [
        {"id": "a1", "title": "acme anvil", "acl": "acme", "image": "img/red.png"},
        {"id": "a2", "title": "acme rocket skates", "acl": ["acme"]},
        {"id": "b1", "title": "beta zyzzyva serum", "acl": ["beta"]},
        {"id": "ab", "title": "joint venture", "acl": ["acme", "beta"]},
        {"id": "s1", "title": "shared anvil manual"},
        *extra,
    ]
    return write_jsonl(tmp_path / "cat" / "catalog.jsonl", rows)


def stored(home, name):
    settings = Settings(home=home, text_encoder="fake-text", image_encoder="fake-image")
    folder = Workspace(home).collection(name)
    index = open_build_index(folder, folder.live_manifest(), settings)
    return index, sorted(str(i) for i in index.scan(["id"])["id"].to_pylist())


def test_each_tenant_gets_its_items_and_the_shared_ones_only(tmp_path):
    home = tmp_path / "ws"
    path = catalog(tmp_path)
    result = invoke(
        "ingest", str(path), "-c", "shop", "--split-by", "acl", "--home", str(home), *FAKE
    )
    assert result.exit_code == 0, result.output
    assert "5 rows, 2 tenants, 1 shared" in result.output
    assert sorted(Workspace(home).collection_names()) == ["shop-acme", "shop-beta"]
    acme, acme_ids = stored(home, "shop-acme")
    beta, beta_ids = stored(home, "shop-beta")
    assert acme_ids == ["a1", "a2", "ab", "s1"]
    assert beta_ids == ["ab", "b1", "s1"]
    # The image path, relative to the original catalog, still resolved.
    assert acme.get(["a1"])[0]["images"], acme.get(["a1"])[0]
    # Keyword statistics are per tenant: acme's collection knows nothing of beta's word.
    assert acme.keyword_search("zyzzyva", 10) == []
    assert [m.id for m in beta.keyword_search("zyzzyva", 10)] == ["b1"]
    # The same command again changes nothing (the split files are kept for lineage).
    again = invoke(
        "ingest", str(path), "-c", "shop", "--split-by", "acl", "--home", str(home), "--json", *FAKE
    )
    assert again.exit_code == 0, again.output
    assert (home / "splits" / "shop" / "acme.jsonl").is_file()


def test_a_bad_row_or_tenant_stops_the_split_before_any_collection(tmp_path):
    home = tmp_path / "ws"
    path = catalog(tmp_path)
    with path.open("a") as handle:
        handle.write("{not json\n")
    result = invoke(
        "ingest", str(path), "-c", "shop", "--split-by", "acl", "--home", str(home), *FAKE
    )
    assert result.exit_code != 0
    assert "cannot be read" in result.output and "row 6" in result.output
    assert not home.exists() or Workspace(home).collection_names() == []

    bad = catalog(tmp_path, [{"id": "x", "title": "t", "acl": "no/slash"}])
    result = invoke(
        "ingest", str(bad), "-c", "shop", "--split-by", "acl", "--home", str(home), *FAKE
    )
    assert result.exit_code != 0 and "'no/slash'" in result.output
    assert Workspace(home).collection_names() == []

    result = invoke("ingest", str(bad), "-c", "shop", "--split-by", "colour", "--home", str(home))
    assert result.exit_code != 0 and "--split-by takes acl" in result.output


def test_tenants_of_reads_every_acl_shape():
    assert tenants_of(None) == [] and tenants_of("") == [] and tenants_of([]) == []
    assert tenants_of(" acme ") == ["acme"]
    assert tenants_of(["b", "a", "b", " "]) == ["a", "b"]
    assert json.loads(json.dumps(tenants_of(("x",)))) == ["x"]
