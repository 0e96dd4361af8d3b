"""Local image paths must resolve inside the allowed roots; escapes become row errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmsearch.config import Settings
from mmsearch.ingest import IngestOptions, Ingestor
from mmsearch.media.paths import ImageRoots, PathRefused, is_url

from conftest import save_image, write_jsonl


def test_relative_path_inside_the_root_resolves(tmp_path: Path) -> None:
    save_image(tmp_path / "img" / "a.png", (1, 2, 3))
    roots = ImageRoots.of(tmp_path)
    assert roots.resolve("img/../img/a.png") == str((tmp_path / "img" / "a.png").resolve())


@pytest.mark.parametrize("ref", ["../secret.png", "img/../../secret.png", "/etc/passwd"])
def test_escapes_are_refused(tmp_path: Path, ref: str) -> None:
    root = tmp_path / "catalog"
    root.mkdir()
    with pytest.raises(PathRefused, match="outside the allowed image roots"):
        ImageRoots.of(root).resolve(ref)


def test_symlink_pointing_outside_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "catalog"
    outside = save_image(tmp_path / "private" / "x.png", (9, 9, 9))
    root.mkdir()
    (root / "link.png").symlink_to(outside)
    with pytest.raises(PathRefused):
        ImageRoots.of(root).resolve("link.png")


def test_extra_roots_are_allowed(tmp_path: Path) -> None:
    shared = save_image(tmp_path / "shared" / "x.png", (9, 9, 9))
    roots = ImageRoots.of(tmp_path / "catalog", [tmp_path / "shared"])
    assert roots.resolve(str(shared)) == str(shared.resolve())


def test_url_detection() -> None:
    assert is_url("HTTPS://x.test/a.png") and is_url("http://x")
    assert not is_url("https.png") and not is_url("/data/http://x")


def test_ingest_turns_escapes_into_row_errors_and_keeps_good_rows(
    settings: Settings, tmp_path: Path
) -> None:
    folder = tmp_path / "cat"
    save_image(folder / "ok.png", (200, 10, 10))
    outside = save_image(tmp_path / "private" / "secret.png", (10, 200, 10))
    (folder / "sneaky.png").symlink_to(outside)
    catalog = write_jsonl(
        folder / "catalog.jsonl",
        [
            {"id": "ok", "title": "fine", "image": "ok.png"},
            {"id": "dotdot", "title": "escape", "image": "../private/secret.png"},
            {"id": "abs", "title": "absolute", "image": str(outside)},
            {"id": "link", "title": "symlink", "image": "sneaky.png"},
        ],
    )
    report = Ingestor(settings).run(IngestOptions(catalog, "roots"))
    assert report.counts["added"] == 1
    refused = {error.item_id: error for error in report.errors}
    assert set(refused) == {"dotdot", "abs", "link"}
    assert all("outside the allowed image roots" in e.reason for e in refused.values())
    assert all(e.field == "image" for e in refused.values())

    allowed = settings.model_copy(update={"image_roots": [tmp_path / "private"]})
    again = Ingestor(allowed).run(IngestOptions(catalog, "roots2"))
    assert again.counts["added"] == 4 and not again.errors


def test_images_root_option_replaces_the_catalog_folder(settings: Settings, tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    save_image(photos / "a.png", (5, 5, 200))
    save_image(tmp_path / "cat" / "b.png", (5, 200, 5))
    catalog = write_jsonl(
        tmp_path / "cat" / "catalog.jsonl",
        [
            {"id": "a", "title": "in photos", "image": "a.png"},
            {"id": "b", "title": "beside the catalog", "image": str(tmp_path / "cat" / "b.png")},
        ],
    )
    report = Ingestor(settings).run(IngestOptions(catalog, "photos", images_root=photos))
    assert report.counts["added"] == 1
    assert [e.item_id for e in report.errors] == ["b"]
