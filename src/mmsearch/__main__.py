"""``python -m mmsearch`` runs the CLI."""

from __future__ import annotations

from mmsearch.cli import app

app()
