"""``mmsearch rebuild``: a build's items re-encoded into a candidate (a model upgrade)."""

from __future__ import annotations

import json
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.progress import TaskID

from mmsearch.errors import CatalogError, MMSearchError
from mmsearch.terminal import (
    CollectionOption,
    HomeOption,
    JsonOption,
    console,
    errors,
    fail,
    print_json,
)

if TYPE_CHECKING:
    from mmsearch.catalog.mapping import FieldMapping
    from mmsearch.config import Settings
    from mmsearch.governance.audit import Outcome
    from mmsearch.ingest.rebuild import RebuildOptions, RebuildReport


def register(app: typer.Typer) -> None:
    app.command("rebuild")(rebuild)


def rebuild(
    collection: CollectionOption,
    text_encoder: Annotated[
        str | None, typer.Option("--text-encoder", help="The new text encoder (spec).")
    ] = None,
    image_encoder: Annotated[
        str | None, typer.Option("--image-encoder", help="The new image encoder (spec).")
    ] = None,
    mapping_file: Annotated[
        Path | None,
        typer.Option(
            "--mapping",
            help="JSON, YAML or TOML mapping; only the roles it sets change, and only text "
            "fields, the title and which stored attributes are kept.",
        ),
    ] = None,
    source_build: Annotated[
        str | None, typer.Option("--from", help="The build to rebuild (default: live).")
    ] = None,
    fetch: Annotated[
        bool,
        typer.Option("--fetch", help="Download image URLs that the image cache no longer holds."),
    ] = False,
    no_wait: Annotated[
        bool,
        typer.Option("--no-wait", help="Fail at once if another process writes the collection."),
    ] = False,
    home: HomeOption = None,
    as_json: JsonOption = False,
) -> None:
    """Re-encode a build's items into a new candidate build while live keeps serving; no
    catalog file is needed, and vectors of unchanged encoders are reused. Publish the
    result with 'mmsearch publish'. An interrupted rebuild resumes when run again."""
    from mmsearch.config import load_settings
    from mmsearch.ingest.rebuild import RebuildOptions

    settings = load_settings(home)
    try:
        options = RebuildOptions(
            collection,
            text_encoder=text_encoder,
            image_encoder=image_encoder,
            mapping=_mapping(mapping_file) if mapping_file else None,
            source_build=source_build,
            fetch=fetch,
            wait=not no_wait,
        )
        report = _run(settings, options, quiet=as_json)
    except MMSearchError as exc:
        _audit(settings.home, collection, "failed", str(exc), None)
        raise fail(str(exc)) from None
    except BaseException as exc:  # a crash or Ctrl-C: the build is left to resume
        with suppress(MMSearchError, OSError):
            _audit(settings.home, collection, "failed", type(exc).__name__, None)
        raise
    _audit(settings.home, collection, "ok", f"build {report.build_id}", report.counts)
    if as_json:
        print_json(report.as_dict())
        return
    _print(report)


def _mapping(path: Path) -> FieldMapping:
    """A mapping file; JSON too (the mapping is what an API caller would send)."""
    from mmsearch.catalog.mapping import FieldMapping, load_mapping_file

    if path.suffix.lower() != ".json":
        return load_mapping_file(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ValueError("it must hold an object of roles")
        for key in ("text", "attributes", "images", "required"):
            if isinstance(data.get(key), str):
                data[key] = [data[key]]
        return FieldMapping.model_validate(data)
    except (OSError, ValueError) as exc:
        raise CatalogError(f"Mapping file {path} is not valid: {exc}") from None


def _run(settings: Settings, options: RebuildOptions, *, quiet: bool) -> RebuildReport:
    from mmsearch.commands.ingest import items_progress, writer_waiting
    from mmsearch.ingest.rebuild import Rebuilder

    progress = items_progress(7, quiet=quiet)
    tasks: dict[str, TaskID] = {}

    def start(total: int) -> None:
        progress.start()
        tasks["items"] = progress.add_task("rebuild", total=total, unit="items")

    def advance(count: int) -> None:
        if "items" in tasks:
            progress.advance(tasks["items"], count)

    waiting = writer_waiting(options.collection, quiet=quiet)
    rebuilder = Rebuilder(settings, progress=advance, on_wait=waiting)
    try:
        return rebuilder.run(options, on_plan=start)
    finally:
        progress.stop()


def _print(report: RebuildReport) -> None:
    counts = report.counts
    for problem in report.errors[:20]:
        errors.print(f"[yellow]image[/] {escape(problem.describe())}", highlight=False)
    if counts["failed"] > 20:
        errors.print(f"... and {counts['failed'] - 20} more in {report.errors_path}")
    for notice in report.notices:
        errors.print(f"note: {notice}", highlight=False, markup=False)
    roles = sorted(set(counts["reused"]) | set(counts["encoded"]))
    per_role = ", ".join(
        f"{role}: {counts['reused'].get(role, 0)} reused / {counts['encoded'].get(role, 0)} encoded"
        for role in roles
    )
    resumed = f", {counts['resumed']} written before the interruption" if counts["resumed"] else ""
    colour = "red" if counts["failed"] else "green"
    console.print(
        f"[bold]{report.collection}[/]: rebuilt {report.source_build} as candidate "
        f"{report.build_id} — {counts['items']} items ({per_role}){resumed}, "
        f"[{colour}]{counts['failed']} items with errors[/]",
        highlight=False,
    )
    if counts["failed"]:
        console.print(
            f"items with errors keep their other vectors; see {report.errors_path}",
            highlight=False,
        )
    console.print(
        f"live is unchanged; publish with: mmsearch publish -c {report.collection} "
        f"{report.build_id}",
        highlight=False,
        markup=False,
    )


def _audit(
    home: Path, collection: str, outcome: Outcome, detail: str, counts: dict[str, object] | None
) -> None:
    from mmsearch.governance.audit import record

    record(home, "rebuild", collection=collection, outcome=outcome, detail=detail, counts=counts)
