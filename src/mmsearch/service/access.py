"""Who is calling: API keys, web-UI sessions, the caller's role, collections and ACL groups.

A request is authenticated once, by the guard middleware, and the resulting ``Caller``
travels in the request state to every route. Routes never look at headers themselves;
they ask the state for the caller's access node (``ServiceState.access_filter``) and
pass it into the store query.

Sessions for the web UI are stateless signed tokens (HMAC over key id, expiry and a
nonce) so that several worker processes accept the same login without shared memory;
the key behind a session is looked up on every request, so revoking the key ends its
sessions at once. The CSRF token is derived from the session token with the same secret.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from mmsearch.config import Settings
from mmsearch.governance.keys import ApiKey, KeyStore
from mmsearch.governance.roles import Permission, Role, allows

SESSION_COOKIE = "mmsearch_session"
CSRF_HEADER = "x-csrf-token"
LOCAL_OPERATOR = "local"


@dataclass(frozen=True)
class Caller:
    """The identity of one request. ``unrestricted`` callers see every item."""

    key_id: str
    role: Role
    collections: frozenset[str] | None = None  # None: every collection
    groups: frozenset[str] = frozenset()
    via: str = "bearer"  # bearer | session | none (auth off) | anonymous

    @property
    def anonymous(self) -> bool:
        return self.via == "anonymous"

    @property
    def unrestricted(self) -> bool:
        """Admins and the local operator (auth off) are not bound by item ACLs."""
        return self.via == "none" or self.role == Role.ADMIN

    def may(self, permission: Permission) -> bool:
        return not self.anonymous and allows(self.role, permission)

    def may_use(self, collection: str) -> bool:
        return self.collections is None or collection in self.collections

    def may_grant(self, groups: list[str] | None) -> bool:
        """A restricted writer may label items only with groups it belongs to."""
        return self.unrestricted or not groups or set(groups) <= self.groups


OPERATOR = Caller(LOCAL_OPERATOR, Role.ADMIN, via="none")
ANONYMOUS = Caller("anonymous", Role.READER, via="anonymous")


def caller_of(key: ApiKey, via: str) -> Caller:
    collections = frozenset(key.collections) if key.collections is not None else None
    return Caller(key.key_id, Role(key.role), collections, frozenset(key.groups), via)


class SessionSigner:
    """Signs and checks web-UI session tokens with a per-workspace secret (0600 file)."""

    def __init__(self, home: Path, lifetime_s: float):
        self.path = home / "auth" / "session.key"
        self.lifetime_s = lifetime_s
        self._secret: bytes | None = None

    def _key(self) -> bytes:
        if self._secret is None:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                pass
            else:  # first process to get here writes the secret; the others read it
                with os.fdopen(fd, "wb") as handle:
                    handle.write(secrets.token_bytes(32))
            for _ in range(50):
                data = self.path.read_bytes()
                if len(data) == 32:
                    self._secret = data
                    break
                time.sleep(0.01)  # another process is still writing it
            else:
                raise RuntimeError(f"The session secret {self.path} is unreadable.")
        return self._secret

    def _mac(self, message: str) -> str:
        digest = hmac.new(self._key(), message.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def issue(self, key_id: str) -> str:
        expires = int(time.time() + self.lifetime_s)
        body = f"{key_id}.{expires}.{secrets.token_urlsafe(12)}"
        return f"{body}.{self._mac('session:' + body)}"

    def key_id_of(self, token: str) -> str | None:
        """The key id of a valid, unexpired token; None for anything else."""
        body, _, mac = token.rpartition(".")
        if not body or not hmac.compare_digest(mac, self._mac("session:" + body)):
            return None
        parts = body.split(".")
        if len(parts) != 3 or not parts[1].isdigit() or int(parts[1]) < time.time():
            return None
        return parts[0]

    def csrf_token(self, token: str) -> str:
        return self._mac("csrf:" + token)

    def csrf_ok(self, token: str, given: str) -> bool:
        return bool(given) and hmac.compare_digest(self.csrf_token(token), given)


@dataclass
class _Bucket:
    tokens: float
    updated: float
    warned_at: float = 0.0


@dataclass
class RateLimiter:
    """Token buckets by key (or client address): ``per_minute`` refill, ``burst`` capacity."""

    per_minute: int
    burst: int
    _buckets: dict[str, _Bucket] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self, who: str, now: float | None = None) -> float:
        """0.0 when the request may go on, else the seconds until a token is available."""
        if self.per_minute <= 0:
            return 0.0
        now = time.monotonic() if now is None else now
        rate = self.per_minute / 60.0
        with self._lock:
            bucket = self._buckets.get(who)
            if bucket is None:
                if len(self._buckets) > 10_000:  # forget idle callers rather than grow forever
                    self._buckets.clear()
                bucket = self._buckets[who] = _Bucket(float(self.burst), now)
            bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.updated) * rate)
            bucket.updated = now
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return 0.0
            return (1.0 - bucket.tokens) / rate

    def first_refusal(self, who: str, window_s: float = 60.0) -> bool:
        """True once per window per caller, so a flood writes one audit line, not thousands."""
        now = time.monotonic()
        with self._lock:
            bucket = self._buckets.get(who)
            if bucket is None or now - bucket.warned_at < window_s:
                return False
            bucket.warned_at = now
            return True


class AccessControl:
    """Everything the guard needs to decide who a request is and whether it may go on."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.keys = KeyStore(settings.home)
        self.sessions = SessionSigner(settings.home, settings.session_hours * 3600.0)
        self.limiter = RateLimiter(settings.rate_limit_per_minute, settings.rate_limit_burst)
        self.failures = RateLimiter(
            settings.auth_failures_per_minute, max(1, settings.auth_failures_per_minute // 4)
        )

    def enabled(self) -> bool:
        """On, off, or (auto) on as soon as a key exists: keys made while serving count."""
        if self.settings.auth == "auto":
            return self.keys.has_keys()
        return self.settings.auth == "on"

    def from_bearer(self, secret: str) -> Caller | None:
        key = self.keys.authenticate(secret)
        return caller_of(key, "bearer") if key is not None else None

    def from_session(self, token: str) -> Caller | None:
        key_id = self.sessions.key_id_of(token)
        if key_id is None:
            return None
        key = self.keys.active(key_id)
        return caller_of(key, "session") if key is not None else None


def request_caller(request: object) -> Caller:
    """The caller the guard authenticated; anonymous if none was set (fail closed)."""
    state = getattr(request, "state", None)
    caller = getattr(state, "caller", None)
    return caller if isinstance(caller, Caller) else ANONYMOUS
