"""``mmsearch demo``: the bundled emoji sample, ingested and searched (``demo_flow``)."""

from __future__ import annotations

from typing import Annotated

import typer

from mmsearch.commands.search import load_settings
from mmsearch.terminal import HomeOption, console, errors, user_errors


def register(app: typer.Typer) -> None:
    app.command()(demo)


def demo(
    collection: Annotated[str, typer.Option("--collection", "-c")] = "demo",
    home: HomeOption = None,
) -> None:
    """Build a collection from the bundled emoji sample and run a few searches on it."""
    from mmsearch.commands.demo_flow import run_demo

    with user_errors():
        run_demo(load_settings(home), collection, console=console, progress_console=errors)
