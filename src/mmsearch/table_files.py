"""Reading the small TOML/YAML files users hand to mmsearch (field mappings, evaluation
configurations), so every such file fails the same way with a message naming it."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import yaml

from mmsearch.errors import MMSearchError


def read_table_file(path: Path, what: str, error: type[MMSearchError]) -> dict[str, Any]:
    """The file's top-level table; ``what`` names the file in errors ("Mapping file")."""
    if not path.is_file():
        raise error(f"{what} {path} does not exist.")
    suffix = path.suffix.lower()
    try:
        if suffix == ".toml":
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        elif suffix in {".yaml", ".yml"}:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        else:
            raise error(f"{what} {path} must end in .toml, .yaml or .yml.")
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise error(f"{what} {path} is not valid: {exc}") from exc
    if not isinstance(data, dict):
        raise error(f"{what} {path} must hold a table of keys.")
    return data
