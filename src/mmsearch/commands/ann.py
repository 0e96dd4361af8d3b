"""``mmsearch ann``: a collection's vector index settings (collection.json ``ann``).

Why a command of its own: which index and which search effort are right depends on
the catalog (recall against latency, docs/BENCHMARKS.md), so each collection keeps
its own; requests may still override the search part (``--nprobes`` etc. on search).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from mmsearch.commands.search import load_settings
from mmsearch.terminal import (
    CollectionOption,
    HomeOption,
    JsonOption,
    console,
    print_json,
    user_errors,
)

if TYPE_CHECKING:
    from mmsearch.collection_state import AnnSettings
    from mmsearch.workspace import CollectionDir


def register(app: typer.Typer) -> None:
    app.command()(ann)


def ann(
    collection: CollectionOption,
    index_type: Annotated[
        str | None,
        typer.Option(
            "--index-type",
            help="ivf_hnsw_sq, ivf_pq or flat (no index: exact search); applies to the "
            "next index built (a new build).",
        ),
    ] = None,
    nprobes: Annotated[int | None, typer.Option("--nprobes", help="IVF partitions searched.")] = (
        None
    ),
    refine_factor: Annotated[
        int | None,
        typer.Option("--refine-factor", help="Re-score k x this many candidates exactly."),
    ] = None,
    ef: Annotated[int | None, typer.Option("--ef", help="HNSW search list size.")] = None,
    m: Annotated[int | None, typer.Option("--m", help="HNSW graph degree (new index).")] = None,
    ef_construction: Annotated[
        int | None,
        typer.Option("--ef-construction", help="HNSW build list size (new index)."),
    ] = None,
    hot: Annotated[
        bool | None,
        typer.Option(
            "--hot/--no-hot",
            help="Answer searches from the in-memory hot index (HNSW/exact vectors, BM25), "
            "rebuilt from the store; unset: the server's MMSEARCH_HOT_INDEX.",
        ),
    ] = None,
    clear: Annotated[
        bool, typer.Option("--clear", help="Forget the collection's settings: use the defaults.")
    ] = False,
    home: HomeOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show or set a collection's ANN index settings; unset ones follow the server's."""
    from mmsearch.workspace import Workspace

    settings = load_settings(home)
    given = {
        "index_type": index_type,
        "nprobes": nprobes,
        "refine_factor": refine_factor,
        "ef": ef,
        "m": m,
        "ef_construction": ef_construction,
        "hot": hot,
    }
    changes = {name: value for name, value in given.items() if value is not None}
    with user_errors():
        folder = Workspace(settings.home).collection(collection)
        saved = _update(folder, changes, clear) if clear or changes else folder.state().ann
    shown: dict[str, Any] = saved.model_dump(exclude_none=True) if saved is not None else {}
    defaults = {
        "index_type": settings.ann_index_type,
        "nprobes": settings.ann_nprobes,
        "refine_factor": settings.ann_refine_factor,
        "ef": settings.ann_ef,
        "hot": settings.hot_index,
    }
    if as_json:
        print_json({"collection": collection, "ann": shown, "defaults": defaults})
        return
    console.print(f"[bold]{collection}[/bold] ANN settings (unset: the server's defaults)")
    for name, value in defaults.items():
        mark = f"{shown[name]}" if name in shown else f"{value} (default)"
        console.print(f"  {name}: {mark}", highlight=False)
    for name in ("m", "ef_construction"):
        if name in shown:
            console.print(f"  {name}: {shown[name]}", highlight=False)


def _update(folder: CollectionDir, changes: dict[str, Any], clear: bool) -> AnnSettings | None:
    """Validate the new settings (an MMSearchError naming the collection and the field)."""
    from pydantic import ValidationError

    from mmsearch.collection_state import AnnSettings, CollectionState
    from mmsearch.errors import MMSearchError

    def change(state: CollectionState) -> AnnSettings | None:
        current = {} if clear or state.ann is None else state.ann.model_dump(exclude_none=True)
        merged = current | changes
        try:
            state.ann = AnnSettings.model_validate(merged) if merged else None
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in error['loc'])}: {error['msg']}"
                for error in exc.errors()
            )
            raise MMSearchError(
                f"Invalid ANN settings for collection '{folder.name}': {problems}."
            ) from None
        if state.ann is None:
            state.clear("ann")
        return state.ann

    return folder.update_state(change)
