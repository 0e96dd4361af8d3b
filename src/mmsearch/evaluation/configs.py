"""Retrieval configurations: named sets of search options compared in one experiment.

A configuration file is deliberately thin: ``name`` plus any option of
``search.query.SearchQuery`` that does not come from the query itself (``signals``,
``fusion``, ``candidates``, ``weights`` and friends). It is validated by that same
model and turned into a ``SearchRequest`` by the same ``build_request`` as the CLI
and the API, so an experiment measures exactly what callers get, and a new search
option can be evaluated the day it exists. A key that is not such an option is
rejected with the list of valid keys, because a typo would otherwise silently
evaluate the default.

Example (TOML)::

    name = "bm25-heavy"
    fusion = "weighted"
    weights = { keyword = 0.7, text_vector = 0.3 }
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from mmsearch.errors import EvaluationError, QueryError
from mmsearch.filters.expr import Visible
from mmsearch.ranking import fusion as fusion_module
from mmsearch.search.query import SearchQuery, build_request, parse_query
from mmsearch.search.request import SearchRequest
from mmsearch.table_files import read_table_file

# Set per query (or per run, like the caller's access) by the experiment, never by a
# configuration.
QUERY_OWNED_FIELDS = frozenset(
    {"text", "image", "k", "offset", "where", "filter", "filters", "access"}
)
# SearchQuery fields that identify a live caller (canary routing): no experiment has one.
CALLER_FIELDS = frozenset({"session", "user"})
# Keys of the results JSON besides the configuration names.
RESERVED_NAMES = frozenset({"significance", "details"})


@dataclass(frozen=True)
class RetrievalConfig:
    """One configuration: a name and the search options it sets (as written, for reports)."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)
    source: str = "built-in"

    @property
    def signals(self) -> list[str] | None:
        value = self.options.get("signals")
        return list(value) if value is not None else None

    def request(
        self,
        *,
        text: str | None = None,
        image: Image.Image | None = None,
        k: int = 10,
        where: str | None = None,
        access: Visible | None = None,
    ) -> SearchRequest:
        """The request for one query under this configuration (a ``QueryError`` if the
        query itself is out of bounds, as it would be from the CLI or the API)."""
        query = parse_query(text=text, k=k, where=where, **self.options)
        return build_request(query, image=image, access=access)

    def describe(self) -> str:
        if not self.options:
            return "defaults"
        return ", ".join(f"{key}={value}" for key, value in sorted(self.options.items()))


def config_fields() -> list[str]:
    """The SearchQuery options a configuration may set."""
    excluded = QUERY_OWNED_FIELDS | CALLER_FIELDS
    return [name for name in SearchQuery.model_fields if name not in excluded]


def make_config(name: str, options: dict[str, Any], source: str = "built-in") -> RetrievalConfig:
    """Validate option names and values against SearchQuery, the model every caller uses."""
    if not isinstance(name, str) or not name.strip():
        raise EvaluationError(f"{source}: 'name' must be a non-empty string.")
    allowed = config_fields()
    owned = sorted(set(options) & QUERY_OWNED_FIELDS)
    if owned:
        raise EvaluationError(
            f"{source}: {', '.join(owned)} come from each query or from the run (k, groups), "
            "not from a configuration; remove them."
        )
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise EvaluationError(
            f"{source}: unknown key(s) {', '.join(unknown)}; "
            f"a configuration may set: name, {', '.join(allowed)}."
        )
    signals = options.get("signals")
    if signals is not None and (
        not isinstance(signals, list) or not all(isinstance(s, str) for s in signals)
    ):
        raise EvaluationError(f"{source}: 'signals' must be a list of signal names.")
    fusion = options.get("fusion")
    if fusion is not None and fusion not in fusion_module.FUSIONS:
        raise EvaluationError(
            f"{source}: unknown fusion {fusion!r}; "
            f"choose one of: {', '.join(sorted(fusion_module.FUSIONS))}."
        )
    try:
        parse_query(text="probe", **options)
    except QueryError as exc:
        raise EvaluationError(f"{source}: the options are not valid: {exc}") from exc
    return RetrievalConfig(name.strip(), dict(options), source)


def load_config_file(path: Path) -> RetrievalConfig:
    """Read one configuration from TOML or YAML (by suffix); the file stem names it by default."""
    data = read_table_file(path, "Configuration file", EvaluationError)
    options = dict(data)
    name = options.pop("name", path.stem)
    return make_config(name, options, source=str(path))


def builtin_configs(
    *, has_text: bool, has_image: bool, has_image_vectors: bool
) -> list[RetrievalConfig]:
    """The default comparison: each signal alone, then the fusions the build offers.

    ``image-vector`` is only meaningful when some query has an image and the
    collection holds image vectors; ``hybrid-weighted`` only when the retrieval layer
    offers weighted fusion.
    """
    configs: list[RetrievalConfig] = []
    if has_text:
        configs.append(make_config("keyword", {"signals": ["keyword"]}))
        configs.append(make_config("text-vector", {"signals": ["text_vector"]}))
    if has_image and has_image_vectors:
        configs.append(make_config("image-vector", {"signals": ["image_vector"]}))
    configs.append(make_config("hybrid-rrf", {"fusion": "rrf"}))
    if "weighted" in fusion_module.FUSIONS:
        configs.append(make_config("hybrid-weighted", {"fusion": "weighted"}))
    return configs


def check_unique_names(configs: list[RetrievalConfig]) -> None:
    seen: dict[str, str] = {}
    for config in configs:
        if config.name in RESERVED_NAMES:
            raise EvaluationError(
                f"{config.source}: {config.name!r} is reserved in the results; choose another name."
            )
        if config.name in seen:
            raise EvaluationError(
                f"Two configurations are named {config.name!r} ({seen[config.name]} and "
                f"{config.source}); give each a distinct 'name'."
            )
        seen[config.name] = config.source
