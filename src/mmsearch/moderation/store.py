"""Installed policies: ``<home>/policies/<name>.yaml``, one version per change.

Installing validates the file first (nothing is written for a bad one), resolves its
banned-image folders to absolute paths and writes the canonical YAML atomically with a
``version`` past the installed one, so a decision's "policy v3" names one set of rules.
The banned images' fingerprints are computed at install and kept beside the policy
(``banned.py``), so evaluating never decodes the banned list again.

A policy's allow list (``<name>.allowed.json``) holds the banned-image matches that a
reviewer approved as false: pairs of (rule, item PDQ, banned PDQ), each with who
allowed it, when and why. It is kept beside the rules rather than in them, so an
approval does not make a new version of rules that did not change; ``policy show``
lists it and evaluation skips its pairs.
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from pydantic import BaseModel, ValidationError

from mmsearch.media.images import ImageLimits
from mmsearch.moderation.banned import BannedList, load_banned
from mmsearch.moderation.policy import (
    PolicyError,
    PolicySet,
    check_policy_name,
    load_policy_file,
    parse_policy,
    parse_policy_text,
)
from mmsearch.table_files import read_table_file


@dataclass(frozen=True)
class InstalledPolicy:
    """A policy as installed, with its banned lists (one per banned_images rule id)."""

    name: str
    policy: PolicySet
    banned: dict[str, BannedList]
    # (rule id, item PDQ, banned PDQ) pairs a reviewer approved: not matches any more.
    allowed: frozenset[tuple[str, str, str]] = field(default_factory=frozenset)

    @property
    def version(self) -> int:
        return self.policy.version


class AllowedPair(BaseModel):
    """A banned-image match a reviewer approved as false, and who did, when and why."""

    rule: str
    item_pdq: str
    banned_pdq: str
    banned: str | None = None
    item: str | None = None  # the item (collection/id) the reviewer looked at
    by: str
    at: str
    reason: str


class AllowList(BaseModel):
    pairs: list[AllowedPair] = []

    def keys(self) -> frozenset[tuple[str, str, str]]:
        return frozenset((p.rule, p.item_pdq, p.banned_pdq) for p in self.pairs)


class PolicyStore:
    def __init__(self, home: Path, limits: ImageLimits = ImageLimits()):
        self.folder = home / "policies"
        self.limits = limits

    def path(self, name: str) -> Path:
        check_policy_name(name)
        return self.folder / f"{name}.yaml"

    def cache_path(self, name: str) -> Path:
        return self.folder / f"{name}.fingerprints.json"

    def allow_path(self, name: str) -> Path:
        return self.folder / f"{name}.allowed.json"

    def allow_list(self, name: str) -> AllowList:
        """The policy's approved false matches (empty when there are none)."""
        path = self.allow_path(name)
        if not path.is_file():
            return AllowList()
        try:
            return AllowList.model_validate_json(path.read_text(encoding="utf-8"))
        except (OSError, ValidationError) as exc:
            raise PolicyError(f"The allow list {path} cannot be read: {exc}") from None

    def allow(self, name: str, pairs: list[AllowedPair]) -> int:
        """Add approved pairs to the allow list; returns how many were new."""
        self.path(name)  # checks the name
        current = self.allow_list(name)
        known = current.keys()
        new = [p for p in pairs if (p.rule, p.item_pdq, p.banned_pdq) not in known]
        if new:
            self.folder.mkdir(parents=True, exist_ok=True)
            updated = AllowList(pairs=[*current.pairs, *new])
            _write_atomic(self.allow_path(name), updated.model_dump_json(indent=1))
        return len(new)

    def names(self) -> list[str]:
        if not self.folder.is_dir():
            return []
        return sorted(p.stem for p in self.folder.glob("*.yaml"))

    def read(self, name: str) -> PolicySet:
        """The installed policy's rules (no fingerprints)."""
        path = self.path(name)
        if not path.is_file():
            known = ", ".join(self.names()) or "none yet"
            raise PolicyError(
                f"No policy named {name!r} (policies: {known}). "
                f"Install one with: mmsearch policy add {name} FILE"
            )
        return parse_policy(read_table_file(path, "Policy", PolicyError), str(path))

    def load(self, name: str) -> InstalledPolicy:
        """The policy with its banned lists, fingerprints read from the cache when present."""
        policy = self.read(name)
        allowed = self.allow_list(name).keys()
        return InstalledPolicy(name, policy, self._banned(name, policy), allowed)

    def install(self, name: str, file: Path) -> InstalledPolicy:
        """Validate ``file``, fingerprint its banned images, write it as the next version."""
        check_policy_name(name)
        return self._install(name, load_policy_file(file))

    def install_text(
        self, name: str, text: str, fmt: str, check_folder: Callable[[Path], Path]
    ) -> InstalledPolicy:
        """``install`` for a policy sent as text; ``check_folder`` vets each banned folder
        (the service allows only its configured roots) before any file is read."""
        check_policy_name(name)
        policy = parse_policy_text(text, fmt, f"{name} (request body)")
        for rule in policy.rules:
            if rule.banned_images is not None and rule.banned_images.folder is not None:
                check_folder(Path(rule.banned_images.folder))
        return self._install(name, policy)

    def _install(self, name: str, policy: PolicySet) -> InstalledPolicy:
        current = self.read(name).version if self.path(name).is_file() else 0
        policy = policy.model_copy(update={"version": max(policy.version, current + 1)})
        banned = self._banned(name, policy)  # fails before anything is written
        self.folder.mkdir(parents=True, exist_ok=True)
        text = yaml.safe_dump(
            policy.model_dump(mode="json", exclude_none=True), sort_keys=False, allow_unicode=True
        )
        _write_atomic(self.path(name), text)
        return InstalledPolicy(name, policy, banned, self.allow_list(name).keys())

    def load_cached(self, name: str) -> InstalledPolicy:
        """``load``, kept while the installed file is unchanged (a server's requests).

        A server must not re-read a banned folder per request; re-installing the
        policy (``policy add`` or the admin API) writes a new file and so a new entry.
        """
        path = self.path(name)
        try:
            stamp = path.stat()
        except FileNotFoundError:
            return self.load(name)  # raises the "no policy named" error
        allowed = self.allow_path(name)
        allowed_stamp = allowed.stat().st_mtime_ns if allowed.is_file() else 0
        key = (str(path), stamp.st_mtime_ns, stamp.st_size, allowed_stamp)
        with _CACHE_LOCK:
            cached = _CACHE.get(key)
        if cached is not None:
            return cached
        installed = self.load(name)
        with _CACHE_LOCK:
            for old in [k for k in _CACHE if k[0] == key[0]]:
                del _CACHE[old]
            _CACHE[key] = installed
        return installed

    def _banned(self, name: str, policy: PolicySet) -> dict[str, BannedList]:
        return {
            rule.id: load_banned(rule.banned_images, self.cache_path(name), self.limits)
            for rule in policy.rules
            if rule.banned_images is not None
        }


# Installed policies by (file, mtime, size, allow list mtime): one entry per policy file.
_CACHE: dict[tuple[str, int, int, int], InstalledPolicy] = {}
_CACHE_LOCK = threading.Lock()


def _write_atomic(path: Path, text: str) -> None:
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
