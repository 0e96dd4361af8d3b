"""The registry: business-rules files and reranker models an admin has made available by name.

An HTTP request must never name a server path (that would let a caller probe the disk
or load any file as rules), so the service resolves *names* through this registry.
Registering copies the file or model into the workspace, keyed by its SHA-256, so the
thing in use cannot change behind the registry's back when the original is edited,
and the hash ties a ranking seen in a log to the exact bytes that produced it.

Layout::

    <home>/registry/registry.json                  names → versions, hashes, defaults
    <home>/registry/rules/<name>/<sha256[:12]>.yaml   (or .toml)
    <home>/registry/rankers/<name>/<sha256[:12]>/     model.txt + meta.json
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Literal

from mmsearch.clock import utc_now
from mmsearch.errors import MMSearchError
from mmsearch.governance.storage import (
    locked,
    private_dir,
    write_json_private,
    write_private_atomic,
)

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_COLLECTION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_SUFFIXES = {".yaml": "yaml", ".yml": "yaml", ".toml": "toml"}
MAX_RULES_BYTES = 1024 * 1024
RulesFormat = Literal["yaml", "toml"]


class RegistryError(MMSearchError):
    """A name is invalid or not registered, or a file cannot be registered."""


class NotRegistered(RegistryError):
    """No rules or ranker is registered under this name (the HTTP API answers 404)."""


def check_name(name: str, kind: str = "rules") -> str:
    if not isinstance(name, str) or not NAME.match(name):
        raise RegistryError(
            f"Invalid {kind} name {name!r}: use letters, digits, '_', '.' or '-' "
            "(at most 64 characters, starting with a letter or digit)."
        )
    return name


def _check_collection(name: str) -> str:
    if not isinstance(name, str) or not _COLLECTION.match(name):
        raise RegistryError(
            f"Invalid collection name {name!r}: use letters, digits, '_' or '-' "
            "(at most 64 characters, starting with a letter or digit)."
        )
    return name


class Registry:
    """Named rules files and reranker models of one workspace (``<home>/registry``).

    Every read goes to ``registry.json`` afresh (it is small), so names registered by
    the CLI are visible to a running service at once; every write holds a file lock and
    replaces the file atomically.
    """

    def __init__(self, home: Path):
        self.folder = Path(home).expanduser() / "registry"
        self.path = self.folder / "registry.json"
        self.lock_path = self.folder / "registry.lock"

    # -- the index file ------------------------------------------------------------------

    def _load(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text("utf-8"))
        except FileNotFoundError:
            data = {}
        except (OSError, ValueError) as exc:
            raise RegistryError(
                f"The registry file {self.path} cannot be read ({exc}); restore it from a "
                "backup or move it away and register the rules and rankers again."
            ) from exc
        if not isinstance(data, dict) or not all(
            isinstance(data.setdefault(section, {}), dict)
            for section in ("rules", "rankers", "default_rules")
        ):
            raise RegistryError(
                f"The registry file {self.path} is not a registry; restore it from a backup "
                "or move it away and register the rules and rankers again."
            )
        return data

    def _save(self, data: dict[str, Any]) -> None:
        try:
            write_json_private(self.path, {"version": 1, **data})
        except OSError as exc:
            raise _unwritable(self.path, exc) from exc

    # -- rules ---------------------------------------------------------------------------

    def add_rules(self, name: str, file: Path) -> dict[str, Any]:
        """Validate the rules file, copy it in under ``name`` (replacing an older one)."""
        check_name(name)
        source = Path(file).expanduser()
        kind = _SUFFIXES.get(source.suffix.lower())
        if kind is None:
            raise RegistryError(
                f"{source.name} is not a rules file: give a .yaml, .yml or .toml file."
            )
        if not source.is_file():
            raise RegistryError(f"The rules file {source} does not exist.")
        try:
            data = source.read_bytes()
        except OSError as exc:
            raise RegistryError(f"The rules file {source} cannot be read: {exc}.") from exc
        version = _validated_rules(data, kind, f"The rules file {source}")
        return self._store_rules(name, data, kind, version)

    def add_rules_text(self, name: str, text: str, suffix: RulesFormat) -> dict[str, Any]:
        """Register uploaded rules (an admin API call): same checks, no server path involved.

        Errors speak of "the uploaded rules", never of a file on the server.
        """
        check_name(name)
        if suffix not in ("yaml", "toml"):
            raise RegistryError(f"Rules must be 'yaml' or 'toml', not {suffix!r}.")
        data = text.encode("utf-8")
        version = _validated_rules(data, suffix, "The uploaded rules")
        return self._store_rules(name, data, suffix, version)

    def _store_rules(self, name: str, data: bytes, kind: str, version: str) -> dict[str, Any]:
        sha = hashlib.sha256(data).hexdigest()
        relative = f"rules/{name}/{sha[:12]}.{kind}"
        entry = {
            "name": name,
            "version": version,
            "format": kind,
            "sha256": sha,
            "file": relative,
            "added_at": utc_now(),
        }
        with locked(self.lock_path):
            target = self.folder / relative
            try:
                private_dir(target.parent)
                write_private_atomic(target, data)
            except OSError as exc:
                raise _unwritable(target, exc) from exc
            registry = self._load()
            registry["rules"][name] = entry
            self._save(registry)
            _prune(target.parent, keep=target.name)
        return entry

    def remove_rules(self, name: str) -> dict[str, Any]:
        """Forget the rules ``name`` and delete its copy; refused while a collection uses them
        by default."""
        with locked(self.lock_path):
            registry = self._load()
            entry = self._entry(registry, "rules", name)
            users = sorted(c for c, n in registry["default_rules"].items() if n == name)
            if users:
                raise RegistryError(
                    f"The rules '{name}' are the default of collection(s) {', '.join(users)}; "
                    "switch them off first with `mmsearch rules default --off --collection "
                    f"{users[0]}`."
                )
            del registry["rules"][name]
            self._save(registry)
            shutil.rmtree(self.folder / "rules" / name, ignore_errors=True)
        return entry

    def rules(self) -> list[dict[str, Any]]:
        """Registered rules, by name, each with the collections using them by default."""
        registry = self._load()
        defaults = registry["default_rules"]
        return [
            {**entry, "default_for": sorted(c for c, n in defaults.items() if n == name)}
            for name, entry in sorted(registry["rules"].items())
        ]

    def rules_path(self, name: str) -> Path:
        """The registered copy of the rules ``name``; unknown → ``RegistryError``."""
        entry = self._entry(self._load(), "rules", name)
        return self._existing(entry, "rules", name)

    def set_default_rules(self, collection: str, name: str | None) -> str | None:
        """Rules applied to ``collection``'s searches unless a request names others;
        ``None`` switches the default off. Returns the previous default."""
        _check_collection(collection)
        with locked(self.lock_path):
            registry = self._load()
            if name is not None:
                self._entry(registry, "rules", name)
            previous = registry["default_rules"].pop(collection, None)
            if name is not None:
                registry["default_rules"][collection] = name
            self._save(registry)
        return previous

    def default_rules(self, collection: str) -> str | None:
        """The name of ``collection``'s default rules, or None."""
        return self._load()["default_rules"].get(collection)

    # -- rankers -------------------------------------------------------------------------

    def add_ranker(self, name: str, folder: Path) -> dict[str, Any]:
        """Validate a reranker model folder and copy its model files in under ``name``.

        The copy is what gets loaded, hashed and kept (``model.txt`` + ``meta.json``), so
        the registered model is exactly the one that was checked.
        """
        from mmsearch.ranking.model import META_FILE, MODEL_FILE, RankerModel

        check_name(name, "ranker")
        source = Path(folder).expanduser()
        RankerModel.load(source)  # RankerError says what is wrong with the folder
        private_dir(self.folder / "rankers")
        with locked(self.lock_path):
            staging = Path(tempfile.mkdtemp(dir=self.folder / "rankers", prefix=".adding-"))
            try:
                try:
                    for file in (MODEL_FILE, META_FILE):
                        shutil.copyfile(source / file, staging / file)
                except OSError as exc:
                    raise RegistryError(f"The model in {source} cannot be copied: {exc}.") from exc
                model = RankerModel.load(staging)
                digest = hashlib.sha256()
                for file in (MODEL_FILE, META_FILE):
                    digest.update(file.encode() + b"\0" + (staging / file).read_bytes() + b"\0")
                sha = digest.hexdigest()
                relative = f"rankers/{name}/{sha[:12]}"
                target = self.folder / relative
                private_dir(target.parent)
                if not target.is_dir():
                    staging.rename(target)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
            entry = {
                "name": name,
                "sha256": sha,
                "folder": relative,
                "features": list(model.meta.features),
                "collection": model.meta.collection,
                "build_id": model.meta.build_id,
                "source": model.meta.source,
                "added_at": utc_now(),
            }
            registry = self._load()
            registry["rankers"][name] = entry
            self._save(registry)
            _prune(target.parent, keep=target.name)
        return entry

    def remove_ranker(self, name: str) -> dict[str, Any]:
        """Forget the ranker ``name`` and delete its copy."""
        with locked(self.lock_path):
            registry = self._load()
            entry = self._entry(registry, "rankers", name)
            del registry["rankers"][name]
            self._save(registry)
            shutil.rmtree(self.folder / "rankers" / name, ignore_errors=True)
        return entry

    def rankers(self) -> list[dict[str, Any]]:
        return [entry for _, entry in sorted(self._load()["rankers"].items())]

    def ranker_path(self, name: str) -> Path:
        """The registered copy of the ranker ``name`` (a model folder); unknown → error."""
        entry = self._entry(self._load(), "rankers", name)
        return self._existing(entry, "rankers", name)

    # -- shared --------------------------------------------------------------------------

    @staticmethod
    def _entry(registry: dict[str, Any], section: str, name: str) -> dict[str, Any]:
        entry = registry[section].get(name) if isinstance(name, str) else None
        if entry is None:
            label = "rules" if section == "rules" else "ranker"
            verb = "are" if section == "rules" else "is"
            raise NotRegistered(
                f"No {label} named {name!r} {verb} registered; an admin can list them with "
                f"`mmsearch {section} list` and add one with `mmsearch {section} add`."
            )
        return entry

    def _existing(self, entry: dict[str, Any], section: str, name: str) -> Path:
        path = self.folder / entry["file" if section == "rules" else "folder"]
        if not path.exists():
            label = "rules" if section == "rules" else "ranker"
            raise RegistryError(
                f"The stored copy of the registered {label} {name!r} is missing; "
                f"register it again with `mmsearch {section} add {name} ...`."
            )
        return path


