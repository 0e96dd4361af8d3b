"""``mmsearch drift``: embedding drift of a candidate build vs live, and of the newest
queries vs the queries logged before them.

``mmsearch drift reference -c NAME [BUILD]`` (re)computes a build's reference
statistics, e.g. for builds made before drift monitoring existed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from mmsearch.errors import MMSearchError
from mmsearch.terminal import (
    CollectionOption,
    HomeOption,
    JsonOption,
    console,
    print_json,
    user_errors,
)

# monitoring.drift.DEFAULT_THRESHOLD, repeated so that loading the CLI does not import
# scipy (tests/test_cli_startup.py checks that the two agree).
DEFAULT_THRESHOLD = 0.01

if TYPE_CHECKING:
    from mmsearch.config import Settings
    from mmsearch.monitoring.drift import DriftResult
    from mmsearch.workspace import CollectionDir


DRIFT_EXIT = 1
REFERENCE = "reference"

ActionArgument = Annotated[
    str | None,
    typer.Argument(help="'reference' to (re)compute a build's reference statistics."),
]
BuildArgument = Annotated[
    str | None, typer.Argument(help="With 'reference': the build (default: live).")
]
CandidateOption = Annotated[
    str | None,
    typer.Option("--candidate", help="A build to compare with live before publishing."),
]
QueriesOption = Annotated[
    bool,
    typer.Option(
        "--queries/--no-queries",
        help="Compare the newest queries' embeddings with earlier queries'.",
    ),
]
ThresholdOption = Annotated[
    float,
    typer.Option("--threshold", min=1e-6, max=0.5, help="p-value below which a role has drifted."),
]


def _verdict(result: DriftResult) -> str:
    if result.drifted is None:
        return f"[yellow]not tested[/]: {escape(result.note)}"
    return "[bold red]DRIFT[/]" if result.drifted else "[green]ok[/]"


def _print(results: list[DriftResult], threshold: float) -> None:
    if not results:
        console.print(
            "Nothing to compare: name a --candidate build, or let the service log queries "
            "(their embeddings are kept per role, written every 16 searches or 10 s) and "
            "run this again."
        )
        return
    table = Table(title=f"Embedding drift (MMD² permutation test, drift when p < {threshold:g})")
    for column in ("role", "kind", "compared", "MMD²", "p", "n ref / test", "verdict"):
        table.add_column(column)
    for r in results:
        table.add_row(
            r.role,
            r.kind,
            escape(r.comparison or r.test_source),
            "-" if r.score is None else f"{r.score:.5f}",
            "-" if r.p_value is None else f"{r.p_value:.4f}",
            f"{r.n_reference} / {r.n_test}",
            _verdict(r),
        )
    console.print(table)


def register(app: typer.Typer) -> None:
    app.command("drift")(drift_command)


def drift_command(
    collection: CollectionOption,
    action: ActionArgument = None,
    build: BuildArgument = None,
    candidate: CandidateOption = None,
    queries: QueriesOption = True,
    threshold: ThresholdOption = DEFAULT_THRESHOLD,
    home: HomeOption = None,
    as_json: JsonOption = False,
) -> None:
    """Test each encoder role for embedding drift: a candidate build vs live, and the
    newest logged queries vs the queries logged before them (queries with queries, not
    with documents; MMD² with a permutation test). Exits with 1 when a role drifted, 0
    when none did, 2 on errors."""
    from mmsearch.workspace import open_collection

    with user_errors():
        settings, folder = open_collection(home, collection)
        if action is not None:
            if action != REFERENCE:
                raise MMSearchError(f"Unknown action '{action}'; the only one is 'reference'.")
            _reference(settings, folder, build, as_json)
            return
        if build is not None:
            raise MMSearchError("A build id is only taken by 'reference'; use --candidate.")
        results = _check(settings, folder, candidate, queries, threshold)
    if as_json:
        print_json({"threshold": threshold, "results": [r.as_dict() for r in results]})
    else:
        _print(results, threshold)
    if any(r.drifted for r in results):
        raise typer.Exit(DRIFT_EXIT)


def _reference(settings: Settings, folder: CollectionDir, build: str | None, as_json: bool) -> None:
    """``drift reference``: (re)compute and store a build's reference statistics."""
    from mmsearch.monitoring.drift_reference import compute_reference

    build_id = folder.require_build(build) if build else folder.live_manifest().build_id
    refs = compute_reference(folder, folder.manifest(build_id), settings)
    summary = {role: ref.summary() for role, ref in refs.items()}
    if as_json:
        print_json({"build_id": build_id, "roles": summary})
        return
    for role, info in summary.items():
        console.print(
            f"{escape(build_id)} {role}: {info['count']} vectors, dim "
            f"{info['dim']}, sample {info['sample']}"
        )


def _check(
    settings: Settings,
    folder: CollectionDir,
    candidate: str | None,
    queries: bool,
    threshold: float,
) -> list[DriftResult]:
    """The drift tests: the candidate against live, the newest queries against earlier."""
    from mmsearch.monitoring.drift_checks import check_collection

    return check_collection(
        folder,
        settings,
        candidate=folder.require_build(candidate) if candidate else None,
        queries=queries,
        threshold=threshold,
    )
