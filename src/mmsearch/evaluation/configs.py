"""Retrieval configurations: named sets of SearchRequest options compared in one experiment.

A configuration file is deliberately thin: ``name`` plus any field that
``SearchRequest`` has *at run time* (``signals``, ``fusion``, ``candidates`` and,
where the retrieval layer offers them, ``weights`` and friends). Fields are mapped
generically instead of being copied here, so a new search option can be evaluated
the day it exists; a key that is not a SearchRequest field is rejected with the list
of valid keys, because a typo would otherwise silently evaluate the default.

Example (TOML)::

    name = "bm25-heavy"
    fusion = "weighted"
    weights = { keyword = 0.7, text_vector = 0.3 }
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmsearch.errors import EvaluationError
from mmsearch.retrieval import fusion as fusion_module
from mmsearch.retrieval.search import SearchRequest
from mmsearch.table_files import read_table_file

# Set per query (or per run, like the caller's access) by the experiment, never by a
# configuration.
QUERY_OWNED_FIELDS = frozenset({"text", "image", "k", "where", "filter", "access"})
# Keys of the results JSON besides the configuration names.
RESERVED_NAMES = frozenset({"significance", "details"})


@dataclass(frozen=True)
class RetrievalConfig:
    """One configuration: a name and the SearchRequest options it sets."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)
    source: str = "built-in"

    @property
    def signals(self) -> list[str] | None:
        value = self.options.get("signals")
        return list(value) if value is not None else None

    def request(self, **query: Any) -> SearchRequest:
        return SearchRequest(**query, **self.options)

    def describe(self) -> str:
        if not self.options:
            return "defaults"
        return ", ".join(f"{key}={value}" for key, value in sorted(self.options.items()))


def request_fields() -> list[str]:
    """The SearchRequest fields a configuration may set (dataclass or pydantic model)."""
    if dataclasses.is_dataclass(SearchRequest):
        names = [f.name for f in dataclasses.fields(SearchRequest)]
    else:  # pragma: no cover - a pydantic SearchRequest
        names = list(getattr(SearchRequest, "model_fields", {}))
    return [name for name in names if name not in QUERY_OWNED_FIELDS]


def make_config(name: str, options: dict[str, Any], source: str = "built-in") -> RetrievalConfig:
    """Validate option names against SearchRequest and check they construct a request."""
    if not isinstance(name, str) or not name.strip():
        raise EvaluationError(f"{source}: 'name' must be a non-empty string.")
    allowed = request_fields()
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
        SearchRequest(text="probe", **options)
    except (TypeError, ValueError) as exc:
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
