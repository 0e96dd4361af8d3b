"""``mmsearch ingest``: a catalog into a collection, with honest progress and accounting."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from mmsearch.errors import MMSearchError
from mmsearch.terminal import (
    CollectionOption,
    HomeOption,
    JsonOption,
    console,
    errors,
    fail,
    print_json,
    user_errors,
)

if TYPE_CHECKING:
    from mmsearch.config import Settings
    from mmsearch.ingest import IngestOptions, IngestPlan, IngestReport
    from mmsearch.writer_lock import WriterInfo


RATE_WINDOW_S = 10.0


class RateColumn(ProgressColumn):
    """Items (or images) per second over the last few seconds: what the run does now, not
    an average that hides a stall, and never a "0/s" between two progress updates."""

    def __init__(self) -> None:
        super().__init__()
        self._samples: dict[TaskID, deque[tuple[float, float]]] = {}

    def render(self, task: Task) -> Text:
        samples = self._samples.setdefault(task.id, deque())
        now = time.monotonic()
        if not samples or samples[-1][1] != task.completed:
            samples.append((now, task.completed))
        while len(samples) > 2 and now - samples[0][0] > RATE_WINDOW_S:
            samples.popleft()
        unit = task.fields.get("unit", "items")
        speed = None
        if len(samples) >= 2 and now > samples[0][0]:
            speed = (samples[-1][1] - samples[0][1]) / (now - samples[0][0])
        if not speed and task.elapsed and task.completed:
            speed = task.completed / task.elapsed
        return Text(f"{speed:,.0f} {unit}/s" if speed else f"- {unit}/s", style="cyan")


def items_progress(label_width: int, *, quiet: bool) -> Progress:
    """The bar every long writer shows: label, bar, n/total, items/s over 10 s, elapsed."""
    columns = [
        SpinnerColumn(),
        TextColumn(f"{{task.description:<{label_width}}}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        TimeElapsedColumn(),
    ]
    return Progress(*columns, console=errors, disable=quiet, transient=False)


def writer_waiting(collection: str, *, quiet: bool) -> Callable[[WriterInfo | None], None]:
    """Say, once, whom a writer waits for (another ingest, rebuild or item write)."""

    def waiting(holder: WriterInfo | None) -> None:
        if not quiet:
            who = holder.describe() if holder else "another process"
            errors.print(
                f"waiting for the other writer of '{collection}' to finish: {who}",
                highlight=False,
                markup=False,
            )

    return waiting


def run_ingest(settings: Settings, options: IngestOptions, *, quiet: bool) -> IngestReport:
    """Ingest with a progress bar that starts only once the plan stands (so argument and
    schema errors print alone), with the row total counted up front."""
    from mmsearch.ingest import Ingestor

    progress = items_progress(6, quiet=quiet)
    tasks: dict[str, TaskID] = {}

    def start(plan: IngestPlan) -> None:
        progress.start()
        tasks["rows"] = progress.add_task("ingest", total=plan.total_rows, unit="items")
        tasks["images"] = progress.add_task("images", total=None, unit="images", visible=False)

    def advance_images(count: int) -> None:
        if count:
            progress.update(tasks["images"], advance=count, visible=True)

    ingestor = Ingestor(
        settings,
        progress=lambda n: progress.advance(tasks["rows"], n),
        image_progress=advance_images,
        on_wait=writer_waiting(options.collection, quiet=quiet),
    )
    try:
        return ingestor.run(options, on_plan=start)
    finally:
        progress.stop()


def print_ingest_report(report: IngestReport, *, as_json: bool) -> None:
    if as_json:
        print_json(report.as_dict())
        return
    counts = report.counts
    console.print(f"mapping: {report.mapping.describe()}", highlight=False, markup=False)
    kinds = ", ".join(f"{a.column}:{a.kind}" for a in report.attributes) or "-"
    console.print(f"attribute types: {kinds}", highlight=False)
    for name, reason in report.skipped_fields.items():
        errors.print(f"skipped field {name!r}: {reason}", highlight=False, markup=False)
    _print_problems("skipped", report.errors, counts["failed"], report)
    _print_problems("warning", report.warnings, counts["warnings"], report)
    for notice in report.notices:
        errors.print(f"note: {notice}", highlight=False, markup=False)
    if report.dry_run:
        verb = "dry run, nothing written —"
    elif not report.committed:
        verb = "nothing written —"
    else:
        verb = "created build" if report.new_build else "updated build"
        if report.staged:
            verb = "staged new build" if report.new_build else "updated staged build"
        verb += f" {report.build_id}" + (" (resumed)" if report.resumed else "") + " —"
    would = "would be " if report.dry_run else ""
    where = "the staged build" if report.staged else "the collection"
    removed = f", {counts['removed']} {would}removed" if counts["removed"] else ""
    resumed = (
        f" ({counts['resumed']} written before the interruption, not encoded again)"
        if counts["resumed"]
        else ""
    )
    console.print(
        f"[bold]{report.collection}[/]: {verb} {counts['rows']} rows read: "
        f"{counts['added']} {would}added, {counts['updated']} {would}updated, "
        f"{counts['unchanged']} unchanged, "
        f"[{'red' if counts['failed'] else 'green'}]{counts['failed']} failed[/]"
        f"{removed}{resumed} ({counts['items']} items in {where})",
        highlight=False,
    )
    if report.errors_path is not None and (counts["failed"] or counts["warnings"]):
        console.print(f"error report: {report.errors_path}", highlight=False)


def _print_problems(label: str, shown: list[Any], total: int, report: IngestReport) -> None:
    for problem in shown[:20]:
        colour = "yellow" if label == "skipped" else "magenta"
        errors.print(f"[{colour}]{label}[/] {escape(problem.describe())}", highlight=False)
    if total > 20:
        where = f" in {report.errors_path}" if report.errors_path else ""
        errors.print(f"... and {total - 20} more{where}", highlight=False, markup=False)


def register(app: typer.Typer) -> None:
    app.command("ingest")(ingest)


def ingest(
    catalogs: Annotated[
        list[Path],
        typer.Argument(
            metavar="CATALOG",
            help="JSONL, CSV or Parquet file, a folder of images, or PDFs: one or more .pdf "
            'files or a folder of them, one item per page (needs pip install "mmsearch[pdf]").',
        ),
    ],
    collection: CollectionOption,
    mapping_file: Annotated[
        Path | None, typer.Option("--mapping", help="TOML or YAML file naming field roles.")
    ] = None,
    id_field: Annotated[str | None, typer.Option("--id-field")] = None,
    title_field: Annotated[str | None, typer.Option("--title-field")] = None,
    text_fields: Annotated[
        list[str] | None, typer.Option("--text-field", help="Repeat for several.")
    ] = None,
    attributes: Annotated[
        list[str] | None,
        typer.Option(
            "--attribute",
            help="Repeat for several; NAME:TYPE pins the type (string, int, float, bool), "
            "e.g. price:float.",
        ),
    ] = None,
    entities: Annotated[
        list[str] | None,
        typer.Option(
            "--entity-field",
            help="Attribute or text field whose values become entities of the build's "
            "graph (mmsearch graph); repeat for several.",
        ),
    ] = None,
    entity_text_fields: Annotated[
        list[str] | None,
        typer.Option(
            "--entity-text-field",
            help="Title or text field where entity names and mined phrases are found; "
            "each one found becomes a text: entity of the item's graph; repeat for several.",
        ),
    ] = None,
    entity_phrases: Annotated[
        int | None,
        typer.Option(
            "--entity-phrases",
            min=0,
            max=10_000,
            help="Phrases mined from the entity text fields (default 1000; 0: only the "
            "names of the other entities).",
        ),
    ] = None,
    aliases: Annotated[
        list[str] | None,
        typer.Option(
            "--alias-field",
            help="Field holding codes or aliases of the item (a list, or text split on "
            ", ; |): a query naming one finds the item first; repeat for several.",
        ),
    ] = None,
    required: Annotated[
        list[str] | None,
        typer.Option(
            "--required",
            help="Attribute every row must have, with a valid value (else the row fails); "
            "a bad value in another attribute is a warning and is stored as missing.",
        ),
    ] = None,
    image_fields: Annotated[
        list[str] | None, typer.Option("--image-field", help="Repeat for several.")
    ] = None,
    images_root: Annotated[
        Path | None, typer.Option("--images-root", help="Resolve relative image paths here.")
    ] = None,
    acl_field: Annotated[
        str | None,
        typer.Option("--acl-field", help="Field with the item's ACL groups (list or tenant id)."),
    ] = None,
    default_access: Annotated[
        str | None,
        typer.Option(
            "--default-access",
            help="Who sees items without an ACL in this collection: public or private.",
        ),
    ] = None,
    text_encoder: Annotated[str | None, typer.Option("--text-encoder")] = None,
    image_encoder: Annotated[str | None, typer.Option("--image-encoder")] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", min=1, max=4096)] = None,
    new_build: Annotated[
        bool,
        typer.Option(
            "--new-build",
            help="Build a new version from this catalog (new fields or encoders); it becomes "
            "live when complete. Without it, a catalog that does not fit the live build fails.",
        ),
    ] = False,
    stage: Annotated[
        bool,
        typer.Option(
            "--stage",
            help="Write a candidate build and leave live as it is; publish it later with "
            "'mmsearch publish'. Adds to the staged candidate when the catalog fits it; else "
            "a new candidate starts as a copy of live (when the catalog fits live) plus this "
            "catalog, so publishing it loses nothing. With --new-build: this catalog only.",
        ),
    ] = False,
    sync: Annotated[
        bool,
        typer.Option("--sync", help="Remove items that are no longer in the catalog."),
    ] = False,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Read and check everything, report, write nothing."),
    ] = False,
    strict: Annotated[
        bool, typer.Option("--strict", help="If any row fails, write nothing and exit 1.")
    ] = False,
    no_wait: Annotated[
        bool,
        typer.Option("--no-wait", help="Fail at once if another process writes the collection."),
    ] = False,
    ocr: Annotated[
        bool, typer.Option("--ocr", help="Read text in images into the searchable image_text.")
    ] = False,
    refetch_urls: Annotated[
        bool,
        typer.Option("--refetch-urls", help="Revalidate image URLs already in the cache."),
    ] = False,
    executor: Annotated[
        str,
        typer.Option(
            "--executor",
            help="Where images are decoded and items encoded: local (this process) or ray "
            '(a pool of Ray actors, one model set each; needs pip install "mmsearch[ray]").',
        ),
    ] = "local",
    ray_address: Annotated[
        str | None,
        typer.Option(
            "--ray-address",
            help="With --executor ray: 'auto' (the cluster of `ray start`) or "
            "'ray://host:10001'; unset, a local Ray instance is started for the run.",
        ),
    ] = None,
    split_by: Annotated[
        str | None,
        typer.Option(
            "--split-by",
            help="'acl': one collection per tenant, NAME-<tenant>, each with its tenant's "
            "items and the unlabelled ones (keyword statistics are then per tenant; see "
            "docs/SECURITY.md).",
        ),
    ] = None,
    home: HomeOption = None,
    as_json: JsonOption = False,
) -> None:
    """Ingest a catalog into a collection (upsert by id; unchanged rows are not re-encoded;
    an interrupted run resumes when the same command is run again)."""
    if split_by is not None:
        arguments = dict(locals())  # exactly this command's parameters, for each tenant
        ingest_per_tenant(arguments)
        return
    from mmsearch.catalog.mapping import FieldMapping, load_mapping_file, merge_mappings
    from mmsearch.commands.operator_audit import audit_ingest, audit_ingest_failure
    from mmsearch.config import load_settings
    from mmsearch.ingest import IngestOptions

    catalog, more_files = catalogs[0], tuple(catalogs[1:])
    settings = load_settings(home)
    overrides = {
        key: value
        for key, value in {
            "batch_size": batch_size,
            "ocr": ocr or None,
            "refetch_image_urls": refetch_urls or None,
        }.items()
        if value is not None
    }
    settings = settings.model_copy(update=overrides)
    try:
        mapping = load_mapping_file(mapping_file) if mapping_file else FieldMapping()
        given: dict[str, Any] = {
            "id": id_field,
            "title": title_field,
            "text": text_fields,
            "attributes": attributes,
            "required": required,
            "images": image_fields,
            "acl": acl_field,
            "entities": entities,
            "entity_text_fields": entity_text_fields,
            "aliases": aliases,
        }
        given = {k: v for k, v in given.items() if v}
        if entity_phrases is not None:
            given["entity_phrases"] = entity_phrases
        mapping = merge_mappings(mapping, FieldMapping(**given))
        options = IngestOptions(
            catalog,
            collection,
            mapping,
            images_root,
            new_build=new_build,
            sync=sync,
            stage=stage,
            dry_run=dry_run,
            strict=strict,
            wait=not no_wait,
            purpose=f"mmsearch ingest {catalog.name}",
            text_encoder=text_encoder,
            image_encoder=image_encoder,
            executor=check_executor(executor, ray_address),
            ray_address=ray_address,
            more_files=more_files,
        )
        new_collection = not dry_run and preflight(settings, options)
        if default_access is not None and not dry_run:
            _set_default_access(settings, collection, default_access)
        try:
            report = run_ingest(settings, options, quiet=as_json)
        finally:
            if new_collection:
                _remove_if_unused(settings, collection)
        if not dry_run:
            audit_ingest(settings.home, collection, report, strict=strict)
    except MMSearchError as exc:
        if not dry_run:
            audit_ingest_failure(settings.home, collection, exc)
        raise fail(str(exc)) from None
    except BaseException as exc:  # a crash or Ctrl-C is a failed run for the audit trail too
        if not dry_run:
            audit_ingest_failure(settings.home, collection, exc)
        raise
    report.errors_path = kept_errors_path(report)
    print_ingest_report(report, as_json=as_json)
    if strict and report.counts["failed"]:
        raise fail(f"{report.counts['failed']} rows failed and --strict was given", code=1)
    if report.ingested + report.counts["unchanged"] == 0:
        raise fail("nothing was ingested", code=1)


def ingest_per_tenant(arguments: dict[str, Any]) -> None:
    """``ingest --split-by acl``: the catalog cut into one catalog per tenant (checked
    whole before any collection is touched), then one ingest per tenant collection with
    the same options. Relative image paths keep resolving against the catalog's folder."""
    from mmsearch.catalog.mapping import load_mapping_file
    from mmsearch.config import load_settings
    from mmsearch.ingest.tenants import SPLIT_FIELDS, split_catalog, tenant_collection

    split_by, catalogs = arguments["split_by"], arguments["catalogs"]
    catalog = Path(catalogs[0])
    if len(catalogs) > 1:
        raise fail("--split-by reads one catalog file; give one.")
    if split_by not in SPLIT_FIELDS:
        raise fail(f"--split-by takes {', '.join(SPLIT_FIELDS)}, not {split_by!r}.")
    base = arguments["collection"]
    with user_errors():
        mapped = (
            load_mapping_file(arguments["mapping_file"]).acl if arguments["mapping_file"] else None
        )
        acl_field = arguments["acl_field"] or mapped or "acl"
        settings = load_settings(arguments["home"])
        # Kept, not temporary: each tenant's items trace back to these files (lineage),
        # and running the same command again resumes or updates from them.
        folder = settings.home / "splits" / base
        split = split_catalog(catalog, acl_field, base, folder)
        if not arguments["as_json"]:
            console.print(
                f"{split.read} rows, {len(split.files)} tenants, {split.shared} shared "
                "rows copied to each",
                highlight=False,
            )
        root = arguments["images_root"] or (catalog.parent if catalog.is_file() else None)
        for tenant, path in split.files.items():
            name = tenant_collection(base, tenant)
            if not arguments["as_json"]:
                console.print(f"tenant {tenant} → collection {name}", highlight=False)
            ingest(
                **{
                    **arguments,
                    "catalogs": [path],
                    "collection": name,
                    "acl_field": acl_field,
                    "images_root": root,
                    "split_by": None,
                }
            )


