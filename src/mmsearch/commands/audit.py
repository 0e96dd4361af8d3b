"""``mmsearch audit verify|show|anchor``: check, read and anchor the hash-chained audit trail.

``verify`` also compares the log with the workspace's anchor (``<home>/auth/audit-anchor.json``),
so an emptied or removed log fails once events were recorded; ``anchor FILE`` exports
the head for safekeeping outside the workspace, and ``verify --anchor FILE`` checks the
log against such an export, which a person who can rewrite the workspace cannot reach.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from mmsearch.errors import MMSearchError
from mmsearch.terminal import HomeOption, JsonOption, console, errors, print_json, user_errors


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """``24h`` / ``7d`` (that long ago) or an ISO date or time (UTC unless it says)."""
    from mmsearch.governance.audit import AuditError
    from mmsearch.governance.keys import parse_duration

    try:
        return (now or datetime.now(UTC)) - parse_duration(text)
    except MMSearchError:
        pass
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise AuditError(
            f"Cannot read --since {text!r}: give a date (2026-01-31), a time "
            "(2026-01-31T08:00) or a span back from now (90m, 24h, 7d, 1w)."
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _summary(event: dict[str, Any]) -> str:
    parts = []
    if event.get("detail"):
        parts.append(str(event["detail"]))
    if event.get("counts"):
        parts.append(", ".join(f"{k}={v}" for k, v in event["counts"].items()))
    if event.get("items"):
        shown = ", ".join(event["items"][:5])
        total = event.get("item_count") or len(event["items"])
        parts.append(f"items: {shown}" + (f" (+{total - 5})" if total > 5 else ""))
    return "; ".join(parts) or "-"


def register(app: typer.Typer) -> None:
    audit_app = typer.Typer(help="The audit trail of writes and admin acts (verify, show, anchor).")
    app.add_typer(audit_app, name="audit")

    audit_app.command("verify")(verify)
    audit_app.command("anchor")(export_anchor)
    audit_app.command("show")(show)


def verify(
    anchor: Annotated[
        Path | None,
        typer.Option(
            "--anchor",
            help="Also check the log against an anchor exported by `mmsearch audit "
            "anchor FILE`: the log must still reach its seq with the same hash.",
        ),
    ] = None,
    home: HomeOption = None,
    as_json: JsonOption = False,
) -> None:
    """Check the hash chain, the head and the workspace's anchor; exit 1 and list the
    lines when the log was tampered with.

    An emptied or removed log fails once the workspace has recorded events (its
    anchor, auth/audit-anchor.json, remembers how many). Someone who can rewrite the
    whole workspace can rewrite that too: keep an exported anchor elsewhere and pass
    it with --anchor.
    """
    from mmsearch.config import load_settings
    from mmsearch.governance.audit import AuditLog, load_anchor

    log = AuditLog(load_settings(home).home)
    with user_errors():
        exported = load_anchor(anchor) if anchor is not None else None
    report = log.verify(exported)
    if as_json:
        print_json(report.as_dict())
    elif report.ok:
        console.print(
            f"[green]audit log intact[/]: {report.events} events, chain and head agree",
            highlight=False,
        )
    else:
        errors.print(
            f"[bold red]audit log damaged[/]: {len(report.problems)} problem(s) in "
            f"{report.lines} lines ({log.path})",
            highlight=False,
        )
        for problem in report.problems:
            if problem.line:
                where = f"line {problem.line}"
            elif problem.kind == "anchor":
                where = log.anchor_path.name
            else:
                where = log.head_path.name
            errors.print(
                f"  {where}: [red]{problem.kind}[/] — {escape(problem.detail)}",
                highlight=False,
            )
    if not report.ok:
        raise typer.Exit(1)


def export_anchor(
    file: Annotated[Path, typer.Argument(help="Where to write the anchor (JSON, mode 0600).")],
    home: HomeOption = None,
    as_json: JsonOption = False,
) -> None:
    """Export the log's head (seq and hash of the last event) to FILE for safekeeping.

    Keep FILE somewhere the workspace's writers cannot change (another machine, a
    ticket, a backup); later, `mmsearch audit verify --anchor FILE` fails if the log
    was cut short or rewritten since. Refused while the log does not verify.
    """
    from mmsearch.config import load_settings
    from mmsearch.governance.audit import AuditLog

    with user_errors():
        anchor = AuditLog(load_settings(home).home).export_anchor(file)
    if as_json:
        print_json(anchor)
    else:
        console.print(
            f"anchor written to {escape(str(file))}: seq {anchor['seq']}, "
            f"sha256 {anchor['sha256'][:16]}…",
            highlight=False,
        )


def show(
    since: Annotated[
        str | None,
        typer.Option("--since", help="From a date (2026-01-01) or a span ago (24h, 7d)."),
    ] = None,
    collection: Annotated[
        str | None, typer.Option("--collection", "-c", help="Only this collection's events.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Newest events to show.")] = 50,
    home: HomeOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show the newest audit events (oldest of them first)."""
    from mmsearch.config import load_settings
    from mmsearch.governance.audit import AuditLog

    with user_errors():
        start = parse_since(since) if since else None
        events = AuditLog(load_settings(home).home).read(start, collection, limit)
    if as_json:
        print_json(events)
        return
    if not events:
        console.print("no audit events match")
        return
    table = Table()
    for column in ("seq", "time (UTC)", "key", "action"):
        table.add_column(column, no_wrap=True)
    for column in ("collection", "outcome", "detail"):
        table.add_column(column)
    for event in events:
        outcome = event.get("outcome", "?")
        colour = "green" if outcome == "ok" else "red"
        table.add_row(
            str(event["seq"]),
            str(event.get("time", "-"))[:19].replace("T", " "),
            escape(str(event.get("key_id", "-"))),
            escape(str(event.get("action", "-"))),
            escape(event.get("collection") or "-"),
            f"[{colour}]{escape(str(outcome))}[/]",
            escape(_summary(event)),
        )
    console.print(table)
