"""Business rules: a versioned YAML or TOML file, validated with pydantic.

Merchandisers change rules without touching code, so the file is data only: typed
conditions ``{attribute, op, value}`` (never ``eval``), query patterns (exact or
regex), ids. The ``version`` string is echoed in every explanation so that a ranking
seen in a log can be traced to the rules that produced it.

Example (YAML)::

    version: "2024-06-shop-1"
    filters:                       # pushed into the store query (AND with the user's filter)
      - name: in-stock
        conditions: [{attribute: in_stock, op: "=", value: true}]
    boosts:                        # on candidate rows after fusion / reranking
      - name: house-brand
        conditions: [{attribute: brand, op: "=", value: Acme}]
        multiply: 1.5              # or add: 0.01
    pins:
      - name: mug-landing
        query: {pattern: "mug", match: exact}
        items: [{id: SKU-1, position: 1}]
    blocks:
      - name: recalled
        ids: [SKU-9]
    diversity:
      max_per_value: {attribute: brand, limit: 2}
      # or mmr: {signal: text_vector, lambda: 0.7}
    dedupe: {max_hamming: 6}       # needs a perceptual-hash column; else skipped, with a warning
"""

from __future__ import annotations

import math
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mmsearch.errors import MMSearchError
from mmsearch.filters.evaluate import matches
from mmsearch.filters.expr import Compare, Filter, InList, Not, all_of

Scalar = str | int | float | bool
Op = Literal["=", "!=", "<", "<=", ">", ">=", "in", "not in"]
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


RulesChoice = str | Path | tuple[Path, Path] | None
"""What a search asks of the rules: a file, "none", None for the default, or a binding
file and one stacked on it (a caller's rules on a collection's default rules)."""


