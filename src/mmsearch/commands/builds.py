"""``mmsearch builds list|show|diff|prune`` and ``mmsearch runs list|revert``.

Thin on purpose: the logic lives in ``governance/builds.py``, ``ingest/history.py`` and
``ingest/revert.py``, which the HTTP API calls too. Writes (prune, revert) are audited
as operator acts; a revert says what it will undo before it writes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from mmsearch.errors import MMSearchError
from mmsearch.terminal import (
    CollectionOption,
    HomeOption,
    JsonOption,
    console,
    errors,
    fail,
    print_json,
    user_errors,
)

if TYPE_CHECKING:
    from mmsearch.builds.run_records import RunEntry
    from mmsearch.ingest.revert import RevertPlan, RevertReport
    from mmsearch.workspace import CollectionDir


STATUS_COLOURS = {
    "live": "green",
    "canary": "yellow",
    "previous": "cyan",
    "candidate": "blue",
    "building": "magenta",
}
YesOption = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]


def _time(value: str | None) -> str:
    return (value or "-")[:19].replace("T", " ")


def _counts(counts: dict[str, Any]) -> str:
    shown = ("added", "updated", "unchanged", "failed", "removed", "restored", "changed", "items")
    return ", ".join(f"{k}={counts[k]}" for k in shown if counts.get(k)) or "-"


def _default_build(folder: CollectionDir) -> str:
    """The live build, or the newest one when nothing is live yet."""
    live = folder.alias("live")
    if live:
        return live
    builds = folder.build_ids()
    if not builds:
        raise MMSearchError(f"Collection '{folder.name}' has no builds yet.")
    return builds[-1]


def _print_runs(build_id: str, entries: list[RunEntry]) -> None:
    table = Table(title=f"runs of build {build_id} (oldest first)")
    table.add_column("run", no_wrap=True)  # ids are copied into `runs revert`: never cut
    for column in ("kind", "finished (UTC)", "by", "counts", "versions"):
        table.add_column(column, overflow="fold")  # wrapped at 80 columns, never cut
    for entry in entries:
        before = "new" if entry.table_version_before is None else entry.table_version_before
        versions = f"{before} -> {entry.table_version_after}"
        detail = entry.detail.reverted_run
        table.add_row(
            escape(entry.run_id),
            entry.kind + (f"\nof {escape(detail)}" if detail else ""),
            _time(entry.finished_at),
            escape(entry.actor or "-"),
            _counts(entry.counts),
            versions,
        )
    console.print(table)


def _print_plan(plan: RevertPlan) -> None:
    console.print(
        f"Revert run [bold]{escape(plan.run.run_id)}[/] ({plan.run.kind}, "
        f"{_time(plan.run.finished_at)}) of build {escape(plan.build_id)} "
        f"([{STATUS_COLOURS.get(plan.build_status, 'white')}]{plan.build_status}[/]) in "
        f"'{escape(plan.collection)}': its table goes back to version {plan.restore_version}.",
        highlight=False,
    )
    if plan.later_runs:
        errors.print(
            f"[yellow]{len(plan.later_runs)} later run(s) of this build are undone too:[/]",
            highlight=False,
        )
        for run in plan.later_runs:
            errors.print(
                f"  {escape(run.run_id)}  {run.kind}  {_time(run.finished_at)}", highlight=False
            )


def _print_report(report: RevertReport) -> None:
    console.print(
        f"[green]reverted[/] run {escape(report.run_id)} of build {escape(report.build_id)} "
        f"({report.build_status}): table version {report.table_version_before} -> "
        f"{report.table_version_after} (the rows of version {report.restored_version}); "
        f"items {report.items_before} -> {report.items_after}: {report.restored} restored, "
        f"{report.removed} removed, {report.changed} changed back.",
        highlight=False,
    )
    if report.later_runs:
        undone = ", ".join(f"{r.run_id} ({r.kind})" for r in report.later_runs)
        errors.print(f"[yellow]also undone:[/] {escape(undone)}", highlight=False)
    for notice in report.notices:
        errors.print(f"note: {escape(notice)}", highlight=False)
    console.print(
        f"To undo this revert: mmsearch runs revert -c {escape(report.collection)} "
        f"{escape(report.revert_id)}",
        highlight=False,
    )


def _register_builds(app: typer.Typer) -> None:
    builds_app = typer.Typer(help="A collection's builds: list, show, diff, prune.")
    app.add_typer(builds_app, name="builds")

    builds_app.command("list")(builds_list_command)
    builds_app.command("show")(builds_show_command)
    builds_app.command("diff")(builds_diff_command)
    builds_app.command("prune")(builds_prune_command)


def builds_list_command(
    collection: CollectionOption, home: HomeOption = None, as_json: JsonOption = False
) -> None:
    """Every build, newest first: status, encoders, items, gate verdict."""
    from mmsearch.builds.listing import list_builds
    from mmsearch.workspace import open_collection

    with user_errors():
        _, folder = open_collection(home, collection)
        summaries = list_builds(folder)
    if as_json:
        print_json([s.as_dict() for s in summaries])
        return
    if not summaries:
        console.print(f"collection '{escape(collection)}' has no builds")
        return
    # Readable at 80 columns: ids and statuses whole (they are typed back into other
    # commands), no creation time (a build id starts with it), long cells wrapped.
    table = Table(
        title=f"builds of {collection}",
        caption="a build id starts with its creation time (UTC); --json for the rest",
    )
    table.add_column("build", no_wrap=True)
    table.add_column("status", no_wrap=True)
    for column in ("encoders", "items", "gate"):
        table.add_column(column, overflow="fold")
    for s in summaries:
        colour = STATUS_COLOURS.get(s.status, "white")
        table.add_row(
            escape(s.build_id),
            f"[{colour}]{s.status}[/]",
            escape("\n".join(f"{role}: {spec}" for role, spec in s.encoders.items())),
            str(s.items),
            escape(s.gate or "-"),
        )
    console.print(table)


def builds_show_command(
    collection: CollectionOption,
    build: Annotated[str, typer.Argument(help="Build id.")],
    runs: Annotated[int, typer.Option("--runs", min=0, help="Newest runs to show.")] = 10,
    home: HomeOption = None,
    as_json: JsonOption = False,
) -> None:
    """One build in full: encoders, mapping, schema, sources, runs, publishes, gate."""
    from mmsearch.builds.listing import describe_build
    from mmsearch.builds.run_records import RunEntry
    from mmsearch.workspace import open_collection

    with user_errors():
        _, folder = open_collection(home, collection)
        info = describe_build(folder, build, runs)
    if as_json:
        print_json(info)
        return
    console.print(
        f"[bold]{escape(build)}[/] ({info['status']}), created {_time(info['created_at'])}, "
        f"updated {_time(info['updated_at'])}, {info['items']} items, table version "
        f"{info['table_version']}",
        highlight=False,
    )
    for role, enc in info["encoders_full"].items():
        console.print(
            f"  {role}: {escape(str(enc.get('spec')))} {escape(str(enc.get('version')))} "
            f"(dim {enc.get('dim')})",
            highlight=False,
        )
    attributes = ", ".join(f"{a['field']}:{a.get('kind')}" for a in info["attributes"])
    console.print(f"  attributes: {escape(attributes or '-')}", highlight=False)
    for source in info["sources"]:
        console.print(f"  source: {escape(str(source.get('path')))}", highlight=False)
    gate = info["gate_result"]
    if isinstance(gate, dict):
        reasons = "; ".join(str(r) for r in gate.get("reasons") or [])
        console.print(
            f"  gate: {escape(str(gate.get('verdict')))}"
            + (f" ({escape(reasons)})" if reasons else ""),
            highlight=False,
        )
    for publish in info["publishes"]:
        console.print(
            f"  published {_time(publish.get('at'))} by {escape(str(publish.get('by')))}",
            highlight=False,
        )
    entries = [RunEntry.model_validate(r) for r in info["runs"]]
    if entries:
        _print_runs(build, entries)
    console.print(f"{info['runs_total']} runs recorded", highlight=False)


def builds_diff_command(
    collection: CollectionOption,
    a: Annotated[str, typer.Argument(help="Build A (the older, usually).")],
    b: Annotated[str, typer.Argument(help="Build B, compared with A.")],
    home: HomeOption = None,
    as_json: JsonOption = False,
) -> None:
    """What B changes against A: encoders, mapping, schema, items by content hash."""
    from mmsearch.builds.listing import diff_builds
    from mmsearch.workspace import open_collection

    with user_errors():
        settings, folder = open_collection(home, collection)
        diff = diff_builds(folder, a, b, settings)
    if as_json:
        print_json(diff.as_dict())
        return
    for title, lines in (
        ("encoders", diff.encoders),
        ("mapping", diff.mapping),
        ("schema", diff.schema),
    ):
        console.print(f"[bold]{title}[/]: {'same' if not lines else ''}", highlight=False)
        for line in lines:
            console.print(f"  {escape(line)}", highlight=False)
    items = diff.items
    console.print(
        f"[bold]items[/] (B against A): {items.added} added, {items.removed} removed, "
        f"{items.changed} changed, {items.unchanged} unchanged",
        highlight=False,
    )
    for label, ids in (
        ("added", items.added_ids),
        ("removed", items.removed_ids),
        ("changed", items.changed_ids),
    ):
        if ids:
            console.print(f"  {label}: {escape(', '.join(ids))}", highlight=False)


def builds_prune_command(
    collection: CollectionOption,
    keep: Annotated[
        int, typer.Option("--keep", min=0, help="Newest ready builds to keep (live counts).")
    ],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only list what would be removed.")
    ] = False,
    home: HomeOption = None,
    as_json: JsonOption = False,
) -> None:
    """Remove old builds (table and folder). Live, canary and previous are always kept,
    and so is any build being written."""
    from mmsearch.builds.listing import prune_builds, prune_plan
    from mmsearch.commands.operator_audit import operator_act
    from mmsearch.workspace import open_collection

    with user_errors():
        settings, folder = open_collection(home, collection)
        if dry_run:
            removed = prune_plan(folder, keep)
        else:
            with operator_act(settings.home, "builds.prune", collection=collection) as act:
                removed = prune_builds(folder, keep)
                act.items = removed
                act.detail = f"--keep {keep}: {len(removed)} build(s) removed"
    if as_json:
        print_json({"dry_run": dry_run, "removed": removed})
        return
    verb = "would remove" if dry_run else "removed"
    if not removed:
        console.print(f"nothing to prune (keeping the {keep} newest and live/canary/previous)")
    for build_id in removed:
        console.print(f"{verb} {escape(build_id)}", highlight=False)


def _register_runs(app: typer.Typer) -> None:
    runs_app = typer.Typer(help="The run history of a build: list, revert a bad batch.")
    app.add_typer(runs_app, name="runs")

    runs_app.command("list")(runs_list_command)
    runs_app.command("revert")(runs_revert_command)


def runs_list_command(
    collection: CollectionOption,
    build: Annotated[
        str | None, typer.Option("--build", help="Build id (default: the live build).")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Newest runs to show.")] = 50,
    home: HomeOption = None,
    as_json: JsonOption = False,
) -> None:
    """Every ingest run, item write and revert of a build, oldest first."""
    from mmsearch.builds.history import read_runs
    from mmsearch.workspace import open_collection

    with user_errors():
        _, folder = open_collection(home, collection)
        build_id = folder.require_build(build or _default_build(folder))
        entries = read_runs(folder, build_id)[-limit:]
    if as_json:
        print_json([e.as_dict() for e in entries])
    elif not entries:
        console.print(f"build {escape(build_id)} has no recorded runs")
    else:
        _print_runs(build_id, entries)


def runs_revert_command(
    collection: CollectionOption,
    run: Annotated[str, typer.Argument(help="The run to undo (see: mmsearch runs list).")],
    build: Annotated[
        str | None,
        typer.Option("--build", help="The run's build, when it is not the live one."),
    ] = None,
    yes: YesOption = False,
    home: HomeOption = None,
    as_json: JsonOption = False,
) -> None:
    """Bring the build back to the table version before RUN. Runs after it are undone
    too; they are listed first, and this revert can itself be reverted."""
    from mmsearch.commands.operator_audit import operator_act
    from mmsearch.config import load_settings
    from mmsearch.governance.audit import cli_actor
    from mmsearch.ingest.revert import plan_revert, revert_run

    settings = load_settings(home)
    try:
        plan = plan_revert(settings, collection, run, build_id=build)
        if not as_json:
            _print_plan(plan)
        if not yes and not typer.confirm("Revert?", default=False, err=True):
            raise MMSearchError("Not confirmed; nothing was reverted.")
        with operator_act(settings.home, "run.revert", collection=collection) as act:
            report = revert_run(settings, collection, run, cli_actor(), build_id=build)
            act.detail = f"build {report.build_id}: reverted {run} as {report.revert_id}"
            act.counts = {
                "restored": report.restored,
                "removed": report.removed,
                "changed": report.changed,
                "later_runs": len(report.later_runs),
            }
    except typer.Abort:
        raise fail(
            "Not confirmed; nothing was reverted (add --yes to skip the question)."
        ) from None
    except MMSearchError as exc:
        raise fail(str(exc)) from None
    if as_json:
        print_json(report.as_dict())
    else:
        _print_report(report)


def register(app: typer.Typer) -> None:
    _register_builds(app)
    _register_runs(app)