def _unwritable(path: Path, exc: OSError) -> RegistryError:
    return RegistryError(
        f"The registry file {path} cannot be written ({exc}); check the folder's permissions "
        "and free space."
    )


def _validated_rules(data: bytes, kind: str, shown_as: str) -> str:
    """Check rules bytes exactly as they will be stored; their version, or ``RulesError``.

    The bytes are checked in a private temporary file (not re-read from the source, which
    could change in between); messages name ``shown_as`` instead of that file.
    """
    from mmsearch.ranking.rules import RulesError, load_rules

    if len(data) > MAX_RULES_BYTES:
        raise RegistryError(f"Rules files are at most {MAX_RULES_BYTES // 1024} KiB.")
    with tempfile.TemporaryDirectory(prefix="mmsearch-rules-") as temp:
        path = Path(temp) / f"rules.{kind}"
        path.write_bytes(data)
        try:
            return load_rules(path).version
        except RulesError as exc:
            message = str(exc).replace(f"The rules file {path}", shown_as)
            raise RulesError(message.replace(str(path), shown_as)) from None


def _prune(folder: Path, keep: str) -> None:
    """Delete older versions stored under one name (re-adding a name replaces it)."""
    for child in folder.iterdir():
        if child.name == keep or child.name.startswith("."):
            continue
        with contextlib.suppress(OSError):
            if child.is_dir():
                shutil.rmtree(child)
            else:
                child.unlink()
