"""``mmsearch bench``: query latency per search mode on an existing collection."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn
from rich.table import Table

from mmsearch.terminal import HomeOption, JsonOption, console, errors, print_json, user_errors


def register(app: typer.Typer) -> None:
    app.command("bench")(bench)


def bench(
    collection: Annotated[str, typer.Option("--collection", "-c", help="Collection name.")],
    queries: Annotated[
        int, typer.Option("--queries", min=1, max=100_000, help="Queries per mode.")
    ] = 200,
    k: Annotated[int, typer.Option("--k", min=1, max=1000)] = 10,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the query sample.")] = 0,
    home: HomeOption = None,
    as_json: JsonOption = False,
) -> None:
    """Measure search latency (p50/p95/p99) per mode, in process, and peak memory."""
    from mmsearch.config import load_settings
    from mmsearch.evaluation.latency import measure_latency

    settings = load_settings(home)
    with (
        user_errors(),
        Progress(
            "bench",
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=errors,
            disable=as_json,
        ) as progress,
    ):
        task = progress.add_task("bench", total=None)
        result = measure_latency(
            settings,
            collection,
            queries=queries,
            k=k,
            seed=seed,
            progress=lambda n: progress.advance(task, n),
        )
    if as_json:
        print_json(result)
        return
    table = Table(title=f"search latency: {collection} ({result['items']:,} items, k={k}) in ms")
    for column in ("mode", "queries", "p50", "p95", "p99", "mean"):
        table.add_column(column, justify="left" if column == "mode" else "right")
    for mode, stats in result["modes"].items():
        table.add_row(
            mode,
            str(int(stats["count"])),
            *(f"{stats[key]:.2f}" for key in ("p50", "p95", "p99", "mean")),
        )
    console.print(table)
    console.print(f"peak memory (RSS): {result['peak_rss_mb']:.0f} MB", highlight=False)
