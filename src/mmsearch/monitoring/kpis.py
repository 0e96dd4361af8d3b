"""Search KPIs per build, from the query and click logs: volume, zero results, CTR, latency.

The logs are the source of truth (``monitoring/querylog.py``): every result page
served is one query line naming the build that answered it, every click one click
line naming the query it belongs to. Clicks are joined to queries by ``query_id``, so
a click counts for the build that showed the result, whenever it arrived; the time
window (``since`` inclusive, ``until`` exclusive) applies to the query's time.

Definitions (per build, over the queries in the window):

- ``zero_result_rate``: share of queries that showed no hit.
- ``ctr_at_k``: share of queries with at least one click on a result at position ≤ k.
- ``clicked_mrr``: mean over queries of 1 / position of the query's first click (the
  earliest by time: the result the user chose first), 0 for queries without clicks.
- ``latency_p50/p95/p99``: percentiles of ``latency_ms`` (linear interpolation).

Memory stays bounded for logs of millions of lines: lines are streamed (one at a time,
each at most ``MAX_LINE_BYTES``), lines of other collections are skipped before JSON
parsing, the clicks are held as one small entry per clicked query (dropped once their
query is seen), and per build only the latencies are kept, as a packed float array.
Malformed lines (not JSON, missing fields, overlong) are skipped and counted.
"""

from __future__ import annotations

import json
import math
from array import array
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from mmsearch.errors import MMSearchError
from mmsearch.governance.keys import parse_duration

QUERY_LOG = "queries.jsonl"
CLICK_LOGS = ("clicks.jsonl", "image_clicks.jsonl")
MAX_LINE_BYTES = 1 << 20
DEFAULT_K = 10
# Below this expected count in any cell of the 2x2 table the normal approximation of the
# two-proportion z-test is poor, so Fisher's exact test is used instead.
MIN_EXPECTED_FOR_Z = 5.0


class KpiError(MMSearchError):
    """A KPI question that cannot be answered as given (bad time, bad k)."""


@dataclass(frozen=True)
class BuildKpis:
    """One build's figures over a time window; rates are None when it served no query."""

    build_id: str
    queries: int
    zero_results: int
    zero_result_rate: float | None
    fallbacks: int  # searches answered by what was left after a signal failed (keyword)
    encoder_failures: int
    clicks: int  # click lines joined to these queries (any position)
    clicked_queries: int  # queries with at least one click
    clicked_top_k: int  # queries with a click at a position <= k: the CTR numerator
    k: int
    ctr_at_k: float | None
    clicked_mrr: float | None
    latency_p50: float | None
    latency_p95: float | None
    latency_p99: float | None
    routed: dict[str, int] = field(default_factory=dict)  # "live"/"canary" -> queries
    first_query: str | None = None
    last_query: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class KpiReport:
    builds: list[BuildKpis]
    # Unreadable lines in the query and click logs that name this collection (or are too
    # long to tell), skipped; other collections' lines are never parsed.
    malformed_lines: int
    unmatched_clicks: int  # this collection's clicks whose query is not in the window
    files: list[str]
    since: str | None
    until: str | None
    k: int

    def build(self, build_id: str) -> BuildKpis | None:
        return next((b for b in self.builds if b.build_id == build_id), None)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["builds"] = [b.as_dict() for b in self.builds]
        return out


def collection_kpis(
    home: Path,
    collection: str,
    since: datetime | str | None = None,
    until: datetime | str | None = None,
    k: int = DEFAULT_K,
) -> list[BuildKpis]:
    """Per build (oldest build first), the KPIs of ``collection`` from ``<home>/logs``.

    ``since``/``until`` may be datetimes (naive ones are UTC) or text ``parse_moment``
    reads, such as the ISO times mmsearch records (a canary's ``started_at``)."""
    return read_kpis(home, collection, since, until, k).builds


def read_kpis(
    home: Path,
    collection: str,
    since: datetime | str | None = None,
    until: datetime | str | None = None,
    k: int = DEFAULT_K,
) -> KpiReport:
    """``collection_kpis`` with what was skipped on the way (malformed lines, lone clicks)."""
    if k < 1:
        raise KpiError(f"k must be at least 1, not {k}.")
    since, until = _as_moment(since), _as_moment(until)
    logs = home / "logs"
    reader = _Reader(collection)
    click_files = [p for name in CLICK_LOGS for p in _log_files(logs, name)]
    query_files = _log_files(logs, QUERY_LOG)
    clicks = _read_clicks(reader, click_files)
    tallies: dict[str, _Tally] = {}
    for record in reader.records(query_files):
        parsed = _query_fields(record)
        if parsed is None:
            reader.malformed += 1
            continue
        build_id, moment, latency, hits, routed = parsed
        if (since and moment < since) or (until and moment >= until):
            continue
        tally = tallies.get(build_id)
        if tally is None:
            tally = tallies[build_id] = _Tally()
        tally.add(record, moment, latency, hits, routed, clicks.pop(record["query_id"], None), k)
    return KpiReport(
        builds=[tallies[b].result(b, k) for b in sorted(tallies)],
        malformed_lines=reader.malformed,
        unmatched_clicks=sum(entry.count for entry in clicks.values()),
        files=[str(p) for p in [*query_files, *click_files]],
        since=since.isoformat() if since else None,
        until=until.isoformat() if until else None,
        k=k,
    )


