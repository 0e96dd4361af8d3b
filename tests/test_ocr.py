"""OCR at ingest with the real RapidOCR models: words printed on an image become searchable."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from mmsearch.config import Settings
from mmsearch.encoders import ocr
from mmsearch.errors import EncoderError
from mmsearch.index.lancedb import LanceBuildIndex
from mmsearch.ingest import IngestOptions, Ingestor
from mmsearch.search.request import SearchRequest
from mmsearch.search.searcher import Searcher
from mmsearch.workspace import Workspace

from conftest import FAKES, text_font, write_jsonl


def _label(path: Path, text: str) -> Path:
    font = text_font(44)
    image = Image.new("RGB", (420, 110), "white")
    ImageDraw.Draw(image).text((16, 26), text, fill="black", font=font)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


@pytest.mark.ocr
def test_ocr_text_is_stored_and_found_by_keyword(settings: Settings, tmp_path: Path) -> None:
    folder = tmp_path / "labels"
    _label(folder / "a.png", "ZANZIBAR")
    _label(folder / "b.png", "HELLO")
    catalog = write_jsonl(
        folder / "catalog.jsonl",
        [
            {"id": "a", "title": "tin of tea", "image": "a.png"},
            {"id": "b", "title": "tin of coffee", "image": "b.png"},
        ],
    )
    plain = Ingestor(settings).run(IngestOptions(catalog, "labels"))
    assert plain.counts["added"] == 2
    before = Searcher(settings, "labels").search(SearchRequest(text="zanzibar")).hits
    assert all("keyword" not in hit.signals for hit in before)  # the word is only in the image

    with_ocr = settings.model_copy(update={"ocr": True})
    texts_before = FAKES["text"].texts_seen
    report = Ingestor(with_ocr).run(IngestOptions(catalog, "labels"))
    assert report.counts["updated"] == 2  # turning OCR on re-processes the rows
    assert FAKES["text"].texts_seen == texts_before + 2  # OCR text is embedded too

    folder_ws = Workspace(settings.home).collection("labels")
    index = LanceBuildIndex.open(
        folder_ws.lancedb_dir, folder_ws.live_manifest().table, settings.ann_min_rows
    )
    row = index.get(["a"])[0]
    assert "ZANZIBAR" in row["image_text"].upper()
    assert "ZANZIBAR" in row["search_text"].upper()

    hits = Searcher(with_ocr, "labels").search(SearchRequest(text="zanzibar")).hits
    assert hits[0].id == "a" and "keyword" in hits[0].signals
    assert "b" not in [hit.id for hit in hits if "keyword" in hit.signals]

    again = Ingestor(with_ocr).run(IngestOptions(catalog, "labels"))
    assert again.counts["unchanged"] == 2


def test_missing_ocr_extra_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ocr, "_ENGINE", None)
    monkeypatch.setitem(sys.modules, "rapidocr_onnxruntime", None)
    with pytest.raises(EncoderError, match=r"mmsearch\[ocr\]"):
        ocr.ImageTextReader()
