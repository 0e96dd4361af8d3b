"""``mmsearch collections``: what the workspace holds, one line per collection."""

from __future__ import annotations

from typing import Any

import typer

from mmsearch.commands.search import load_settings
from mmsearch.terminal import HomeOption, JsonOption, console, errors, print_json, user_errors


def register(app: typer.Typer) -> None:
    app.command()(collections)


def collections(home: HomeOption = None, as_json: JsonOption = False) -> None:
    """List collections with item counts, build time and encoders."""
    from rich.table import Table

    from mmsearch.config import home_origin
    from mmsearch.workspace import Workspace

    settings = load_settings(home)
    # stderr, so that --json stays one JSON document on stdout
    errors.print(
        f"workspace: {settings.home} ({home_origin(home, settings)[1]})",
        highlight=False,
        soft_wrap=True,
    )
    workspace = Workspace(settings.home)
    rows: list[dict[str, Any]] = []
    specs: dict[str, dict[str, str]] = {}  # the table's encoders: without their versions
    with user_errors():
        for name in workspace.collection_names():
            folder = workspace.collection(name)
            live = folder.alias("live")
            manifest = folder.manifest(live) if live else None
            specs[name] = {r: e.spec for r, e in (manifest.encoders if manifest else {}).items()}
            rows.append(
                {
                    "name": name,
                    "live_build": live,
                    # builds whose first ingest was interrupted: resumed by the same command
                    "unfinished_builds": folder.unfinished_builds(),
                    "items": manifest.counts.items if manifest else 0,
                    "built_at": manifest.created_at if manifest else None,
                    "updated_at": manifest.updated_at if manifest else None,
                    "encoders": {
                        role: f"{e.spec} ({e.version[:48]})"
                        for role, e in (manifest.encoders if manifest else {}).items()
                    },
                }
            )
    if as_json:
        print_json(rows)
        return
    if not rows:
        console.print(f"no collections in {settings.home}")
        return
    # Readable at 80 columns: the live build id whole (it is typed into other commands)
    # with its last update under it (the id starts with its creation time), encoders
    # without their versions (in --json), long cells wrapped rather than cut.
    table = Table(title=f"collections in {settings.home}")
    table.add_column("name", overflow="fold")
    table.add_column("items", justify="right")
    table.add_column("live build", no_wrap=True)
    table.add_column("encoders", overflow="fold")
    for row in rows:
        live = row["live_build"] or "-"
        if row["updated_at"]:
            live += f"\nupdated {_time(row['updated_at'])}"
        if row["unfinished_builds"]:
            live += "\n(unfinished build:\nre-run its ingest)"
        table.add_row(
            row["name"],
            str(row["items"]),
            live,
            "\n".join(f"{role}: {spec}" for role, spec in specs[row["name"]].items()),
        )
    console.print(table)


def _time(value: str) -> str:
    """An ISO timestamp to the minute, e.g. ``2026-12-07 11:45``: the seconds are in --json."""
    return value[:16].replace("T", " ")
