"""Where catalog images may come from: local files under allowed roots, or http(s) URLs.

A catalog is untrusted input. A row saying ``"image": "../../home/me/.ssh/id_rsa"``
or ``"/etc/shadow"`` must not make the indexer read (and store a hash, a vector and
a path of) a file the catalog's author had no business naming. So every local image
path is resolved (``..`` collapsed, symlinks followed) and must land inside one of
the allowed roots: the catalog's folder or ``--images-root``, plus any extra roots
from the settings. A symlink inside a root that points outside is refused too,
because it is the resolved target that gets read.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

URL_SCHEMES = ("http://", "https://")
MAX_URL_CHARS = 2048


def is_url(ref: str) -> bool:
    return ref[:8].lower().startswith(URL_SCHEMES)


class PathRefused(ValueError):
    """An image reference that may not be used; the message says why and what to do."""


@dataclass(frozen=True)
class ImageRoots:
    """The folders local images must resolve into (symlinks resolved on both sides)."""

    roots: tuple[Path, ...]

    @classmethod
    def of(cls, primary: Path, extra: Iterable[Path] = ()) -> ImageRoots:
        resolved: list[Path] = []
        for root in (primary, *extra):
            path = Path(root).expanduser().resolve()
            if path not in resolved:
                resolved.append(path)
        return cls(tuple(resolved))

    @property
    def primary(self) -> Path:
        return self.roots[0]

    def resolve(self, ref: str) -> str:
        """The absolute, symlink-free path of ``ref``, or ``PathRefused``.

        Relative references are taken relative to the primary root. The file does
        not have to exist yet: a missing file is reported later, when it is read.
        """
        if "\x00" in ref:
            raise PathRefused("image path contains a NUL character")
        path = Path(ref).expanduser()
        if not path.is_absolute():
            path = self.primary / path
        resolved = Path(os.path.realpath(path))
        if not any(resolved.is_relative_to(root) for root in self.roots):
            where = ", ".join(str(root) for root in self.roots)
            raise PathRefused(
                f"image path {ref} resolves to {resolved}, outside the allowed image roots "
                f"({where}); move the file under a root, pass --images-root, or add the "
                "folder to MMSEARCH_IMAGE_ROOTS"
            )
        return str(resolved)


def display_path(path: str, roots: list[Path]) -> str:
    """A stored image path as a caller may see it: relative to the first root holding
    it (as the catalog named it), a URL as given, else the file name alone, so no
    server folder is ever shown."""
    if "://" in path:
        return path
    candidate = Path(path)
    for root in roots:
        if candidate.is_relative_to(root):
            return candidate.relative_to(root).as_posix()
    return candidate.name
