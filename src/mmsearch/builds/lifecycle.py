"""Which build answers a collection's searches, and every switch between builds.

A collection's ``collection.json`` names its builds by alias: ``live`` answers, a
``canary`` answers a share of searches beside it, ``previous`` is where ``rollback``
goes. Every other ready build is a ``candidate`` (never live yet) or ``retired`` (was
live once). Switches (publish, canary start and stop, promote, rollback) are one
atomic rewrite of collection.json each, so a running service picks them up on its
next request, and each is appended to ``switches.jsonl`` beside it: who, when, why.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import asdict, dataclass, field
from typing import Any

from mmsearch.clock import utc_now
from mmsearch.collection_state import CanaryState, CollectionState
from mmsearch.errors import MMSearchError
from mmsearch.manifest import BUILDING, BuildManifest, PublishRecord
from mmsearch.workspace import CollectionDir

LIVE = "live"
CANARY = "canary"
PREVIOUS = "previous"
CANDIDATE = "candidate"
RETIRED = "retired"
SWITCH_LOG = "switches.jsonl"
BUCKETS = 10_000  # canary shares resolve to 0.01 percentage points


class SwitchRefused(MMSearchError):
    """A switch that cannot be made as asked (unknown build, unfinished build, no previous)."""


@dataclass(frozen=True)
class Canary:
    build_id: str
    percent: float
    started_at: str
    started_by: str


@dataclass(frozen=True)
class Route:
    """The build that answers one search, and whether it is the canary."""

    build_id: str
    canary: bool


@dataclass
class SwitchEvent:
    action: str  # publish | canary_start | canary_stop | promote | rollback
    build_id: str | None
    actor: str
    reason: str | None = None
    automatic: bool = False
    before: dict[str, Any] = field(default_factory=dict)  # aliases before the switch
    after: dict[str, Any] = field(default_factory=dict)
    at: str = field(default_factory=utc_now)


def canary_of(state: CollectionState) -> Canary | None:
    raw = state.canary
    if raw is None or not raw.build_id:
        return None
    return Canary(raw.build_id, raw.percent, raw.started_at, raw.started_by)


def route(collection: str, state: CollectionState, caller_key: str | None) -> Route:
    """Live or canary for one search. With a caller key (session or user) the choice is a
    hash of it, so one caller always sees the same build while a canary runs; without,
    each search is drawn on its own."""
    live = state.aliases.live
    if live is None:
        raise MMSearchError(
            f"Collection '{collection}' has no live build yet; ingest a catalog into it first."
        )
    canary = canary_of(state)
    if canary is None:
        return Route(live, False)
    if caller_key:
        digest = hashlib.sha256(f"{collection}\0{canary.build_id}\0{caller_key}".encode()).digest()
        bucket = int.from_bytes(digest[:8], "big") % BUCKETS
    else:
        bucket = random.randrange(BUCKETS)
    if bucket < round(canary.percent * BUCKETS / 100.0):
        return Route(canary.build_id, True)
    return Route(live, False)


def build_status(state: CollectionState, manifest: BuildManifest) -> str:
    build_id = manifest.build_id
    aliases = state.aliases
    canary = canary_of(state)
    if aliases.live == build_id:
        return LIVE
    if canary is not None and canary.build_id == build_id:
        return CANARY
    if aliases.previous == build_id:
        return PREVIOUS
    if manifest.state == BUILDING:
        return BUILDING
    return RETIRED if manifest.published_at else CANDIDATE


def protected_builds(state: CollectionState) -> set[str]:
    """Builds nothing may remove: what answers searches now or is one rollback away."""
    found = {state.aliases.live, state.aliases.previous}
    canary = canary_of(state)
    if canary is not None:
        found.add(canary.build_id)
    return {b for b in found if b}


def ready_manifest(collection: CollectionDir, build_id: str) -> BuildManifest:
    if build_id not in collection.build_ids():
        known = ", ".join(collection.build_ids()[-5:]) or "none"
        raise SwitchRefused(
            f"Collection '{collection.name}' has no build {build_id!r} (latest: {known}); "
            f"list them with: mmsearch builds list -c {collection.name}"
        )
    manifest = collection.manifest(build_id)
    if manifest.state == BUILDING:
        raise SwitchRefused(
            f"Build {build_id} of '{collection.name}' is still being built; re-run its "
            "ingest to finish it first."
        )
    return manifest


def publish(
    collection: CollectionDir,
    build_id: str,
    actor: str,
    *,
    reason: str | None = None,
    action: str = "publish",
    record: dict[str, Any] | None = None,
    guard_live: bool = False,
    expect_live: str | None = None,
) -> SwitchEvent:
    """Make a ready build live; the build that was live becomes ``previous``.

    ``record`` (gate verdict, forced-by) is kept in the build's manifest beside who
    published it and when. With ``guard_live``, the switch is refused unless live is
    still ``expect_live`` (None: no live build): a gate compared the build with that one,
    and its verdict says nothing about a build someone else published meanwhile."""
    manifest = ready_manifest(collection, build_id)

    def change(state: CollectionState) -> SwitchEvent:
        aliases = state.aliases
        before = _snapshot(state)
        if aliases.live == build_id:
            raise SwitchRefused(f"Build {build_id} is already live in '{collection.name}'.")
        if guard_live and aliases.live != expect_live:
            raise SwitchRefused(
                f"Live in '{collection.name}' changed to {aliases.live} while build "
                f"{build_id} was compared with {expect_live or 'no live build'}; run the "
                "publish again to compare it with the build that is live now."
            )
        if aliases.live:
            aliases.previous = aliases.live
        aliases.live = build_id
        canary = canary_of(state)
        if canary is not None and canary.build_id == build_id:
            state.clear("canary")
        return _event(state, action, build_id, actor, reason, before)

    event = collection.update_state(change)
    manifest.published_at = event.at
    manifest.published_by = actor
    entry = PublishRecord.model_validate({"at": event.at, "by": actor, **(record or {})})
    manifest.publishes = [*manifest.publishes, entry][-20:]
    collection.write_manifest(build_id, manifest)
    append_switch(collection, event)
    _sync_store_aliases(collection)
    return event


def start_canary(
    collection: CollectionDir, build_id: str, percent: float, actor: str
) -> SwitchEvent:
    if not 0.0 < percent <= 100.0:
        raise SwitchRefused(
            f"A canary share must be above 0 and at most 100 percent, not {percent}."
        )
    ready_manifest(collection, build_id)

    def change(state: CollectionState) -> SwitchEvent:
        before = _snapshot(state)
        if state.aliases.live in (None, build_id):
            raise SwitchRefused(
                f"Build {build_id} cannot be the canary of '{collection.name}': "
                + ("it is live." if state.aliases.live else "nothing is live yet.")
            )
        state.canary = CanaryState(
            build_id=build_id, percent=float(percent), started_at=utc_now(), started_by=actor
        )
        return _event(state, "canary_start", build_id, actor, f"{percent:g}%", before)

    event = collection.update_state(change)
    append_switch(collection, event)
    _sync_store_aliases(collection)
    return event


def stop_canary(
    collection: CollectionDir,
    actor: str,
    reason: str | None = None,
    *,
    automatic: bool = False,
    only_build: str | None = None,
) -> SwitchEvent | None:
    """End the canary (None when none runs, or when it is no longer ``only_build``: an
    automatic stop must not end a canary an operator started since)."""

    def change(state: CollectionState) -> SwitchEvent | None:
        canary = canary_of(state)
        if canary is None or (only_build is not None and canary.build_id != only_build):
            return None
        before = _snapshot(state)
        state.clear("canary")
        event = _event(state, "canary_stop", canary.build_id, actor, reason, before)
        event.automatic = automatic
        return event

    event = collection.update_state(change)
    if event is not None:
        append_switch(collection, event)
        _sync_store_aliases(collection)
    return event


def rollback(collection: CollectionDir, actor: str, reason: str | None = None) -> SwitchEvent:
    """Point live back at previous at once; the rolled-back build becomes previous, so a
    second rollback undoes the first. A running canary ends: it was compared with the
    build that is no longer live."""

    def change(state: CollectionState) -> SwitchEvent:
        aliases = state.aliases
        before = _snapshot(state)
        target = aliases.previous
        if not target:
            raise SwitchRefused(
                f"Collection '{collection.name}' has no previous build to roll back to."
            )
        if target not in collection.build_ids():
            raise SwitchRefused(f"The previous build {target} of '{collection.name}' is gone.")
        aliases.previous, aliases.live = aliases.live, target
        state.clear("canary")
        return _event(state, "rollback", target, actor, reason, before)

    event = collection.update_state(change)
    append_switch(collection, event)
    _sync_store_aliases(collection)
    return event


def _sync_store_aliases(collection: CollectionDir) -> None:
    """Mirror the aliases into the store (Milvus aliases); never fails the switch."""
    from mmsearch.index.open import sync_aliases  # the index layer loads on demand

    sync_aliases(collection, collection.state())


def append_switch(collection: CollectionDir, event: SwitchEvent) -> None:
    with (collection.folder / SWITCH_LOG).open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(asdict(event), ensure_ascii=False) + "\n")


def switch_history(collection: CollectionDir, limit: int = 50) -> list[dict[str, Any]]:
    path = collection.folder / SWITCH_LOG
    if not path.is_file():
        return []
    events = []
    for line in path.read_text(encoding="utf-8").splitlines()[-limit:]:
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return events


def _snapshot(state: CollectionState) -> dict[str, Any]:
    canary = canary_of(state)
    return {
        **state.aliases.as_json(),
        **({"canary": canary.build_id, "canary_percent": canary.percent} if canary else {}),
    }


def _event(
    state: CollectionState,
    action: str,
    build_id: str | None,
    actor: str,
    reason: str | None,
    before: dict[str, Any],
) -> SwitchEvent:
    return SwitchEvent(action, build_id, actor, reason, before=before, after=_snapshot(state))