def preflight(settings: Settings, options: IngestOptions) -> bool:
    """Plan a first ingest before its collection folder exists; True when it is new.

    The engine plans again once it holds the writer lock, and that lock lives in the
    collection's folder: a typo in a field name would otherwise leave an empty folder
    behind. Planning reads only a sample of the catalog and loads no model."""
    from mmsearch.ingest.staging import plan_run
    from mmsearch.workspace import Workspace

    if Workspace(settings.home).find(options.collection) is not None:
        return False
    plan_run(settings, options, None)
    return True


def _remove_if_unused(settings: Settings, collection: str) -> None:
    """A first ingest that wrote no build leaves no folder (its lock files included)."""
    from mmsearch.workspace import Workspace
    from mmsearch.writer_lock import remove_unused_folder

    workspace = Workspace(settings.home)
    if workspace.find(collection) is None:
        remove_unused_folder(workspace.folder_of(collection))


def kept_errors_path(report: IngestReport) -> Path | None:
    """The errors file the report may name: where the run wrote it, or where it was kept
    when a first ingest that wrote nothing removed its collection again; never a file
    that is gone."""
    from mmsearch.ingest.builds import kept_errors_file

    path = report.errors_path
    if path is None or path.exists():
        return path
    folder = path.parents[4] if len(path.parents) > 4 else None  # builds/B/runs/R/errors
    kept = kept_errors_file(folder, report.run_id) if folder is not None else None
    return kept if kept is not None and kept.exists() else None


def check_executor(name: str, ray_address: str | None) -> Literal["local", "ray"]:
    """--executor and --ray-address, checked before anything is read or locked."""
    if name not in ("local", "ray"):
        raise MMSearchError(f"--executor must be local or ray, not {name!r}.")
    if ray_address is not None and name != "ray":
        raise MMSearchError("--ray-address needs --executor ray.")
    return "ray" if name == "ray" else "local"


def _set_default_access(settings: Settings, collection: str, access: str) -> None:
    from mmsearch.workspace import Workspace

    if access not in ("public", "private"):
        raise MMSearchError(f"--default-access must be public or private, not {access!r}.")
    Workspace(settings.home).create_or_open(collection).set_default_access(access)
