"""What the CLI prints for a person: help texts as written, tables readable at 80 columns."""

from __future__ import annotations

import itertools
import json
import re

from typer.testing import CliRunner

from mmsearch.cli import app

FAKE = ["--text-encoder", "fake-text", "--image-encoder", "fake-image"]


def at_80_columns(*args: str) -> str:
    """The command's output on an 80-column terminal, the width most help is read at."""
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "80"}, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_help_keeps_brackets_and_shows_no_type_placeholder_for_flags():
    text = at_80_columns("ingest", "--help")
    assert "mmsearch[ray]" in text  # Rich markup used to swallow "[ray]"
    assert "<bool>" not in text
    assert max(len(line) for line in text.splitlines()) <= 80


def test_help_rewraps_a_docstring_instead_of_keeping_its_source_line_breaks():
    # Source line breaks used to show in help (Rich keeps them); Click re-wraps each
    # paragraph, so the words on either side of a source break share a line.
    text = at_80_columns("ingest", "--help")
    paragraph = " ".join(text.split("\n\n")[1].split())
    assert paragraph.startswith("Ingest a catalog into a collection (upsert by id; unchanged rows")
    # --stage's help is written over several source lines; wrapped again, every output
    # line but its last is full: the next line's first word would not have fitted on it.
    lines = text.splitlines()
    first = next(n for n, line in enumerate(lines) if line.strip().startswith("--stage"))
    entry = [lines[first]]
    for line in lines[first + 1 :]:
        if not line.strip() or line.strip().startswith("-"):
            break
        entry.append(line)
    assert len(entry) >= 3 and "Write a candidate build" in entry[0]
    for line, following in itertools.pairwise(entry):
        assert len(line) + 1 + len(following.split()[0]) > 80, (line, following)


def test_tables_at_80_columns_show_whole_ids_and_statuses(tmp_path, make_catalog):
    home = str(tmp_path / "ws")
    catalog = str(make_catalog())
    at_80_columns("ingest", catalog, "-c", "shop", "--home", home, *FAKE)
    at_80_columns("ingest", catalog, "-c", "shop", "--home", home, "--stage", "--new-build", *FAKE)
    at_80_columns("keys", "create", "--role", "writer", "-c", "shop", "--home", home)
    builds = json.loads(at_80_columns("builds", "list", "-c", "shop", "--home", home, "--json"))
    ids = [b["build_id"] for b in builds]

    listed = at_80_columns("builds", "list", "-c", "shop", "--home", home)
    assert all(build_id in listed for build_id in ids)
    assert "candidate" in listed and "live" in listed
    assert "…" not in listed

    collections = at_80_columns("collections", "--home", home)
    live = next(b["build_id"] for b in builds if b["status"] == "live")
    assert live in collections and "fake-text" in collections and "…" not in collections

    runs = at_80_columns("runs", "list", "-c", "shop", "--build", live, "--home", home)
    assert re.search(r"\bingest\b", runs) and "…" not in runs

    keys = at_80_columns("keys", "list", "--home", home)
    assert re.search(r"k_[0-9a-f]{6}", keys) and "active" in keys and "…" not in keys
    for output in (listed, collections, runs, keys):  # the tables' lines (not a long path)
        assert max(len(line) for line in output.splitlines() if "│" in line) <= 80
