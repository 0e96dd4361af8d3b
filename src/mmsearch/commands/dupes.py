"""``mmsearch dupes``: clusters of duplicate items in a collection's live build.

The build keeps where each image came from and its sha256, not its pixels. Items of
a collection that enforces a moderation policy carry their images' fingerprints,
computed at ingest (``image_fingerprints``), and those are used as they are; the
other items' images are read again (``ingest.stored_images``: the same limits as an
ingest, the sha256 checked, URLs from the workspace cache) and fingerprinted here. An
image that cannot be read again is listed, not fatal. (A fingerprint made at ingest
saw the image as decoded for the encoders, at most ``ingest_image_max_side`` on a
side; PDQ is the same, and only "same pixels" of a larger picture can differ from one
read back.)
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from mmsearch.terminal import HomeOption, JsonOption, console, print_json, user_errors

if TYPE_CHECKING:
    from mmsearch.evaluation.duplicates import DuplicateReport


def find_duplicates(
    home: Path | None, collection: str, strictness: str, max_distance: int | None
) -> DuplicateReport:
    import numpy as np

    from mmsearch.config import load_settings
    from mmsearch.errors import ImageError
    from mmsearch.evaluation.duplicates import (
        DuplicateReport,
        featureless_images,
        find_clusters,
        near_pair_choice,
    )
    from mmsearch.index.open import open_build_index
    from mmsearch.ingest.stored_images import StoredImages
    from mmsearch.media.images import ImageLimits
    from mmsearch.moderation.decisions import FINGERPRINTS_COLUMN, read_fingerprints
    from mmsearch.moderation.fingerprints import (
        MAX_COLOUR_DIFFERENCE,
        Fingerprint,
        fingerprint_bytes,
    )
    from mmsearch.moderation.fingerprints import strictness as strictness_level
    from mmsearch.workspace import Workspace

    settings = load_settings(home)
    level = strictness_level(strictness)
    folder = Workspace(settings.home).collection(collection)
    index = open_build_index(folder, folder.live_manifest(), settings)
    limits = ImageLimits(settings.max_image_bytes, settings.max_image_pixels)
    columns = ["id", "images", "image_sha256"]
    if FINGERPRINTS_COLUMN in index.schema.names:
        columns.append(FINGERPRINTS_COLUMN)
    table = index.scan(columns)
    ids: list[str] = table["id"].to_pylist()
    image_item: list[int] = []
    positions: list[int] = []
    prints: list[Fingerprint] = []
    unreadable: list[str] = []
    stored = StoredImages(settings)
    try:
        for item, row in enumerate(table.to_pylist()):
            kept = read_fingerprints(row.get(FINGERPRINTS_COLUMN))
            # Fingerprints stored before the colour layout or the visual descriptor (of
            # this revision) existed are made again.
            if (
                kept is not None
                and len(kept) == len(row.get("images") or [])
                and all(p.colour_layout and p.visual_vector() is not None for p in kept)
            ):
                prints.extend(kept)
                image_item.extend([item] * len(kept))
                positions.extend(range(len(kept)))
                continue
            try:
                images = stored.load(row)
            except ImageError as exc:
                unreadable.append(f"{row['id']}: {exc}")
                continue
            for position, data in enumerate(images):
                try:
                    prints.append(
                        fingerprint_bytes(data, source=f"{row['id']}[{position}]", limits=limits)
                    )
                except ImageError as exc:
                    unreadable.append(str(exc))
                    continue
                image_item.append(item)
                positions.append(position)
    finally:
        stored.close()
    threshold = level.max_distance if max_distance is None else max_distance
    # A distance given by hand was not calibrated with a visual threshold: PDQ alone.
    min_cosine = level.min_visual_cosine if max_distance is None else None
    choice = near_pair_choice(prints, threshold)
    clusters = find_clusters(
        ids,
        np.asarray(image_item, dtype=np.int64),
        np.asarray(positions, dtype=np.int64),
        prints,
        max_distance=threshold,
        min_visual_cosine=min_cosine,
        near_pairs=choice.method,
    )
    return DuplicateReport(
        images=len(prints),
        items=len(ids),
        max_distance=threshold,
        min_visual_cosine=min_cosine,
        max_colour_difference=MAX_COLOUR_DIFFERENCE,
        strictness=level.name if max_distance is None else None,
        featureless=featureless_images(prints),
        unreadable=unreadable,
        clusters=clusters,
        near_pairs=choice.describe(),
    )


def criteria(report: DuplicateReport) -> str:
    """What the report's "exact" and "near" mean, with the threshold actually used."""
    source = (
        f"strictness {report.strictness}"
        if report.strictness is not None
        else "--max-distance given by hand"
    )
    visual = (
        f" or visual descriptor cosine ≥ {report.min_visual_cosine} (either mirror)"
        if report.min_visual_cosine is not None
        else ""
    )
    return (
        "exact = same bytes or same decoded pixels (cropped to content); "
        f"near = (PDQ distance ≤ {report.max_distance} of 256 bits over the eight "
        f"rotations and flips{visual}; {source}) and colours within "
        f"{report.max_colour_difference} "
        "cell by cell on an 8x8 grid; each cluster is a leader and the items that "
        "match it directly"
    )


