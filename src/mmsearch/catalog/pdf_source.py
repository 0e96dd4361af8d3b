"""PDF documents as a catalog: one row per page, with its text and a rendered image.

A page becomes the row ``{"id": "<document>#p<page>", "document", "page", "title",
"text", "image"}``: the text is the page's text layer (or, for a scanned page without
one, what OCR reads from its render), the image a PNG of the page, so a page is found
by its words, by their meaning, or by a picture of the page or of one of its figures.

PDFs are untrusted input. A file over ``max_bytes``, one PDFium cannot open (corrupt,
encrypted) or one with more than ``max_pages`` pages is one row error naming the file
and the reason; a page that fails is one row error; every other page lands. Renders
are bounded: the long side by ``page_max_side`` (``ocr_max_side`` for the OCR render)
and the pixel count by ``max_page_pixels``, whatever size the page claims to have.

Rendered pages are written once, by the PDF's sha256, under ``pages_dir`` (the OCR
text beside them): the planner's sample and the run read the same pages, a repeated
ingest of an unchanged PDF renders nothing again, and a rebuild finds each image at
the path and sha256 the build recorded.

PDFium is not thread-safe, and the service may run two ingests at once: every call
into it holds one process-wide lock.
"""

from __future__ import annotations

import hashlib
import math
import os
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmsearch.catalog.item import RawRecord, RowError
from mmsearch.catalog.mapping import FieldMapping
from mmsearch.catalog.source import CatalogSource, Row
from mmsearch.errors import CatalogError

if TYPE_CHECKING:
    from PIL import Image

PDF_SUFFIX = ".pdf"
PDF_EXTRA_HINT = 'pip install "mmsearch[pdf]"'
OCR_EXTRA_HINT = 'pip install "mmsearch[ocr]"'
MAX_TITLE_CHARS = 500
# A page this much longer than wide (or wider than long) renders as a sliver that no
# encoder can read; such a page is refused rather than stored as a line of pixels.
MAX_ASPECT = 100.0
# What OCR reads at (encoders/ocr.py shrinks larger images to this itself).
OCR_MAX_SIDE = 1600
_PDFIUM_LOCK = threading.RLock()

# Reads the text in a page render; None when no OCR is installed (the caller then
# records that the page needs it). Raises nothing for an unreadable image: "" instead.
PageOcr = Callable[["Image.Image"], str | None]


@dataclass(frozen=True)
class DocumentLimits:
    """The bounds on one PDF and on each render of one of its pages."""

    max_bytes: int = 256 * 1024 * 1024
    max_pages: int = 2000
    page_max_side: int = 1024
    max_page_pixels: int = 4_000_000
    ocr_max_side: int = OCR_MAX_SIDE


DOCUMENT_MAPPING = FieldMapping(
    id="id",
    title="title",
    text=["text"],
    attributes=["document", "page"],
    images=["image"],
    types={"document": "string", "page": "int"},
)


def pdfium() -> Any:
    """The pypdfium2 module, or a CatalogError naming the extra that provides it."""
    try:
        import pypdfium2
    except ImportError as exc:
        raise CatalogError(
            f"Reading PDFs needs the 'pdf' extra: {PDF_EXTRA_HINT} (pypdfium2); "
            f"import failed: {exc}. Nothing was written."
        ) from exc
    return pypdfium2


def is_pdf(path: Path) -> bool:
    return path.suffix.lower() == PDF_SUFFIX and not path.is_dir()


def pdfs_in(folder: Path) -> list[Path]:
    """The PDFs under a folder, in path order (links followed like image folders)."""
    return sorted(p for p in folder.rglob("*") if is_pdf(p))


def document_ids(paths: list[Path], folder: Path | None) -> list[tuple[str, Path]]:
    """(document id, file) per PDF: the path under ``folder`` without the suffix, else
    the file name's stem. An id depends only on its own file's name, so it stays the
    same when other documents come or go; two files that would share one are refused."""
    named: list[tuple[str, Path]] = []
    seen: dict[str, Path] = {}
    for path in paths:
        relative = path.relative_to(folder) if folder is not None else Path(path.name)
        doc_id = relative.with_suffix("").as_posix().strip()
        other = seen.get(doc_id.casefold())
        if other is not None:
            raise CatalogError(
                f"{other} and {path} would both be document {doc_id!r}; give their common "
                "folder instead of the files, or rename one. Nothing was written."
            )
        seen[doc_id.casefold()] = path
        named.append((doc_id, path))
    return named


