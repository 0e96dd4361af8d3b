"""A collection's ``collection.json`` as a typed model.

collection.json says which build answers a collection's searches and how the collection
is run: its aliases (``live``, ``previous``), the running canary and its rollback
guards, the staged candidate, the default publish gate, who sees items without an
ACL and the moderation policy it enforces. ``CollectionDir.state`` reads it into a
``CollectionState``; ``CollectionDir.update_state`` changes one under the file's lock
and writes it back.

The JSON on disk is unchanged by the model, both ways, as for build manifests
(``manifest.py``, whose parts and ``manifest_json`` this module reuses):

- A file written before a key existed still loads: every key has a default, the one
  readers used to fall back to (no aliases, no canary, no gate, ...).
- A file written back has the keys it was read with (plus those set since), never a
  key just because the model has a default for it; a key that is cleared
  (``StatePart.clear``: the canary when it stops, the gate when it is cleared)
  disappears from the file, as it did when the dict's key was popped.
- Unknown keys are kept (``extra="allow"``) so that a file written by a newer mmsearch
  survives a switch made by this one. No code reads them.

``schema_version`` is the file's layout. Every collection.json written so far has
layout 1 (keys were only ever added), so ``migrate_state`` has nothing to convert yet;
it is where a later layout change converts older files, before validation. A file
without the key is layout 1 and is not given one. A file that does not fit the model
is an ``MMSearchError`` naming the collection, the file and the field.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from pydantic import Field, ValidationError

from mmsearch.config import AnnIndexType, AnnSearch, Settings
from mmsearch.errors import MMSearchError
from mmsearch.manifest import ManifestPart, validation_problems

SCHEMA_VERSION: Final = 1  # the layout this mmsearch writes and reads


class StatePart(ManifestPart):
    """A part of collection.json: unknown keys kept, keys written as read or set."""

    def clear(self, name: str) -> None:
        """Back to the default, and absent from the file again (a popped key)."""
        field = type(self).model_fields[name]
        setattr(self, name, field.get_default(call_default_factory=True))
        self.model_fields_set.discard(name)


class Aliases(StatePart):
    """Build ids by alias: ``live`` answers, ``previous`` is where a rollback goes (a
    rollback that had no live build leaves it null). The canary is ``canary``, below."""

    live: str | None = None
    previous: str | None = None


class CanaryState(StatePart):
    """The build answering a share of searches beside live, since when and by whom."""

    build_id: str
    percent: float  # 0 < percent <= 100, of searches (sticky per session or user)
    started_at: str
    started_by: str


class CanaryGuardSettings(StatePart):
    """The canary's rollback thresholds (``canary_guards``); ``builds.canary.CanaryGuards``
    is the same model refusing unknown names, for the CLI and the API. A guard absent
    from the file is at its default."""

    min_searches: int = Field(default=100, ge=1, description="canary searches before judging")
    max_zero_rate_increase: float = Field(
        default=0.05, ge=0.0, le=1.0, description="zero-result rate above live's, as a share"
    )
    max_p95_ratio: float = Field(default=2.0, gt=0.0, description="canary p95 / live p95")
    max_encoder_failure_rate: float = Field(
        default=0.05, ge=0.0, le=1.0, description="share of canary searches with a failed encoder"
    )
    ctr_alpha: float = Field(default=0.05, gt=0.0, lt=1.0, description="one-sided CTR test")
    ctr_min_impressions: int = Field(
        default=1000, ge=1, description="searches per build before the CTR test may trip"
    )


class DefaultGate(StatePart):
    """The collection's default publish gate: its copy inside the collection (``path``,
    relative to the collection folder), the file it was copied from, and who set it."""

    path: str
    source: str | None = None
    source_sha256: str | None = None
    set_at: str | None = None
    set_by: str | None = None


class PolicyBinding(StatePart):
    """The moderation policy (``<home>/policies/<policy>.yaml``) the collection enforces
    at ingest, ``policy apply`` and search, and who bound it when."""

    policy: str
    set_at: str | None = None
    set_by: str | None = None


class AnnSettings(StatePart):
    """A collection's ANN settings (collection.json ``ann``): the index a build gets and
    the search defaults of the collection's requests. ``index_type``, ``m`` and
    ``ef_construction`` apply when an index is built (the next build or ingest that
    creates one); ``flat`` builds none, and searches exactly."""

    index_type: AnnIndexType | None = None
    m: int | None = Field(default=None, ge=4, le=256, description="HNSW graph degree")
    ef_construction: int | None = Field(
        default=None, ge=16, le=4096, description="HNSW candidate list size while building"
    )
    nprobes: int | None = Field(default=None, ge=1, le=4096)
    refine_factor: int | None = Field(default=None, ge=1, le=100)
    ef: int | None = Field(default=None, ge=1, le=100_000)
    # Searches answered by the in-memory hot index (index/hot); None: the server's
    # ``hot_index`` setting (MMSEARCH_HOT_INDEX).
    hot: bool | None = None

    def search(self) -> AnnSearch:
        """The search part, ``exact`` when the collection asks for no index."""
        exact = True if self.index_type == "flat" else None
        return AnnSearch(
            nprobes=self.nprobes, refine_factor=self.refine_factor, ef=self.ef, exact=exact
        )


def ann_search(
    settings: Settings, collection: AnnSettings | None, request: AnnSearch | None = None
) -> AnnSearch:
    """The ANN knobs one search uses: the request's, then the collection's, then the
    settings' (``ann_*``)."""
    resolved = AnnSearch(
        nprobes=settings.ann_nprobes,
        refine_factor=settings.ann_refine_factor,
        ef=settings.ann_ef,
        exact=True if settings.ann_index_type == "flat" else None,
    )
    if collection is not None:
        resolved = collection.search().over(resolved)
    return request.over(resolved) if request is not None else resolved


