"""CLI command groups beyond the core ones in ``mmsearch.cli``.

Every command module in this package defines ``register(app: typer.Typer) -> None``;
the CLI discovers them at start-up, so a new area of functionality adds its commands
without touching the core CLI module. Modules without ``register`` are helpers the
commands share (``results``: the search table; ``ranking_output``: ranking options and explanations;
``operator_audit``: audited CLI acts).
"""

from __future__ import annotations

import importlib
import pkgutil

import typer


def register_all(app: typer.Typer) -> None:
    for module in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if module.name in HELPERS:
            continue
        importlib.import_module(f"{__name__}.{module.name}").register(app)


HELPERS = frozenset({"operator_audit", "ranking_output", "results"})