def render_scale(width: float, height: float, max_side: int, max_pixels: int) -> float:
    """Points → pixels: the long side at most ``max_side`` and the area within the pixel
    budget, whatever size the page claims (a 200-inch page costs what a letter page does)."""
    scale = max_side / max(width, height)
    return min(scale, math.sqrt(max_pixels / (width * height)))


class PdfSource(CatalogSource):
    """PDF files read page by page; ``path`` is the folder or the first file given."""

    format = "pdf"
    default_mapping = DOCUMENT_MAPPING
    # The mapping and types are fixed, so a few pages tell the planner all it needs;
    # sampling a thousand would render (and maybe OCR) them before the progress bar.
    sample_rows = 20

    def __init__(
        self,
        path: Path,
        files: list[tuple[str, Path]],
        pages_dir: Path,
        limits: DocumentLimits,
        ocr: PageOcr | None = None,
    ) -> None:
        super().__init__(path)
        self.files = files
        self.pages_dir = pages_dir
        self.limits = limits
        self.ocr = ocr
        self._pdfium = pdfium()

    @property
    def image_roots(self) -> tuple[Path, ...]:
        """Where page images are written: image paths of rows must resolve inside it."""
        return (self.pages_dir,)

    def count_rows(self) -> int:
        total = 0
        for _doc_id, file in self.files:
            opened = self._open(file)
            if isinstance(opened, str):
                total += 1
                continue
            with _PDFIUM_LOCK:
                pages = len(opened)
                opened.close()
            total += pages if pages <= self.limits.max_pages else 1
        return total

    def rows(self) -> Iterator[Row]:
        for doc_id, file in self.files:
            yield from self._document_rows(doc_id, file)

    # -- one document --------------------------------------------------------------------

    def _open(self, file: Path) -> Any:
        """The open PdfDocument, or why it cannot be read (a sentence)."""
        try:
            size = file.stat().st_size
        except OSError as exc:
            return f"cannot read the file: {exc.strerror or exc}"
        if size > self.limits.max_bytes:
            return (
                f"the file is {size:,} bytes, over the limit of {self.limits.max_bytes:,} "
                "(MMSEARCH_PDF_MAX_BYTES)"
            )
        try:
            with _PDFIUM_LOCK:
                return self._pdfium.PdfDocument(str(file))
        except self._pdfium.PdfiumError as exc:
            return _open_failure(str(exc))
        except (OSError, ValueError) as exc:
            return f"cannot read the file: {exc}"

    def _document_rows(self, doc_id: str, file: Path) -> Iterator[Row]:
        source = str(file)
        document = self._open(file)
        if isinstance(document, str):
            yield RowError(source, 1, f"PDF {file.name}: {document}", item_id=doc_id)
            return
        try:
            with _PDFIUM_LOCK:
                pages = len(document)
                title = _title(document, file, self._pdfium.PdfiumError)
            if pages > self.limits.max_pages:
                yield RowError(
                    source,
                    1,
                    f"PDF {file.name} has {pages:,} pages, over the limit of "
                    f"{self.limits.max_pages:,} pages per document (MMSEARCH_PDF_MAX_PAGES); "
                    "split it or raise the limit",
                    item_id=doc_id,
                )
                return
            folder = self.pages_dir / _sha256(file)
            for number in range(1, pages + 1):
                yield self._page_row(document, doc_id, title, file, folder, number)
        finally:
            with _PDFIUM_LOCK:
                document.close()

    def _page_row(
        self, document: Any, doc_id: str, title: str, file: Path, folder: Path, number: int
    ) -> Row:
        source, item_id = str(file), f"{doc_id}#p{number}"
        try:
            with _PDFIUM_LOCK:
                page = document[number - 1]
                try:
                    width, height = page.get_size()
                    problem = _size_problem(width, height)
                    if problem:
                        return RowError(source, number, problem, item_id=item_id)
                    text = _text_layer(page)
                    image_path = self._page_image(page, folder, number, width, height)
                    scanned = None if text else self._ocr_render(page, folder, number)
                finally:
                    page.close()
        except self._pdfium.PdfiumError as exc:
            return RowError(source, number, f"page {number} cannot be read: {exc}", None, item_id)
        except OSError as exc:
            return RowError(
                source, number, f"page {number}'s image cannot be written: {exc}", None, item_id
            )
        warnings: tuple[RowError, ...] = ()
        if not text:
            text, warning = self._scanned_text(folder, number, scanned)
            if warning:
                warnings = (RowError(source, number, warning, "text", item_id, "warning"),)
        data: dict[str, object] = {
            "id": item_id,
            "document": doc_id,
            "page": number,
            "title": title,
            "text": text,
            "image": str(image_path),
        }
        return RawRecord(source, number, data, warnings)

    def _page_image(
        self, page: Any, folder: Path, number: int, width: float, height: float
    ) -> Path:
        """The page's PNG at the bounded size, rendered once per PDF content and size."""
        path = folder / f"p{number:05d}-{self.limits.page_max_side}.png"
        if not path.is_file():
            scale = render_scale(
                width, height, self.limits.page_max_side, self.limits.max_page_pixels
            )
            image = page.render(scale=scale).to_pil()
            _write_atomic(path, lambda handle: image.save(handle, "PNG"))
        return path

    def _ocr_render(self, page: Any, folder: Path, number: int) -> Image.Image | None:
        """A larger render of a page without text, for OCR; None when its text is known."""
        if self.ocr is None or _ocr_file(folder, number).is_file():
            return None
        width, height = page.get_size()
        scale = render_scale(width, height, self.limits.ocr_max_side, self.limits.max_page_pixels)
        return page.render(scale=scale).to_pil()

    def _scanned_text(
        self, folder: Path, number: int, render: Image.Image | None
    ) -> tuple[str, str | None]:
        """The OCR text of a page without a text layer, and a warning when there is none."""
        cached = _ocr_file(folder, number)
        if cached.is_file():
            return cached.read_text(encoding="utf-8"), None
        if self.ocr is None or render is None:
            return "", _NEEDS_OCR
        text = self.ocr(render)
        if text is None:
            return "", _NEEDS_OCR
        _write_atomic(cached, lambda handle: handle.write(text.encode("utf-8")))
        return text, None


