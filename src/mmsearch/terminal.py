"""What every CLI command shares: the two consoles, the common options, the error exit.

Errors a user can cause end with one red line on stderr and exit code 2, never a
traceback; catalog text is escaped so that it prints as written, not as Rich markup.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

console = Console()
errors = Console(stderr=True)

HomeOption = Annotated[
    Path | None,
    typer.Option("--home", help="Workspace folder (default ./mmsearch-data or $MMSEARCH_HOME)."),
]
CollectionOption = Annotated[str, typer.Option("--collection", "-c", help="Collection name.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")]


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print the message as an error and return the Exit to raise."""
    errors.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)
