"""``mmsearch tune``: learn a collection's default fusion from judgments."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from mmsearch.terminal import console, errors, print_json, progress_bar, user_errors

if TYPE_CHECKING:
    from mmsearch.ranking.tuning import TunedFusion


def register(app: typer.Typer) -> None:
    app.command("tune")(tune_command)


def tune_command(
    collection: Annotated[str, typer.Option("--collection", "-c", help="Collection name.")],
    queries: Annotated[Path, typer.Option("--queries", help="Queries JSONL: {id, text, ...}.")],
    qrels: Annotated[
        Path, typer.Option("--qrels", help="Judgments: TREC 'qid 0 docid grade' or JSONL.")
    ],
    candidates: Annotated[
        int | None, typer.Option("--candidates", min=1, help="Depth per retriever.")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Report the choice without storing it.")
    ] = False,
    home: Annotated[Path | None, typer.Option("--home", help="Workspace folder.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Pick the fusion (method, weights, keyword feedback) with the best nDCG@10 on the
    dev half of the judged queries, report it on the held-out half with a paired t-test,
    and store it with the live build as the default of searches that name no fusion."""
    from mmsearch.config import load_settings
    from mmsearch.evaluation.judgments import load_judgments
    from mmsearch.evaluation.queries import load_queries
    from mmsearch.media.images import ImageLimits, load_image
    from mmsearch.ranking.tuning import save_tuned
    from mmsearch.search.searcher import Searcher
    from mmsearch.search.training import TrainingQuery
    from mmsearch.search.tuning import tune_collection

    settings = load_settings(home)
    with user_errors():
        limits = ImageLimits(settings.max_image_bytes, settings.max_image_pixels)
        judgments = load_judgments(qrels)
        training = [
            TrainingQuery(
                q.id, q.text, load_image(q.image, limits) if q.image is not None else None, q.where
            )
            for q in load_queries(queries)
        ]
        searcher = Searcher(settings, collection)
        with progress_bar("searching", quiet=as_json) as start:
            tuned = tune_collection(
                searcher,
                training,
                judgments,
                candidates=candidates,
                progress=start(len(training)),
            )
        stored = None
        if not dry_run:
            stored = save_tuned(searcher.folder.build_dir(searcher.build_id), tuned)
    if as_json:
        print_json({"tuned": tuned.model_dump(), "stored": str(stored) if stored else None})
        return
    _print(tuned, stored)


def _print(tuned: TunedFusion, stored: Path | None) -> None:
    console.print(
        f"chosen on {tuned.dev_queries} dev queries: {tuned.choice.label()}  "
        f"(dev nDCG@10 {tuned.dev_ndcg10:.4f}; RRF {tuned.dev_rrf:.4f}; best single signal "
        f"{tuned.dev_best_single_signal} {tuned.dev_best_single:.4f})",
        highlight=False,
    )
    test = tuned.test
    if test is not None:
        p_rrf = "n/a" if test.p_vs_rrf is None else f"{test.p_vs_rrf:.4f}"
        p_single = "n/a" if test.p_vs_best_single is None else f"{test.p_vs_best_single:.4f}"
        console.print(
            f"held-out {test.queries} test queries: nDCG@10 {test.chosen:.4f} vs RRF "
            f"{test.rrf:.4f} (paired t-test p = {p_rrf}) and {test.best_single_signal} "
            f"{test.best_single:.4f} (p = {p_single})",
            highlight=False,
        )
    else:
        errors.print("[yellow]no judged query fell in the test half: the gain is unmeasured[/]")
    if stored is not None:
        console.print(f"stored with build {tuned.build_id}: {stored}", highlight=False)
