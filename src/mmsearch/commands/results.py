"""A search result as a terminal table: shared by ``mmsearch search`` and the demo.

It prints a ``search.response.SearchResponse``, the shape a running server sends, so
that a search answered in this process and one answered by ``mmsearch serve`` print
through the same lines.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from mmsearch.terminal import console, errors

if TYPE_CHECKING:
    from mmsearch.search.response import SearchResponse
    from mmsearch.search.result import SearchResult

# retrieval.planner.SIGNALS (the columns' order), repeated so that printing a server's
# answer does not import NumPy; tests/test_cli_server.py checks that the two agree.
SIGNALS = ("keyword", "text_vector", "text_to_image", "image_vector", "text_image")


def print_result(result: SearchResponse | SearchResult, *, title: str) -> None:
    from rich.markup import escape
    from rich.table import Table

    from mmsearch.search.response import SearchResponse

    if not isinstance(result, SearchResponse):
        result = SearchResponse.of(result)
    table = Table(title=f"{escape(title)}  [dim]({result.collection} / {result.build_id})[/]")
    table.add_column("#", justify="right")
    table.add_column("id")
    table.add_column("title")
    table.add_column("score", justify="right")
    for signal in SIGNALS:
        if signal in result.signals:
            table.add_column(signal, justify="right")
    # Which image matched only matters when some hit has several images.
    show_match = any(hit.matched_image and len(hit.images) > 1 for hit in result.hits)
    show_duplicate = any(hit.duplicate for hit in result.hits)
    if show_match:
        table.add_column("matched image")
    if show_duplicate:
        table.add_column("duplicate")
    grouped_by = next((hit.group.attribute for hit in result.hits if hit.group), None)
    if grouped_by:
        table.add_column(f"same {grouped_by}", justify="right")
    for rank, hit in enumerate(result.hits, start=1):
        # Catalog text is data, never Rich markup: "[red] shirt" must print as written.
        cells = [str(rank), escape(hit.id), escape(hit.title), f"{hit.score:.4f}"]
        for signal in SIGNALS:
            if signal in result.signals:
                found = hit.signals.get(signal)
                cells.append(f"{found.score:.3f} (#{found.rank})" if found else "-")
        if show_match:
            matched = hit.matched_image
            cells.append(f"#{matched.index} {Path(matched.path).name}" if matched else "-")
        if show_duplicate:
            cells.append(
                f"{hit.duplicate} (d={hit.duplicate_distance})"
                if hit.duplicate and hit.duplicate_distance is not None
                else hit.duplicate or "-"
            )
        if grouped_by:
            others = hit.group.matches - 1 if hit.group else 0
            cells.append(f"+{others} more" if others else "-")
        table.add_row(*cells)
    console.print(table)
    for warning in result.warnings:
        errors.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False)
    if not result.hits:
        console.print("no results")
