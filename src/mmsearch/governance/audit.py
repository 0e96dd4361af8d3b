"""The audit trail: an append-only, hash-chained JSON-lines log of writes and admin acts.

``<home>/audit/audit.jsonl`` holds one event per line. Each line carries ``seq`` (1, 2,
...) and ``prev``, the SHA-256 of the previous line's exact bytes (without its
newline; 64 zeros for the first line), so editing, deleting, reordering or inserting a
line breaks the chain at a place ``verify`` can name. Deleting the *last* lines leaves
no successor to notice, so ``<home>/audit/head.json`` records the last ``seq`` and the
hash of the last line; both files are written under one cross-process lock, which also
lets the CLI and several service workers append at the same time.

Emptying the log and removing ``head.json`` (or removing the whole folder) would leave
nothing to compare with, so every append also writes an *anchor*, the same seq and
hash, to ``<home>/auth/audit-anchor.json`` beside the keys file (0600, atomic): a
workspace that has ever recorded an event fails ``verify`` when its log comes up
short of the anchor, and an append never restarts the chain below it. ``export_anchor``
writes the head to a file to keep elsewhere; ``verify(anchor=...)`` checks the log
against such an export.

The chain shows that the file was changed after the fact, not who changed it: anyone
who can write the workspace can also rewrite the whole chain and both anchors in it.
Ship the log, or an exported anchor, elsewhere when that matters.

Anonymous refusals (a client without a valid key, guessing or scanning) would add a
line per request, about 13 a second from one address; ``RefusalTally`` folds them into
one line per client address per minute with a count. Refusals of a known key stay
individual lines: they name who tried what.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from mmsearch.clock import utc_now_ms
from mmsearch.errors import MMSearchError
from mmsearch.governance.keys import SECRET_PREFIX
from mmsearch.governance.storage import locked, private_dir, write_json_private

GENESIS = "0" * 64
MAX_ITEMS = 100
MAX_DETAIL_CHARS = 500
Outcome = Literal["ok", "failed", "refused"]
OUTCOMES = ("ok", "failed", "refused")
_SECRET_LIKE = re.compile(r"mms_k_[0-9a-f]{10}_[A-Za-z0-9_-]{43}")
ProblemKind = Literal["edited", "deleted", "reordered", "truncated", "malformed", "head", "anchor"]
ANCHOR_FORMAT = "mmsearch-audit-anchor/1"


class AuditError(MMSearchError):
    """An audit event is not valid or the audit files cannot be written."""


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

    time: str = field(default_factory=utc_now_ms)
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
        # Outside the audit folder, so removing that folder does not remove the evidence.
        self.anchor_path = Path(home).expanduser() / "auth" / "audit-anchor.json"

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

    def local_anchor(self) -> dict[str, Any] | None:
        """The workspace's own anchor: None when none was ever written, {} when unreadable."""
        try:
            anchor = json.loads(self.anchor_path.read_text("utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {}
        return anchor if _valid_anchor(anchor) else {}

    def _tail(self) -> tuple[int, str]:
        """(seq, sha256) to chain the next event to: the log's head, but never below the
        anchor, so that an append after an emptied log leaves a gap ``verify`` reports
        as deleted events instead of a fresh chain that hides them."""
        seq, sha = self._log_tail()
        anchor = self.local_anchor()
        if anchor and anchor["seq"] > seq:
            return anchor["seq"], anchor["sha256"]
        return seq, sha

    def _log_tail(self) -> tuple[int, str]:
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
                head = {"seq": seq + 1, "sha256": _sha(line)}
                write_json_private(self.head_path, head)
                write_json_private(self.anchor_path, {"format": ANCHOR_FORMAT, **head})
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

    def verify(self, anchor: dict[str, Any] | None = None) -> AuditReport:
        """Check the chain, the head and the workspace's anchor (and ``anchor``, an
        exported one, when given); every problem names its line and kind."""
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
            recorded: int = head["seq"]  # checked to be an int just above
            head_seq = recorded
            if recorded > high:
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
        local = self.local_anchor()
        if local is None:
            if records:
                problems.append(
                    AuditProblem(
                        0,
                        "anchor",
                        f"{self.anchor_path} is missing (a workspace from before anchors "
                        "gets one with its next audit event)",
                    )
                )
        elif not local:
            problems.append(AuditProblem(0, "anchor", f"{self.anchor_path} is unreadable"))
        else:
            found = {(p.line, p.kind) for p in problems}
            for problem in _against_anchor(local, "the anchor", by_seq, high, len(lines)):
                if (problem.line, problem.kind) not in found:  # the head said it already
                    problems.append(problem)
        if anchor is not None:
            problems.extend(
                _against_anchor(anchor, "the exported anchor", by_seq, high, len(lines))
            )
        problems.sort(key=lambda p: (p.line, p.kind))
        return AuditReport(not problems, len(lines), len(records), head_seq, problems)

    def export_anchor(self, path: Path) -> dict[str, Any]:
        """Write the log's head (seq and hash of the last event) to ``path`` for safekeeping
        elsewhere; refused while the log does not verify, since an anchor of a damaged
        log would vouch for the damage."""
        report = self.verify()
        if not report.ok:
            raise AuditError(
                f"The audit log {self.path} does not verify ({len(report.problems)} "
                "problem(s)); run `mmsearch audit verify` before exporting its anchor."
            )
        with locked(self.lock_path):
            seq, sha = self._log_tail()
        anchor = {
            "format": ANCHOR_FORMAT,
            "seq": seq,
            "sha256": sha,
            "exported": utc_now_ms(),
            "log": str(self.path),
        }
        write_json_private(Path(path), anchor)
        return anchor

    def read(
        self,
        since: datetime | None = None,
        collection: str | None = None,
        limit: int = 100,
        *,
        action: str | None = None,
        within: frozenset[str] | None = None,
    ) -> list[dict[str, Any]]:
        """The last ``limit`` events matching the filters, newest last (bad lines skipped);
        ``within``: only events of these collections (what a collection-limited admin sees)."""
        if since is not None and since.tzinfo is None:
            since = since.replace(tzinfo=UTC)
        found: deque[dict[str, Any]] = deque(maxlen=max(limit, 0))
        for line in self._lines():
            record = _parse(line)
            if record is None:
                continue
            if collection is not None and record.get("collection") != collection:
                continue
            if within is not None and record.get("collection") not in within:
                continue
            if action is not None and record.get("action") != action:
                continue
            if since is not None:
                moment = _time_of(record)
                if moment is None or moment < since:
                    continue
            found.append(record)
        return list(found)


def load_anchor(path: Path) -> dict[str, Any]:
    """An exported anchor file, or ``AuditError`` saying why it cannot be used."""
    try:
        anchor = json.loads(Path(path).read_text("utf-8"))
    except FileNotFoundError:
        raise AuditError(f"The anchor file {path} does not exist.") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise AuditError(f"The anchor file {path} cannot be read: {exc}") from None
    if not _valid_anchor(anchor):
        raise AuditError(
            f"The file {path} is not an audit anchor (it needs an integer 'seq' and a "
            "64-character 'sha256'; `mmsearch audit anchor FILE` writes one)."
        )
    return dict(anchor)


def _valid_anchor(anchor: Any) -> bool:
    if not isinstance(anchor, dict):
        return False
    seq, sha = anchor.get("seq"), anchor.get("sha256")
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
        return False
    return isinstance(sha, str) and len(sha) == 64


def _against_anchor(
    anchor: dict[str, Any],
    name: str,
    by_seq: dict[int, tuple[int, str]],
    high: int,
    line_count: int,
) -> list[AuditProblem]:
    """What an anchor (seq + hash of an event once last) says about the log now: the log
    must reach that seq, and that event must still hash the same."""
    seq, sha = anchor["seq"], anchor["sha256"]
    if seq == 0:
        return []
    if seq > high:
        has = f"the log ends at seq {high}" if high else "the log has no events"
        return [AuditProblem(line_count + 1, "truncated", f"{name} records {seq} events; {has}")]
    if seq not in by_seq:
        return []  # reported as deleted by the chain check
    number, actual = by_seq[seq]
    if actual != sha:
        return [AuditProblem(number, "edited", f"content differs from {name}'s hash")]
    return []


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


ANONYMOUS_KEY_ID = "anonymous"
REFUSAL_WINDOW_S = 60.0
MAX_TALLIED_CLIENTS = 1000  # addresses per window; beyond that they share one line
OTHER_CLIENTS = "other addresses"


@dataclass
class _Tally:
    window: int
    count: int = 0
    first: str = ""
    last: str = ""
    statuses: dict[str, int] = field(default_factory=dict)


class RefusalTally:
    """Anonymous refusals counted per client address and minute, written as one line each.

    A window's line is written when that client's first refusal of a later window
    arrives, when any refusal or ``flush_due`` finds the window over (a timer calls it
    shortly after each minute that has counts), and on ``close``, so no count is lost
    short of the process being killed. ``write`` appends the event and must not raise.
    """

    def __init__(
        self,
        write: Callable[[AuditEvent], None],
        *,
        window_s: float = REFUSAL_WINDOW_S,
        clock: Callable[[], float] = time.time,
        timer: bool = True,
    ):
        self._write = write
        self._window_s = window_s
        self._clock = clock
        self._use_timer = timer
        self._tallies: dict[str, _Tally] = {}
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None
        self._closed = False

    def refused(self, client: str, request: str, status: int) -> None:
        """Count one anonymous refusal of ``request`` (``"GET /path -> 401 kind"``)."""
        window = self._window()
        with self._lock:
            due = self._take_due(window)
            if client not in self._tallies and len(self._tallies) >= MAX_TALLIED_CLIENTS:
                client = OTHER_CLIENTS
            tally = self._tallies.setdefault(client, _Tally(window, first=request))
            tally.count += 1
            tally.last = request
            tally.statuses[str(status)] = tally.statuses.get(str(status), 0) + 1
            self._arm()
        self._emit(due)

    def flush_due(self) -> None:
        """Write the lines of windows that are over."""
        window = self._window()
        with self._lock:
            due = self._take_due(window)
            self._timer = None
            self._arm()
        self._emit(due)

    def close(self) -> None:
        """Write every pending count, finished window or not; later refusals still count."""
        with self._lock:
            due = list(self._tallies.items())
            self._tallies.clear()
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._closed = True
        self._emit(due)

    def pending(self) -> int:
        """Refusals counted and not yet written."""
        with self._lock:
            return sum(t.count for t in self._tallies.values())

    def _window(self) -> int:
        return int(self._clock() // self._window_s)

    def _take_due(self, window: int) -> list[tuple[str, _Tally]]:
        due = [(c, t) for c, t in self._tallies.items() if t.window < window]
        for client, _ in due:
            del self._tallies[client]
        return due

    def _arm(self) -> None:
        """Start the timer that writes finished windows when nobody else refuses."""
        if not self._use_timer or self._closed or self._timer is not None or not self._tallies:
            return
        delay = self._window_s - (self._clock() % self._window_s) + 1.0
        self._timer = threading.Timer(delay, self.flush_due)
        self._timer.daemon = True
        self._timer.start()

    def _emit(self, due: list[tuple[str, _Tally]]) -> None:
        for client, tally in due:
            self._write(self._event(client, tally))

    def _event(self, client: str, tally: _Tally) -> AuditEvent:
        start = datetime.fromtimestamp(tally.window * self._window_s, UTC)
        end = datetime.fromtimestamp((tally.window + 1) * self._window_s, UTC)
        span = f"{start:%Y-%m-%dT%H:%M:%S}-{end:%H:%M:%S} UTC"
        detail = f"{tally.count} anonymous refusal(s) from {client} in {span}; first: {tally.first}"
        if tally.count > 1:
            detail += f"; last: {tally.last}"
        counts: dict[str, Any] = {"refusals": tally.count}
        counts.update({f"status_{code}": n for code, n in sorted(tally.statuses.items())})
        return AuditEvent(
            key_id=ANONYMOUS_KEY_ID,
            action="request.refused",
            outcome="refused",
            detail=detail,
            counts=counts,
        )
