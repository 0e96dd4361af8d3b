"""``mmsearch ranking-settings``: a collection's cross-encoder and keyword field boosts
(collection.json ``ranking``).

Why a command of its own: the model folder, how many hits it reads and which fields,
and how much a title match weighs against a body match depend on the catalog, so each
collection keeps its own; a search may still turn the cross-encoder on or off. Every
value is checked here (the folder is a model, the fields are the mapping's, boosts are
positive) before anything is written.
"""

from __future__ import annotations

from pathlib import Path
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
    from mmsearch.catalog.mapping import FieldMapping
    from mmsearch.collection_state import RankingSettings
    from mmsearch.workspace import CollectionDir


def register(app: typer.Typer) -> None:
    app.command("ranking-settings")(ranking_settings)


def ranking_settings(
    collection: CollectionOption,
    cross_encoder: Annotated[
        Path | None,
        typer.Option(
            "--cross-encoder",
            help="Folder of a sentence-transformers CrossEncoder (saved with model.save); "
            "searches rescore their top hits with it.",
        ),
    ] = None,
    top: Annotated[
        int | None, typer.Option("--cross-encoder-top", help="Hits rescored per search (30).")
    ] = None,
    fields: Annotated[
        list[str] | None,
        typer.Option(
            "--cross-encoder-field",
            help="A title or text field the cross-encoder reads; repeat (default: all).",
        ),
    ] = None,
    max_length: Annotated[
        int | None,
        typer.Option("--cross-encoder-max-length", help="Tokens per (query, text) pair (256)."),
    ] = None,
    default_on: Annotated[
        bool | None,
        typer.Option(
            "--cross-encoder-default/--cross-encoder-on-request",
            help="Searches that do not say use the cross-encoder (default), or only when asked.",
        ),
    ] = None,
    no_cross_encoder: Annotated[
        bool, typer.Option("--no-cross-encoder", help="Forget the collection's cross-encoder.")
    ] = False,
    field_boosts: Annotated[
        list[str] | None,
        typer.Option(
            "--field-boost",
            help="Keyword boost of a title or text field, e.g. title=2; repeat per field.",
        ),
    ] = None,
    no_field_boosts: Annotated[
        bool,
        typer.Option("--no-field-boosts", help="One keyword score over all text, as before."),
    ] = False,
    home: HomeOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show or set a collection's cross-encoder and keyword field boosts."""
    from mmsearch.workspace import Workspace

    settings = load_settings(home)
    with user_errors():
        folder = Workspace(settings.home).collection(collection)
        cross: dict[str, Any] = {
            name: value
            for name, value in {
                "path": str(cross_encoder) if cross_encoder is not None else None,
                "top": top,
                "fields": fields or None,
                "max_length": max_length,
                "default_on": default_on,
            }.items()
            if value is not None
        }
        boosts = parse_boosts(field_boosts or [])
        changed = bool(cross or boosts or no_cross_encoder or no_field_boosts)
        saved = (
            _update(folder, cross, boosts, no_cross_encoder, no_field_boosts)
            if changed
            else folder.state().ranking
        )
    shown: dict[str, Any] = saved.model_dump(exclude_none=True) if saved is not None else {}
    if as_json:
        print_json({"collection": collection, "ranking": shown})
        return
    console.print(f"[bold]{collection}[/bold] ranking settings", highlight=False)
    encoder = shown.get("cross_encoder")
    if encoder:
        console.print(
            f"  cross-encoder: {encoder['path']} (top {encoder['top']}, max length "
            f"{encoder['max_length']} tokens, fields: "
            f"{', '.join(encoder.get('fields') or ['all'])}, "
            f"{'on by default' if encoder['default_on'] else 'on request'})",
            highlight=False,
        )
    else:
        console.print("  cross-encoder: none", highlight=False)
    boosts_shown = shown.get("field_boosts")
    console.print(
        "  keyword field boosts: "
        + (", ".join(f"{k}={v:g}" for k, v in boosts_shown.items()) if boosts_shown else "none"),
        highlight=False,
    )


def parse_boosts(values: list[str]) -> dict[str, float]:
    """``title=2`` → {"title": 2.0}; a malformed or non-positive boost names the value."""
    import math

    from mmsearch.errors import MMSearchError

    boosts: dict[str, float] = {}
    for value in values:
        name, sep, number = value.partition("=")
        try:
            boost = float(number) if sep and name.strip() else float("nan")
        except ValueError:
            boost = float("nan")
        if not (math.isfinite(boost) and 0 < boost <= 100):
            raise MMSearchError(
                f"--field-boost {value!r}: give FIELD=BOOST with a boost above 0 and at "
                "most 100, e.g. title=2."
            )
        boosts[name.strip()] = boost
    return boosts


def _update(
    folder: CollectionDir,
    cross: dict[str, Any],
    boosts: dict[str, float],
    forget_cross: bool,
    forget_boosts: bool,
) -> RankingSettings | None:
    """Check everything against the live build, then write (under the state's lock)."""
    from pydantic import ValidationError

    from mmsearch.collection_state import CollectionState, CrossEncoderSettings, RankingSettings
    from mmsearch.errors import MMSearchError
    from mmsearch.ranking.cross_encoder import check_fields, check_folder
    from mmsearch.retrieval.field_boosts import check_boosts

    mapping: FieldMapping = folder.live_manifest().mapping
    if "path" in cross:
        cross["path"] = str(check_folder(cross["path"]))
    if cross.get("fields"):
        check_fields(cross["fields"], mapping, folder.name)
    if boosts:
        check_boosts(boosts, mapping, folder.name)

    def change(state: CollectionState) -> RankingSettings | None:
        current = state.ranking.model_copy(deep=True) if state.ranking else RankingSettings()
        try:
            if forget_cross:
                current.cross_encoder = None
            if cross:
                before = (
                    current.cross_encoder.model_dump(exclude_none=True)
                    if current.cross_encoder is not None
                    else {}
                )
                merged = before | cross
                if "path" not in merged:
                    raise MMSearchError(
                        f"Collection '{folder.name}' has no cross-encoder yet: give its folder "
                        "with --cross-encoder."
                    )
                current.cross_encoder = CrossEncoderSettings.model_validate(merged)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in error['loc'])}: {error['msg']}"
                for error in exc.errors()
            )
            raise MMSearchError(
                f"Invalid ranking settings for collection '{folder.name}': {problems}."
            ) from None
        if forget_boosts:
            current.field_boosts = None
        if boosts:
            current.field_boosts = {**(current.field_boosts or {}), **boosts}
        if current.cross_encoder is None and not current.field_boosts:
            state.clear("ranking")
            return None
        state.ranking = current
        return state.ranking

    return folder.update_state(change)