def print_report(report: DuplicateReport, limit: int) -> None:
    console.print(
        f"{len(report.clusters)} duplicate clusters among {report.items} items "
        f"({report.images} images). {criteria(report)}",
        highlight=False,
    )
    if report.featureless:
        console.print(
            f"{report.featureless} images are too featureless for PDQ (quality < 50): "
            "they match only exactly",
            highlight=False,
        )
    console.print(report.near_pairs, highlight=False)
    for message in report.unreadable[:limit]:
        console.print(f"not compared: {message}", highlight=False)
    if not report.clusters:
        return
    table = Table()
    for column in ("#", "kind", "items", "closest pair", "match", "PDQ distance", "cosine"):
        table.add_column(column)
    for number, cluster in enumerate(report.clusters[:limit], start=1):
        best = cluster.pairs[0]
        how = best.kind if best.variant == "original" else f"{best.kind} ({best.variant})"
        if best.method == "visual":
            how = f"{best.kind} (visual)"
        table.add_row(
            str(number),
            cluster.kind,
            ", ".join(cluster.ids),
            f"{best.a}[{best.image_a}] ~ {best.b}[{best.image_b}]",
            how,
            str(best.distance),
            "" if best.cosine is None else f"{best.cosine:.4f}",
        )
    console.print(table)
    if len(report.clusters) > limit:
        console.print(f"... and {len(report.clusters) - limit} more (use --json for all)")


def register(app: typer.Typer) -> None:
    app.command("dupes")(dupes)


def dupes(
    collection: Annotated[str, typer.Option("--collection", "-c", help="Collection name.")],
    strictness: Annotated[
        str,
        typer.Option(
            "--strictness",
            help="Near-match threshold, calibrated for a false-match rate: strict (0.01%), "
            "standard (0.1%) or loose (1%). strict is the default: the wider levels group "
            "look-alikes of different pictures. Near pairs are exact where that is cheap "
            "(few images, a narrow radius) and approximate beyond; the report says which.",
        ),
    ] = "strict",
    max_distance: Annotated[
        int | None,
        typer.Option(
            "--max-distance",
            min=0,
            max=128,
            help="Largest PDQ distance (of 256 bits) that is a near match; overrides "
            "--strictness. 0 lists exact duplicates and identical PDQ hashes only.",
        ),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Clusters to print.")] = 50,
    home: HomeOption = None,
    as_json: JsonOption = False,
) -> None:
    """List clusters of duplicate items: exact (same bytes or pixels) and near (PDQ or
    the visual descriptor)."""
    with user_errors():
        report = find_duplicates(home, collection, strictness, max_distance)
    if as_json:
        print_json({"criteria": criteria(report), **report.as_dict()})
        return
    print_report(report, limit)
