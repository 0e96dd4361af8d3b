"""Moderation policies: a versioned file of rules, each an action and one condition.

A policy is a TOML or YAML file a person writes and installs with
``mmsearch policy add NAME FILE``; the installed copy lives at
``<home>/policies/<name>.yaml`` with its ``version`` bumped past the one it replaces, so
every decision can name the exact rules that made it. Rules have one condition each:

* ``banned_images``: a folder of images and/or PDQ hex hashes, matched at a calibrated
  ``strictness`` (``fingerprints.STRICTNESS``: PDQ or the visual descriptor, their
  thresholds calibrated together) or an explicit ``max_distance`` (PDQ alone); a copy
  with the same bytes or pixels always matches;
* ``text``: regex patterns and/or words (case-insensitive, on word boundaries), in
  named fields or any field;
* ``attribute``: a ``where`` condition in the search filter language, over the item's
  attributes, with the attribute kinds declared beside it.

Policies are untrusted input in two ways: the file (so every problem names the file,
the rule id and what is wrong) and the regexes in it, which run over untrusted text.
Python's ``re`` has no timeout, and length bounds alone do not save it (``(a|aa)*b``
takes seconds on 28 characters, ``.*.*.*x`` minutes on 2,000). So patterns run on the
``regex`` engine (already required by the text encoders' tokenizers) with a time limit
per search (``PATTERN_TIMEOUT_S``; a pattern that runs out is reported, not waited
for); besides, patterns are bounded in length and number, a repeated group that itself
repeats (``(a+)+``) is refused at load, and the text a pattern sees is cut at
``MAX_TEXT_CHARS``.
"""

from __future__ import annotations

import re
import tomllib
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

import regex
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mmsearch.errors import MMSearchError
from mmsearch.filters.expr import Filter
from mmsearch.filters.parse import FilterError, parse_where
from mmsearch.moderation.fingerprints import STRICTNESS
from mmsearch.table_files import read_table_file

Action = Literal["block", "quarantine", "hide", "flag"]
# Strongest first: when several rules match, the summary takes the first of these.
ACTION_ORDER: tuple[Action, ...] = ("block", "quarantine", "hide", "flag")

MAX_RULES = 200
MAX_PATTERN_CHARS = 300
MAX_PATTERNS = 200
MAX_WORDS = 5_000
MAX_HASHES = 100_000
# Each field's text is matched on at most this many characters, so a pattern that does
# backtrack still runs over a bounded input.
MAX_TEXT_CHARS = 20_000
# Longest one pattern may search one field; past it the search stops and is reported.
PATTERN_TIMEOUT_S = 0.05
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_HEX = re.compile(r"^[0-9a-f]{64}$")
# A group holding a quantifier, itself quantified: (a+)+, (\w+\s?)*, (x{2,})+ ...
_NESTED_QUANTIFIER = re.compile(r"\((?:[^()\\]|\\.)*[+*}](?:[^()\\]|\\.)*\)[+*{]")