_NEEDS_OCR = (
    "the page has no text layer (a scan or a picture) and OCR is not installed, so only its "
    f"image is searchable; to read its text: {OCR_EXTRA_HINT}"
)


def _ocr_file(folder: Path, number: int) -> Path:
    return folder / f"p{number:05d}-ocr.txt"


def _open_failure(message: str) -> str:
    lowered = message.lower()
    if "password" in lowered:
        return f"the PDF is encrypted and needs a password ({message})"
    if "format" in lowered or "file" in lowered:
        return f"the file is not a readable PDF (corrupt or truncated: {message})"
    return f"PDFium cannot open it: {message}"


def _size_problem(width: float, height: float) -> str | None:
    if not (math.isfinite(width) and math.isfinite(height)) or min(width, height) < 1:
        return f"the page has no usable size ({width:g} x {height:g} points)"
    if max(width, height) / min(width, height) > MAX_ASPECT:
        return (
            f"the page is {width:g} x {height:g} points, more than {MAX_ASPECT:g} times longer "
            "than wide; it cannot be rendered readably"
        )
    return None


def _text_layer(page: Any) -> str:
    textpage = page.get_textpage()
    try:
        text = textpage.get_text_bounded()
    finally:
        textpage.close()
    # PDFium ends lines with CRLF and marks soft hyphens and form feeds; keep words.
    return " ".join(text.replace("\ufffe", "").replace("\x02", "").split())


def _title(document: Any, file: Path, errors: type[Exception]) -> str:
    """The PDF's metadata title, else the file name in words (``q3_report`` → "q3 report")."""
    try:
        title = str(document.get_metadata_value("Title") or "").strip()
    except (KeyError, ValueError, errors):
        title = ""
    if not title:
        title = file.stem.replace("_", " ").replace("-", " ").strip() or file.name
    return " ".join(title.split())[:MAX_TITLE_CHARS]


def _sha256(file: Path) -> str:
    digest = hashlib.sha256()
    with file.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_atomic(path: Path, write: Callable[[Any], object]) -> None:
    """Write beside the target, then rename: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".part", delete=False) as handle:
        part = Path(handle.name)
        try:
            write(handle)
        except BaseException:
            handle.close()
            part.unlink(missing_ok=True)
            raise
    try:
        os.replace(part, path)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
