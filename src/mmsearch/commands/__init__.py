"""Every ``mmsearch`` command, one module per area.

Every command module in this package defines ``register(app: typer.Typer) -> None``;
the CLI discovers them at start-up, so a new area of functionality adds its commands
without touching the core CLI module. Modules without ``register`` are helpers the
commands share (``results``: the search table; ``ranking_output``: ranking options and
explanations; ``operator_audit``: audited CLI acts; ``demo_flow``: the demo's steps;
``server_file``: the running server's ``server.json``; ``remote``: searching through it).
"""

from __future__ import annotations

import importlib
import pkgutil

import typer


def register_all(app: typer.Typer) -> None:
    """Register every command module's commands: the first-hour ones first, for --help."""
    names = sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name not in HELPERS)
    for name in [*FIRST, *(n for n in names if n not in FIRST)]:
        importlib.import_module(f"{__name__}.{name}").register(app)


HELPERS = frozenset(
    {"demo_flow", "operator_audit", "ranking_output", "remote", "results", "server_file"}
)
# The commands a first-time user needs, listed first in ``mmsearch --help`` as before
# they moved here from the CLI module.
FIRST = ("search", "collections", "demo_command")
