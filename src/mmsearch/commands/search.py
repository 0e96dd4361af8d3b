"""``mmsearch search``: one query, by text, image or both, against a collection's live build."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer
from rich.markup import escape

from mmsearch.commands.results import print_result
from mmsearch.errors import QueryError
from mmsearch.terminal import (
    CollectionOption,
    HomeOption,
    JsonOption,
    console,
    errors,
    print_json,
    user_errors,
)

if TYPE_CHECKING:
    from PIL import Image

    from mmsearch.commands.remote import Server
    from mmsearch.config import Settings
    from mmsearch.manifest import BuildManifest
    from mmsearch.search.query import SearchQuery
    from mmsearch.search.response import SearchResponse

# retrieval.planner.DEFAULT_IMAGE_WEIGHT, repeated so that --help does not import numpy;
# tests/test_first_hour.py checks that the two agree.
DEFAULT_IMAGE_WEIGHT = 0.5


def register(app: typer.Typer) -> None:
    app.command()(search)


def _ann(
    nprobes: int | None, refine_factor: int | None, ef: int | None, exact: bool
) -> dict[str, int | bool] | None:
    """The ANN flags given, as the query's ``ann`` (validated there with the rest)."""
    given = {"nprobes": nprobes, "refine_factor": refine_factor, "ef": ef}
    knobs: dict[str, int | bool] = {name: v for name, v in given.items() if v is not None}
    if exact:
        knobs["exact"] = True
    return knobs or None


def load_settings(home: Path | None) -> Settings:
    """The settings, imported on use: pydantic must not load for ``--help``."""
    from mmsearch.config import load_settings

    return load_settings(home)


