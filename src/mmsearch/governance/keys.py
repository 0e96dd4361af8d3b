"""API keys: created and revoked by the local operator, checked by the service per request.

Only an argon2id hash of each secret is kept (``<home>/auth/keys.json``, mode 0600),
so a copy of the workspace does not hand out working keys. The secret names its key
(``mms_<key_id>_<random>``), so checking one costs a single argon2 verification
rather than one per key; for unknown ids a dummy hash is verified instead, so the time
taken does not tell which ids exist.

Argon2 is slow on purpose (hundreds of ms of CPU with the library defaults), so
nothing pays it that a cheaper check can refuse: a secret not shaped like
``mms_k_<10 hex>_<43 url-safe chars>`` is refused by a regex (``precheck``), and the
service counts failures per client and per key id *before* it verifies (see
``mmsearch.service.access``). Secrets that verified once are remembered in-process,
keyed by an HMAC-SHA256 of the secret under a random per-process key (so the cache
holds nothing a memory dump could replay or test guesses against offline), at most
``CACHE_SIZE`` of them. Revocation and expiry are still checked on every call, against
a key file that is reloaded whenever it changes on disk, and a remembered secret is
forgotten as soon as its key is revoked, expires or disappears: ``mmsearch keys
revoke`` takes effect on the next request of a running service without a restart.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from mmsearch.errors import MMSearchError
from mmsearch.governance.roles import Permission, Role, allows
from mmsearch.governance.storage import file_signature, locked, private_dir, write_json_private

SECRET_PREFIX = "mms_"
_SECRET = re.compile(r"^mms_(k_[0-9a-f]{10})_([A-Za-z0-9_-]{43})$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")  # collections, as in workspace.py
_GROUP = re.compile(r"^[^\s,]{1,128}$")  # ACL group names: no spaces or commas, ≤ 128 chars
_DURATION = re.compile(r"^\s*(\d{1,6})\s*([mhdw])\s*$", re.IGNORECASE)
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
CACHE_SIZE = 1024
FILE_VERSION = 1


class KeyStoreError(MMSearchError):
    """A key cannot be created, found or revoked as asked, or the key file is unreadable."""


class UnknownKey(KeyStoreError):
    """No key has this id (the HTTP API answers 404)."""


def parse_duration(text: str) -> timedelta:
    """``90m``, ``12h``, ``30d`` or ``1w`` as a positive ``timedelta``."""
    found = _DURATION.match(text or "")
    if not found or int(found.group(1)) == 0:
        raise KeyStoreError(
            f"Cannot read the duration {text!r}: give a positive whole number followed by "
            "m (minutes), h (hours), d (days) or w (weeks), e.g. 30d or 12h."
        )
    return timedelta(**{_UNITS[found.group(2).lower()]: int(found.group(1))})


def _now() -> datetime:
    # Whole seconds: what the key file stores, so a key reads back equal to the one returned.
    return datetime.now(UTC).replace(microsecond=0)


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat(timespec="seconds") if moment is not None else None


def _parse_time(value: Any) -> datetime | None:
    if value is None:
        return None
    moment = datetime.fromisoformat(str(value))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@dataclass(frozen=True)
class ApiKey:
    """One key as stored: everything but the secret (only its argon2id ``hash``)."""

    key_id: str
    role: Role
    hash: str = field(repr=False)
    created_at: datetime
    name: str | None = None
    collections: list[str] | None = None  # None: every collection
    groups: list[str] = field(default_factory=list)  # ACL groups the key's caller belongs to
    expires_at: datetime | None = None
    revoked_at: datetime | None = None

    def can_access(self, collection: str) -> bool:
        """Whether the key may touch ``collection`` at all (its role decides what it may do)."""
        return self.collections is None or collection in self.collections

    def allows(self, permission: Permission | str) -> bool:
        return allows(self.role, permission, scoped=self.collections is not None)

    def expired(self, now: datetime | None = None) -> bool:
        return self.expires_at is not None and self.expires_at <= (now or _now())

    def status(self, now: datetime | None = None) -> str:
        """``active``, ``revoked`` or ``expired``."""
        if self.revoked_at is not None:
            return "revoked"
        return "expired" if self.expired(now) else "active"

    def is_active(self, now: datetime | None = None) -> bool:
        return self.status(now) == "active"

    def public_dict(self) -> dict[str, Any]:
        """What may be shown to an operator: no hash, no secret."""
        return {
            "key_id": self.key_id,
            "name": self.name,
            "role": self.role.value,
            "collections": self.collections,
            "groups": list(self.groups),
            "created_at": _iso(self.created_at),
            "expires_at": _iso(self.expires_at),
            "revoked_at": _iso(self.revoked_at),
            "status": self.status(),
        }

    def to_record(self) -> dict[str, Any]:
        record = self.public_dict()
        del record["status"]
        record["hash"] = self.hash
        return record

    @classmethod
    def from_record(cls, data: dict[str, Any]) -> ApiKey:
        collections = data.get("collections")
        return cls(
            key_id=str(data["key_id"]),
            role=Role(data["role"]),
            hash=str(data["hash"]),
            created_at=_parse_time(data["created_at"]) or _now(),
            name=data.get("name"),
            collections=list(collections) if collections is not None else None,
            groups=list(data.get("groups") or []),
            expires_at=_parse_time(data.get("expires_at")),
            revoked_at=_parse_time(data.get("revoked_at")),
        )


def secret_key_id(secret: str) -> str | None:
    """The key id a well-formed secret names, else None."""
    found = _SECRET.match(secret) if isinstance(secret, str) else None
    return found.group(1) if found else None


def bearer_secret(header: str | None) -> str | None:
    """The secret in an ``Authorization: Bearer <secret>`` header value, else None."""
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return value.strip() or None


def _unknown(key_id: str) -> KeyStoreError:
    if str(key_id).startswith(SECRET_PREFIX):  # never echo a secret into a message or log
        return KeyStoreError(
            "That is a key's secret, not its id: give the id (k_...), see `mmsearch keys list`."
        )
    return UnknownKey(f"There is no API key {key_id!r}; see `mmsearch keys list`.")


def _clean_collections(collections: Iterable[str] | None) -> list[str] | None:
    if collections is None:
        return None
    if isinstance(collections, str):
        collections = [collections]
    names = sorted({c.strip() for c in collections if c and c.strip()})
    if not names:
        raise KeyStoreError(
            "A key limited to collections needs at least one collection name; "
            "leave the collections out for a key that may use every collection."
        )
    bad = [n for n in names if not _NAME.match(n)]
    if bad:
        raise KeyStoreError(
            f"Invalid collection name(s) {', '.join(map(repr, bad))}: use letters, digits, "
            "'_' or '-' (at most 64 characters, starting with a letter or digit)."
        )
    return names


def _clean_groups(groups: Iterable[str] | None) -> list[str]:
    if groups is None:
        return []
    if isinstance(groups, str):
        groups = groups.split(",")
    names = sorted({g.strip() for g in groups if g and g.strip()})
    bad = [g for g in names if not _GROUP.match(g)]
    if bad:
        raise KeyStoreError(
            f"Invalid ACL group name(s) {', '.join(map(repr, bad))}: a group name has no "
            "spaces or commas and at most 128 characters."
        )
    return names


@dataclass(frozen=True)
class Precheck:
    """What a secret's shape and the verification cache tell before any argon2 work."""

    key_id: str | None  # the id the secret names; None when the secret is malformed
    settled: bool  # True: ``key`` is the final answer; False: argon2 must decide
    key: ApiKey | None = None  # the active key, when a remembered verification settled it


