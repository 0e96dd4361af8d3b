"""``mmsearch train-ranker``: fit the LambdaMART reranker from judgments or click logs."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from mmsearch.errors import MMSearchError
from mmsearch.terminal import console, errors, print_json, progress_bar, user_errors

if TYPE_CHECKING:
    from mmsearch.media.images import ImageLimits
    from mmsearch.ranking.training import Judgments, TrainingReport
    from mmsearch.search.training import TrainingQuery


def _queries_from_files(
    queries: Path, qrels: Path, limits: ImageLimits
) -> tuple[list[TrainingQuery], Judgments]:
    from mmsearch.evaluation.judgments import load_judgments
    from mmsearch.evaluation.queries import load_queries
    from mmsearch.media.images import load_image
    from mmsearch.search.training import TrainingQuery

    loaded = load_queries(queries)
    judgments = load_judgments(qrels)
    return [
        TrainingQuery(
            q.id, q.text, load_image(q.image, limits) if q.image is not None else None, q.where
        )
        for q in loaded
    ], judgments


def _queries_from_clicks(clicks: Path, eta: float) -> tuple[list[TrainingQuery], Judgments, str]:
    from mmsearch.ranking.clicks import implicit_judgments, read_click_log
    from mmsearch.search.training import TrainingQuery

    implicit = implicit_judgments(read_click_log(clicks), eta=eta)
    queries = [
        TrainingQuery(qid, text, None, where)
        for qid, (text, where) in sorted(implicit.queries.items())
    ]
    note = (
        f"{implicit.pages} result pages, {len(implicit.queries)} distinct queries, "
        f"{sum(len(j) for j in implicit.judgments.values())} implicit judgments (eta={eta:g})"
    )
    return queries, implicit.judgments, note


def _print_report(report: TrainingReport, out: Path) -> None:
    if report.folds:
        table = Table(title="cross-validation by query (nDCG@10 on held-out queries)")
        for column in ("fold", "queries", "RRF", "reranker", "delta"):
            table.add_column(column, justify="right")
        for fold in report.folds:
            delta = fold.model_ndcg10 - fold.rrf_ndcg10
            table.add_row(
                str(fold.fold),
                str(fold.queries),
                f"{fold.rrf_ndcg10:.4f}",
                f"{fold.model_ndcg10:.4f}",
                f"{delta:+.4f}",
            )
        rrf, model = report.mean("rrf_ndcg10"), report.mean("model_ndcg10")
        table.add_row(
            "mean", str(report.queries), f"{rrf:.4f}", f"{model:.4f}", f"{model - rrf:+.4f}"
        )
        console.print(table)
    console.print(
        f"trained on {report.queries} queries ({report.rows} candidate rows); model saved to {out}",
        highlight=False,
    )
    if report.skipped:
        errors.print(f"[yellow]{len(report.skipped)} queries had no candidates[/]")


def register(app: typer.Typer) -> None:
    app.command("train-ranker")(train_ranker_command)


def train_ranker_command(
    collection: Annotated[str, typer.Option("--collection", "-c", help="Collection name.")],
    queries: Annotated[
        Path | None, typer.Option("--queries", help="Queries JSONL: {id, text, image, where}.")
    ] = None,
    qrels: Annotated[
        Path | None,
        typer.Option("--qrels", help="Judgments: TREC 'qid 0 docid grade' or JSONL."),
    ] = None,
    clicks: Annotated[
        Path | None,
        typer.Option("--clicks", help="Click log JSONL (instead of --queries/--qrels)."),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Model folder (default <home>/rankers/<collection>-<build>)."),
    ] = None,
    folds: Annotated[
        int, typer.Option("--folds", min=0, max=20, help="CV folds by query; 0 skips CV.")
    ] = 5,
    candidates: Annotated[
        int | None, typer.Option("--candidates", min=1, help="Depth per retriever.")
    ] = None,
    eta: Annotated[
        float, typer.Option("--eta", min=0.0, help="Position-bias exponent for clicks.")
    ] = 1.0,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the fold split.")] = 13,
    groups: Annotated[
        str | None,
        typer.Option(
            "--groups",
            help="Search as a caller with these ACL groups (comma-separated); "
            "default: unrestricted.",
        ),
    ] = None,
    home: Annotated[Path | None, typer.Option("--home", help="Workspace folder.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Train the learned reranker (LightGBM LambdaMART) and report CV nDCG@10 vs RRF."""
    from mmsearch.config import load_settings
    from mmsearch.filters.groups import parse_groups
    from mmsearch.media.images import ImageLimits
    from mmsearch.search.searcher import Searcher
    from mmsearch.search.training import train_ranker

    settings = load_settings(home)
    with user_errors():
        if clicks is not None and (queries is not None or qrels is not None):
            raise MMSearchError("Give either --clicks, or --queries with --qrels, not both.")
        limits = ImageLimits(settings.max_image_bytes, settings.max_image_pixels)
        source, note = "qrels", ""
        if clicks is not None:
            training, judgments, note = _queries_from_clicks(clicks, eta)
            source = "clicks"
        elif queries is not None and qrels is not None:
            training, judgments = _queries_from_files(queries, qrels, limits)
        else:
            raise MMSearchError("Give --queries and --qrels, or --clicks, to train on.")
        if note and not as_json:
            console.print(note, highlight=False)
        searcher = Searcher(settings, collection)
        target = out or settings.home / "rankers" / f"{collection}-{searcher.build_id}"
        with progress_bar("searching", quiet=as_json) as start:
            model, report = train_ranker(
                searcher,
                training,
                judgments,
                folds=folds,
                seed=seed,
                candidates=candidates,
                source=source,
                progress=start(len(training)),
                groups=parse_groups(groups),
            )
        model.save(target)
    if as_json:
        print_json({"model": str(target), "meta": model.meta.__dict__})
        return
    _print_report(report, target)
