"""Which source an ingest reads: PDF documents (files, or a folder of them) or a catalog.

PDFs are read by ``catalog/pdf_source.py``; this module decides when the input is
documents, checks the ``pdf`` extra before any work, and gives the source what lives
above the catalog layer: the settings' limits, the folder page images are written to,
and OCR (``encoders/ocr.py``) for pages without a text layer, when the ``ocr`` extra is
installed.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from mmsearch.catalog.pdf_source import (
    DocumentLimits,
    PdfSource,
    document_ids,
    is_pdf,
    pdfium,
    pdfs_in,
)
from mmsearch.catalog.readers import IMAGE_SUFFIXES, open_catalog
from mmsearch.catalog.source import CatalogSource
from mmsearch.config import Settings
from mmsearch.errors import CatalogError, EncoderError

if TYPE_CHECKING:
    from PIL import Image

    from mmsearch.encoders.ocr import ImageTextReader


def pages_dir(settings: Settings) -> Path:
    """Rendered pages and their OCR text, by the PDF's sha256, shared by collections."""
    return Path(settings.home) / "documents" / "pages"


def document_limits(settings: Settings) -> DocumentLimits:
    return DocumentLimits(
        max_bytes=settings.pdf_max_bytes,
        max_pages=settings.pdf_max_pages,
        page_max_side=settings.pdf_page_max_side,
        max_page_pixels=settings.pdf_max_page_pixels,
    )


class LazyOcr:
    """OCR for scanned pages: the engine loads on the first page that needs it; without
    the ``ocr`` extra every call answers None, and the page says OCR is needed."""

    def __init__(self) -> None:
        self._reader: ImageTextReader | None = None
        self._missing = False

    def __call__(self, image: Image.Image) -> str | None:
        if self._missing:
            return None
        if self._reader is None:
            from mmsearch.encoders.ocr import ImageTextReader

            try:
                self._reader = ImageTextReader()
            except EncoderError:
                self._missing = True
                return None
        return self._reader.read(image)


def open_ingest_source(
    settings: Settings, catalog: Path, more_files: tuple[Path, ...] = ()
) -> CatalogSource:
    """The source of an ingest: PDFs when ``catalog`` is a PDF, several PDFs or a folder
    holding PDFs; otherwise the catalog by its format (``catalog/readers.py``)."""
    files = [catalog, *(path.expanduser().resolve() for path in more_files)]
    for path in files:
        if not path.exists():
            raise CatalogError(f"Catalog {path} does not exist.")
    if more_files and not all(is_pdf(path) for path in files):
        others = ", ".join(path.name for path in files if not is_pdf(path))
        raise CatalogError(
            f"Several inputs are read together only when each is a PDF; not PDFs: {others}. "
            "Ingest other catalogs one at a time."
        )
    if catalog.is_dir():
        pdfs = pdfs_in(catalog)
        if not pdfs:
            return open_catalog(catalog)
        images = [p for p in catalog.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES]
        if images:
            raise CatalogError(
                f"{catalog} holds both PDFs ({len(pdfs)}) and images ({len(images)}, e.g. "
                f"{images[0].relative_to(catalog)}); put them in separate folders and ingest "
                "each. Nothing was written."
            )
        return _pdf_source(settings, catalog, document_ids(pdfs, catalog))
    if is_pdf(catalog):
        return _pdf_source(settings, catalog, document_ids(files, None))
    return open_catalog(catalog)


def _pdf_source(settings: Settings, path: Path, files: list[tuple[str, Path]]) -> PdfSource:
    pdfium()  # the extra is checked here, before any row, model or folder
    return PdfSource(path, files, pages_dir(settings), document_limits(settings), LazyOcr())
