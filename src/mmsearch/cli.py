"""The ``mmsearch`` command line: the app, its global settings, and its commands.

Every command lives in a module of ``mmsearch.commands`` (search, collections, demo,
ingest, builds, ...); this module only creates the Typer app and registers them.
"""

from __future__ import annotations

import sys

from mmsearch.blas import prefer_one_blas_thread

prefer_one_blas_thread()  # before anything imports numpy (mmsearch/blas.py says why)

import typer  # noqa: E402

from mmsearch.commands import register_all  # noqa: E402

# Only light modules at import time: ``mmsearch --help`` and every command's argument
# errors must not wait for lancedb, torch, scipy or pydantic. Each command imports what
# it needs when it runs (tests/test_first_hour.py keeps it so).

app = typer.Typer(
    help="mmsearch: multimodal catalog search (images, text embeddings and keywords).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    # Plain Click help: Rich markup would swallow text in square brackets (the
    # `pip install "mmsearch[ray]"` of ingest --help), give every flag a <bool>
    # placeholder, and keep the source's line breaks inside a sentence; Click re-wraps
    # each paragraph to the terminal instead.
    rich_markup_mode=None,
)

register_all(app)


def main() -> None:  # pragma: no cover - console script entry
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