class KeyStore:
    """The API keys of one workspace (``<home>/auth/keys.json``); safe across processes."""

    def __init__(self, home: Path, *, hasher: PasswordHasher | None = None):
        self.folder = Path(home).expanduser() / "auth"
        self.path = self.folder / "keys.json"
        self.lock_path = self.folder / "keys.lock"
        self._hasher = hasher or PasswordHasher()  # argon2id, library defaults
        self._dummy_hash: str | None = None
        self._keys: dict[str, ApiKey] = {}
        self._signature: tuple[int, ...] | None = None
        # HMAC-SHA256(per-process key, secret) → (key id, hash it verified against), LRU.
        self._verified: OrderedDict[bytes, tuple[str, str]] = OrderedDict()
        self._cache_key = secrets.token_bytes(32)
        self._mutex = threading.Lock()

    # -- reading -------------------------------------------------------------------------

    def _read_file(self) -> dict[str, ApiKey]:
        try:
            data = json.loads(self.path.read_text("utf-8"))
            return {k["key_id"]: ApiKey.from_record(k) for k in data["keys"]}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise KeyStoreError(
                f"The key file {self.path} cannot be read ({exc}); restore it from a backup "
                "or move it away and create new keys with `mmsearch keys create`."
            ) from exc

    def _refresh(self) -> dict[str, ApiKey]:
        """The keys as on disk now (re-read only when the file changed)."""
        signature = file_signature(self.path)
        if signature != self._signature:
            self._keys = self._read_file() if signature is not None else {}
            self._signature = signature
            self._forget_stale()
        return self._keys

    def _forget_stale(self) -> None:
        """Drop remembered verifications whose key is gone, replaced, revoked or expired
        (the caller holds ``_mutex``): a revoked secret must need argon2 again, never
        ride on the cache."""
        now = _now()
        for tag, (key_id, stored_hash) in list(self._verified.items()):
            key = self._keys.get(key_id)
            if key is None or key.hash != stored_hash or not key.is_active(now):
                del self._verified[tag]

    def list(self) -> list[ApiKey]:
        """Every key, oldest first, revoked and expired ones included."""
        with self._mutex:
            return list(self._refresh().values())  # the file keeps creation order

    def get(self, key_id: str) -> ApiKey:
        """The key with this id (any status); unknown id → ``KeyStoreError``."""
        with self._mutex:
            key = self._refresh().get(key_id)
        if key is None:
            raise _unknown(key_id)
        return key

    def active(self, key_id: str) -> ApiKey | None:
        """The key with this id if it is neither revoked nor expired (for session checks)."""
        with self._mutex:
            key = self._refresh().get(key_id)
        return key if key is not None and key.is_active() else None

    def has_keys(self) -> bool:
        """Whether any key was ever created here, revoked or expired ones included.

        Services use this to decide that authentication is on; counting only active keys
        would turn authentication *off* once the last key is revoked.
        """
        with self._mutex:
            return bool(self._refresh())

    def has_admin(self) -> bool:
        """Whether an active admin key exists."""
        with self._mutex:
            keys = list(self._refresh().values())
        return any(k.role is Role.ADMIN and k.is_active() for k in keys)

    # -- writing -------------------------------------------------------------------------

    def _write(self, keys: dict[str, ApiKey]) -> None:
        records = [k.to_record() for k in keys.values()]
        try:
            write_json_private(self.path, {"version": FILE_VERSION, "keys": records})
        except OSError as exc:
            raise KeyStoreError(
                f"The key file {self.path} cannot be written ({exc}); check the folder's "
                "permissions and free space."
            ) from exc
        self._keys, self._signature = dict(keys), file_signature(self.path)
        self._forget_stale()

    def create(
        self,
        role: Role | str,
        *,
        collections: Iterable[str] | None = None,
        groups: Iterable[str] | None = (),
        expires_in: timedelta | None = None,
        name: str | None = None,
    ) -> tuple[ApiKey, str]:
        """Create a key; returns it and its secret, which is not stored and cannot be shown
        again.

        ``collections=None`` lets the key use every collection; ``groups`` are the ACL
        groups whose items its caller may see; ``expires_in`` (positive) ends it.
        """
        parsed_role = Role.parse(role)
        limited = _clean_collections(collections)
        acl = _clean_groups(groups)
        if expires_in is not None and expires_in <= timedelta(0):
            raise KeyStoreError("A key's lifetime must be positive, e.g. 30d; omit it for none.")
        label = name.strip() if name else None
        if label is not None and (len(label) > 100 or not label.isprintable()):
            raise KeyStoreError("A key name is a printable label of at most 100 characters.")
        created = _now()
        try:
            expires = created + expires_in if expires_in is not None else None
        except OverflowError:
            raise KeyStoreError("That lifetime is too long; give at most a few years.") from None
        private_dir(self.folder)
        with locked(self.lock_path), self._mutex:
            self._signature = None  # re-read under the lock: another process may have written
            keys = dict(self._refresh())
            key_id = "k_" + secrets.token_hex(5)
            while key_id in keys:
                key_id = "k_" + secrets.token_hex(5)
            secret = f"{SECRET_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
            key = ApiKey(
                key_id=key_id,
                role=parsed_role,
                hash=self._hasher.hash(secret),
                created_at=created,
                name=label,
                collections=limited,
                groups=acl,
                expires_at=expires,
            )
            keys[key_id] = key
            self._write(keys)
        return key, secret

    def revoke(self, key_id: str) -> ApiKey:
        """Revoke a key for good (revoking it again keeps the first time); unknown id → error."""
        private_dir(self.folder)
        with locked(self.lock_path), self._mutex:
            self._signature = None
            keys = dict(self._refresh())
            key = keys.get(key_id)
            if key is None:
                raise _unknown(key_id)
            if key.revoked_at is None:
                key = keys[key_id] = replace(key, revoked_at=_now())
                self._write(keys)
        return key

    # -- checking ------------------------------------------------------------------------

    def _dummy(self) -> str:
        if self._dummy_hash is None:
            self._dummy_hash = self._hasher.hash(secrets.token_urlsafe(32))
        return self._dummy_hash

    def _verify(self, stored_hash: str, secret: str) -> bool:
        try:
            return self._hasher.verify(stored_hash, secret)
        except (VerificationError, InvalidHashError):
            return False

    def _tag(self, secret: str) -> bytes:
        """The cache key of a secret: fast, and useless without this process's random key."""
        return hmac.new(self._cache_key, secret.encode("utf-8"), hashlib.sha256).digest()

    def precheck(self, secret: str) -> Precheck:
        """What can be told about ``secret`` without argon2: its shape, and whether it
        verified before (then revocation and expiry decide, read from the key file now).

        ``settled`` answers are final; otherwise ``verify`` must be called, and the
        service does that off its event loop, after charging the failure budgets.
        """
        key_id = secret_key_id(secret)
        if key_id is None:
            return Precheck(None, settled=True)
        tag = self._tag(secret)
        with self._mutex:
            key = self._refresh().get(key_id)
            cached = self._verified.get(tag)
            if cached is None:
                return Precheck(key_id, settled=False)
            if key is None or cached != (key.key_id, key.hash):
                del self._verified[tag]  # the key was rewritten: verify against the new hash
                return Precheck(key_id, settled=False)
            if not key.is_active():
                del self._verified[tag]
                return Precheck(key_id, settled=True)
            self._verified.move_to_end(tag)
        return Precheck(key_id, settled=True, key=key)

    def verify(self, secret: str) -> ApiKey | None:
        """The argon2 verification behind ``authenticate``: blocking, hundreds of ms.

        Unknown ids are verified against a dummy hash, so the time taken does not tell
        which ids exist. A success is remembered (see ``precheck``).
        """
        key_id = secret_key_id(secret)
        if key_id is None:
            return None
        with self._mutex:
            key = self._refresh().get(key_id)
        # Verify outside the mutex: argon2 is slow and other requests must go on.
        ok = self._verify(key.hash if key is not None else self._dummy(), secret)
        if not ok or key is None:
            return None
        with self._mutex:
            current = self._refresh().get(key_id)
            if current is None or current.hash != key.hash or not current.is_active():
                return None  # revoked (or rewritten) while argon2 ran
            self._verified[self._tag(secret)] = (key.key_id, key.hash)
            while len(self._verified) > CACHE_SIZE:
                self._verified.popitem(last=False)
        return current

    def authenticate(self, secret: str) -> ApiKey | None:
        """The active key this secret belongs to; None when malformed, unknown, wrong,
        revoked or expired (callers cannot tell which, and neither can a stopwatch,
        except that a malformed secret is refused at once).

        Blocking (argon2); the service uses ``precheck`` and ``verify`` instead, to
        charge failure budgets in between and keep argon2 off its event loop. An
        unreadable key file raises ``KeyStoreError`` rather than letting anyone in.
        """
        check = self.precheck(secret)
        if check.settled:
            return check.key
        return self.verify(secret)
