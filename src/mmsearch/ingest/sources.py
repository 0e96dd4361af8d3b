"""The catalog's identity in run records and resume keys: its content hash."""

from __future__ import annotations

import hashlib
from pathlib import Path

from mmsearch.catalog.pdf_source import PdfSource
from mmsearch.catalog.source import CatalogSource


def catalog_sha256(source: CatalogSource, path: Path) -> str:
    """The identity of what a run reads: its file (or folder listing), or, for several PDFs
    read together, the digest of their digests in order."""
    files = [file for _doc_id, file in source.files] if isinstance(source, PdfSource) else []
    if len(files) < 2 or path.is_dir():
        return file_sha256(path)
    digest = hashlib.sha256()
    for file in files:
        digest.update(f"{file}\0{file_sha256(file)}\n".encode())
    return "files:" + digest.hexdigest()


def file_sha256(path: Path) -> str:
    """The catalog's identity in run records; a folder is named by its listing."""
    if path.is_dir():
        digest = hashlib.sha256()
        for file in sorted(p for p in path.rglob("*") if p.is_file()):
            digest.update(file.relative_to(path).as_posix().encode())
            digest.update(str(file.stat().st_size).encode())
        return "listing:" + digest.hexdigest()
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
