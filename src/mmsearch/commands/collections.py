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
    with user_errors():
        for name in workspace.collection_names():
            folder = workspace.collection(name)
            live = folder.alias("live")
            manifest = folder.manifest(live) if live else None
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
    table = Table(title=f"collections in {settings.home}")
    for column in ("name", "items", "live build", "built", "updated", "encoders"):
        table.add_column(column)
    for row in rows:
        encoders = "\n".join(f"{role}: {spec}" for role, spec in row["encoders"].items())
        table.add_row(
            row["name"],
            str(row["items"]),
            (row["live_build"] or "-")
            + ("\n(unfinished build: re-run its ingest)" if row["unfinished_builds"] else ""),
            row["built_at"] or "-",
            row["updated_at"] or "-",
            encoders,
        )
    console.print(table)
