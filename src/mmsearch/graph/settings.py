"""A collection's query-routing settings: ``<collection>/graph_routing.json``.

Kept per collection (not per build) because they say how the collection's searches
should use whatever graph the live build has; a new build keeps them. Every field has
the default a collection without the file gets, so the file holds only what an
operator changed (``mmsearch graph -c NAME routing --mode filter``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mmsearch.errors import MMSearchError

ROUTING_FILE = "graph_routing.json"


class RoutingSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(default=True, description="route searches that do not say")
    mode: Literal["boost", "filter"] = Field(
        default="boost",
        description="boost: items carrying a recognised entity get a 'graph' signal; "
        "filter: a named attribute value (exact or fuzzy) also becomes a hard filter",
    )
    graph_weight: float = Field(default=1.0, ge=0.0, le=10.0, description="fusion weight")
    fuzzy_min: float = Field(default=0.85, ge=0.5, le=1.0, description="spelling similarity")
    meaning_min: float = Field(
        default=0.7, ge=0.0, le=1.0, description="cosine of query and entity name embeddings"
    )
    meaning_top: int = Field(default=3, ge=0, le=20, description="entities by meaning; 0 = off")
    weight_signals: bool = Field(default=True, description="colour/shape and code words")
    image_boost: float = Field(default=2.0, ge=1.0, le=10.0)
    keyword_boost: float = Field(default=2.0, ge=1.0, le=10.0)
    expand: int = Field(default=3, ge=0, le=10, description="neighbours added to keyword")
    expand_min_pmi: float = Field(default=0.5, description="least PMI of an expansion")


def routing_path(collection_dir: Path) -> Path:
    return collection_dir / ROUTING_FILE


def load_routing(collection_dir: Path) -> RoutingSettings:
    path = routing_path(collection_dir)
    if not path.is_file():
        return RoutingSettings()
    try:
        return RoutingSettings.model_validate_json(path.read_text(encoding="utf-8"))
    except (OSError, ValidationError) as exc:
        raise MMSearchError(f"The routing settings {path} are not valid: {exc}") from exc


def save_routing(collection_dir: Path, settings: RoutingSettings) -> Path:
    import os
    import tempfile

    path = routing_path(collection_dir)
    data = settings.model_dump_json(indent=2, exclude_defaults=True)
    with tempfile.NamedTemporaryFile(
        "w", dir=collection_dir, suffix=".json", delete=False, encoding="utf-8"
    ) as handle:
        handle.write(data + "\n")
    os.replace(handle.name, path)
    return path
