"""PDF documents as a catalog: every page an item with its text (layer or OCR) and image.

The PDFs are made here: text pages with fpdf2, scanned pages as Pillow images saved as
PDF pages (no text layer), figure pages as drawn shapes, a corrupt file, an encrypted one.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from fpdf import FPDF
from PIL import Image, ImageDraw
from typer.testing import CliRunner

from mmsearch.catalog.pdf_source import DocumentLimits, PdfSource, document_ids
from mmsearch.cli import app
from mmsearch.config import Settings
from mmsearch.errors import CatalogError, QueryError
from mmsearch.evaluation.configs import RetrievalConfig
from mmsearch.index.lancedb import LanceBuildIndex
from mmsearch.ingest import IngestOptions, Ingestor
from mmsearch.ingest.documents import open_ingest_source
from mmsearch.search.query import build_request, parse_query
from mmsearch.search.request import SearchRequest
from mmsearch.search.searcher import Searcher
from mmsearch.service.app import create_app
from mmsearch.workspace import Workspace

from conftest import text_font

TEXT_PAGES = [
    "Quarterly revenue grew in the northern region thanks to new customers.",
    "Emperor penguins breed on the sea ice of Antarctica during the winter.",
]


def text_pdf(path: Path, pages: list[str], title: str | None = None) -> Path:
    pdf = FPDF()
    if title:
        pdf.set_title(title)
    pdf.set_font("helvetica", size=14)
    for text in pages:
        pdf.add_page()
        pdf.multi_cell(0, 10, text)
    path.parent.mkdir(parents=True, exist_ok=True)
    pdf.output(str(path))
    return path


def figure_pdf(path: Path, shape: str, colour: tuple[int, int, int]) -> Path:
    """A page of one caption line and a drawn figure (a disc or a bar chart)."""
    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("helvetica", size=12)
    pdf.cell(text="Figure 1")
    pdf.set_fill_color(*colour)
    if shape == "disc":
        pdf.ellipse(40, 60, 130, 130, style="F")
    else:
        for index, height in enumerate((60, 110, 150)):
            pdf.rect(30 + index * 55, 230 - height, 40, height, style="F")
    path.parent.mkdir(parents=True, exist_ok=True)
    pdf.output(str(path))
    return path


def figure_image(shape: str, colour: tuple[int, int, int]) -> Image.Image:
    """The figure as someone would photograph or crop it: the shape on white."""
    image = Image.new("RGB", (420, 594), "white")
    draw = ImageDraw.Draw(image)
    if shape == "disc":
        draw.ellipse((80, 120, 340, 380), fill=colour)
    else:
        for index, height in enumerate((120, 220, 300)):
            draw.rectangle((60 + index * 110, 460 - height, 140 + index * 110, 460), fill=colour)
    return image


def scanned_pdf(path: Path, words: str) -> Path:
    """A page that is only a picture of text, like a scan: no text layer at all."""
    font = text_font(56)
    image = Image.new("RGB", (1240, 1754), "white")
    ImageDraw.Draw(image).text((120, 200), words, fill="black", font=font)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, "PDF", resolution=150)
    return path


def encrypted_pdf(path: Path) -> Path:
    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("helvetica", size=14)
    pdf.cell(text="secret plans")
    pdf.set_encryption(owner_password="owner", user_password="user")
    pdf.output(str(path))
    return path


def rows_of(settings: Settings, collection: str) -> dict[str, dict[str, Any]]:
    folder = Workspace(settings.home).collection(collection)
    index = LanceBuildIndex.open(
        folder.lancedb_dir, folder.live_manifest().table, settings.ann_min_rows
    )
    ids = index.scan(["id"]).column("id").to_pylist()
    return {row["id"]: row for row in index.get(ids)}


@pytest.fixture
def library(tmp_path: Path) -> Path:
    """A folder of PDFs: a two-page report with a title, a figure and a corrupt file."""
    folder = tmp_path / "library"
    text_pdf(folder / "report.pdf", TEXT_PAGES, title="Field Notes 2026")
    figure_pdf(folder / "charts" / "sales.pdf", "bars", (30, 60, 220))
    (folder / "broken.pdf").write_bytes(b"%PDF-1.7\nthis is not the rest of a PDF\n")
    return folder


def test_each_page_is_an_item_with_its_text_and_image(settings: Settings, library: Path) -> None:
    report = Ingestor(settings).run(IngestOptions(library, "docs"))

    # 2 report pages + 1 figure page + 1 row for the corrupt file: every row accounted.
    assert report.counts["rows"] == 4
    assert (report.counts["added"], report.counts["failed"]) == (3, 1)
    (error,) = report.errors
    assert error.source.endswith("broken.pdf") and "broken.pdf" in error.reason
    assert "not a readable PDF" in error.reason

    rows = rows_of(settings, "docs")
    assert set(rows) == {"report#p1", "report#p2", "charts/sales#p1"}
    second = rows["report#p2"]
    assert second["document"] == "report" and second["page"] == 2
    assert second["title"] == "Field Notes 2026"  # the PDF's metadata title
    assert "Emperor penguins breed on the sea ice" in second["search_text"]
    assert "penguins" not in rows["report#p1"]["search_text"]
    # Each page's rendered image, bounded on its long side, recorded with its sha256.
    (image_path,) = rows["report#p1"]["images"]
    with Image.open(image_path) as page:
        assert max(page.size) == settings.pdf_page_max_side
    assert len(rows["report#p1"]["image_sha256"]) == 1


def test_a_text_query_finds_its_page(settings: Settings, library: Path) -> None:
    Ingestor(settings).run(IngestOptions(library, "docs"))
    hits = Searcher(settings, "docs").search(SearchRequest(text="penguins antarctica")).hits
    assert hits[0].id == "report#p2"
    hits = Searcher(settings, "docs").search(SearchRequest(text="revenue region")).hits
    assert hits[0].id == "report#p1"


def test_a_picture_of_a_figure_finds_its_page_by_the_visual_encoder(
    settings: Settings, tmp_path: Path
) -> None:
    folder = tmp_path / "figures"
    text_pdf(folder / "notes.pdf", TEXT_PAGES)
    figure_pdf(folder / "disc.pdf", "disc", (220, 30, 30))
    figure_pdf(folder / "bars.pdf", "bars", (30, 60, 220))
    figure_pdf(folder / "green.pdf", "bars", (30, 170, 60))
    visual = settings.model_copy(update={"image_encoder": "visual"})
    Ingestor(visual).run(IngestOptions(folder, "figures"))
    searcher = Searcher(visual, "figures")
    for shape, colour, page in (
        ("disc", (220, 30, 30), "disc#p1"),
        ("bars", (30, 60, 220), "bars#p1"),
        ("bars", (30, 170, 60), "green#p1"),
    ):
        request = SearchRequest(image=figure_image(shape, colour), signals=["image_vector"])
        assert searcher.search(request).hits[0].id == page


@pytest.mark.ocr
def test_a_scanned_page_is_read_by_ocr(settings: Settings, tmp_path: Path) -> None:
    folder = tmp_path / "scans"
    scanned_pdf(folder / "memo.pdf", "ZANZIBAR SHIPMENT")
    text_pdf(folder / "other.pdf", TEXT_PAGES)
    report = Ingestor(settings).run(IngestOptions(folder, "scans"))
    assert report.counts["added"] == 3 and report.counts["warnings"] == 0
    rows = rows_of(settings, "scans")
    assert "ZANZIBAR" in rows["memo#p1"]["search_text"]
    hits = Searcher(settings, "scans").search(SearchRequest(text="zanzibar")).hits
    assert hits[0].id == "memo#p1" and "keyword" in hits[0].signals


def test_without_ocr_a_scanned_page_lands_with_a_warning_saying_what_to_install(
    tmp_path: Path,
) -> None:
    memo = scanned_pdf(tmp_path / "memo.pdf", "HELLO")
    source = PdfSource(
        tmp_path, document_ids([memo], tmp_path), tmp_path / "pages", DocumentLimits(), None
    )
    (row,) = list(source.rows())
    assert not isinstance(row, Exception) and hasattr(row, "data")
    assert row.data["text"] == ""  # type: ignore[union-attr]
    (warning,) = row.warnings  # type: ignore[union-attr]
    assert warning.severity == "warning" and 'pip install "mmsearch[ocr]"' in warning.reason
    assert Path(str(row.data["image"])).is_file()  # type: ignore[union-attr]


def test_limits_refuse_a_document_clearly_and_the_others_land(
    settings: Settings, tmp_path: Path
) -> None:
    folder = tmp_path / "limits"
    text_pdf(folder / "long.pdf", [f"page {n} of a long document" for n in range(1, 6)])
    text_pdf(folder / "short.pdf", TEXT_PAGES)
    encrypted_pdf(folder / "locked.pdf")
    limited = settings.model_copy(update={"pdf_max_pages": 3})
    report = Ingestor(limited).run(IngestOptions(folder, "limits"))
    assert report.counts["rows"] == 4  # long.pdf and locked.pdf are one row each
    assert (report.counts["added"], report.counts["failed"]) == (2, 2)
    reasons = {Path(e.source).name: e.reason for e in report.errors}
    assert "5 pages, over the limit of 3" in reasons["long.pdf"]
    assert "MMSEARCH_PDF_MAX_PAGES" in reasons["long.pdf"]
    assert "encrypted" in reasons["locked.pdf"]
    assert set(rows_of(limited, "limits")) == {"short#p1", "short#p2"}

    tiny = settings.model_copy(update={"pdf_max_bytes": 100})
    source = open_ingest_source(tiny, folder / "short.pdf")
    (row,) = list(source.rows())
    assert "over the limit of 100" in getattr(row, "reason", "")
    assert source.count_rows() == 1


def test_several_files_are_one_catalog_and_a_shared_stem_is_refused(
    settings: Settings, tmp_path: Path
) -> None:
    first = text_pdf(tmp_path / "a" / "notes.pdf", TEXT_PAGES[:1])
    second = text_pdf(tmp_path / "b" / "minutes.pdf", TEXT_PAGES[1:])
    report = Ingestor(settings).run(IngestOptions(first, "files", more_files=(second,)))
    assert report.counts["added"] == 2
    assert set(rows_of(settings, "files")) == {"notes#p1", "minutes#p1"}

    clash = text_pdf(tmp_path / "c" / "notes.pdf", TEXT_PAGES[:1])
    with pytest.raises(CatalogError, match="would both be document 'notes'"):
        open_ingest_source(settings, first, (clash,))
    with pytest.raises(CatalogError, match="only when each is a PDF"):
        open_ingest_source(settings, first, (tmp_path / "a",))


def test_a_pdf_without_the_extra_fails_before_any_work_naming_it(
    settings: Settings, library: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pypdfium2", None)  # import now raises ImportError
    with pytest.raises(CatalogError, match=r'pip install "mmsearch\[pdf\]"'):
        Ingestor(settings).run(IngestOptions(library, "docs"))
    assert Workspace(settings.home).find("docs") is None


def test_a_second_ingest_of_the_same_pdfs_changes_nothing(
    settings: Settings, library: Path
) -> None:
    Ingestor(settings).run(IngestOptions(library, "docs"))
    again = Ingestor(settings).run(IngestOptions(library, "docs"))
    assert (again.counts["unchanged"], again.counts["added"], again.counts["updated"]) == (3, 0, 0)


@pytest.mark.integration
def test_minilm_finds_a_page_by_meaning(settings: Settings, library: Path) -> None:
    real = settings.model_copy(update={"text_encoder": "minilm"})
    Ingestor(real).run(IngestOptions(library, "docs"))
    request = SearchRequest(text="flightless birds of the far south", signals=["text_vector"])
    assert Searcher(real, "docs").search(request).hits[0].id == "report#p2"


@pytest.fixture
def two_reports(tmp_path: Path) -> Path:
    """Two documents whose pages all mention penguins, a third that does not."""
    folder = tmp_path / "reports"
    text_pdf(
        folder / "colony.pdf",
        [
            "Penguins of the colony: a census of the penguins on the ice shelf.",
            "Penguins feeding: krill, fish and squid near the colony.",
            "Penguins and predators: leopard seals wait at the ice edge.",
        ],
    )
    text_pdf(
        folder / "survey.pdf",
        ["A survey of penguins along the coast.", "Counting penguins from the air."],
    )
    text_pdf(folder / "budget.pdf", ["The budget for the next field season."])
    return folder


def test_group_by_document_keeps_the_best_page_per_document(
    settings: Settings, two_reports: Path
) -> None:
    Ingestor(settings).run(IngestOptions(two_reports, "reports"))
    searcher = Searcher(settings, "reports")
    plain = searcher.search(SearchRequest(text="penguins", k=5, signals=["keyword"])).hits
    assert [hit.attributes["document"] for hit in plain].count("colony") == 3

    query = parse_query(text="penguins", k=5, signals=["keyword"], group_by="document")
    grouped = searcher.search(build_request(query)).hits
    assert [hit.attributes["document"] for hit in grouped] == ["colony", "survey"]
    assert [hit.id for hit in grouped] == [
        plain[0].id,
        next(hit.id for hit in plain if hit.attributes["document"] == "survey"),
    ]
    colony = grouped[0].group
    assert colony is not None and colony.attribute == "document" and colony.value == "colony"
    assert colony.matches == 3 and len(colony.other_ids) == 2
    assert set(colony.other_ids) | {grouped[0].id} == {"colony#p1", "colony#p2", "colony#p3"}
    survey = grouped[1].group
    assert survey is not None and survey.matches == 2

    # One group asked for: still counted over every candidate, not only the first page.
    (first,) = searcher.search(build_request(query.model_copy(update={"k": 1}))).hits
    assert first.group is not None and first.group.matches == 3

    with pytest.raises(QueryError, match="'chapter' is not an attribute"):
        searcher.search(SearchRequest(text="penguins", group_by="chapter"))


def test_group_by_from_the_command_line_and_the_api(
    settings: Settings, two_reports: Path, tmp_path: Path
) -> None:
    home = str(tmp_path / "cli-home")
    files = [str(two_reports / name) for name in ("colony.pdf", "survey.pdf", "budget.pdf")]
    fake = ["--text-encoder", "fake-text", "--image-encoder", "fake-image"]
    runner = CliRunner()
    ingested = runner.invoke(app, ["ingest", *files, "-c", "reports", "--home", home, *fake])
    assert ingested.exit_code == 0, ingested.output
    assert "6 rows read: 6 added" in " ".join(ingested.output.split())

    search = ["search", "penguins", "-c", "reports", "--home", home, "--local"]
    found = runner.invoke(app, [*search, "--json", "--group-by", "document"])
    assert found.exit_code == 0, found.output
    hits = json.loads(found.stdout)["hits"]
    assert [hit["attributes"]["document"] for hit in hits[:2]] == ["colony", "survey"]
    assert hits[0]["group"]["matches"] == 3
    assert len({hit["attributes"]["document"] for hit in hits}) == len(hits)
    table = runner.invoke(app, [*search, "--group-by", "document"])
    assert "same document" in table.output and "+2 more" in table.output

    Ingestor(settings).run(IngestOptions(two_reports, "reports"))
    with TestClient(create_app(settings)) as client:
        answer = client.post(
            "/v1/collections/reports/search", json={"text": "penguins", "group_by": "document"}
        )
        assert answer.status_code == 200, answer.text
        documents = [hit["attributes"]["document"] for hit in answer.json()["hits"]]
        assert documents[:2] == ["colony", "survey"] and len(set(documents)) == len(documents)
        refused = client.post(
            "/v1/collections/reports/search", json={"text": "penguins", "group_by": "nope"}
        )
        assert refused.status_code == 400 and "not an attribute" in refused.text


def test_evaluation_configurations_carry_group_by() -> None:
    config = RetrievalConfig("best-page", {"group_by": "document"})
    assert config.request(text="penguins").group_by == "document"
    with pytest.raises(QueryError, match="group_by"):
        RetrievalConfig("bad", {"group_by": ""}).request(text="penguins")


def test_a_dry_run_counts_every_page_and_writes_nothing(settings: Settings, library: Path) -> None:
    report = Ingestor(settings).run(IngestOptions(library, "docs", dry_run=True))
    assert (report.counts["rows"], report.counts["added"], report.counts["failed"]) == (4, 3, 1)
    assert Workspace(settings.home).find("docs") is None
