"""``mmsearch canary`` and ``mmsearch rollback``: a share of searches on another build,
its guards and its figures beside live, and the way back.

``canary`` takes a build id to start (or re-share) a canary, or one of the words
``status``, ``stop`` and ``guards``. A running service picks every switch up on its
next request; nothing needs a restart.
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
    print_json,
    user_errors,
)

if TYPE_CHECKING:
    from mmsearch.builds.canary import CanaryGuards
    from mmsearch.builds.lifecycle import SwitchEvent
    from mmsearch.workspace import CollectionDir


# The audit action of each word; any other target is a build id to canary.
ACTIONS = {"stop": "build.canary_stop", "guards": "build.canary_guards"}


def _print_event(event: SwitchEvent, as_json: bool) -> None:
    if as_json:
        print_json(event.__dict__)
        return
    console.print(
        f"[green]{event.action}[/] {escape(event.build_id or '-')}: live is now "
        f"{escape(str(event.after.get('live')))}"
        + (
            f", canary {escape(str(event.after['canary']))} at {event.after['canary_percent']:g}%"
            if event.after.get("canary")
            else ""
        )
    )


def _set_guards(folder: CollectionDir, settings: list[str]) -> CanaryGuards:
    """Apply NAME=VALUE pairs over the collection's current guards."""
    from mmsearch.builds.canary import CanaryGuards

    current = CanaryGuards.of(folder.state()).model_dump()
    for pair in settings:
        name, sep, value = pair.partition("=")
        if not sep or name.strip() not in current:
            raise MMSearchError(
                f"Cannot read --set {pair!r}: use NAME=VALUE with NAME one of {', '.join(current)}."
            )
        current[name.strip()] = value.strip()
    guards = CanaryGuards.model_validate(current)
    guards.store(folder)
    return guards


def _number(value: float | None, pattern: str) -> str:
    return "-" if value is None else pattern.format(value)


def _print_status(report: dict[str, Any]) -> None:
    canary = report["canary"]
    if canary is None:
        console.print(f"No canary runs in '{escape(report['collection'])}'.")
    else:
        console.print(
            f"Canary [bold]{escape(canary['build_id'])}[/] answers {canary['percent']:g}% "
            f"of searches since {canary['started_at']} (live: {escape(str(report['live']))})."
        )
    builds = report.get("builds") or []
    if builds:
        table = Table(title="Since the canary started (query and click logs)")
        for column in ("build", "role", "searches", "p50 ms", "p95 ms", "zero", "fallbacks"):
            table.add_column(column, justify="left" if column in ("build", "role") else "right")
        table.add_column("clicks", justify="right")
        table.add_column("CTR", justify="right")
        table.add_column("MRR", justify="right")
        for row in builds:
            table.add_row(
                escape(row["build_id"]),
                row["role"],
                str(row["queries"]),
                _number(row["latency_p50"], "{:.1f}"),
                _number(row["latency_p95"], "{:.1f}"),
                _number(row["zero_result_rate"], "{:.1%}"),
                str(row["fallbacks"]),
                str(row["clicks"]),
                _number(row["ctr_at_k"], "{:.2%}"),
                _number(row["clicked_mrr"], "{:.3f}"),
            )
        console.print(table)
    if report.get("ctr_p_value") is not None:
        console.print(
            f"CTR difference (canary - live): p = {report['ctr_p_value']:.4f} "
            f"({report['ctr_test']})"
        )
    guards = ", ".join(f"{k}={v}" for k, v in report["guards"].items())
    console.print(f"Guards: {guards}")
    for event in report["switches"][-5:]:
        who = "guard" if event.get("automatic") else event.get("actor")
        console.print(
            f"  {event['at']} {event['action']} {escape(str(event.get('build_id')))} "
            f"by {escape(str(who))}"
            + (f": {escape(event['reason'])}" if event.get("reason") else "")
        )


def register(app: typer.Typer) -> None:
    app.command("canary")(canary)
    app.command("rollback")(rollback_command)


def canary(
    collection: CollectionOption,
    target: Annotated[
        str, typer.Argument(help="A build id to canary, or: status, stop, guards.")
    ] = "status",
    percent: Annotated[
        float | None,
        typer.Option("--percent", min=0.01, max=100.0, help="Share of searches (0.01-100)."),
    ] = None,
    guard: Annotated[
        list[str] | None,
        typer.Option("--set", help="With 'guards': NAME=VALUE, e.g. max_p95_ratio=1.5."),
    ] = None,
    home: HomeOption = None,
    as_json: JsonOption = False,
) -> None:
    """Answer a share of searches with another build beside live, and watch it.

    Rollback guards (zero results, p95, CTR, encoder failures) switch a failing
    canary off by themselves; 'mmsearch promote' makes it live."""
    from mmsearch.builds.canary import CanaryGuards
    from mmsearch.builds.canary_report import canary_report
    from mmsearch.builds.lifecycle import start_canary, stop_canary
    from mmsearch.commands.operator_audit import operator_act
    from mmsearch.governance.audit import cli_actor
    from mmsearch.workspace import open_collection

    with user_errors():
        settings, folder = open_collection(home, collection)
        if target == "status":
            report = canary_report(settings.home, folder)
            if as_json:
                print_json(report)
            else:
                _print_status(report)
            return
        action = ACTIONS.get(target, "build.canary_start")
        with operator_act(settings.home, action, collection=collection) as act:
            if target == "stop":
                event = stop_canary(folder, cli_actor(), "stopped by the operator")
                if event is None:
                    console.print("No canary was running.")
                else:
                    _print_event(event, as_json)
            elif target == "guards":
                guards = _set_guards(folder, guard or []) if guard else None
                guards = guards or CanaryGuards.of(folder.state())
                act.detail = guards.model_dump_json()
                console.print_json(guards.model_dump_json())
            else:
                if percent is None:
                    raise MMSearchError("Give the canary's share: --percent P (e.g. 5).")
                act.detail = f"{target}: {percent:g}%"
                _print_event(start_canary(folder, target, percent, cli_actor()), as_json)


def rollback_command(
    collection: CollectionOption,
    reason: Annotated[str | None, typer.Option("--reason", help="Why, for the log.")] = None,
    home: HomeOption = None,
    as_json: JsonOption = False,
) -> None:
    """Point live back at the previous build at once (a second rollback undoes it)."""
    from mmsearch.builds.lifecycle import canary_of, rollback
    from mmsearch.commands.operator_audit import operator_act
    from mmsearch.governance.audit import cli_actor
    from mmsearch.workspace import open_collection

    with user_errors():
        settings, folder = open_collection(home, collection)
        was_canary = canary_of(folder.state())
        with operator_act(settings.home, "build.rollback", collection=collection) as act:
            event = rollback(folder, cli_actor(), reason)
            act.detail = f"{event.build_id}: {reason or ''}".rstrip(": ")
    _print_event(event, as_json)
    if was_canary is not None and not as_json:
        errors.print(f"The canary {escape(was_canary.build_id)} was stopped too.")
