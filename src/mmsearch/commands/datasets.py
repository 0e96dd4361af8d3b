"""``mmsearch datasets cranfield|emoji``: build benchmark catalogs, queries and judgments."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from mmsearch.terminal import console, print_json, user_errors

SourceArgument = Annotated[Path, typer.Argument(help="Folder holding the original files.")]
OutArgument = Annotated[Path, typer.Argument(help="Folder to write the benchmark into.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")]


def _done(out: Path, stats: dict, as_json: bool, next_steps: list[str]) -> None:
    if as_json:
        print_json({"out": str(out), **stats})
        return
    for key, value in stats.items():
        console.print(f"{key}: {value}", highlight=False)
    console.print("next:", highlight=False)
    for step in next_steps:
        console.print(f"  {step}", highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    datasets = typer.Typer(
        help="Build benchmark datasets (catalog, queries with dev/test split, qrels).",
        no_args_is_help=True,
    )
    app.add_typer(datasets, name="datasets")

    datasets.command("cranfield")(cranfield)
    datasets.command("emoji")(emoji)


def cranfield(
    source: SourceArgument,
    out: OutArgument,
    limit: Annotated[
        int | None,
        typer.Option(
            "--limit", min=1, help="Keep the first N queries and the documents they judge."
        ),
    ] = None,
    distractors: Annotated[
        int,
        typer.Option("--distractors", min=0, help="With --limit: unjudged documents to add."),
    ] = 100,
    as_json: JsonOption = False,
) -> None:
    """Cranfield (1,400 abstracts, 225 queries) as catalog.jsonl, queries*.jsonl, qrels.txt."""
    from mmsearch.datasets.cranfield import build_cranfield

    with user_errors():
        stats = build_cranfield(
            source, out, limit_queries=limit, extra_documents=distractors if limit else 0
        )
    _done(
        out,
        asdict(stats),
        as_json,
        [
            f"mmsearch ingest {out / 'catalog.jsonl'} --collection cranfield",
            f"mmsearch eval --collection cranfield --queries {out / 'queries.jsonl'} "
            f"--qrels {out / 'qrels.txt'} --out {out / 'results'}",
        ],
    )


def emoji(
    source: SourceArgument,
    out: OutArgument,
    vendor: Annotated[
        str, typer.Option("--vendor", help="Artist of the catalog images.")
    ] = "google",
    query_vendor: Annotated[
        str, typer.Option("--query-vendor", help="Artist of the image queries.")
    ] = "twitter",
    with_categories: Annotated[
        bool, typer.Option("--with-categories", help="Add category/subcategory attributes.")
    ] = False,
    with_keywords: Annotated[
        bool,
        typer.Option(
            "--with-keywords",
            help="Add a keywords attribute: the emoji-datasource short names as words "
            "(not the emojibase tags the text queries are made of).",
        ),
    ] = False,
    copy_images: Annotated[
        bool,
        typer.Option(
            "--copy-images/--reference-images",
            help="Copy images into OUT/images (default), or reference the originals by "
            "absolute path (ingest then needs MMSEARCH_IMAGE_ROOTS or --images-root).",
        ),
    ] = True,
    limit: Annotated[
        int | None, typer.Option("--limit", min=1, help="Keep the first N catalog images.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Emoji: one artist's images as catalog; tag (text) and other-artist (image) queries."""
    from mmsearch.datasets.emoji import build_emoji

    with user_errors():
        stats = build_emoji(
            source,
            out,
            vendor=vendor,
            query_vendor=query_vendor,
            with_categories=with_categories,
            with_keywords=with_keywords,
            copy_images=copy_images,
            limit=limit,
        )
    _done(
        out,
        asdict(stats),
        as_json,
        [
            f"mmsearch ingest {out / 'catalog.jsonl'} --collection emoji",
            f"mmsearch eval --collection emoji --queries {out / 'queries-text-test.jsonl'} "
            f"--qrels {out / 'qrels.txt'}",
            f"mmsearch eval --collection emoji --queries {out / 'queries-image-test.jsonl'} "
            f"--qrels {out / 'qrels.txt'}",
        ],
    )
