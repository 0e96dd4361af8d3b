"""``mmsearch graph``: the entity graph of a collection's live build (or ``--build``).

The CLI is the local operator, so it sees the whole graph; the HTTP routes show each
caller the part their groups support (``graph/view.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from mmsearch.terminal import (
    CollectionOption,
    HomeOption,
    JsonOption,
    console,
    print_json,
    user_errors,
)

if TYPE_CHECKING:
    from mmsearch.graph.view import GraphView

graph_app = typer.Typer(
    help="The entity graph of a build: stats, entities, neighbours, (re)build.",
    no_args_is_help=True,
    rich_markup_mode=None,
)

BuildOption = Annotated[
    str | None, typer.Option("--build", help="A build id (default: the live build).")
]
LimitOption = Annotated[int, typer.Option("--limit", min=1, max=200, help="Rows to show.")]


def register(app: typer.Typer) -> None:
    app.add_typer(graph_app, name="graph")


@dataclass(frozen=True)
class _Target:
    collection: str
    build: str | None
    home: Path | None


@graph_app.callback()
def _choose(
    ctx: typer.Context,
    collection: CollectionOption,
    build: BuildOption = None,
    home: HomeOption = None,
) -> None:
    """``mmsearch graph -c NAME [--build ID] stats|entities|entity|neighbours|build``."""
    ctx.obj = _Target(collection, build, home)


def _view(ctx: typer.Context) -> GraphView:
    """The graph as local search sees the build: every item but those a moderation
    policy hides (quarantined, hidden, rejected), so no count or neighbour shows an
    item that search leaves out. The graph file itself counts every row; the view
    recounts over the visible ones only when some item is hidden."""
    from mmsearch.filters.expr import IsNull
    from mmsearch.graph.reports import require_graph
    from mmsearch.graph.view import caller_view
    from mmsearch.index.open import open_build_index
    from mmsearch.moderation.decisions import HIDDEN_COLUMN
    from mmsearch.workspace import open_collection

    target: _Target = ctx.obj
    settings, folder = open_collection(target.home, target.collection)
    build = target.build
    manifest = folder.live_manifest() if build is None else folder.manifest(build)
    stored = require_graph(
        folder.build_dir(manifest.build_id), target.collection, manifest.build_id
    )
    index = open_build_index(folder, manifest, settings)
    hidden = None
    if HIDDEN_COLUMN in index.schema.names and index.count(IsNull(HIDDEN_COLUMN, negated=True)):
        hidden = IsNull(HIDDEN_COLUMN)
    return caller_view(stored, index, hidden)


@graph_app.command("stats")
def stats(
    ctx: typer.Context,
    as_json: JsonOption = False,
) -> None:
    """Counts of the graph: items, entities per field, clusters, edges, build time."""
    with user_errors():
        found = _view(ctx).stats()
    if as_json:
        print_json(found)
        return
    for key, value in found.items():
        console.print(f"{key:<20} {escape(str(value))}", highlight=False)


@graph_app.command("entities")
def entities(
    ctx: typer.Context,
    prefix: Annotated[str, typer.Option("--prefix", help="Values starting with this.")] = "",
    limit: LimitOption = 20,
    as_json: JsonOption = False,
) -> None:
    """Entities whose value starts with --prefix, most items first."""
    from mmsearch.graph.reports import entities_report

    with user_errors():
        found = entities_report(_view(ctx), prefix, limit)
    if as_json:
        print_json(found)
        return
    _table(found["entities"], ("entity", "label", "items"))


@graph_app.command("entity")
def entity(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="field=value, or a value of any field.")],
    limit: LimitOption = 10,
    as_json: JsonOption = False,
) -> None:
    """One entity: its items (a sample) and its neighbours."""
    from mmsearch.graph.reports import entity_report

    with user_errors():
        found = entity_report(_view(ctx), name, limit)
    if as_json:
        print_json(found)
        return
    for one in found["entities"]:
        console.print(
            f"[bold]{escape(one['entity'])}[/] ({escape(one['label'])}): {one['items']} items",
            highlight=False,
        )
        console.print("items: " + escape(", ".join(one["sample_items"])), highlight=False)
        _table(one["neighbours"], ("entity", "relation", "shared_items", "pmi"))


@graph_app.command("neighbours")
def neighbours(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="field=value, or a value of any field.")],
    limit: LimitOption = 20,
    as_json: JsonOption = False,
) -> None:
    """Parents, children and co-occurring entities (by PMI) of an entity."""
    from mmsearch.graph.reports import neighbours_report

    with user_errors():
        found = neighbours_report(_view(ctx), name, limit)
    if as_json:
        print_json(found)
        return
    for one in found["entities"]:
        console.print(f"[bold]{escape(one['entity'])}[/]: {one['items']} items", highlight=False)
        _table(one["neighbours"], ("entity", "relation", "shared_items", "pmi"))


@graph_app.command("build")
def build_command(
    ctx: typer.Context,
    as_json: JsonOption = False,
) -> None:
    """Make the graph of a build again from its rows (ingest does this after each run
    that changed rows; use this after writes made another way, or to time it)."""
    from mmsearch.errors import MMSearchError
    from mmsearch.graph.make import make_build_graph
    from mmsearch.index.open import open_build_index
    from mmsearch.workspace import open_collection

    target: _Target = ctx.obj
    collection = target.collection
    with user_errors():
        settings, folder = open_collection(target.home, collection)
        build = target.build
        manifest = folder.live_manifest() if build is None else folder.manifest(build)
        if not manifest.mapping.entities and not manifest.mapping.entity_text_fields:
            raise MMSearchError(
                f"Build {manifest.build_id} of '{collection}' names no entity fields; "
                "ingest into a new build with --entity-field or --entity-text-field "
                "(or entities / entity_text_fields in the mapping)."
            )
        index = open_build_index(folder, manifest, settings)
        graph = make_build_graph(folder.build_dir(manifest.build_id), manifest, index)
    found = {
        "build_id": graph.build_id,
        "entities": len(graph.entities),
        "clusters": len(graph.clusters),
        "build_seconds": graph.build_seconds,
    }
    if as_json:
        print_json(found)
        return
    console.print(
        f"graph of {found['build_id']}: {found['entities']} entities, "
        f"{found['clusters']} clusters in {found['build_seconds']:.2f} s",
        highlight=False,
    )


@graph_app.command("routing")
def routing(
    ctx: typer.Context,
    enabled: Annotated[
        bool | None,
        typer.Option("--enabled/--disabled", help="Route searches that do not say."),
    ] = None,
    mode: Annotated[
        str | None, typer.Option("--mode", help="boost (a fused graph signal) or filter.")
    ] = None,
    graph_weight: Annotated[
        float | None, typer.Option("--graph-weight", help="Fusion weight of the graph signal.")
    ] = None,
    expand: Annotated[
        int | None, typer.Option("--expand", help="Neighbours added to keyword (0 = off).")
    ] = None,
    meaning_min: Annotated[
        float | None, typer.Option("--meaning-min", help="Least cosine for a meaning match.")
    ] = None,
    meaning_top: Annotated[
        int | None, typer.Option("--meaning-top", help="Entities by meaning (0 = off).")
    ] = None,
    weight_signals: Annotated[
        bool | None,
        typer.Option(
            "--weight-signals/--no-weight-signals",
            help="Colour/shape words weigh image signals up, codes keyword.",
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Show the collection's query-routing settings, or change the ones given."""
    from pydantic import ValidationError

    from mmsearch.errors import MMSearchError
    from mmsearch.graph.settings import RoutingSettings, load_routing, save_routing
    from mmsearch.workspace import open_collection

    target: _Target = ctx.obj
    changes = {
        key: value
        for key, value in {
            "enabled": enabled,
            "mode": mode,
            "graph_weight": graph_weight,
            "expand": expand,
            "meaning_min": meaning_min,
            "meaning_top": meaning_top,
            "weight_signals": weight_signals,
        }.items()
        if value is not None
    }
    with user_errors():
        _, folder = open_collection(target.home, target.collection)
        current = load_routing(folder.folder)
        if changes:
            try:
                current = RoutingSettings.model_validate({**current.model_dump(), **changes})
            except ValidationError as exc:
                problems = "; ".join(f"{e['loc'][0]}: {e['msg']}" for e in exc.errors())
                raise MMSearchError(f"Invalid routing settings: {problems}.") from None
            save_routing(folder.folder, current)
    found = current.model_dump()
    if as_json:
        print_json(found)
        return
    for key, value in found.items():
        console.print(f"{key:<16} {escape(str(value))}", highlight=False)


def _table(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> None:
    table = Table()
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*(escape(str(row[c])) for c in columns))
    console.print(table)
