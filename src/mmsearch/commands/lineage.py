"""``mmsearch lineage`` (where an item came from, and the reverse) and ``mmsearch kpis``.

The CLI is the local operator: it shows full server paths (the operator owns the
workspace). The HTTP API decides per caller what to show (``service/routers/lineage.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from mmsearch.terminal import (
    CollectionOption,
    HomeOption,
    JsonOption,
    console,
    fail,
    print_json,
    user_errors,
)

# governance.lineage.DEFAULT_LIMIT and monitoring.kpis.DEFAULT_K, repeated so that loading
# the CLI does not import scipy (tests/test_cli_startup.py checks that they agree).
DEFAULT_LIMIT = 1000
DEFAULT_K = 10

if TYPE_CHECKING:
    from mmsearch.manifest import BuildManifest
    from mmsearch.monitoring.kpis import BuildKpis
    from mmsearch.workspace import CollectionDir


BuildOption = Annotated[
    str | None, typer.Option("--build", help="A build id (default: the live build).")
]


def _manifest(folder: CollectionDir, build: str | None, run: str | None) -> BuildManifest:
    """The build asked for; for a run without --build, the build the run wrote."""
    from mmsearch.builds.lineage import LineageError, build_of_run, runs_of

    if build is None and run:
        build = build_of_run(folder, run)
        if build is None:
            raise LineageError(
                f"No ingest run '{run}' in collection '{folder.name}'. Runs of the live "
                f"build: {', '.join(runs_of(folder, folder.alias('live') or '')) or 'none'}."
            )
    if build is None:
        return folder.live_manifest()
    return folder.manifest(folder.require_build(build))


def _source_argument(source: str | None) -> str | None:
    """A catalog path as ingest stored it (resolved) when it exists here; else as given."""
    if source is None:
        return None
    path = Path(source).expanduser()
    return str(path.resolve()) if path.exists() else source


def print_lineage(found: dict[str, Any]) -> None:
    source, ingest, build = found["source"], found["ingest"], found["build"]
    run = found.get("run") or {}
    lines = [
        f"[bold]{escape(found['item_id'])}[/] in {escape(found['collection'])}"
        + (f" — {escape(found['title'])}" if found.get("title") else ""),
        f"source    {escape(str(source['file']))}, row {source['row']}",
        f"          file sha256 {source.get('file_sha256') or '-'}",
        f"record    sha256 {source['record_sha256']}",
        f"run       {escape(str(ingest['run_id']))} at {ingest['ingested_at']}"
        + ("" if run.get("recorded", True) else " (no record of this run remains)"),
        f"build     {build['build_id']}, mmsearch {build['mmsearch_version']}, "
        f"schema v{build['schema_version']}",
        f"store     {build['store']['backend']} table {build['table']} "
        f"version {build['table_version']}",
    ]
    console.print("\n".join(lines), highlight=False)
    table = Table(title="images")
    for column in ("#", "origin", "source", "sha256"):
        table.add_column(column, overflow="fold")
    for image in found["images"]:
        table.add_row(
            str(image["position"]), image["origin"], escape(image["source"]), image["sha256"] or "-"
        )
    if found["images"]:
        console.print(table)
    encoders = Table(title="encoders")
    for column in ("role", "spec", "version", "weights sha256", "dim"):
        encoders.add_column(column, overflow="fold")
    for role, encoder in found["encoders"].items():
        encoders.add_row(
            role,
            escape(str(encoder["spec"])),
            escape(encoder["version"]),
            encoder["weights_sha256"] or "-",
            str(encoder["dim"]),
        )
    console.print(encoders)


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def print_kpis(builds: list[BuildKpis], k: int) -> None:
    """One column per build, one row per figure: build ids are long and few builds get
    traffic in one window (live, a canary, the previous build), so this fits a terminal."""
    table = Table()
    table.add_column("")
    for kpis in builds:
        routed = ", ".join(f"{name} {n}" for name, n in kpis.routed.items() if name != "live")
        header = escape(kpis.build_id) + (f"\n({escape(routed)})" if routed else "")
        table.add_column(header, justify="right")
    rows: list[tuple[str, list[str]]] = [
        ("queries", [str(b.queries) for b in builds]),
        ("zero results", [_rate(b.zero_result_rate) for b in builds]),
        ("fallbacks", [str(b.fallbacks) for b in builds]),
        ("encoder failures", [str(b.encoder_failures) for b in builds]),
        ("clicks", [str(b.clicks) for b in builds]),
        (f"CTR@{k}", [_rate(b.ctr_at_k) for b in builds]),
        (
            "MRR (first click)",
            ["-" if b.clicked_mrr is None else f"{b.clicked_mrr:.3f}" for b in builds],
        ),
        ("latency p50 ms", [_ms(b.latency_p50) for b in builds]),
        ("latency p95 ms", [_ms(b.latency_p95) for b in builds]),
        ("latency p99 ms", [_ms(b.latency_p99) for b in builds]),
    ]
    for label, values in rows:
        table.add_row(label, *values)
    console.print(table)


def register(app: typer.Typer) -> None:
    app.command("lineage")(lineage)
    app.command("kpis")(kpis)


def lineage(
    collection: CollectionOption,
    item_id: Annotated[
        str | None, typer.Argument(help="The item whose origin to show.", show_default=False)
    ] = None,
    source: Annotated[
        str | None,
        typer.Option("--source", help="List the items read from this catalog file."),
    ] = None,
    run: Annotated[
        str | None, typer.Option("--run", help="List the items written by this ingest run.")
    ] = None,
    build: BuildOption = None,
    limit: Annotated[
        int, typer.Option("--limit", min=1, help="Items to list (reverse lookups).")
    ] = DEFAULT_LIMIT,
    home: HomeOption = None,
    as_json: JsonOption = False,
) -> None:
    """Where an item came from (source row, run, images, encoders, build), or which
    items came from a catalog file (--source) or an ingest run (--run)."""
    from mmsearch.builds.lineage import count_from, item_lineage, items_from
    from mmsearch.workspace import open_collection

    if (item_id is None) == (source is None and run is None):
        raise fail("Give either an ITEM_ID or --source FILE / --run RUN (not both).")
    with user_errors():
        settings, folder = open_collection(home, collection)
        manifest = _manifest(folder, build, run)
        if item_id is not None:
            found = item_lineage(folder, manifest, settings, item_id)
            if as_json:
                print_json(found)
            else:
                print_lineage(found)
            return
        path = _source_argument(source)
        rows = items_from(folder, manifest, settings, source_file=path, run=run, limit=limit)
        total = count_from(folder, manifest, settings, source_file=path, run=run)
    if as_json:
        body = {"build_id": manifest.build_id, "total": total, "items": rows}
        print_json(body)
        return
    what = " and ".join(
        part for part in (f"source {path}" if path else "", f"run {run}" if run else "") if part
    )
    console.print(
        f"{total} item(s) of build {manifest.build_id} from {escape(what)}"
        + (f" (first {len(rows)} shown)" if total > len(rows) else ""),
        highlight=False,
    )
    if not rows:
        return
    table = Table()
    for column in ("id", "source", "row", "run", "ingested at", "record sha256"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(
            escape(row["id"]),
            escape(Path(row["source_file"] or "-").name),
            str(row["source_row"]),
            escape(str(row["ingest_run"])),
            str(row["ingested_at"]),
            str(row["record_sha256"])[:16],
        )
    console.print(table)


def kpis(
    collection: CollectionOption,
    since: Annotated[
        str | None,
        typer.Option("--since", help="From a time (2026-11-30T00:00) or a span ago (24h)."),
    ] = None,
    until: Annotated[
        str | None, typer.Option("--until", help="Up to (not including) this time or span ago.")
    ] = None,
    k: Annotated[int, typer.Option("--k", min=1, help="Cut-off of CTR@k.")] = DEFAULT_K,
    home: HomeOption = None,
    as_json: JsonOption = False,
) -> None:
    """Per build: queries, zero-result rate, fallbacks, clicks, CTR@k, MRR of the first
    click and latency percentiles, from the service's query and click logs."""
    from mmsearch.monitoring.kpis import parse_moment, read_kpis
    from mmsearch.workspace import open_collection

    with user_errors():
        settings, _ = open_collection(home, collection)
        start = parse_moment(since) if since else None
        end = parse_moment(until) if until else None
        report = read_kpis(settings.home, collection, start, end, k)
    if as_json:
        print_json(report.as_dict())
        return
    if not report.builds:
        console.print(
            f"no searches of '{escape(collection)}' in the query log"
            + (" in that window" if since or until else "")
            + f" ({settings.home / 'logs'})",
            highlight=False,
        )
    else:
        print_kpis(report.builds, k)
    notes = []
    if report.malformed_lines:
        notes.append(f"{report.malformed_lines} malformed log line(s) skipped")
    if report.unmatched_clicks:
        notes.append(f"{report.unmatched_clicks} click(s) whose query is not in the window")
    if notes:
        console.print("; ".join(notes), style="yellow", highlight=False)
