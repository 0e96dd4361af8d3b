"""The workspace on disk: collections, their builds, aliases and manifests.

Layout::

    <home>/collections/<name>/collection.json         aliases (live, previous)
    <home>/collections/<name>/lancedb/                 the LanceDB database (one table per build)
    <home>/collections/<name>/builds/<build>/manifest.json
    <home>/collections/<name>/builds/<build>/runs/<run>/errors.jsonl

Manifests and collection.json are plain JSON so that operators can read them without
mmsearch; in code they are ``BuildManifest`` (``manifest.py``) and ``CollectionState``
(``collection_state.py``) models.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from filelock import FileLock

from mmsearch.clock import utc_now
from mmsearch.collection_state import SCHEMA_VERSION, Aliases, CollectionState, load_state
from mmsearch.config import Settings, load_settings
from mmsearch.errors import CollectionNotFound, MMSearchError
from mmsearch.manifest import BUILDING, BuildManifest, load_manifest, manifest_json

COLLECTION_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
STATE_LOCK_TIMEOUT_S = 30.0
# collection.json is read-modify-written by switches (publish, canary, rollback) from the
# CLI and from every service worker, including the automatic canary stop: a short lock of
# its own, so a switch never waits behind an ingest holding the writer lock for minutes.
_state_threads = threading.Lock()
T = TypeVar("T")


def new_id(prefix: str) -> str:
    """Sortable, unique ids: time first, then randomness."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    return f"{prefix}-{stamp}-{os.urandom(3).hex()}"