def search(
    collection: CollectionOption,
    query: Annotated[str | None, typer.Argument(help="Text query.")] = None,
    image: Annotated[Path | None, typer.Option("--image", help="Query image file.")] = None,
    k: Annotated[int, typer.Option("--k", min=1, max=1000)] = 10,
    where: Annotated[
        str | None,
        typer.Option(
            "--where",
            help="Filter on attribute columns, e.g. \"category = 'Animals' AND price < 10\" "
            "(comparisons, IN, BETWEEN, LIKE, IS NULL, AND/OR/NOT).",
        ),
    ] = None,
    groups: Annotated[
        str | None,
        typer.Option(
            "--groups",
            help='Search as a caller with these ACL groups (comma-separated; "" for none) '
            "to check what they see; without it the search is unrestricted.",
        ),
    ] = None,
    image_weight: Annotated[
        float,
        typer.Option(
            "--image-weight",
            min=0.0,
            max=1.0,
            help="Text+image queries on a CLIP-family build: weight of the image in the "
            "blended query vector (0 = text only, 1 = image only).",
        ),
    ] = DEFAULT_IMAGE_WEIGHT,
    fusion: Annotated[
        str | None, typer.Option("--fusion", help="rrf, weighted or dbsf (default: settings).")
    ] = None,
    weights: Annotated[
        list[str] | None,
        typer.Option("--weight", help="Signal weight, e.g. keyword=0.3; repeat per signal."),
    ] = None,
    normalisation: Annotated[
        str | None, typer.Option("--normalisation", help="weighted fusion: minmax or zscore.")
    ] = None,
    candidates: Annotated[
        int | None, typer.Option("--candidates", min=1, max=10_000, help="Depth per retriever.")
    ] = None,
    nprobes: Annotated[
        int | None,
        typer.Option("--nprobes", help="ANN: IVF partitions searched (default: collection's)."),
    ] = None,
    refine_factor: Annotated[
        int | None,
        typer.Option("--refine-factor", help="ANN: re-score k x this many candidates exactly."),
    ] = None,
    ef: Annotated[
        int | None, typer.Option("--ef", help="ANN: HNSW search list size per partition.")
    ] = None,
    exact: Annotated[
        bool, typer.Option("--exact", help="Bypass the ANN index: exact vector search.")
    ] = False,
    ranker: Annotated[
        str | None, typer.Option("--ranker", help="Reranker model folder ('none' = off).")
    ] = None,
    rules: Annotated[
        str | None, typer.Option("--rules", help="Business rules YAML/TOML ('none' = off).")
    ] = None,
    explain: Annotated[
        bool, typer.Option("--explain", help="Show why each hit ranks where it does.")
    ] = False,
    cross_encoder: Annotated[
        bool | None,
        typer.Option(
            "--cross-encoder/--no-cross-encoder",
            help="Rescore the top hits with the collection's cross-encoder (set with "
            "mmsearch ranking-settings); default: the collection's setting.",
        ),
    ] = None,
    cross_encoder_top: Annotated[
        int | None,
        typer.Option(
            "--cross-encoder-top",
            min=1,
            max=100,
            help="Hits the cross-encoder rescores (at most the collection's depth).",
        ),
    ] = None,
    graph: Annotated[
        bool | None,
        typer.Option(
            "--graph/--no-graph",
            help="Route by the entities the query names (the build's entity graph); "
            "default: the collection's setting.",
        ),
    ] = None,
    group_by: Annotated[
        str | None,
        typer.Option(
            "--group-by",
            metavar="ATTRIBUTE",
            help="One hit per value of this attribute, the best (e.g. document: the best "
            "page of each PDF); --json lists each group's other matching items.",
        ),
    ] = None,
    server: Annotated[
        str | None,
        typer.Option(
            "--server",
            envvar="MMSEARCH_SERVER",
            help="Let the mmsearch serve at this URL answer (its models are warm). Without "
            "it, this workspace's running server answers when it can (see <home>/server.json).",
        ),
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option(
            "--api-key",
            envvar="MMSEARCH_API_KEY",
            help="API key for the server, once its workspace has keys.",
        ),
    ] = None,
    local: Annotated[
        bool, typer.Option("--local", help="Search in this process, never through a server.")
    ] = False,
    home: HomeOption = None,
    as_json: JsonOption = False,
) -> None:
    """Search a collection by text, by image, or both."""
    from mmsearch.commands.ranking_output import parse_weights, print_explanation, print_routing
    from mmsearch.search.query import parse_query

    settings = load_settings(home)
    with user_errors():
        from mmsearch.commands.remote import explicit_server

        named = None if local or not server else explicit_server(server, api_key)
        # Everything the user typed is checked against the live manifest first: a typo in
        # --where or --weight must not wait for lancedb and the models to load (nor for a
        # server). A named server may serve a collection this workspace does not hold.
        manifest = _live_manifest(settings, collection, named is not None)
        if groups is not None:
            from mmsearch.filters.groups import parse_groups

            parse_groups(groups)
        # The same model and the same conversion as the API and evaluation; the CLI's
        # own parts are the image file and searching as a set of ACL groups.
        search_query = parse_query(
            text=query,
            k=k,
            where=where,
            image_weight=image_weight,
            fusion=fusion,
            weights=parse_weights(weights),
            normalisation=_normalisation(normalisation),
            candidates=candidates,
            ann=_ann(nprobes, refine_factor, ef, exact),
            reranker=ranker,
            rules=rules,
            explain=explain,
            group_by=group_by,
            graph=graph,
            cross_encoder=cross_encoder,
            cross_encoder_top=cross_encoder_top,
        )
        if not (query or "").strip() and image is None:
            raise QueryError("Give a text query, an image, or both.")
        if where and manifest is not None:  # parsed again where it runs; a typo fails now
            from mmsearch.filters.parse import parse_where

            parse_where(where, {a.column: a.kind for a in manifest.attributes})
        if rules and rules != "none" and named is None:  # a missing or invalid file, likewise
            from mmsearch.ranking.rules import load_rules

            load_rules(rules)
        response = None
        if not local:
            response = _server_answer(
                settings, collection, search_query, image, groups, named, api_key
            )
        if response is None:
            response = _local_answer(settings, collection, search_query, image, groups)
    if as_json:
        # The API's shape (search/response.py) less its links: one hit shape for clients.
        print_json(response.cli_json())
        return
    title = _describe_query(query, image, where)
    if groups is not None:
        from mmsearch.filters.groups import parse_groups

        title += f" (as groups: {', '.join(sorted(parse_groups(groups) or [])) or 'none'})"
    print_result(response, title=title)
    if explain and response.routing is not None:
        print_routing(console, response.routing)
    for hit in response.hits:
        if hit.explanation is not None:
            print_explanation(console, hit.rank, hit.id, hit.explanation)