# --- comparing two builds -----------------------------------------------------------


def ctr_difference_test(a: BuildKpis, b: BuildKpis) -> float:
    """Two-sided p-value for "both builds have the same CTR@k".

    A two-proportion z-test (pooled variance) on ``clicked_top_k / queries``, or
    Fisher's exact test on the same 2x2 table when any expected cell count is under 5,
    where the normal approximation is unreliable. 1.0 when either build served no
    query or the pooled CTR is 0 or 1 (no evidence of any difference)."""
    return _ctr_test(a, b)[0]


def compare_builds(a: BuildKpis, b: BuildKpis) -> dict[str, Any]:
    """Side by side, with the CTR difference ``b - a`` and its significance test."""
    p_value, method = _ctr_test(a, b)
    difference = None
    if a.ctr_at_k is not None and b.ctr_at_k is not None:
        difference = b.ctr_at_k - a.ctr_at_k
    return {
        "a": a.as_dict(),
        "b": b.as_dict(),
        "ctr_difference": difference,
        "ctr_p_value": p_value,
        "ctr_test": method,
    }


def _ctr_test(a: BuildKpis, b: BuildKpis) -> tuple[float, str]:
    if a.queries == 0 or b.queries == 0:
        return 1.0, "none"
    table = [
        [a.clicked_top_k, a.queries - a.clicked_top_k],
        [b.clicked_top_k, b.queries - b.clicked_top_k],
    ]
    clicked = a.clicked_top_k + b.clicked_top_k
    total = a.queries + b.queries
    if clicked in (0, total):
        return 1.0, "none"
    expected = [
        n * share
        for n in (a.queries, b.queries)
        for share in (clicked / total, 1 - clicked / total)
    ]
    if min(expected) < MIN_EXPECTED_FOR_Z:
        # scipy's result bunch (statistic, pvalue) is typed as an anonymous class
        pvalue = stats.fisher_exact(table).pvalue  # pyright: ignore[reportAttributeAccessIssue]
        return float(pvalue), "fisher-exact"
    z = two_proportion_z(a.clicked_top_k, a.queries, b.clicked_top_k, b.queries)
    return float(2 * stats.norm.sf(abs(z or 0.0))), "two-proportion-z"


def two_proportion_z(hits_a: int, n_a: int, hits_b: int, n_b: int) -> float | None:
    """z of "A's rate minus B's" under a pooled variance; None when it is undefined (an
    empty side, or a pooled rate of 0 or 1: no evidence of any difference)."""
    if n_a == 0 or n_b == 0:
        return None
    pooled = (hits_a + hits_b) / (n_a + n_b)
    spread = math.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    if spread == 0.0:
        return None
    return (hits_a / n_a - hits_b / n_b) / spread


# --- time windows -------------------------------------------------------------------