def hot_index(settings: Settings, collection: AnnSettings | None) -> bool:
    """Whether a collection's searches use the hot index: its own choice, else the
    server's."""
    if collection is not None and collection.hot is not None:
        return collection.hot
    return settings.hot_index


def ann_index(settings: Settings | None, collection: AnnSettings | None) -> AnnSettings:
    """The index a build's vector columns get: the collection's choices over the settings'."""
    index_type = collection.index_type if collection is not None else None
    if index_type is None:
        index_type = settings.ann_index_type if settings is not None else "ivf_hnsw_sq"
    return AnnSettings(
        index_type=index_type,
        m=collection.m if collection is not None else None,
        ef_construction=collection.ef_construction if collection is not None else None,
    )


class CrossEncoderSettings(StatePart):
    """The collection's cross-encoder (collection.json ``ranking.cross_encoder``): a
    ``sentence-transformers`` ``CrossEncoder`` in a local folder that rescores the top
    ``top`` hits of the ranking, reading the query beside each hit's ``fields``.

    Why per collection: the model, how deep it may read and which fields tell it what
    an item is depend on the catalog; a request only turns it on or off (and may read
    fewer hits). ``fields`` are the mapping's names (its title field, its text fields);
    None reads the title and every text field."""

    path: str
    top: int = Field(default=30, ge=1, le=100, description="hits rescored per search")
    fields: list[str] | None = Field(default=None, max_length=32)
    max_length: int = Field(
        default=256, ge=16, le=2048, description="tokens of one (query, item text) pair"
    )
    default_on: bool = Field(default=True, description="searches that do not say use it")


class RankingSettings(StatePart):
    """How the collection ranks beyond fusion (collection.json ``ranking``): its
    cross-encoder, and boosts of the keyword signal per text field (title over body)."""

    cross_encoder: CrossEncoderSettings | None = None
    # Mapping field name (its title field or a text field) -> boost; None: one keyword
    # score over the concatenated text, as builds always had.
    field_boosts: dict[str, float] | None = None


class CollectionState(StatePart):
    """One collection.json. Fields in the order a collection gains them, so a file written
    through the model reads like one written before it."""

    name: str = ""
    created_at: str | None = None
    schema_version: int = SCHEMA_VERSION  # the file's layout (absent: 1)
    aliases: Aliases = Field(default_factory=Aliases)
    # Who sees items without an ACL: "public" or "private". A str, not a Literal: any
    # other value reads as "private" (``CollectionDir.default_access``), as it always did.
    default_access: str | None = None
    canary_guards: CanaryGuardSettings | None = None
    staged: str | None = None  # the build id of the candidate ``ingest --stage`` fills
    gate: DefaultGate | None = None
    canary: CanaryState | None = None
    ann: AnnSettings | None = None
    moderation: PolicyBinding | None = None  # ``mmsearch policy bind``
    ranking: RankingSettings | None = None  # ``mmsearch ranking-settings``


# Layout N -> N + 1, applied in turn to a file's JSON before validation. None yet: every
# collection.json so far has layout 1.
MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {}


def migrate_state(data: dict[str, Any], *, collection: str, path: Path) -> dict[str, Any]:
    """The file's JSON in the current layout: unchanged when it has it (a file without
    ``schema_version`` has layout 1, and is not given the key)."""
    version = data.get("schema_version", 1)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise _invalid(collection, path, f"schema_version: not a layout number ({version!r})")
    if version > SCHEMA_VERSION:
        raise MMSearchError(
            f"The state of collection '{collection}' ({path}) has layout {version}, written "
            f"by a newer mmsearch; this one reads layout {SCHEMA_VERSION}. Upgrade mmsearch."
        )
    while version < SCHEMA_VERSION:
        data = MIGRATIONS[version](data)
        version += 1
        data["schema_version"] = version
    return data


def load_state(data: Any, *, collection: str, path: Path) -> CollectionState:
    """collection.json read from ``path``, or an error naming the collection and fields."""
    if not isinstance(data, dict):
        raise _invalid(collection, path, f"the file: a JSON object is needed, not {data!r:.40}")
    data = migrate_state(data, collection=collection, path=path)
    try:
        return CollectionState.model_validate(data)
    except ValidationError as exc:
        raise _invalid(collection, path, validation_problems(exc, "the file")) from None


def _invalid(collection: str, path: Path, problem: str) -> MMSearchError:
    return MMSearchError(
        f"The state of collection '{collection}' ({path}) is not valid: {problem}. Restore "
        "it from a backup, or correct the field named."
    )
