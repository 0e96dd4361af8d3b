"""Commands over one collection open it one way (``workspace.open_collection``) and check
a build id one way (``CollectionDir.require_build``): a missing collection or build gets
the same message from every command, on stderr, with exit code 2 and no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from mmsearch.cli import app
from mmsearch.errors import CollectionNotFound
from mmsearch.workspace import BuildNotFound, open_collection

from conftest import save_image, write_jsonl

runner = CliRunner()
FAKE = ["--text-encoder", "fake-text", "--image-encoder", "fake-image"]

# Commands that name a build, each with the unknown build "b-nope" in its place.
BUILD_COMMANDS = [
    ["runs", "list", "--build", "b-nope"],
    ["builds", "show", "b-nope"],
    ["drift", "reference", "b-nope"],
    ["drift", "--candidate", "b-nope", "--no-queries"],
    ["lineage", "item-1", "--build", "b-nope"],
]
# Commands over a collection, for one that does not exist.
COLLECTION_COMMANDS = [
    ["builds", "list"],
    ["runs", "list"],
    ["drift"],
    ["canary", "status"],
    ["rollback"],
    ["gate", "show"],
    ["kpis"],
    ["lineage", "item-1"],
]


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A workspace with one collection, "shop", of three items in one live build."""
    folder = str(tmp_path_factory.mktemp("ws"))
    root = tmp_path_factory.mktemp("catalog")
    image = save_image(root / "img" / "red.png", (200, 30, 30))
    rows: list[dict[str, object] | str] = [
        {"id": f"item-{n}", "title": f"mug {n}", "image": str(image)} for n in range(3)
    ]
    catalog = write_jsonl(root / "catalog.jsonl", rows)
    done = runner.invoke(app, ["ingest", str(catalog), "-c", "shop", "--home", folder, *FAKE])
    assert done.exit_code == 0, done.output
    return folder


@pytest.mark.parametrize("command", BUILD_COMMANDS, ids=lambda c: " ".join(c[:2]))
def test_an_unknown_build_gets_one_message(home: str, command: list[str]) -> None:
    result = runner.invoke(app, [*command, "-c", "shop", "--home", home])
    assert result.exit_code == 2, result.output
    assert "Collection 'shop' has no build 'b-nope' (latest: build-" in result.stderr
    assert "list them with: mmsearch builds list -c shop" in result.stderr
    assert "Traceback" not in result.output


@pytest.mark.parametrize("command", COLLECTION_COMMANDS, ids=lambda c: " ".join(c[:2]))
def test_a_missing_collection_gets_one_message(home: str, command: list[str]) -> None:
    result = runner.invoke(app, [*command, "-c", "nothere", "--home", home])
    assert result.exit_code == 2, result.output
    assert "No collection named 'nothere'" in result.stderr
    assert "collections: shop" in result.stderr and "Traceback" not in result.output


def test_open_collection_and_require_build(home: str) -> None:
    settings, folder = open_collection(Path(home), "shop")
    assert settings.home == Path(home) and folder.name == "shop"
    live = folder.alias("live")
    assert live is not None and folder.require_build(live) == live
    with pytest.raises(BuildNotFound, match=rf"\(latest: {live}\)"):
        folder.require_build("b-nope")
    with pytest.raises(CollectionNotFound):
        open_collection(Path(home), "nothere")
