"""The audit trail: an append-only, hash-chained JSON-lines log of writes and admin acts.

``<home>/audit/audit.jsonl`` holds one event per line. Each line carries ``seq`` (1, 2,
...) and ``prev``, the SHA-256 of the previous line's exact bytes (without its
newline; 64 zeros for the first line), so editing, deleting, reordering or inserting a
line breaks the chain at a place ``verify`` can name. Deleting the *last* lines leaves
no successor to notice, so ``<home>/audit/head.json`` records the last ``seq`` and the
hash of the last line; both files are written under one cross-process lock, which also
lets the CLI and several service workers append at the same time.

The chain shows that the file was changed after the fact, not who changed it: anyone
who can write the folder can also rewrite the whole chain. Ship the log (or its head)
elsewhere when that matters.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import re
from collections import deque
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from mmsearch.errors import MMSearchError
from mmsearch.governance.keys import SECRET_PREFIX
from mmsearch.governance.storage import locked, private_dir, write_json_private

GENESIS = "0" * 64
MAX_ITEMS = 100
MAX_DETAIL_CHARS = 500
Outcome = Literal["ok", "failed", "refused"]
OUTCOMES = ("ok", "failed", "refused")
_SECRET_LIKE = re.compile(r"mms_k_[0-9a-f]{10}_[A-Za-z0-9_-]{43}")
ProblemKind = Literal["edited", "deleted", "reordered", "truncated", "malformed", "head"]


class AuditError(MMSearchError):
    """An audit event is not valid or the audit files cannot be written."""


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def cli_actor() -> str:
    """The ``key_id`` of acts by the local operator: ``cli:<os user>``."""
    try:
        user = getpass.getuser()
    except (OSError, KeyError):  # no login name (containers without a passwd entry)
        user = str(os.getuid()) if hasattr(os, "getuid") else "unknown"
    return f"cli:{user}"


@dataclass(kw_only=True)
class AuditEvent:
    """One act. ``items`` keeps at most 100 ids; ``item_count`` is how many there were."""

    time: str = field(default_factory=utc_now)
    key_id: str
    action: str
    collection: str | None = None
    items: list[str] | None = None
    item_count: int | None = None
    counts: dict[str, Any] | None = None
    outcome: Outcome = "ok"
    detail: str | None = None

    def __post_init__(self) -> None:
        if not self.action or len(self.action) > 64:
            raise AuditError("An audit event needs an action name of at most 64 characters.")
        if self.outcome not in OUTCOMES:
            raise AuditError(f"Audit outcome must be one of {', '.join(OUTCOMES)}.")
        if not self.key_id or self.key_id.startswith(SECRET_PREFIX):
            # A secret must never reach a log, even by a caller's mistake.
            raise AuditError("An audit event names a key by its id (k_...), never its secret.")
        if self.items is not None:
            ids = [str(i) for i in self.items]
            self.item_count = len(ids) if self.item_count is None else self.item_count
            self.items = ids[:MAX_ITEMS]
        if self.detail is not None:
            self.detail = _SECRET_LIKE.sub("<secret redacted>", self.detail)
        if self.detail is not None and len(self.detail) > MAX_DETAIL_CHARS:
            self.detail = self.detail[: MAX_DETAIL_CHARS - 1] + "…"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class AuditProblem:
    line: int  # 1-based line number in audit.jsonl
    kind: ProblemKind
    detail: str


@dataclass
class AuditReport:
    ok: bool
    lines: int
    events: int
    head_seq: int | None
    problems: list[AuditProblem]

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "lines": self.lines,
            "events": self.events,
            "head_seq": self.head_seq,
            "problems": [asdict(p) for p in self.problems],
        }


def _encode(record: dict[str, Any]) -> bytes:
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _sha(line: bytes) -> str:
    return hashlib.sha256(line).hexdigest()


def _parse(line: bytes) -> dict[str, Any] | None:
    """A chain record, or None when the line is not one."""
    try:
        record = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    if not isinstance(record, dict):
        return None
    seq, prev = record.get("seq"), record.get("prev")
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 1:
        return None
    if not isinstance(prev, str) or len(prev) != 64:
        return None
    return record


def _time_of(record: dict[str, Any]) -> datetime | None:
    try:
        moment = datetime.fromisoformat(str(record.get("time")))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class AuditLog:
    """The audit trail of one workspace."""

    def __init__(self, home: Path):
        self.folder = Path(home).expanduser() / "audit"
        self.path = self.folder / "audit.jsonl"
        self.head_path = self.folder / "head.json"
        self.lock_path = self.folder / "audit.lock"

    def _head(self) -> dict[str, Any] | None:
        try:
            head = json.loads(self.head_path.read_text("utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {}
        return head if isinstance(head, dict) else {}

    def _last_line(self) -> bytes | None:
        """The file's last non-empty line, read from the end (the log can be large)."""
        try:
            with open(self.path, "rb") as handle:
                handle.seek(0, os.SEEK_END)
                end = handle.tell()
                chunk, position = b"", end
                while position > 0:
                    step = min(65536, position)
                    position -= step
                    handle.seek(position)
                    chunk = handle.read(step) + chunk
                    stripped = chunk.rstrip(b"\n")
                    if b"\n" in stripped or position == 0:
                        return stripped.rsplit(b"\n", 1)[-1] or None
        except FileNotFoundError:
            return None
        return None

    def _tail(self) -> tuple[int, str]:
        """(seq, sha256) of the last event: from the head file, else from the log itself."""
        head = self._head()
        if head and isinstance(head.get("seq"), int) and isinstance(head.get("sha256"), str):
            return head["seq"], head["sha256"]
        last = self._last_line()
        record = _parse(last) if last else None
        if record is None:
            if last:
                raise AuditError(
                    f"The audit log {self.path} ends with a line that is not an event and its "
                    "head file is missing; run `mmsearch audit verify` and keep a copy of the "
                    "log before moving it away."
                )
            return 0, GENESIS
        return record["seq"], _sha(last)  # type: ignore[arg-type]

    def append(self, event: AuditEvent) -> dict[str, Any]:
        """Append one event (fsynced); returns the line written as a dict."""
        private_dir(self.folder)
        with locked(self.lock_path):
            seq, prev = self._tail()
            record = {"seq": seq + 1, "prev": prev, **event.as_dict()}
            line = _encode(record)
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                try:
                    os.write(fd, line + b"\n")
                    os.fsync(fd)
                finally:
                    os.close(fd)
                write_json_private(self.head_path, {"seq": seq + 1, "sha256": _sha(line)})
            except OSError as exc:
                raise AuditError(
                    f"The audit log {self.path} cannot be written ({exc}); check the folder's "
                    "permissions and free space."
                ) from exc
        return record

    def _lines(self) -> list[bytes]:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return []
        lines = data.split(b"\n")
        if lines and lines[-1] == b"":
            lines.pop()  # the newline that ends the last line
        return lines

    def verify(self) -> AuditReport:
        """Check the chain and the head; every problem names its line and kind."""
        lines = self._lines()
        problems: list[AuditProblem] = []
        records: list[tuple[int, dict[str, Any], str]] = []  # (line number, record, sha)
        for number, line in enumerate(lines, start=1):
            record = _parse(line)
            if record is None:
                problems.append(AuditProblem(number, "malformed", "not an audit event line"))
            else:
                records.append((number, record, _sha(line)))

        present = {record["seq"] for _, record, _ in records}
        by_seq: dict[int, tuple[int, str]] = {}
        high = 0
        for number, record, sha in records:
            seq = record["seq"]
            if seq <= high:
                what = "repeats" if seq in by_seq else "comes after"
                problems.append(
                    AuditProblem(number, "reordered", f"seq {seq} {what} seq {high} or earlier")
                )
            elif seq > high + 1:
                skipped = range(high + 1, seq)
                missing = [s for s in skipped if s not in present]
                if missing:
                    problems.append(
                        AuditProblem(
                            number, "deleted", f"seq {_ranges(missing)} missing before this line"
                        )
                    )
                if len(missing) < len(skipped):
                    problems.append(
                        AuditProblem(number, "reordered", f"seq {seq} comes before seq {high + 1}")
                    )
            high = max(high, seq)
            by_seq.setdefault(seq, (number, sha))

        # Hash links by seq, so a moved line is reported once (as reordered), not as edits.
        for number, record, _ in records:
            seq = record["seq"]
            if seq == 1 and record["prev"] != GENESIS:
                problems.append(AuditProblem(number, "edited", "the first event's prev is wrong"))
            before = by_seq.get(seq - 1)
            if before is not None and record["prev"] != before[1]:
                problems.append(
                    AuditProblem(
                        before[0],
                        "edited",
                        f"content differs from what seq {seq} (line {number}) recorded",
                    )
                )

        head = self._head()
        head_seq: int | None = None
        if head is None:
            if lines:
                problems.append(AuditProblem(0, "head", f"{self.head_path.name} is missing"))
        elif not isinstance(head.get("seq"), int) or not isinstance(head.get("sha256"), str):
            problems.append(AuditProblem(0, "head", f"{self.head_path.name} is unreadable"))
        else:
            head_seq = head["seq"]
            if head_seq > high:
                problems.append(
                    AuditProblem(
                        len(lines) + 1,
                        "truncated",
                        f"the head records {head_seq} events; the log ends at seq {high}",
                    )
                )
            elif head_seq in by_seq and by_seq[head_seq][1] != head["sha256"]:
                problems.append(
                    AuditProblem(
                        by_seq[head_seq][0], "edited", "content differs from the head's hash"
                    )
                )
        problems.sort(key=lambda p: (p.line, p.kind))
        return AuditReport(not problems, len(lines), len(records), head_seq, problems)

    def read(
        self,
        since: datetime | None = None,
        collection: str | None = None,
        limit: int = 100,
        *,
        action: str | None = None,
    ) -> list[dict[str, Any]]:
        """The last ``limit`` events matching the filters, newest last (bad lines skipped)."""
        if since is not None and since.tzinfo is None:
            since = since.replace(tzinfo=UTC)
        found: deque[dict[str, Any]] = deque(maxlen=max(limit, 0))
        for line in self._lines():
            record = _parse(line)
            if record is None:
                continue
            if collection is not None and record.get("collection") != collection:
                continue
            if action is not None and record.get("action") != action:
                continue
            if since is not None:
                moment = _time_of(record)
                if moment is None or moment < since:
                    continue
            found.append(record)
        return list(found)


def _ranges(numbers: list[int]) -> str:
    if len(numbers) == 1:
        return str(numbers[0])
    if numbers == list(range(numbers[0], numbers[-1] + 1)):
        return f"{numbers[0]}-{numbers[-1]}"
    return ", ".join(map(str, numbers))


def record(
    home: Path,
    action: str,
    *,
    key_id: str | None = None,
    collection: str | None = None,
    items: Iterable[str] | None = None,
    counts: dict[str, Any] | None = None,
    outcome: Outcome = "ok",
    detail: str | None = None,
) -> dict[str, Any]:
    """Append one event to ``home``'s audit trail; ``key_id`` defaults to the CLI operator."""
    event = AuditEvent(
        key_id=key_id or cli_actor(),
        action=action,
        collection=collection,
        items=list(items) if items is not None else None,
        counts=counts,
        outcome=outcome,
        detail=detail,
    )
    return AuditLog(home).append(event)
