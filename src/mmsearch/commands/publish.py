"""``mmsearch publish``, ``promote`` and ``gate``: builds go live through their gate.

``publish`` and ``promote`` evaluate the gate (``--gate FILE`` or the collection's
default), print live and candidate side by side, and switch only on a pass; a refusal
exits with code 1 (2 is for errors), so a deploy script can tell "worse build" from
"bad command". Every attempt lands in the audit trail, refusals included.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
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
    from mmsearch.builds.gate_report import GateReport, MetricRow
    from mmsearch.builds.publishing import GateFailed, PublishOutcome


REFUSED = 1  # the gate said no: not a usage error
GateOption = Annotated[
    Path | None,
    typer.Option("--gate", help="Gate file (TOML); default: the collection's default gate."),
]
ForceOption = Annotated[
    bool, typer.Option("--force", help="Publish even if the gate fails (needs --reason).")
]
ReasonOption = Annotated[
    str | None, typer.Option("--reason", help="Why, for the switch log and the manifest.")
]


def _cell(row: MetricRow, value: float | None) -> str:
    if value is None:
        return "-"
    if row.unit == "ms":
        return f"{value:.1f} ms"
    if row.unit in ("items", "found"):
        return f"{value:.0f}"
    return f"{value:.4f}"


def _delta(row: MetricRow) -> str:
    delta = row.delta
    if delta is None:
        return "-"
    text = f"{delta:+.1f}" if row.unit == "ms" else f"{delta:+.0f}" if row.unit else f"{delta:+.4f}"
    return text + (f" (p={row.p_value:.3g})" if row.p_value is not None else "")


def print_report(report: GateReport) -> None:
    live = escape(report.live_build or "none")
    table = Table(title=f"gate: {escape(report.candidate_build)} against live {live}")
    for column in ("metric", "live", "candidate", "delta", "check", "result"):
        table.add_column(column, justify="left" if column in ("metric", "check") else "right")
    for row in report.metrics:
        result = "" if row.passed is None else "[green]pass[/]" if row.passed else "[red]fail[/]"
        table.add_row(
            escape(row.metric),
            _cell(row, row.live),
            _cell(row, row.candidate),
            _delta(row),
            escape(row.check),
            result,
        )
    console.print(table)
    for note in report.notes:
        console.print(f"note: {escape(note)}", highlight=False)
    colour = "green" if report.passed else "red"
    console.print(
        f"verdict: [bold {colour}]{report.verdict}[/] in {report.timings_s.get('total', 0):.1f} s"
        + (f"; report: {escape(report.report_file)}" if report.report_file else ""),
        highlight=False,
    )
    for reason in report.reasons:
        console.print(f"  [red]✗[/] {escape(reason)}", highlight=False)


def _published(outcome: PublishOutcome, as_json: bool) -> None:
    if as_json:
        print_json(outcome.as_dict())
        return
    if outcome.report is not None:
        print_report(outcome.report)
    elif outcome.gate is None:
        errors.print("[yellow]note:[/] no gate: the collection has no default gate and none given")
    event = outcome.event
    console.print(
        f"[green]{event.action}[/] {escape(outcome.build_id)}: live is now "
        f"{escape(str(event.after.get('live')))}, previous "
        f"{escape(str(event.after.get('previous')))}"
        + (" [bold yellow](forced past a failing gate)[/]" if outcome.forced else ""),
        highlight=False,
    )


def _refused(exc: GateFailed, collection: str, build: str, as_json: bool) -> typer.Exit:
    if as_json:
        data: dict[str, Any] = {
            "collection": collection,
            "build_id": build,
            "published": False,
            "error": str(exc),
            "reasons": exc.reasons,
            "report": exc.report.as_dict() if exc.report else None,
        }
        print_json(data)
        return typer.Exit(REFUSED)
    if exc.report is not None:
        print_report(exc.report)
    return fail(str(exc), REFUSED)


@contextmanager
def gate_progress(quiet: bool) -> Iterator[Callable[[str], None] | None]:
    """A spinner on stderr naming the stage the gate is in (none in --json mode)."""
    if quiet:
        yield None
        return
    with errors.status("evaluating the gate") as status:
        yield lambda stage: status.update(f"evaluating the gate: {stage}")


def register(app: typer.Typer) -> None:
    app.command("publish")(publish_command)
    app.command("promote")(promote_command)

    gate_app = typer.Typer(help="A collection's publish gate: set, show, clear, check.")
    app.add_typer(gate_app, name="gate")

    gate_app.command("set")(gate_set)
    gate_app.command("show")(gate_show)
    gate_app.command("clear")(gate_clear)
    gate_app.command("check")(gate_check)


def publish_command(
    collection: CollectionOption,
    build: Annotated[str, typer.Argument(help="The build id to make live.")],
    gate: GateOption = None,
    force: ForceOption = False,
    reason: ReasonOption = None,
    home: HomeOption = None,
    as_json: JsonOption = False,
) -> None:
    """Make a build live if it passes its gate (judged queries, canonical queries,
    item counts, latency, each against live); exit 1 when the gate refuses it."""
    from mmsearch.builds.publishing import GateFailed, gated_publish
    from mmsearch.commands.operator_audit import operator_act
    from mmsearch.config import load_settings
    from mmsearch.governance.audit import cli_actor

    settings = load_settings(home)
    try:
        with operator_act(settings.home, "build.publish", collection=collection) as act:
            with gate_progress(as_json) as progress:
                outcome = gated_publish(
                    settings,
                    collection,
                    build,
                    cli_actor(),
                    gate_path=gate,
                    force=force,
                    reason=reason,
                    progress=progress,
                )
            act.detail = _detail(outcome)
    except GateFailed as exc:
        raise _refused(exc, collection, build, as_json) from None
    except MMSearchError as exc:
        raise fail(str(exc)) from None
    _published(outcome, as_json)


def promote_command(
    collection: CollectionOption,
    gate: GateOption = None,
    force: ForceOption = False,
    reason: ReasonOption = None,
    home: HomeOption = None,
    as_json: JsonOption = False,
) -> None:
    """Make the running canary live, through the same gate as 'mmsearch publish'."""
    from mmsearch.builds.publishing import GateFailed, promote
    from mmsearch.commands.operator_audit import operator_act
    from mmsearch.config import load_settings
    from mmsearch.governance.audit import cli_actor

    settings = load_settings(home)
    try:
        with operator_act(settings.home, "build.promote", collection=collection) as act:
            with gate_progress(as_json) as progress:
                outcome = promote(
                    settings,
                    collection,
                    cli_actor(),
                    gate_path=gate,
                    force=force,
                    reason=reason,
                    progress=progress,
                )
            act.detail = _detail(outcome)
    except GateFailed as exc:
        build = exc.report.candidate_build if exc.report else "canary"
        raise _refused(exc, collection, build, as_json) from None
    except MMSearchError as exc:
        raise fail(str(exc)) from None
    _published(outcome, as_json)


def gate_set(
    collection: CollectionOption,
    file: Annotated[Path, typer.Argument(help="Gate file (TOML).")],
    home: HomeOption = None,
) -> None:
    """Make FILE the collection's default gate; it and the files it names are copied
    into the collection, so every later publish (CLI or API) is gated by it."""
    from mmsearch.builds.publishing import set_default_gate
    from mmsearch.commands.operator_audit import operator_act
    from mmsearch.config import load_settings
    from mmsearch.governance.audit import cli_actor
    from mmsearch.workspace import Workspace

    settings = load_settings(home)
    with user_errors(), operator_act(settings.home, "gate.set", collection=collection) as act:
        folder = Workspace(settings.home).collection(collection)
        gate = set_default_gate(folder, file, cli_actor())
        act.detail = f"from {file}"
    console.print(f"default gate of '{escape(collection)}' set: {escape(str(gate.path))}")


def gate_show(
    collection: CollectionOption,
    build: Annotated[
        str | None, typer.Option("--build", help="Show this build's latest gate report.")
    ] = None,
    home: HomeOption = None,
    as_json: JsonOption = False,
) -> None:
    """The collection's default gate, or with --build the build's latest gate report."""
    from mmsearch.builds.gate_report import latest_gate_report
    from mmsearch.builds.publishing import default_gate_info
    from mmsearch.workspace import open_collection

    with user_errors():
        _, folder = open_collection(home, collection)
        if build is not None:
            report = latest_gate_report(folder, build)
            if report is None:
                raise MMSearchError(
                    f"No gate ran on build {build} of '{collection}' yet; run: "
                    f"mmsearch gate check -c {collection} {build}"
                )
            if as_json:
                print_json(report.as_dict())
            else:
                print_report(report)
            return
        info = default_gate_info(folder)
    if as_json:
        print_json(info)
    elif info is None:
        console.print(f"'{escape(collection)}' has no default gate; publishes are ungated.")
    else:
        path = folder.folder / info["path"]
        console.print(
            f"default gate: {escape(str(path))} (set {info['set_at']} by "
            f"{escape(info['set_by'])} from {escape(info['source'])})",
            highlight=False,
        )
        console.print(escape(path.read_text(encoding="utf-8")), highlight=False)


def gate_clear(collection: CollectionOption, home: HomeOption = None) -> None:
    """Remove the collection's default gate (publishes are then ungated)."""
    from mmsearch.builds.publishing import clear_default_gate
    from mmsearch.commands.operator_audit import operator_act
    from mmsearch.config import load_settings
    from mmsearch.workspace import Workspace

    settings = load_settings(home)
    with user_errors(), operator_act(settings.home, "gate.clear", collection=collection):
        cleared = clear_default_gate(Workspace(settings.home).collection(collection))
    console.print("default gate cleared." if cleared else "there was no default gate.")


def gate_check(
    collection: CollectionOption,
    build: Annotated[str, typer.Argument(help="The build id to evaluate.")],
    gate: GateOption = None,
    home: HomeOption = None,
    as_json: JsonOption = False,
) -> None:
    """Evaluate a build's gate against live and store the report; switch nothing.
    Exit 1 when it fails."""
    from mmsearch.builds.gate import evaluate_gate
    from mmsearch.builds.publishing import resolve_gate
    from mmsearch.workspace import open_collection

    with user_errors():
        settings, folder = open_collection(home, collection)
        chosen, _ = resolve_gate(folder, gate)
        if chosen is None:
            raise MMSearchError(f"'{collection}' has no default gate; give one with --gate FILE.")
        with gate_progress(as_json) as progress:
            report = evaluate_gate(settings, collection, build, chosen, progress=progress)
    if as_json:
        print_json(report.as_dict())
    else:
        print_report(report)
    if not report.passed:
        raise typer.Exit(REFUSED)


def _detail(outcome: PublishOutcome) -> str:
    verdict = outcome.report.verdict if outcome.report else "ungated"
    return f"{outcome.build_id}: gate {verdict}" + (" (forced)" if outcome.forced else "")
