"""Physical lines of a text catalog, read as bytes with a bound on each line's length.

Line-oriented readers (JSONL, CSV) decode every line on its own, so that one bad byte
costs one row and not the file; reading with a bound keeps a file without newlines (or a
binary file given by mistake) from being pulled into memory whole.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

UTF8_BOM = b"\xef\xbb\xbf"
# (line number, raw line with terminator); None stands for an over-long line.
Line = tuple[int, bytes | None]
_SKIP_CHUNK = 1 << 20


def physical_lines(handle: BinaryIO, max_bytes: int) -> Iterator[Line]:
    """Yield (line number, raw line with its terminator) from 1; ``None`` stands for a line
    longer than ``max_bytes`` (terminator included), whose bytes are skipped unread."""
    number = 0
    while True:
        raw = handle.readline(max_bytes + 1)
        if not raw:
            return
        number += 1
        if len(raw) <= max_bytes:
            yield number, raw
            continue
        while not raw.endswith(b"\n"):
            raw = handle.readline(_SKIP_CHUNK)
            if not raw:
                break
        yield number, None


def strip_terminator(raw: bytes) -> bytes:
    """The line without its ``\\n`` or ``\\r\\n``."""
    if raw.endswith(b"\r\n"):
        return raw[:-2]
    if raw.endswith(b"\n"):
        return raw[:-1]
    return raw


def utf8_problem(raw: bytes) -> str | None:
    """Why a line is not UTF-8 text, naming the byte offset, or None when it decodes."""
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"not valid UTF-8 (byte offset {exc.start} in the line)"
    return None
