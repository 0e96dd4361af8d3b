"""Crash safety of ``mmsearch ingest``: SIGKILL at random points, check, then resume.

Why this exists: an ingest writes a catalog in committed chunks, and a machine can die
(or a user can ``kill -9``) anywhere in between. The promise is that a killed run
changes nothing a reader sees, and that running the same command again finishes the
job without losing a row, writing one twice or encoding again what was already
written. This script measures that promise as a user meets it: the real
``mmsearch ingest`` command with the real default encoders (``minilm`` for text,
``visual`` for images), in its own process, killed with SIGKILL.

Scenarios (``--scenarios``): a new collection or an existing one (a different
1,000-row catalog with overlapping ids, some rows identical and some changed, fully
ingested first), each for a text-only catalog and one with images (small generated
PNGs, a few hundred distinct). For each scenario:

1. one uninterrupted run calibrates the timing: when the run's progress record
   appears (after imports and model loading) and when the run ends;
2. ``--kills`` runs are killed: one as soon as the progress record exists (before the
   first chunk commits), one during start-up, the rest at uniform random points in
   [5 %, 95 %] of the writing window (from the progress record to the end);
3. after each kill the collection must be usable and unchanged: for an existing
   collection, searches work and return only rows of the pre-update state, the live
   manifest names the pre-update table version and that version holds the pre-update
   rows; for a new collection, there is no collection, or no live build and an error
   that says to resume, or (a kill after the publish) a complete live build;
4. the same command is run again to completion, and the result is checked: rows lost
   (catalog ids missing from the live table), rows duplicated (table rows minus
   distinct ids), rows with content other than an uninterrupted run's, rows encoded
   again although the killed run had written them, leftover builds (folders under
   ``builds/`` that are neither live nor previous), leftover tables, leftover runs
   (progress records still "running"), and whether the live manifest's
   ``table_version`` is the table's latest version.

A last kill per scenario takes the abandon path: after it a different catalog is
ingested, which must discard the killed run's work (no leftovers) and never let its
rows become visible.

Every kill prints one line; each scenario ends with a table and PASS or FAIL against
the goals (0 lost, 0 duplicated, 0 wrong, 0 leftovers, 0 mismatches, every post-kill
check passed). "ended first" counts kills that came after the run had already ended
(run times vary): those test nothing but the re-run. The exit status is 1 if any
scenario fails. No network is used.

Each ``mmsearch ingest`` process spends 5-7 s importing the model runtime and loading
the model before it reads a row, and every kill costs two processes (the killed run
and its resumption), so start-up, not the catalog size, sets the run time: about
25-30 s per kill, 20 minutes at the defaults (4 scenarios of 10 + 1 kills) on 2 CPU
cores; ``--kills 3`` keeps it near 10 minutes.

Usage::

    python benchmarks/ingest_crash.py
    python benchmarks/ingest_crash.py --kills 3 --rows 1000 --scenarios new-text
    python benchmarks/ingest_crash.py --work /tmp/ingest-crash   # keep the workspaces
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from mmsearch.config import Settings
from mmsearch.errors import MMSearchError
from mmsearch.index.open import open_build_index
from mmsearch.manifest import BuildManifest
from mmsearch.search.request import SearchRequest
from mmsearch.search.searcher import Searcher
from mmsearch.workspace import CollectionDir, Workspace

COLLECTION = "crash"
SCENARIOS = ("new-text", "new-images", "existing-text", "existing-images")
BASE_ROWS = 1000
ABANDON_ROWS = 400
IMAGE_SIDE = 64
POLL_S = 0.01
RUN_TIMEOUT_S = 600.0
QUERIES = ("blue lamp", "walnut chair for the kitchen", "spare part")
COLOURS = ("red", "blue", "green", "amber", "black", "white", "teal", "violet", "olive")
NOUNS = ("lamp", "chair", "mug", "table", "kettle", "shelf", "rug", "vase", "clock", "stool")
MATERIALS = ("walnut", "steel", "ceramic", "linen", "glass", "oak", "brass", "wool")
CATEGORIES = ("kitchen", "living", "office", "garden", "bath")


# -- catalogs -------------------------------------------------------------------------------


def make_images(folder: Path, count: int, seed: int) -> list[str]:
    """Distinct small PNGs (shapes on a coloured ground), so that image vectors and
    perceptual hashes differ from one image to the next; paths relative to ``folder``."""
    (folder / "img").mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)

    def colour() -> tuple[int, int, int]:
        return rng.randrange(256), rng.randrange(256), rng.randrange(256)

    names = []
    for number in range(count):
        image = Image.new("RGB", (IMAGE_SIDE, IMAGE_SIDE), colour())
        draw = ImageDraw.Draw(image)
        for _ in range(3):
            x0, y0 = rng.randrange(IMAGE_SIDE - 8), rng.randrange(IMAGE_SIDE - 8)
            box = (x0, y0, x0 + rng.randrange(6, 40), y0 + rng.randrange(6, 40))
            shape = draw.rectangle if rng.random() < 0.5 else draw.ellipse
            shape(box, fill=colour())
        name = f"img/{number:04d}.png"
        image.save(folder / name)
        names.append(name)
    return names


def product(number: int, variant: str, images: list[str] | None) -> dict[str, Any]:
    """One catalog row; ``variant`` changes its text, so the same id can differ between
    catalogs ("" is the update catalog's version of a row)."""
    colour = COLOURS[number % len(COLOURS)]
    noun = NOUNS[(number // 3) % len(NOUNS)]
    material = MATERIALS[(number // 7) % len(MATERIALS)]
    prefix = f"{variant} " if variant else ""
    row: dict[str, Any] = {
        "id": f"p{number}",
        "title": f"{prefix}{colour} {material} {noun} {number}",
        "description": f"A {colour} {noun} in {material}, item {number} of the range. {prefix}",
        "category": CATEGORIES[number % len(CATEGORIES)],
        "price": round(4.5 + (number * 37 % 9000) / 100, 2),
    }
    if images is not None:
        row["image"] = images[(number * 7) % len(images)]
    return row


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


@dataclass
class Catalogs:
    """The update catalog every scenario kills, the base an existing collection starts
    from, and the different catalog of the abandon path."""

    update: Path
    base: Path
    abandon: Path
    update_ids: set[str]
    base_ids: set[str]
    abandon_ids: set[str]


def make_catalogs(folder: Path, rows: int, with_images: bool, seed: int) -> Catalogs:
    """Base ids straddle the end of the update catalog: half of them are updated (every
    other one changed, the rest identical), half are not in it at all."""
    folder.mkdir(parents=True, exist_ok=True)
    images = make_images(folder, max(50, min(300, rows // 10)), seed) if with_images else None
    base_rows = min(BASE_ROWS, max(2, rows // 3))
    base_start = rows - base_rows // 2
    abandon_rows = min(ABANDON_ROWS, max(2, rows // 5))
    abandon_start = rows - abandon_rows // 2
    update = [product(n, "", images) for n in range(rows)]
    base = [
        product(n, "" if n < rows and n % 2 == 0 else "older", images)
        for n in range(base_start, base_start + base_rows)
    ]
    abandon = [
        product(n, "spare", images) for n in range(abandon_start, abandon_start + abandon_rows)
    ]
    return Catalogs(
        update=write_jsonl(folder / "update.jsonl", update),
        base=write_jsonl(folder / "base.jsonl", base),
        abandon=write_jsonl(folder / "abandon.jsonl", abandon),
        update_ids={row["id"] for row in update},
        base_ids={row["id"] for row in base},
        abandon_ids={row["id"] for row in abandon},
    )


# -- running the CLI ------------------------------------------------------------------------


def child_env(chunk_rows: int) -> dict[str, str]:
    """The user's environment without their mmsearch settings, small chunks, offline."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("MMSEARCH_")}
    env.update(
        MMSEARCH_WRITE_BATCH_ROWS=str(chunk_rows), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1"
    )
    return env


def ingest_command(catalog: Path, home: Path) -> list[str]:
    """The command a user runs; this interpreter, so that the same install is measured."""
    return [
        sys.executable, "-m", "mmsearch", "ingest", str(catalog),
        "-c", COLLECTION, "--home", str(home), "--json",
    ]  # fmt: skip


def progress_records(home: Path) -> set[Path]:
    """Every run's progress record: a new one marks a run past its start-up."""
    return set((home / "collections" / COLLECTION / "builds").glob("*/runs/*/progress.json"))


def read_record(path: Path | None) -> dict[str, Any]:
    """A progress record, or {} while it is missing or being replaced."""
    if path is None:
        return {}
    try:
        return dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return {}


@dataclass
class Launch:
    """One ingest process, its output files, and when its progress record appeared."""

    process: subprocess.Popen[bytes]
    started: float
    stdout: Path
    stderr: Path
    record: Path | None = None
    record_at: float | None = None  # seconds after the start


def launch(catalog: Path, home: Path, env: dict[str, str], logs: Path) -> Launch:
    """Output goes to files, so that a run is never blocked on a full pipe."""
    logs.mkdir(parents=True, exist_ok=True)
    stdout, stderr = logs / "stdout.json", logs / "stderr.txt"
    with stdout.open("wb") as out, stderr.open("wb") as err:
        process = subprocess.Popen(
            ingest_command(catalog, home),
            stdout=out,
            stderr=err,
            env=env,
            start_new_session=True,  # its own process group: the kill takes every thread
        )
    return Launch(process, time.perf_counter(), stdout, stderr)


def wait_for_record(run: Launch, home: Path, before: set[Path]) -> None:
    """Poll until this run's progress record exists (or the process ends)."""
    deadline = run.started + RUN_TIMEOUT_S
    while run.process.poll() is None and time.perf_counter() < deadline:
        fresh = progress_records(home) - before
        if fresh:
            run.record = sorted(fresh)[0]
            run.record_at = time.perf_counter() - run.started
            return
        time.sleep(POLL_S)


def finish(run: Launch) -> tuple[dict[str, Any], float]:
    """Wait for the run; its JSON report and wall time. A failed run is an error."""
    try:
        code = run.process.wait(timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(run.process.pid, signal.SIGKILL)
        run.process.wait()
        raise RuntimeError(f"ingest took over {RUN_TIMEOUT_S:.0f} s") from None
    seconds = time.perf_counter() - run.started
    if code != 0:
        tail = run.stderr.read_text(encoding="utf-8", errors="replace")[-2000:]
        raise RuntimeError(f"ingest exited with {code}:\n{tail}")
    return json.loads(run.stdout.read_text(encoding="utf-8")), seconds


def ingest_to_end(
    catalog: Path, home: Path, env: dict[str, str], logs: Path, *, timed: bool = False
) -> tuple[dict[str, Any], float, float | None]:
    """An uninterrupted run: report, wall time and (``timed``) when its progress record
    appeared. A resumed run rewrites its old record, so only fresh runs are timed."""
    before = progress_records(home)
    run = launch(catalog, home, env, logs)
    if timed:
        wait_for_record(run, home, before)
    report, seconds = finish(run)
    return report, seconds, run.record_at


# -- looking at a collection ----------------------------------------------------------------


def settings_for(home: Path) -> Settings:
    """A reader's settings: the workspace alone (the environment's defaults otherwise)."""
    return Settings(home=home)


def live_rows(home: Path) -> tuple[CollectionDir, BuildManifest, dict[str, str], list[str]]:
    """The live build as readers see it: folder, manifest, id → content hash, every id."""
    settings = settings_for(home)
    folder = Workspace(home).collection(COLLECTION)
    manifest = folder.live_manifest()
    index = open_build_index(folder, manifest, settings)
    if index.version() != manifest.table_version:
        raise MMSearchError(
            f"readers got table version {index.version()}, the manifest names "
            f"{manifest.table_version}"
        )
    ids = [str(i) for i in index.scan(["id"])["id"].to_pylist()]
    return folder, manifest, index.content_hashes(), ids


def latest_version(home: Path, folder: CollectionDir, manifest: BuildManifest) -> int:
    """The table's newest version (what a writer sees), whatever the manifest names."""
    return open_build_index(folder, manifest, settings_for(home), for_writing=True).version()


def search_titles(home: Path) -> dict[str, str]:
    """What a user's searches return, id → title, over a few queries."""
    searcher = Searcher(settings_for(home), COLLECTION)
    found: dict[str, str] = {}
    for query in QUERIES:
        for hit in searcher.search(SearchRequest(text=query, k=20)).hits:
            found[hit.id] = hit.title
    return found


def titles_of(home: Path) -> dict[str, str]:
    """id → title of every row readers see (to tell rows of one catalog from another)."""
    settings = settings_for(home)
    folder = Workspace(home).collection(COLLECTION)
    index = open_build_index(folder, folder.live_manifest(), settings)
    table = index.scan(["id", "title"])
    return dict(zip(table["id"].to_pylist(), table["title"].to_pylist(), strict=True))


@dataclass
class Snapshot:
    """A collection's readable state: the pre-update state, or an uninterrupted result."""

    build_id: str
    table_version: int
    hashes: dict[str, str]
    titles: dict[str, str]
    rows: int


def snapshot(home: Path) -> Snapshot:
    """Taken once per scenario; every later state is compared with it."""
    folder, manifest, hashes, ids = live_rows(home)
    return Snapshot(
        str(folder.alias("live")),
        int(manifest.table_version or 0),
        hashes,
        titles_of(home),
        len(ids),
    )


def leftovers(home: Path) -> tuple[list[str], list[str], list[str]]:
    """Builds neither live nor previous, tables no kept build names, runs still running."""
    folder = Workspace(home).find(COLLECTION)
    if folder is None:
        return [], [], []
    kept = set(folder.aliases().values())
    builds_dir = folder.folder / "builds"
    builds = sorted(
        p.name for p in (builds_dir.iterdir() if builds_dir.is_dir() else []) if p.is_dir()
    )
    kept_tables = set()
    for build_id in kept:
        try:
            kept_tables.add(folder.manifest(build_id).table)
        except MMSearchError:
            continue
    tables = sorted(p.stem for p in folder.lancedb_dir.glob("*.lance"))
    running = sorted(
        f"{path.parent.parent.parent.name}/{path.parent.name}"
        for path in progress_records(home)
        if read_record(path).get("state") == "running"
    )
    return (
        [b for b in builds if b not in kept],
        [t for t in tables if t not in kept_tables],
        running,
    )


def written_by_unfinished_builds(home: Path, folder: CollectionDir) -> int:
    """Rows the killed first ingest had committed (tables of builds not yet live)."""
    total = 0
    for build_id in folder.unfinished_builds():
        try:
            manifest = folder.manifest(build_id)
            index = open_build_index(folder, manifest, settings_for(home), for_writing=True)
            total += index.row_count()
        except MMSearchError:
            continue
    return total


# -- one scenario ---------------------------------------------------------------------------


@dataclass
class KillPoint:
    label: str
    from_start: float | None = None  # kill this long after the process started
    after_record: float | None = None  # kill this long after its progress record appeared


@dataclass
class AfterKill:
    """What a kill left: the readers' view, and what the table holds beyond it."""

    state: str
    problems: list[str] = field(default_factory=list)
    written: int = 0  # rows the killed run had committed (not visible)
    published: bool = False


@dataclass
class Outcome:
    point: KillPoint
    killed_at: float
    exited_first: bool
    rows_done: int | None
    after_kill: AfterKill
    report: dict[str, Any] = field(default_factory=dict)
    resume_s: float = 0.0
    encoded: int = 0
    reencoded: int = 0
    lost: int = 0
    duplicated: int = 0
    wrong: int = 0
    leftover_builds: list[str] = field(default_factory=list)
    leftover_tables: list[str] = field(default_factory=list)
    leftover_runs: list[str] = field(default_factory=list)
    mismatch: int = 0
    abandoned_visible: int = 0


@dataclass
class Scenario:
    name: str
    existing: bool
    images: bool
    catalogs: Catalogs
    folder: Path
    env: dict[str, str]
    template: Path | None = None  # the existing collection before the update
    before: Snapshot | None = None
    expected: Snapshot | None = None  # the uninterrupted update's result
    to_encode: int = 0  # rows an uninterrupted update encodes
    record_at: float = 0.0
    total_s: float = 0.0

    def fresh_home(self, name: str) -> Path:
        home = self.folder / name
        shutil.rmtree(home, ignore_errors=True)
        if self.template is not None:
            shutil.copytree(self.template, home)
        else:
            home.mkdir(parents=True)
        return home


def prepare(scenario: Scenario, log: Callable[[str], None]) -> None:
    """The existing collection (if any), then one uninterrupted update to calibrate."""
    if scenario.existing:
        template = scenario.folder / "template"
        shutil.rmtree(template, ignore_errors=True)
        template.mkdir(parents=True)
        report, seconds, _ = ingest_to_end(
            scenario.catalogs.base, template, scenario.env, scenario.folder / "logs-template"
        )
        scenario.template = template
        scenario.before = snapshot(template)
        log(
            f"  existing collection: {report['counts']['added']} rows ingested in "
            f"{seconds:.1f} s (table version {scenario.before.table_version})"
        )
    home = scenario.fresh_home("calibration")
    report, seconds, record_at = ingest_to_end(
        scenario.catalogs.update,
        home,
        scenario.env,
        scenario.folder / "logs-calibration",
        timed=True,
    )
    counts = report["counts"]
    scenario.expected = snapshot(home)
    scenario.to_encode = counts["added"] + counts["updated"]
    scenario.record_at = record_at or 0.0
    scenario.total_s = seconds
    log(
        f"  uninterrupted run: {seconds:.1f} s, progress record after {scenario.record_at:.1f} s; "
        f"added {counts['added']}, updated {counts['updated']}, unchanged {counts['unchanged']}"
    )
    shutil.rmtree(home, ignore_errors=True)


def plan_kills(count: int, scenario: Scenario, rng: random.Random) -> list[KillPoint]:
    """One kill at the first progress record, one during start-up, the rest random."""
    window = max(0.1, scenario.total_s - scenario.record_at)
    points: list[KillPoint] = []
    if count >= 1:
        points.append(KillPoint("first record", after_record=0.0))
    if count >= 2:
        points.append(KillPoint("start-up", from_start=rng.uniform(0.5, 1.0) * scenario.record_at))
    for _ in range(count - len(points)):
        share = rng.uniform(0.05, 0.95)
        points.append(KillPoint(f"{share:4.0%} in", after_record=share * window))
    return points


def kill_run(
    scenario: Scenario, home: Path, catalog: Path, point: KillPoint, logs: Path
) -> Outcome:
    """SIGKILL to the whole process group, as a power cut or ``kill -9`` would; then
    what the run had recorded and what readers see."""
    before = progress_records(home)
    run = launch(catalog, home, scenario.env, logs)
    if point.from_start is not None:
        while run.process.poll() is None and time.perf_counter() - run.started < point.from_start:
            time.sleep(POLL_S)
        run.record = next(iter(sorted(progress_records(home) - before)), None)
    else:
        wait_for_record(run, home, before)
        if run.record_at is not None and point.after_record:
            deadline = time.perf_counter() + point.after_record
            while run.process.poll() is None and time.perf_counter() < deadline:
                time.sleep(POLL_S)
    exited_first = run.process.poll() is not None
    if not exited_first:
        os.killpg(run.process.pid, signal.SIGKILL)
    run.process.wait()
    killed_at = time.perf_counter() - run.started
    record = read_record(run.record)
    rows_done = record.get("rows_done") if record else None
    after = check_after_kill(scenario, home)
    return Outcome(point, killed_at, exited_first, rows_done, after)


def check_after_kill(scenario: Scenario, home: Path) -> AfterKill:
    """What readers must see right after a kill, before anything else runs."""
    return (
        check_existing_after_kill(scenario, home)
        if scenario.existing
        else check_new_after_kill(scenario, home)
    )


def check_new_after_kill(scenario: Scenario, home: Path) -> AfterKill:
    """No collection; or no live build and an error that says to resume; or all rows."""
    folder = Workspace(home).find(COLLECTION)
    if folder is None:
        return AfterKill("no collection")
    written = written_by_unfinished_builds(home, folder)
    try:
        found = search_titles(home)
    except MMSearchError as exc:
        message = str(exc)
        if folder.unfinished_builds():
            state = AfterKill("no live build", written=written)
            if "resume" not in message.lower():
                state.problems.append(f"the error does not mention resuming: {message}")
            return state
        if any(folder.manifest(b).pending_live for b in folder.build_ids()):
            # Complete but not yet aliased: the next ingest publishes it as it is.
            return AfterKill("publish pending", published=True)
        return AfterKill("empty collection")
    after = AfterKill("published", published=True)
    expected = scenario.expected
    assert expected is not None
    _folder, _manifest, hashes, ids = live_rows(home)
    if hashes != expected.hashes or len(ids) != expected.rows:
        after.problems.append(f"live build has {len(ids)} rows, not the complete {expected.rows}")
    strays = [i for i, title in found.items() if expected.titles.get(i) != title]
    if strays:
        after.problems.append(f"searches return rows not in the catalog: {strays[:3]}")
    return after


def check_existing_after_kill(scenario: Scenario, home: Path) -> AfterKill:
    """The pre-update state exactly (or, after the publish, the complete update)."""
    before, expected = scenario.before, scenario.expected
    assert before is not None and expected is not None
    try:
        folder, manifest, hashes, ids = live_rows(home)
        found = search_titles(home)
    except MMSearchError as exc:
        return AfterKill("unusable", [f"searches fail: {exc}"])
    latest = open_build_index(folder, manifest, settings_for(home), for_writing=True)
    latest_hashes = latest.content_hashes()
    written = sum(1 for i, h in latest_hashes.items() if before.hashes.get(i) != h)
    problems = []
    if folder.alias("live") != before.build_id:
        problems.append(f"live is {folder.alias('live')}, was {before.build_id}")
    if manifest.table_version == before.table_version:
        after = AfterKill("pre-update", problems, written)
        reference = before
    else:
        after = AfterKill("published", problems, published=True)
        reference = expected
    if hashes != reference.hashes or len(ids) != reference.rows:
        changed = sum(1 for i, h in hashes.items() if reference.hashes.get(i) != h)
        problems.append(
            f"readers see {len(ids)} rows (expected {reference.rows}), {changed} of them "
            f"with other content than the {after.state} state"
        )
    strays = [i for i, title in found.items() if reference.titles.get(i) != title]
    if strays:
        problems.append(f"searches return rows of the unfinished update: {strays[:3]}")
    return after


def check_complete(scenario: Scenario, home: Path, outcome: Outcome) -> None:
    """After the resumed run: lost, duplicated, wrong rows, leftovers, manifest vs table."""
    expected = scenario.expected
    assert expected is not None
    folder, manifest, hashes, ids = live_rows(home)
    outcome.lost = len(scenario.catalogs.update_ids - set(ids))
    outcome.duplicated = len(ids) - len(set(ids))
    outcome.wrong = sum(1 for i, h in hashes.items() if expected.hashes.get(i) != h)
    outcome.wrong += len(set(expected.hashes) - set(hashes) - scenario.catalogs.update_ids)
    outcome.mismatch = int(manifest.table_version != latest_version(home, folder, manifest))
    builds, tables, runs = leftovers(home)
    outcome.leftover_builds, outcome.leftover_tables, outcome.leftover_runs = builds, tables, runs
    counts = outcome.report["counts"]
    outcome.encoded = counts["added"] + counts["updated"] - counts["resumed"]
    written = scenario.to_encode if outcome.after_kill.published else outcome.after_kill.written
    outcome.reencoded = outcome.encoded - (scenario.to_encode - written)


def check_abandoned(scenario: Scenario, home: Path, outcome: Outcome, killed_run: str) -> None:
    """After a different catalog: the killed run's rows nowhere, nothing of it left."""
    folder, manifest, hashes, ids = live_rows(home)
    catalogs = scenario.catalogs
    expected_ids = catalogs.abandon_ids | (catalogs.base_ids if scenario.existing else set())
    if outcome.after_kill.published:
        expected_ids |= catalogs.update_ids
    outcome.lost = len(expected_ids - set(ids))
    outcome.duplicated = len(ids) - len(set(ids))
    outcome.wrong = len(set(ids) - expected_ids)
    if scenario.existing and scenario.before is not None and not outcome.after_kill.published:
        untouched = scenario.before.hashes.keys() - catalogs.abandon_ids
        outcome.wrong += sum(1 for i in untouched if hashes.get(i) != scenario.before.hashes[i])
    index = open_build_index(folder, manifest, settings_for(home))
    runs = index.scan(["ingest_run"])["ingest_run"].to_pylist()
    outcome.abandoned_visible = 0 if outcome.after_kill.published else runs.count(killed_run)
    outcome.mismatch = int(manifest.table_version != latest_version(home, folder, manifest))
    builds, tables, running = leftovers(home)
    outcome.leftover_builds, outcome.leftover_tables, outcome.leftover_runs = (
        builds,
        tables,
        running,
    )


def kill_and_resume(scenario: Scenario, number: int, point: KillPoint) -> Outcome:
    """One kill point: a fresh workspace, the kill, the checks, the same command again."""
    home = scenario.fresh_home(f"kill-{number:02d}")
    logs = scenario.folder / f"logs-{number:02d}"
    outcome = kill_run(scenario, home, scenario.catalogs.update, point, logs / "killed")
    report, seconds, _ = ingest_to_end(
        scenario.catalogs.update, home, scenario.env, logs / "resume"
    )
    outcome.report, outcome.resume_s = report, seconds
    check_complete(scenario, home, outcome)
    shutil.rmtree(home, ignore_errors=True)
    return outcome


def kill_and_abandon(scenario: Scenario, point: KillPoint) -> Outcome:
    """A kill, then a different catalog: the killed run's work must be discarded."""
    home = scenario.fresh_home("abandon")
    logs = scenario.folder / "logs-abandon"
    before = progress_records(home)
    outcome = kill_run(scenario, home, scenario.catalogs.update, point, logs / "killed")
    killed = [p for p in progress_records(home) - before]
    killed_run = killed[0].parent.name if killed else ""
    report, seconds, _ = ingest_to_end(
        scenario.catalogs.abandon, home, scenario.env, logs / "other"
    )
    outcome.report, outcome.resume_s = report, seconds
    check_abandoned(scenario, home, outcome, killed_run)
    shutil.rmtree(home, ignore_errors=True)
    return outcome


# -- reporting ------------------------------------------------------------------------------


def describe(number: str, outcome: Outcome) -> str:
    """One line per kill, and a line per problem found, so that a failure is explained."""
    after = outcome.after_kill
    counts = outcome.report.get("counts", {})
    done = "-" if outcome.rows_done is None else str(outcome.rows_done)
    if outcome.exited_first:
        done += " (ended)"
    leftover = len(outcome.leftover_builds) + len(outcome.leftover_tables)
    leftover += len(outcome.leftover_runs)
    line = (
        f"  {number:>3} {outcome.point.label:<12} {outcome.killed_at:6.1f} {done:>9}  "
        f"{after.state:<15} {after.written:>7} {counts.get('resumed', 0):>7} "
        f"{outcome.encoded:>7} {outcome.reencoded:>6} {outcome.lost:>4} {outcome.duplicated:>4} "
        f"{outcome.wrong:>5} {leftover:>5} {outcome.mismatch:>4} {outcome.resume_s:6.1f}"
    )
    if outcome.abandoned_visible:
        line += f"  abandoned rows visible: {outcome.abandoned_visible}"
    for problem in after.problems:
        line += f"\n        after kill: {problem}"
    for name, found in (
        ("builds", outcome.leftover_builds),
        ("tables", outcome.leftover_tables),
        ("runs", outcome.leftover_runs),
    ):
        if found:
            line += f"\n        leftover {name}: {', '.join(found)}"
    return line


KILL_HEADER = (
    "    #  kill point    at(s) rows_done  after the kill   written resumed encoded re-enc "
    "lost  dup wrong left. mism resume(s)"
)


def passes(outcomes: list[Outcome]) -> bool:
    """The goals; re-encoding is reported but is a cost, not a loss."""
    return all(
        not o.after_kill.problems
        and o.lost == o.duplicated == o.wrong == o.mismatch == o.abandoned_visible == 0
        and not (o.leftover_builds or o.leftover_tables or o.leftover_runs)
        for o in outcomes
    )


def summary_rows(name: str, kills: list[Outcome], abandon: list[Outcome]) -> list[list[str]]:
    """The scenario's table rows: its kills, and the abandon path apart."""
    rows = []
    for label, group in ((name, kills), (f"{name} (abandon)", abandon)):
        if not group:
            continue
        reencoded = sum(o.reencoded for o in group)
        rows.append(
            [
                label,
                str(len(group)),
                str(sum(o.exited_first for o in group)),
                str(sum(bool(o.after_kill.problems) for o in group)),
                str(sum(o.lost for o in group)),
                str(sum(o.duplicated for o in group)),
                str(sum(o.wrong + o.abandoned_visible for o in group)),
                "-" if group is abandon else f"{reencoded} / {reencoded / len(group):.1f}",
                "-" if group is abandon else str(sum(o.report["counts"]["resumed"] for o in group)),
                str(sum(len(o.leftover_builds) for o in group)),
                str(sum(len(o.leftover_tables) for o in group)),
                str(sum(len(o.leftover_runs) for o in group)),
                str(sum(o.mismatch for o in group)),
                "PASS" if passes(group) else "FAIL",
            ]
        )
    return rows


SUMMARY_HEADER = [
    "scenario",
    "kills",
    "ended first",
    "bad after kill",
    "lost",
    "dup",
    "wrong/visible",
    "re-encoded tot/mean",
    "resumed",
    "left builds",
    "left tables",
    "left runs",
    "mismatch",
    "result",
]


def print_table(header: list[str], rows: list[list[str]]) -> None:
    """Plain aligned text, readable in a terminal and in a pasted log."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))


# -- main -----------------------------------------------------------------------------------


def run_scenario(
    name: str, args: argparse.Namespace, work: Path, rng: random.Random
) -> list[list[str]]:
    """Prints as it goes (a scenario takes minutes); returns its summary rows."""
    started = time.perf_counter()
    existing, images = name.startswith("existing"), name.endswith("images")
    folder = work / name
    catalogs = make_catalogs(work / ("catalog-images" if images else "catalog-text"), args.rows,
                             images, args.seed)  # fmt: skip
    scenario = Scenario(name, existing, images, catalogs, folder, child_env(args.chunk_rows))
    print(
        f"\n== {name}: {len(catalogs.update_ids)} rows"
        + (f" over {len(catalogs.base_ids)} existing" if existing else "")
        + f", chunks of {args.chunk_rows} rows",
        flush=True,
    )
    prepare(scenario, lambda line: print(line, flush=True))
    print(KILL_HEADER, flush=True)
    kills: list[Outcome] = []
    for number, point in enumerate(plan_kills(args.kills, scenario, rng), start=1):
        outcome = kill_and_resume(scenario, number, point)
        kills.append(outcome)
        print(describe(str(number), outcome), flush=True)
    abandon: list[Outcome] = []
    if args.abandon:
        window = max(0.1, scenario.total_s - scenario.record_at)
        share = rng.uniform(0.05, 0.95)
        point = KillPoint(f"{share:4.0%} in", after_record=share * window)
        abandon.append(kill_and_abandon(scenario, point))
        print("  then a different catalog (abandon path):", flush=True)
        print(describe("A", abandon[0]), flush=True)
    print(f"  scenario time: {time.perf_counter() - started:.0f} s", flush=True)
    if not args.work:
        shutil.rmtree(folder, ignore_errors=True)
    return summary_rows(name, kills, abandon)


def main(argv: list[str] | None = None) -> int:
    """Exit status 1 when any scenario misses a goal, so that a script can gate on it."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=3000, help="rows of the update catalog")
    parser.add_argument("--kills", type=int, default=10, help="kill points per scenario")
    parser.add_argument("--seed", type=int, default=7, help="seeds kill points and images")
    parser.add_argument("--chunk-rows", type=int, default=200, help="MMSEARCH_WRITE_BATCH_ROWS")
    parser.add_argument(
        "--no-abandon",
        dest="abandon",
        action="store_false",
        help="skip the extra kill per scenario that is followed by a different catalog",
    )
    parser.add_argument(
        "--scenarios",
        default=",".join(SCENARIOS),
        help=f"comma-separated, from: {', '.join(SCENARIOS)}",
    )
    parser.add_argument("--work", type=Path, help="keep catalogs, workspaces and logs here")
    args = parser.parse_args(argv)
    names = [name.strip() for name in args.scenarios.split(",") if name.strip()]
    unknown = [name for name in names if name not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(unknown)}")
    if args.rows < 10 or args.kills < 0:
        parser.error("--rows must be at least 10 and --kills at least 0")
    work = args.work or Path(tempfile.mkdtemp(prefix="mmsearch-ingest-crash-"))
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    print(
        f"ingest crash safety: {args.kills} kills per scenario (seed {args.seed}), "
        f"{args.rows} rows, chunks of {args.chunk_rows}, {os.cpu_count()} CPUs, work {work}"
    )
    rng = random.Random(args.seed)
    rows: list[list[str]] = []
    try:
        for name in names:
            rows.extend(run_scenario(name, args, work, rng))
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    print(
        "\nGoals: 0 lost, 0 duplicated, 0 wrong or abandoned rows visible, 0 leftover builds, "
        "tables and runs, 0 manifest/table mismatches, every post-kill check passed.\n"
    )
    print_table(SUMMARY_HEADER, rows)
    print(f"\ntotal time: {time.perf_counter() - started:.0f} s")
    return 0 if all(row[-1] == "PASS" for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