class PolicyError(MMSearchError):
    """A policy file or installed policy that cannot be used; the message names it."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BannedImages(_Strict):
    """Images that must not appear: files in ``folder`` and/or ``hashes`` (PDQ hex)."""

    folder: str | None = None
    hashes: list[str] = Field(default_factory=list, max_length=MAX_HASHES)
    strictness: str = "standard"
    max_distance: int | None = Field(default=None, ge=0, le=256)

    @field_validator("hashes")
    @classmethod
    def _hex(cls, hashes: list[str]) -> list[str]:
        cleaned = [h.strip().lower() for h in hashes]
        for position, text in enumerate(cleaned):
            if not _HEX.match(text):
                raise ValueError(f"hashes[{position}] is not 64 hex digits (a PDQ hash)")
        return cleaned

    @field_validator("strictness")
    @classmethod
    def _known(cls, name: str) -> str:
        if name not in STRICTNESS:
            raise ValueError(f"unknown strictness {name!r}; choose one of {', '.join(STRICTNESS)}")
        return name

    @model_validator(mode="after")
    def _something(self) -> BannedImages:
        if self.folder is None and not self.hashes:
            raise ValueError("banned_images needs a folder, hashes or both")
        return self

    @property
    def threshold(self) -> int:
        """The largest PDQ distance that is a near match."""
        if self.max_distance is not None:
            return self.max_distance
        return STRICTNESS[self.strictness].max_distance

    @property
    def min_visual_cosine(self) -> float | None:
        """The smallest visual cosine that is a near match too: the strictness level's,
        calibrated together with its PDQ distance; None (PDQ alone) when ``max_distance``
        is given by hand, since a hand-picked distance was not calibrated with it."""
        if self.max_distance is not None:
            return None
        return STRICTNESS[self.strictness].min_visual_cosine


class TextCondition(_Strict):
    """Regexes and/or words over named fields (all fields when ``fields`` is empty)."""

    fields: list[str] = Field(default_factory=list, max_length=100)
    patterns: list[Annotated[str, Field(min_length=1, max_length=MAX_PATTERN_CHARS)]] = Field(
        default_factory=list, max_length=MAX_PATTERNS
    )
    words: list[Annotated[str, Field(min_length=1, max_length=100)]] = Field(
        default_factory=list, max_length=MAX_WORDS
    )

    @field_validator("patterns")
    @classmethod
    def _bounded(cls, patterns: list[str]) -> list[str]:
        for text in patterns:
            if _NESTED_QUANTIFIER.search(text):
                raise ValueError(
                    f"pattern {text!r} repeats a group that itself repeats (like (a+)+), "
                    "which can take exponential time; rewrite it without the nesting"
                )
            try:
                regex.compile(text, regex.IGNORECASE | regex.V0)
            except regex.error as exc:
                raise ValueError(f"pattern {text!r} is not a valid regex: {exc}") from None
        return patterns

    @model_validator(mode="after")
    def _something(self) -> TextCondition:
        if not self.patterns and not self.words:
            raise ValueError("text needs patterns, words or both")
        return self

    def compiled(self) -> tuple[tuple[str, regex.Pattern[str]], ...]:
        """(what the policy said, compiled regex): each pattern, then all words as one regex.

        The words become one alternation (longest first) so a list of thousands costs one
        pass over the text; its label is ``"words"`` and the matched word is the evidence.
        """
        return _compile(tuple(self.patterns), tuple(self.words))


class AttributeCondition(_Strict):
    """A ``where`` text over attributes whose kinds (string/int/float/bool) are declared."""

    where: str = Field(min_length=1, max_length=2_000)
    types: dict[str, Literal["string", "int", "float", "bool"]] = Field(min_length=1)

    def to_filter(self) -> Filter:
        return parse_where(self.where, dict(self.types))


class Rule(_Strict):
    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
    action: Action
    description: str = ""
    banned_images: BannedImages | None = None
    text: TextCondition | None = None
    attribute: AttributeCondition | None = None

    @model_validator(mode="after")
    def _one_condition(self) -> Rule:
        given = [k for k in ("banned_images", "text", "attribute") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "a rule has exactly one condition: banned_images, text or attribute "
                f"(got {', '.join(given) or 'none'})"
            )
        if self.attribute is not None:
            try:
                self.attribute.to_filter()
            except FilterError as exc:
                raise ValueError(f"attribute.where: {exc}") from None
        return self


class PolicySet(_Strict):
    version: int = Field(default=1, ge=1)
    description: str = ""
    rules: list[Rule] = Field(min_length=1, max_length=MAX_RULES)

    @model_validator(mode="after")
    def _unique_ids(self) -> PolicySet:
        seen: set[str] = set()
        for rule in self.rules:
            if rule.id in seen:
                raise ValueError(f"rule id {rule.id!r} is used twice")
            seen.add(rule.id)
        return self


@lru_cache(maxsize=256)
def _compile(
    patterns: tuple[str, ...], words: tuple[str, ...]
) -> tuple[tuple[str, regex.Pattern[str]], ...]:
    flags = regex.IGNORECASE | regex.V0
    found = [(p, regex.compile(p, flags)) for p in patterns]
    if words:
        ordered = sorted({w.strip() for w in words if w.strip()}, key=len, reverse=True)
        alternation = "|".join(regex.escape(w) for w in ordered)
        found.append(("words", regex.compile(rf"(?<!\w)(?:{alternation})(?!\w)", flags)))
    return tuple(found)


def check_policy_name(name: str) -> None:
    if not NAME_PATTERN.match(name):
        raise PolicyError(
            f"Policy name {name!r} must be 1-64 lower-case letters, digits, '-' or '_', "
            "starting with a letter or digit."
        )


def parse_policy(data: Any, source: str, base: Path | None = None) -> PolicySet:
    """Validate ``data`` (a parsed file); errors name ``source`` and the rule id.

    ``base`` is the folder relative ``banned_images.folder`` paths start from (the
    policy file's folder); they are made absolute and must exist.
    """
    if not isinstance(data, dict):
        raise PolicyError(f"Policy {source} must hold a table with 'version' and 'rules'.")
    try:
        policy = PolicySet.model_validate(data)
    except ValidationError as exc:
        raise PolicyError(f"Policy {source} is not valid:\n{_describe(exc, data)}") from None
    rules: list[Rule] = []
    for rule in policy.rules:
        banned = rule.banned_images
        if banned is not None and banned.folder is not None:
            folder = Path(banned.folder).expanduser()
            if not folder.is_absolute():
                if base is None:
                    raise PolicyError(
                        f"Policy {source}, rule {rule.id!r}: banned_images.folder "
                        f"{banned.folder} must be an absolute path here."
                    )
                folder = base / folder
            if not folder.is_dir():
                raise PolicyError(
                    f"Policy {source}, rule {rule.id!r}: banned_images.folder {folder} "
                    "is not a folder."
                )
            rule = rule.model_copy(
                update={
                    "banned_images": banned.model_copy(update={"folder": str(folder.resolve())})
                }
            )
        rules.append(rule)
    return policy.model_copy(update={"rules": rules})


def parse_policy_text(text: str, fmt: str, source: str) -> PolicySet:
    """A policy sent as text (the admin API): TOML or YAML; folders must be absolute."""
    try:
        if fmt == "toml":
            data: Any = tomllib.loads(text)
        elif fmt == "yaml":
            data = yaml.safe_load(text) or {}
        else:
            raise PolicyError(f"Policy {source}: format must be toml or yaml, not {fmt!r}.")
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise PolicyError(f"Policy {source} is not valid {fmt}: {exc}") from None
    return parse_policy(data, source)


def load_policy_file(path: Path) -> PolicySet:
    """A policy file a person wrote (TOML or YAML), validated; folders resolved beside it."""
    data = read_table_file(path, "Policy file", PolicyError)
    return parse_policy(data, str(path), base=path.parent)


def _describe(exc: ValidationError, data: dict[str, Any]) -> str:
    """One line per problem: the rule (by id when it has one), the field, the reason."""
    lines: list[str] = []
    rules = data.get("rules")
    for error in exc.errors():
        where = list(error["loc"])
        prefix = ""
        if len(where) >= 2 and where[0] == "rules" and isinstance(where[1], int):
            rule = rules[where[1]] if isinstance(rules, list) and where[1] < len(rules) else None
            rule_id = rule.get("id") if isinstance(rule, dict) else None
            prefix = f"rule {rule_id!r}" if rule_id else f"rule #{where[1] + 1}"
            where = where[2:]
        field = ".".join(str(part) for part in where)
        message = str(error["msg"]).removeprefix("Value error, ")
        label = ", ".join(part for part in (prefix, field) if part)
        lines.append(f"  {label}: {message}" if label else f"  {message}")
    return "\n".join(lines)