def _server_answer(
    settings: Settings,
    collection: str,
    query: SearchQuery,
    image: Path | None,
    groups: str | None,
    named: Server | None,
    api_key: str | None,
) -> SearchResponse | None:
    """The answer of a running server (``commands/remote.py``), or None to search here."""
    from mmsearch.commands import remote

    if named is not None:
        if groups is not None:
            raise QueryError(
                "--groups searches as other ACL groups, which only this process can do (a "
                "server applies its key's own groups): add --local, or leave out --server."
            )
        server = named
    else:
        reason = remote.local_reason(
            query,
            groups=groups,
            default_rules=_has_default_rules(settings, collection),
            canary=_has_canary(settings, collection),
        )
        found = remote.discovered_server(settings, api_key) if reason is None else None
        if found is None:
            return None
        server = found
    try:
        response = remote.search_on_server(server, collection, query, image)
    except remote.ServerFallback as exc:
        errors.print(f"note: {escape(str(exc))}; searching in this process", highlight=False)
        return None
    errors.print(
        f"answered by the server at {escape(server.url)} (--local to search in this process)",
        highlight=False,
        soft_wrap=True,
    )
    return response


def _local_answer(
    settings: Settings,
    collection: str,
    query: SearchQuery,
    image: Path | None,
    groups: str | None,
) -> SearchResponse:
    """The search run in this process: the store opened, the models loaded."""
    query_image = _query_image(settings, image) if image else None
    from mmsearch.filters.groups import parse_groups
    from mmsearch.ingest.sources import file_sha256
    from mmsearch.search.query import build_request
    from mmsearch.search.response import SearchResponse
    from mmsearch.search.searcher import Searcher

    caller_groups = parse_groups(groups)
    searcher = Searcher(settings, collection)
    request = build_request(
        query,
        searcher.manifest.attributes,
        image=query_image,
        image_sha256=file_sha256(image) if image else None,
        access=searcher.access_for(caller_groups) if caller_groups is not None else None,
    )
    return SearchResponse.of(searcher.search(request))


def _has_default_rules(settings: Settings, collection: str) -> bool:
    from mmsearch.errors import MMSearchError
    from mmsearch.governance.registry import Registry

    try:
        return Registry(settings.home).default_rules(collection) is not None
    except MMSearchError:  # an unreadable registry: let this process's search report it
        return True


def _has_canary(settings: Settings, collection: str) -> bool:
    from mmsearch.errors import MMSearchError
    from mmsearch.workspace import Workspace

    try:
        return Workspace(settings.home).collection(collection).state().canary is not None
    except (OSError, MMSearchError):  # unreadable: this process's search will say why
        return True


def _live_manifest(settings: Settings, collection: str, optional: bool) -> BuildManifest | None:
    """The live build's manifest, read without opening its index or any model; None
    when ``optional`` and this workspace has no such collection."""
    from mmsearch.errors import CollectionNotFound
    from mmsearch.workspace import Workspace

    try:
        return Workspace(settings.home).collection(collection).live_manifest()
    except CollectionNotFound:
        if optional:
            return None
        raise


def _query_image(settings: Settings, path: Path) -> Image.Image:
    from mmsearch.media.images import ImageLimits, load_image

    return load_image(path, ImageLimits(settings.max_image_bytes, settings.max_image_pixels))


def _normalisation(value: str | None) -> Literal["minmax", "zscore"] | None:
    if value is None or value in ("minmax", "zscore"):
        return value  # type: ignore[return-value]
    raise QueryError(f"--normalisation must be minmax or zscore, not {value!r}.")


def _describe_query(query: str | None, image: Path | None, where: str | None) -> str:
    parts = []
    if query:
        parts.append(f"text {query!r}")
    if image:
        parts.append(f"image {image.name}")
    if where:
        parts.append(f"where {where}")
    return " + ".join(parts)