class RulesError(MMSearchError):
    """The rules file cannot be read or does not fit this collection."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Condition(_Strict):
    attribute: str
    op: Op = "="
    value: Scalar | list[Scalar]

    @field_validator("attribute")
    @classmethod
    def _identifier(cls, name: str) -> str:
        if not _IDENT.match(name):
            raise ValueError(f"attribute {name!r} is not a column name")
        return name

    @model_validator(mode="after")
    def _list_only_for_in(self) -> Condition:
        if (self.op in {"in", "not in"}) != isinstance(self.value, list):
            raise ValueError(f"op {self.op!r} needs {'a list' if 'in' in self.op else 'one value'}")
        values = self.value if isinstance(self.value, list) else [self.value]
        if not values:
            raise ValueError(f"op {self.op!r} needs at least one value")
        if any(isinstance(v, float) and not math.isfinite(v) for v in values):
            raise ValueError("values must be finite numbers")
        return self

    def matches(self, row: dict[str, Any]) -> bool:
        """Evaluate on a fetched row; a missing value never matches (SQL NULL semantics)."""
        return matches(self.to_filter(), row)

    def to_filter(self) -> Filter:
        """The condition as a filter node (the store quotes the value itself)."""
        if isinstance(self.value, list):
            return InList(self.attribute, tuple(self.value), negated=self.op == "not in")
        return Compare(self.attribute, self.op, self.value)  # type: ignore[arg-type]


class QueryPattern(_Strict):
    pattern: str
    match: Literal["exact", "regex"] = "exact"

    @model_validator(mode="after")
    def _compiles(self) -> QueryPattern:
        if self.match == "regex":
            try:
                re.compile(self.pattern)
            except re.error as exc:
                raise ValueError(f"regex {self.pattern!r} does not compile: {exc}") from exc
        return self

    def matches(self, text: str | None) -> bool:
        """Exact: case-insensitive equality after trimming; regex: ``re.search``, ignoring case."""
        query = (text or "").strip()
        if self.match == "exact":
            return query.casefold() == self.pattern.strip().casefold()
        return re.search(self.pattern, query, flags=re.IGNORECASE) is not None


class _Named(_Strict):
    name: str | None = None


class _Scoped(_Named):
    query: QueryPattern | None = None  # the rule applies only to queries matching this

    def applies_to(self, text: str | None) -> bool:
        return self.query is None or self.query.matches(text)


class FilterRule(_Scoped):
    conditions: list[Condition] = Field(min_length=1)

    def to_filter(self) -> Filter | None:
        return all_of(*(c.to_filter() for c in self.conditions))


class BoostRule(_Scoped):
    conditions: list[Condition] = Field(min_length=1)
    multiply: float | None = Field(default=None, gt=0)
    add: float | None = None

    @model_validator(mode="after")
    def _one_effect(self) -> BoostRule:
        if (self.multiply is None) == (self.add is None):
            raise ValueError("a boost needs exactly one of 'multiply' or 'add'")
        return self

    def matches(self, row: dict[str, Any]) -> bool:
        return all(c.matches(row) for c in self.conditions)


class Pin(_Strict):
    id: str
    position: int = Field(ge=1)


class PinRule(_Named):
    query: QueryPattern  # pins always name the queries they are for
    items: list[Pin] = Field(min_length=1)

    def applies_to(self, text: str | None) -> bool:
        return self.query.matches(text)


class BlockRule(_Scoped):
    ids: list[str] = Field(min_length=1)


class MaxPerValue(_Strict):
    attribute: str
    limit: int = Field(ge=1)


class MMR(_Strict):
    signal: str  # a vector retriever whose column holds the vectors, e.g. text_vector
    lambda_: float = Field(default=0.7, ge=0.0, le=1.0, alias="lambda")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class DiversityRule(_Strict):
    name: str | None = None
    max_per_value: MaxPerValue | None = None
    mmr: MMR | None = None


class DedupeRule(_Strict):
    name: str | None = None
    max_hamming: int = Field(default=6, ge=0, le=64)


class RuleSet(_Strict):
    version: str = Field(min_length=1)
    filters: list[FilterRule] = Field(default_factory=list)
    boosts: list[BoostRule] = Field(default_factory=list)
    pins: list[PinRule] = Field(default_factory=list)
    blocks: list[BlockRule] = Field(default_factory=list)
    diversity: DiversityRule | None = None
    dedupe: DedupeRule | None = None

    @field_validator("version", mode="before")
    @classmethod
    def _as_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int | float) else value

    def attributes(self) -> set[str]:
        """Every column a condition or diversity rule reads."""
        names = {c.attribute for rule in [*self.filters, *self.boosts] for c in rule.conditions}
        if self.diversity and self.diversity.max_per_value:
            names.add(self.diversity.max_per_value.attribute)
        return names

    def store_filter(self, text: str | None) -> Filter | None:
        """Filters and blocks that apply to this query, as one filter for the store."""
        parts = [rule.to_filter() for rule in self.filters if rule.applies_to(text)]
        blocked = self.blocked(text)
        if blocked:
            parts.append(Not(InList("id", tuple(sorted(blocked)))))
        return all_of(*parts)

    def blocked(self, text: str | None) -> set[str]:
        return {i for rule in self.blocks if rule.applies_to(text) for i in rule.ids}


def stack_rules(binding: RuleSet, added: RuleSet) -> RuleSet:
    """``added`` on top of ``binding``: every filter, block, boost and pin of both apply,
    so the added set can narrow or reorder results but never lift what ``binding``
    filters or blocks; where only one of each may apply (diversity, dedupe), the
    binding set's choice wins. This is how a caller's rules meet a collection's default
    rules that bind it."""
    return RuleSet(
        version=f"{binding.version}+{added.version}",
        filters=[*binding.filters, *added.filters],
        boosts=[*binding.boosts, *added.boosts],
        pins=[*binding.pins, *added.pins],
        blocks=[*binding.blocks, *added.blocks],
        diversity=binding.diversity or added.diversity,
        dedupe=binding.dedupe or added.dedupe,
    )


def rule_name(rule: BaseModel, kind: str, index: int) -> str:
    return getattr(rule, "name", None) or f"{kind}[{index}]"


def load_rules(path: str | Path) -> RuleSet:
    """Read and validate a rules file (``.yaml``/``.yml`` or ``.toml``)."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise RulesError(
            f"The rules file {file} does not exist; pass the path of a YAML or TOML file."
        )
    try:
        text = file.read_text(encoding="utf-8")
        data = tomllib.loads(text) if file.suffix.lower() == ".toml" else yaml.safe_load(text)
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise RulesError(f"The rules file {file} cannot be parsed: {exc}") from exc
    if not isinstance(data, dict):
        raise RulesError(f"The rules file {file} must hold a mapping with at least 'version'.")
    try:
        return RuleSet.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'file'}: {e['msg']}" for e in exc.errors()
        )
        raise RulesError(f"The rules file {file} is not valid: {problems}") from exc


def check_columns(rules: RuleSet, columns: set[str]) -> None:
    """Conditions on columns the build does not have are a user error, named precisely."""
    unknown = sorted(rules.attributes() - columns)
    if unknown:
        raise RulesError(
            f"The rules (version {rules.version}) use attribute(s) {', '.join(unknown)} that this "
            f"collection does not have; available: {', '.join(sorted(columns)) or 'none'}."
        )
