"""``mmsearch dupes``: clusters of near-duplicate items in a collection's live build."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from mmsearch.terminal import HomeOption, JsonOption, console, print_json, user_errors

if TYPE_CHECKING:
    from mmsearch.evaluation.duplicates import DuplicateReport


def find_duplicates(
    home: Path | None, collection: str, max_distance: int | None, min_cosine: float | None
) -> DuplicateReport:
    from mmsearch.config import load_settings
    from mmsearch.evaluation.duplicates import collection_duplicates
    from mmsearch.index.open import open_build_index
    from mmsearch.workspace import Workspace

    settings = load_settings(home)
    folder = Workspace(settings.home).collection(collection)
    manifest = folder.live_manifest()
    index = open_build_index(folder, manifest, settings)
    return collection_duplicates(
        index,
        max_distance=settings.dupe_max_distance if max_distance is None else max_distance,
        min_cosine=settings.dupe_min_cosine if min_cosine is None else min_cosine,
    )


def print_report(report: DuplicateReport, limit: int) -> None:
    confirm = f", image cosine ≥ {report.min_cosine:g}" if report.min_cosine is not None else ""
    console.print(
        f"{len(report.clusters)} duplicate clusters among {report.items} items "
        f"({report.images} images; pHash distance ≤ {report.max_distance}{confirm})",
        highlight=False,
    )
    if not report.clusters:
        return
    table = Table()
    for column in ("#", "kind", "items", "closest pair", "distance", "cosine"):
        table.add_column(column)
    for number, cluster in enumerate(report.clusters[:limit], start=1):
        best = cluster.pairs[0]
        table.add_row(
            str(number),
            cluster.kind,
            ", ".join(cluster.ids),
            f"{best.a}[{best.image_a}] ~ {best.b}[{best.image_b}]",
            str(best.distance),
            "-" if best.cosine is None else f"{best.cosine:.3f}",
        )
    console.print(table)
    if len(report.clusters) > limit:
        console.print(f"... and {len(report.clusters) - limit} more (use --json for all)")


def register(app: typer.Typer) -> None:
    app.command("dupes")(dupes)


def dupes(
    collection: Annotated[str, typer.Option("--collection", "-c", help="Collection name.")],
    max_distance: Annotated[
        int | None,
        typer.Option(
            "--max-distance",
            min=0,
            max=32,
            help="Largest pHash Hamming distance (of 64 bits) that counts as a duplicate.",
        ),
    ] = None,
    min_cosine: Annotated[
        float | None,
        typer.Option(
            "--min-cosine",
            min=-1.0,
            max=1.0,
            help="Image-vector cosine a pHash match must also reach (when vectors exist).",
        ),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Clusters to print.")] = 50,
    home: HomeOption = None,
    as_json: JsonOption = False,
) -> None:
    """List clusters of near-duplicate items (perceptual hash, confirmed by image vectors)."""
    with user_errors():
        report = find_duplicates(home, collection, max_distance, min_cosine)
    if as_json:
        print_json(report.as_dict())
        return
    print_report(report, limit)