def parse_moment(text: str, now: datetime | None = None) -> datetime:
    """``24h`` / ``7d`` (that long before now) or an ISO date or time (UTC unless it says)."""
    try:
        return (now or datetime.now(UTC)) - parse_duration(text)
    except MMSearchError:
        pass
    except OverflowError:  # 999999w: before year 1
        raise KpiError(
            f"The span {text!r} reaches back before year 1; give a shorter one."
        ) from None
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise KpiError(
            f"Cannot read the time {text!r}: give a date (2026-11-30), a time "
            "(2026-11-30T08:00) or a span back from now (90m, 24h, 7d, 1w)."
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _as_moment(value: datetime | str | None) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        return parse_moment(value)
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


# --- reading ------------------------------------------------------------------------


@dataclass
class _Click:
    """What the KPIs need of one query's clicks: the first (by time), the best position."""

    first_at: datetime | None
    first_position: int | None
    best_position: int | None
    count: int


@dataclass
class _Tally:
    queries: int = 0
    zero_results: int = 0
    fallbacks: int = 0
    encoder_failures: int = 0
    clicks: int = 0
    clicked_queries: int = 0
    clicked_top_k: int = 0
    reciprocal_ranks: float = 0.0
    latencies: array = field(default_factory=lambda: array("d"))
    routed: dict[str, int] = field(default_factory=dict)
    first: datetime | None = None
    last: datetime | None = None

    def add(
        self,
        record: dict[str, Any],
        moment: datetime,
        latency: float | None,
        hits: int,
        routed: str,
        click: _Click | None,
        k: int,
    ) -> None:
        self.queries += 1
        self.zero_results += hits == 0
        self.fallbacks += bool(record.get("fallback"))
        failures = record.get("encoder_failures")
        self.encoder_failures += failures if isinstance(failures, int) else 0
        if latency is not None:
            self.latencies.append(latency)
        self.routed[routed] = self.routed.get(routed, 0) + 1
        self.first = moment if self.first is None else min(self.first, moment)
        self.last = moment if self.last is None else max(self.last, moment)
        if click is None:
            return
        self.clicks += click.count
        self.clicked_queries += 1
        if click.best_position is not None and click.best_position <= k:
            self.clicked_top_k += 1
        if click.first_position:
            self.reciprocal_ranks += 1.0 / click.first_position

    def result(self, build_id: str, k: int) -> BuildKpis:
        n = self.queries
        p50 = p95 = p99 = None
        if self.latencies:
            values = np.frombuffer(self.latencies, dtype=np.float64)
            p50, p95, p99 = (float(v) for v in np.percentile(values, [50, 95, 99]))
        return BuildKpis(
            build_id=build_id,
            queries=n,
            zero_results=self.zero_results,
            zero_result_rate=self.zero_results / n if n else None,
            fallbacks=self.fallbacks,
            encoder_failures=self.encoder_failures,
            clicks=self.clicks,
            clicked_queries=self.clicked_queries,
            clicked_top_k=self.clicked_top_k,
            k=k,
            ctr_at_k=self.clicked_top_k / n if n else None,
            clicked_mrr=self.reciprocal_ranks / n if n else None,
            latency_p50=p50,
            latency_p95=p95,
            latency_p99=p99,
            routed=dict(sorted(self.routed.items())),
            first_query=self.first.isoformat() if self.first else None,
            last_query=self.last.isoformat() if self.last else None,
        )


class _Reader:
    """Streams one collection's records out of JSON-lines files, counting bad lines."""

    def __init__(self, collection: str):
        self.collection = collection
        # Collection names need no JSON escaping, so any line of this collection holds
        # the quoted name: a cheap test that skips other collections before parsing.
        self.needle = json.dumps(collection).encode("utf-8")
        self.malformed = 0

    def records(self, paths: list[Path]) -> Iterator[dict[str, Any]]:
        for path in paths:
            for line in self._lines(path):
                if self.needle not in line:
                    continue
                try:
                    record = json.loads(line)
                except (json.JSONDecodeError, UnicodeDecodeError):
                    self.malformed += 1
                    continue
                if not isinstance(record, dict) or not isinstance(record.get("query_id"), str):
                    self.malformed += 1
                    continue
                if record.get("collection") == self.collection:
                    yield record

    def _lines(self, path: Path) -> Iterator[bytes]:
        try:
            handle = path.open("rb")
        except FileNotFoundError:  # rotated away between listing and reading
            return
        with handle:
            while line := handle.readline(MAX_LINE_BYTES):
                if not line.endswith(b"\n") and len(line) == MAX_LINE_BYTES:
                    self.malformed += 1
                    while (rest := handle.readline(MAX_LINE_BYTES)) and not rest.endswith(b"\n"):
                        pass
                    continue
                if line.strip():
                    yield line


def _log_files(folder: Path, name: str) -> list[Path]:
    """A log and its rotated copies (``name.1`` newest ... ``name.N`` oldest), oldest first."""
    rotated = []
    for path in folder.glob(name + ".*"):
        suffix = path.name[len(name) + 1 :]
        if suffix.isdigit():
            rotated.append((int(suffix), path))
    files = [path for _, path in sorted(rotated, reverse=True)]
    current = folder / name
    return [*files, current] if current.is_file() else files


def _read_clicks(reader: _Reader, paths: list[Path]) -> dict[str, _Click]:
    clicks: dict[str, _Click] = {}
    for record in reader.records(paths):
        position = record.get("position")
        if position is not None and (not isinstance(position, int) or position < 1):
            reader.malformed += 1
            continue
        at = _moment(record.get("at"))
        entry = clicks.get(record["query_id"])
        if entry is None:
            clicks[record["query_id"]] = _Click(at, position, position, 1)
            continue
        entry.count += 1
        if position is not None and (entry.best_position is None or position < entry.best_position):
            entry.best_position = position
        # Lines are appended in time order, so on equal (or unknown) times the earlier line wins.
        if at is not None and (entry.first_at is None or at < entry.first_at):
            entry.first_at, entry.first_position = at, position
    return clicks


def _query_fields(
    record: dict[str, Any],
) -> tuple[str, datetime, float | None, int, str] | None:
    """build, time, latency, hit count and route of a query line; None when unusable."""
    build_id = record.get("build_id")
    hits = record.get("hit_ids")
    moment = _moment(record.get("ts"))
    if not isinstance(build_id, str) or not isinstance(hits, list) or moment is None:
        return None
    latency = record.get("latency_ms")
    if (
        isinstance(latency, bool)
        or not isinstance(latency, int | float)
        or not math.isfinite(latency)
    ):
        latency = None
    routed = record.get("routed")
    return build_id, moment, latency, len(hits), routed if isinstance(routed, str) else "live"


def _moment(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
