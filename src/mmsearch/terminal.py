"""What every CLI command shares: the two consoles, the common options, the error exit.

Errors a user can cause end with one red line on stderr and exit code 2, never a
traceback; catalog text is escaped so that it prints as written, not as Rich markup.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

from mmsearch.errors import MMSearchError

console = Console()
errors = Console(stderr=True)

HomeOption = Annotated[
    Path | None,
    typer.Option(
        "--home",
        help="Workspace folder (default $MMSEARCH_HOME, else ./mmsearch-data if present, "
        "else the per-user data folder).",
    ),
]
CollectionOption = Annotated[str, typer.Option("--collection", "-c", help="Collection name.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")]


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print the message as an error and return the Exit to raise."""
    errors.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


class _UserErrors:
    """The context manager of ``user_errors``: a class, not ``@contextmanager``, so that
    its ``__exit__`` is typed to never swallow an exception and type checkers know the
    variables assigned in the block are bound after it."""

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if isinstance(exc, MMSearchError):
            raise fail(str(exc)) from None


def user_errors() -> _UserErrors:
    """Turn an ``MMSearchError`` raised in the ``with`` block into the one-line error exit.

    Every command wraps its work in this, so that what a user can cause (a bad
    option, a missing collection, a locked build) never ends in a traceback.
    """
    return _UserErrors()


def print_json(value: Any) -> None:
    """Print any JSON-able value for ``--json``; dates, paths and the like as strings."""
    console.print_json(json.dumps(value, default=str))


@contextmanager
def progress_bar(label: str, *, quiet: bool) -> Iterator[Callable[[int], Callable[[int], None]]]:
    """A Rich bar on stderr; yields ``start(total) -> advance(n)``."""
    with Progress(
        label, BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=errors, disable=quiet
    ) as progress:

        def start(total: int) -> Callable[[int], None]:
            task = progress.add_task(label, total=total)
            return lambda n: progress.advance(task, n)

        yield start
