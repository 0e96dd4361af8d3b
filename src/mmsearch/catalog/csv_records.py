"""Split a CSV byte stream into records, so that one broken row cannot swallow the next ones.

A quoted cell may hold newlines, so a record can span several physical lines. A stray or
unclosed quote would then pull every following line into one cell. The splitter bounds
that: a record whose quotes do not close within ``max_lines`` lines / ``max_bytes`` bytes,
or whose lines, once joined, do not give the header's number of cells, is reported at its
first line, and only that first line is consumed: reading goes on at the next physical
line, so the rows after it still land.

The splitter works on bytes: quotes and commas are ASCII and never part of a multi-byte
UTF-8 sequence, so record boundaries do not depend on whether a line decodes. That lets
``count_rows`` find exactly the records ``rows`` yields without decoding anything.

Quoting follows Python's ``csv`` module in strict mode: a quote opens a quoted cell only
at the start of a cell (elsewhere it is a literal character, as in ``15.6" screen``); a
closing quote must be followed by a comma or the end of the line.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

from mmsearch.catalog.lines import Line, strip_terminator

MAX_RECORD_LINES = 1000
_QUOTE = ord('"')
_COMMA = ord(",")


@dataclass(frozen=True)
class CsvSpan:
    """The physical lines of one record (terminators kept), or the reason the record that
    starts at ``first_line`` cannot be read; a bad record holds only its first line."""

    first_line: int
    lines: tuple[bytes, ...]
    cells: int
    problem: str | None = None


class _QuoteScan:
    """Follows quoting across the lines of one record, counting cells on the way."""

    def __init__(self) -> None:
        self.cells = 0
        self.trailing_empty = 0  # how many cells at the end are empty and unquoted
        self.in_quotes = False
        self.error: str | None = None

    def _end_cell(self, empty: bool) -> None:
        self.cells += 1
        self.trailing_empty = self.trailing_empty + 1 if empty else 0

    def feed(self, line: bytes) -> None:
        """Scan one line (without terminator); ``in_quotes`` stays set when a quoted cell
        runs on into the next line."""
        pos, end = 0, len(line)
        while True:
            if self.in_quotes:
                quote = line.find(b'"', pos)
                if quote < 0:
                    return
                if quote + 1 < end and line[quote + 1] == _QUOTE:
                    pos = quote + 2  # a doubled quote is a quote character in the cell
                    continue
                self.in_quotes = False
                after = quote + 1
                if after == end:
                    self._end_cell(False)
                    return
                if line[after] != _COMMA:
                    found = line[after : after + 4].decode("utf-8", "replace")[:1]
                    self.error = f"a closing quote is followed by {found!r} instead of a comma"
                    return
                self._end_cell(False)
                pos = after + 1
            if pos < end and line[pos] == _QUOTE:
                self.in_quotes = True
                pos += 1
                continue
            if line.find(b'"', pos) < 0:
                self._end_plain_cells(line[pos:])
                return
            comma = line.find(b",", pos)
            if comma < 0:
                self._end_cell(pos == end)
                return
            self._end_cell(comma == pos)
            pos = comma + 1

    def _end_plain_cells(self, rest: bytes) -> None:
        """The rest of a line holds no quote: its cells are counted without a walk."""
        count = rest.count(b",") + 1
        kept = rest.rstrip(b",")
        self.cells += count
        if kept:
            self.trailing_empty = len(rest) - len(kept)
        else:
            self.trailing_empty += count

    def fits(self, expected: int) -> bool:
        """Exactly the header's cells; extra cells are allowed only when they are empty
        (trailing commas, as spreadsheet exports write), as they hold nothing to lose."""
        extra = self.cells - expected
        return extra == 0 or (extra > 0 and self.trailing_empty >= extra)


def _cells(count: int) -> str:
    return f"{count} cell" if count == 1 else f"{count} cells"


class RecordSplitter:
    """Turns numbered physical lines into record spans; blank lines are not records."""

    def __init__(self, lines: Iterator[Line], max_bytes: int, max_lines: int | None = None) -> None:
        self._lines = lines
        self._pending: deque[Line] = deque()  # lines read ahead and given back
        self.max_bytes = max_bytes
        self.max_lines = max_lines or MAX_RECORD_LINES

    def _next(self) -> Line | None:
        if self._pending:
            return self._pending.popleft()
        return next(self._lines, None)

    def spans(self, expected_cells: int) -> Iterator[CsvSpan]:
        while (span := self.next_span(expected_cells)) is not None:
            yield span

    def next_span(self, expected_cells: int | None) -> CsvSpan | None:
        """The next record; ``expected_cells=None`` (the header) takes any cell count."""
        while (line := self._next()) is not None:
            number, raw = line
            if raw is None:
                return CsvSpan(number, (), 0, f"line is over {self.max_bytes} bytes")
            if strip_terminator(raw).strip(b" \t"):
                return self._record(number, raw, expected_cells)
        return None

    def _record(self, number: int, raw: bytes, expected: int | None) -> CsvSpan:
        scan = _QuoteScan()
        scan.feed(strip_terminator(raw))
        taken: list[Line] = [(number, raw)]
        size = len(raw)
        stop = ""
        while scan.in_quotes and scan.error is None:
            if len(taken) >= self.max_lines or size >= self.max_bytes:
                stop = f"within {self.max_lines} lines or {self.max_bytes} bytes"
                break
            line = self._next()
            if line is None:
                stop = "before the end of the file"
                break
            if line[1] is None:
                self._pending.appendleft(line)
                stop = f"before line {line[0]}, which is over {self.max_bytes} bytes"
                break
            taken.append(line)
            size += len(line[1])
            scan.feed(strip_terminator(line[1]))
        problem = self._problem(scan, taken, expected, stop)
        if problem is None:
            return CsvSpan(number, tuple(r for _, r in taken if r is not None), scan.cells)
        self._pending.extendleft(reversed(taken[1:]))
        return CsvSpan(number, (raw,), scan.cells, problem)

    def _problem(
        self, scan: _QuoteScan, taken: list[Line], expected: int | None, stop: str
    ) -> str | None:
        resume = "; the following lines are read as rows of their own"
        last = taken[-1][0]
        if scan.error is not None:
            if len(taken) == 1:
                return f"malformed quoting: {scan.error}"
            return f"malformed quoting on line {last} of a quoted cell: {scan.error}{resume}"
        if scan.in_quotes:
            return f"unclosed quote: a quoted cell opened in this row does not close {stop}{resume}"
        if expected is None or scan.fits(expected):
            return None
        if len(taken) == 1:
            return f"row has {_cells(scan.cells)}, the header has {_cells(expected)}"
        return (
            f"unclosed quote: reading the quoted cell on to line {last} gives "
            f"{_cells(scan.cells)}, the header has {_cells(expected)}{resume}"
        )