def write_json_atomic(path: Path, data: Any) -> None:
    """Write via a temp file and rename, so a crash never leaves half a manifest."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(
        "w", dir=path.parent, prefix=f".{path.name}.", delete=False, encoding="utf-8"
    ) as handle:
        json.dump(data, handle, indent=2, ensure_ascii=False, default=str)
        handle.write("\n")
    os.replace(handle.name, path)


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise
    except (OSError, json.JSONDecodeError) as exc:
        raise MMSearchError(f"Cannot read {path}: {exc}") from exc


class BuildNotFound(MMSearchError):
    """The collection has no build by that id."""


def open_collection(home: Path | None, name: str) -> tuple[Settings, CollectionDir]:
    """What a command over one collection starts with: the settings (``home`` is its
    ``--home``) and the collection's folder; ``CollectionNotFound`` names the collections
    there when it does not exist, so each command need not say it again."""
    settings = load_settings(home)
    return settings, Workspace(settings.home).collection(name)


class Workspace:
    def __init__(self, home: Path):
        self.home = home

    @property
    def collections_dir(self) -> Path:
        return self.home / "collections"

    def collection_names(self) -> list[str]:
        if not self.collections_dir.is_dir():
            return []
        return sorted(
            p.name for p in self.collections_dir.iterdir() if (p / "collection.json").is_file()
        )

    def collection(self, name: str) -> CollectionDir:
        check_collection_name(name)
        folder = self.collections_dir / name
        if not (folder / "collection.json").is_file():
            known = ", ".join(self.collection_names()) or "none yet"
            raise CollectionNotFound(
                f"No collection named '{name}' in {self.home} (collections: {known}). "
                f"Create it with: mmsearch ingest CATALOG --collection {name}"
            )
        return CollectionDir(folder)

    def find(self, name: str) -> CollectionDir | None:
        """The collection if it exists; None otherwise (nothing is created)."""
        check_collection_name(name)
        folder = self.collections_dir / name
        return CollectionDir(folder) if (folder / "collection.json").is_file() else None

    def folder_of(self, name: str) -> Path:
        """Where the collection lives or will live (its writer lock sits there)."""
        check_collection_name(name)
        return self.collections_dir / name

    def create_or_open(self, name: str) -> CollectionDir:
        check_collection_name(name)
        folder = self.collections_dir / name
        if not (folder / "collection.json").is_file():
            state = CollectionState(
                name=name, created_at=utc_now(), schema_version=SCHEMA_VERSION, aliases=Aliases()
            )
            write_json_atomic(folder / "collection.json", state.as_json())
        return CollectionDir(folder)


def check_collection_name(name: str) -> None:
    if not COLLECTION_NAME.match(name):
        raise MMSearchError(
            f"Invalid collection name {name!r}: use letters, digits, '_' or '-' "
            "(at most 64 characters, starting with a letter or digit)."
        )


class CollectionDir:
    """One collection's folder: aliases in collection.json, one folder per build."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.name = folder.name

    @property
    def lancedb_dir(self) -> Path:
        return self.folder / "lancedb"

    def build_dir(self, build_id: str) -> Path:
        return self.folder / "builds" / build_id

    def aliases(self) -> dict[str, str | None]:
        """The aliases as collection.json has them (``{"live": ..., "previous": ...}``)."""
        aliases: dict[str, str | None] = self.state().aliases.as_json()
        return aliases

    def alias(self, name: str) -> str | None:
        return self.aliases().get(name)

    def state(self) -> CollectionState:
        """collection.json as one snapshot: aliases, canary, default access, gate; an
        unreadable or invalid file is an ``MMSearchError`` naming it."""
        path = self.folder / "collection.json"
        return load_state(read_json(path), collection=self.name, path=path)

    def update_state(self, change: Callable[[CollectionState], T]) -> T:
        """Read-modify-write collection.json under its own lock; returns what ``change`` did.

        ``change`` changes the state in place; it is written back as it was read, plus
        what changed (``collection_state``), or not at all when ``change`` raises."""
        path = self.folder / "collection.json"
        with _state_threads, FileLock(str(path) + ".lock", timeout=STATE_LOCK_TIMEOUT_S):
            state = self.state()
            result = change(state)
            write_json_atomic(path, state.as_json())
        return result

    def set_live(self, build_id: str) -> None:
        """Point ``live`` at a build; the old live build becomes ``previous`` for rollback.

        A canary of the build that goes live has nothing left to compare with, so it ends."""

        def change(state: CollectionState) -> None:
            aliases = state.aliases
            current = aliases.live
            if current and current != build_id:
                aliases.previous = current
            aliases.live = build_id
            if state.canary is not None and state.canary.build_id == build_id:
                state.clear("canary")

        self.update_state(change)

    def default_access(self, fallback: str = "public") -> str:
        """Who sees items without an ACL: "public" (everyone) or "private" (no one but
        unrestricted callers). Kept per collection so one workspace can host both."""
        stored = self.state().default_access
        value = fallback if stored is None else stored
        return value if value in ("public", "private") else "private"

    def set_default_access(self, access: str) -> None:
        if access not in ("public", "private"):
            raise MMSearchError(f"Default access must be public or private, not {access!r}.")

        def change(state: CollectionState) -> None:
            state.default_access = access

        self.update_state(change)

    def build_ids(self) -> list[str]:
        """Every build with a manifest, oldest first (build ids sort by creation time)."""
        builds = self.folder / "builds"
        if not builds.is_dir():
            return []
        return sorted(p.name for p in builds.iterdir() if (p / "manifest.json").is_file())

    def require_build(self, build_id: str) -> str:
        """``build_id`` when the collection has that build; otherwise ``BuildNotFound``
        naming the newest builds and how to list them all."""
        builds = self.build_ids()
        if build_id not in builds:
            known = ", ".join(builds[-5:]) or "none"
            raise BuildNotFound(
                f"Collection '{self.name}' has no build {build_id!r} (latest: {known}); "
                f"list them with: mmsearch builds list -c {self.name}"
            )
        return build_id

    def remove_build_files(self, build_id: str) -> None:
        """Delete a build's folder (its table is dropped through ``index.open``)."""
        shutil.rmtree(self.build_dir(build_id), ignore_errors=True)

    def unfinished_builds(self) -> list[str]:
        """Builds whose first ingest has not completed: never visible, resumable."""
        found = []
        for build_id in self.build_ids():
            try:
                state = self.manifest(build_id).state
            except MMSearchError:
                continue
            if state == BUILDING:
                found.append(build_id)
        return found

    def manifest(self, build_id: str) -> BuildManifest:
        """The build's manifest; an unreadable or invalid one is an ``MMSearchError``."""
        path = self.build_dir(build_id) / "manifest.json"
        if not path.is_file():
            raise MMSearchError(f"Build {build_id} of collection '{self.name}' has no manifest.")
        return load_manifest(read_json(path), build_id=build_id, collection=self.name, path=path)

    def write_manifest(self, build_id: str, manifest: BuildManifest) -> Path:
        """Write the manifest as JSON: the keys it was read with or was given since
        (``manifest.manifest_json``), so files keep their layout across versions."""
        path = self.build_dir(build_id) / "manifest.json"
        write_json_atomic(path, manifest_json(manifest))
        return path

    def live_manifest(self) -> BuildManifest:
        build_id = self.alias("live")
        if build_id is None:
            if self.unfinished_builds() or any(
                self.manifest(b).pending_live for b in self.build_ids()
            ):
                raise MMSearchError(
                    f"Collection '{self.name}' has no live build yet: its first ingest did not "
                    "finish. Re-run the same ingest command to resume it."
                )
            raise MMSearchError(
                f"Collection '{self.name}' has no live build yet; ingest a catalog into it first."
            )
        return self.manifest(build_id)
