"""``mmsearch eval``: compare retrieval configurations on judged queries."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from mmsearch.terminal import (
    HomeOption,
    JsonOption,
    console,
    errors,
    print_json,
    progress_bar,
    user_errors,
)


def print_summary(data: dict, metrics: list[str]) -> None:
    significance = data["significance"]
    from mmsearch.evaluation.report import results_of

    details = data["details"]
    table = Table(title=f"evaluation of {details['experiment']['collection']}")
    table.add_column("configuration")
    for metric in metrics:
        table.add_column(metric, justify="right")
    table.add_column("answered", justify="right")
    for name, values in results_of(data).items():
        comparison = significance["comparisons"].get(name, {})
        cells = []
        for metric in metrics:
            value = values[metric]
            cell = "-" if value is None else f"{value:.4f}"
            if comparison.get(metric, {}).get("significant"):
                cell += " *"
            cells.append(cell)
        table.add_row(name, *cells, str(details["configurations"][name]["answered"]))
    console.print(table)
    console.print(
        f"{details['queries']['evaluated']} judged queries; * = significantly different from "
        f"'{significance['baseline']}' (p < 0.05, {significance['test']})",
        highlight=False,
    )
    if details["queries"]["without_judgments"]:
        errors.print(
            f"[yellow]warning:[/] {details['queries']['without_judgments']} queries have no "
            "judgments and were not scored",
            highlight=False,
        )


def register(app: typer.Typer) -> None:
    app.command("eval")(evaluate)


def evaluate(
    collection: Annotated[str, typer.Option("--collection", "-c", help="Collection name.")],
    queries: Annotated[Path, typer.Option("--queries", help="Queries file (JSONL).")],
    qrels: Annotated[
        Path, typer.Option("--qrels", help="Judgments: TREC qrels, or JSONL if *.jsonl.")
    ],
    config: Annotated[
        list[Path] | None,
        typer.Option("--config", help="Configuration file (TOML/YAML); repeat for several."),
    ] = None,
    k: Annotated[int, typer.Option("--k", min=1, max=1000, help="Ranking depth.")] = 100,
    stat_test: Annotated[
        str, typer.Option("--stat-test", help="Paired test: student (t-test) or fisher.")
    ] = "student",
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Folder for results.json, per-query files and reports."),
    ] = None,
    groups: Annotated[
        str | None,
        typer.Option(
            "--groups",
            help="Run every query as a caller with these ACL groups (comma-separated); "
            "default: unrestricted.",
        ),
    ] = None,
    home: HomeOption = None,
    as_json: JsonOption = False,
) -> None:
    """Evaluate retrieval configurations: nDCG@10, Recall@10/100, MRR@10, MAP, p-values."""
    from mmsearch.config import load_settings
    from mmsearch.evaluation.experiment import run_evaluation
    from mmsearch.filters.groups import parse_groups

    settings = load_settings(home)
    with user_errors(), progress_bar("eval", quiet=as_json) as start:
        outcome = run_evaluation(
            settings,
            collection,
            queries,
            qrels,
            config_paths=config or [],
            k=k,
            stat_test=stat_test,
            out=out,
            progress=start,
            groups=parse_groups(groups),
        )
    data = outcome.summary
    if as_json:
        print_json(data)
        return
    print_summary(data, outcome.evaluation.metrics)
    if outcome.files:
        console.print(
            f"reports: {outcome.files['markdown']}, {outcome.files['html']}; "
            f"per-query results in {outcome.files['per_query']}",
            highlight=False,
        )
