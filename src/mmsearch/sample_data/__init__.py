"""The emoji sample catalog shipped with the package, for demos and quick checks."""

from __future__ import annotations

from pathlib import Path

SAMPLE_EMOJI_DIR = Path(__file__).resolve().parent / "emoji"


def sample_catalog_path() -> Path:
    """The JSONL catalog of the shipped emoji sample (images resolve relative to it)."""
    return SAMPLE_EMOJI_DIR / "catalog.jsonl"
