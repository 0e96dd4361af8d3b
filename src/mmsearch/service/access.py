"""Who is calling: API keys, web-UI sessions, the caller's role, collections and ACL groups.

A request is authenticated once, by the guard middleware, and the resulting ``Caller``
travels in the request state to every route. Routes never look at headers themselves;
they ask the state for the caller's access node (``ServiceState.access_filter``) and
pass it into the store query.

Bearer keys cost nothing before that cost is earned. A malformed secret is refused by
its shape alone; one that verified before is answered from the key store's cache
(revocation and expiry still read every time). Any other secret is charged against two
failure budgets first, the client address's and the named key id's, and refused with
429 when either is spent, without hashing; a success refunds the charge. The budgets
live in the workspace (``service/shared_buckets.py``), so every worker process of a
service charges the same ones: more workers give a guesser no more tries. Only then is
argon2 run, on a small dedicated thread pool (``VERIFY_SLOTS`` at a time, at most
``VERIFY_QUEUE`` more waiting, 429 beyond that), never on the event loop and never on
the thread pool that serves synchronous routes such as ``/healthz``.

Sessions for the web UI are signed tokens (HMAC over key id, expiry and a nonce) so
that several worker processes accept the same login without sharing memory. Signing
out must end a session everywhere, so the nonces of signed-out sessions are kept until
they would have expired in ``<home>/auth/revoked_sessions.json``, written under a file
lock and re-read by every process when it changes on disk (one ``stat`` per session
request). The key behind a session is looked up on every request, so revoking the key
ends its sessions at once. The CSRF token is derived from the session token with the
same secret.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import os
import secrets
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from mmsearch.config import Settings
from mmsearch.errors import MMSearchError
from mmsearch.governance.keys import ApiKey, KeyStore
from mmsearch.governance.roles import Permission, Role, allows
from mmsearch.governance.storage import file_signature, locked, write_json_private
from mmsearch.service.shared_buckets import Bucket, SharedTokenBuckets

SESSION_COOKIE = "mmsearch_session"
CSRF_HEADER = "x-csrf-token"
LOCAL_OPERATOR = "local"
# Argon2 verifications running at once: each keeps a core busy for ~0.3 s, so at most
# half the cores (and at most 2), leaving the rest to searches and health checks.
VERIFY_SLOTS = max(1, min(2, (os.cpu_count() or 2) // 2))
VERIFY_QUEUE = 4  # more may wait for a slot; beyond that the caller is told to retry
log = logging.getLogger("mmsearch.security")


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

    @property
    def scoped(self) -> bool:
        """Limited to some collections: never acts on what all collections share."""
        return self.collections is not None

    @property
    def global_admin(self) -> bool:
        """An admin of everything (or the local operator): the only caller who may change
        what spans collections or step outside a collection's default rules."""
        return self.via == "none" or (self.role == Role.ADMIN and not self.scoped)

    def may(self, permission: Permission) -> bool:
        return not self.anonymous and allows(self.role, permission, scoped=self.scoped)

    def may_use(self, collection: str) -> bool:
        return self.collections is None or collection in self.collections

    def may_grant(self, groups: list[str] | None) -> bool:
        """A restricted writer may label items only with groups it belongs to."""
        return self.unrestricted or not groups or set(groups) <= self.groups

    def grant_problem(
        self, role: Role, collections: list[str] | None, groups: list[str]
    ) -> str | None:
        """Why this caller may not create a key with this role and scope (None: it may).

        A key never hands out more than it holds: no role above its own, no collection
        outside its own (a limited key creates only limited keys), and, when it carries
        groups, no group it lacks."""
        if self.global_admin:
            return None
        if role > self.role:
            return f"A {self.role} key may not create a {role} key."
        if self.collections is not None:
            if collections is None:
                return "A key limited to collections may only create keys limited to them."
            outside = sorted(set(collections) - self.collections)
            if outside:
                return "A key may only create keys for collections it may use itself."
        if self.groups and not set(groups) <= self.groups:
            return "A key may only give out ACL groups it belongs to itself."
        return None

    def covers(self, collections: list[str] | None) -> bool:
        """Whether a key limited to ``collections`` (None: all) is within this caller's
        scope, so that this caller may see or revoke it."""
        if self.collections is None:
            return True
        return collections is not None and set(collections) <= self.collections


OPERATOR = Caller(LOCAL_OPERATOR, Role.ADMIN, via="none")
ANONYMOUS = Caller("anonymous", Role.READER, via="anonymous")


def caller_of(key: ApiKey, via: str) -> Caller:
    collections = frozenset(key.collections) if key.collections is not None else None
    return Caller(key.key_id, Role(key.role), collections, frozenset(key.groups), via)


class SessionStoreError(MMSearchError):
    """The list of signed-out sessions cannot be read or written."""


class RevokedSessions:
    """Nonces of signed-out sessions with the time each would have expired, shared by
    every process of a workspace (``<home>/auth/revoked_sessions.json``, mode 0600).

    Read on every session request, so it is cached and re-read only when the file
    changes on disk; written under ``sessions.lock`` (read, prune expired, add, replace
    atomically) so that two processes signing out at once both count. An unreadable
    file refuses every session (fail closed) until an operator moves it away.
    """

    def __init__(self, folder: Path):
        self.path = folder / "revoked_sessions.json"
        self.lock_path = folder / "sessions.lock"
        self._entries: dict[str, int] = {}
        self._signature: tuple[int, ...] | None = None
        self._mutex = threading.Lock()

    def _read(self) -> dict[str, int]:
        try:
            data = json.loads(self.path.read_text("utf-8"))
            return {str(nonce): int(until) for nonce, until in data["revoked"].items()}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise SessionStoreError(
                f"The signed-out sessions file {self.path} cannot be read ({exc}); move it "
                "away to accept sessions again (signed-out ones then work until they expire)."
            ) from exc

    def contains(self, nonce: str) -> bool:
        """Whether this session was signed out (True for every session if unreadable)."""
        with self._mutex:
            signature = file_signature(self.path)
            if signature != self._signature:
                try:
                    self._entries = self._read() if signature is not None else {}
                except SessionStoreError as exc:
                    log.error("%s", exc)
                    return True
                self._signature = signature
            return nonce in self._entries

    def add(self, nonce: str, until: int) -> None:
        """Record a signed-out session and forget the ones past their expiry."""
        now = time.time()
        with locked(self.lock_path), self._mutex:
            entries = {n: t for n, t in self._read().items() if t >= now}
            entries[nonce] = until
            try:
                write_json_private(self.path, {"version": 1, "revoked": entries})
            except OSError as exc:
                raise SessionStoreError(
                    f"The signed-out sessions file {self.path} cannot be written ({exc}); "
                    "check the folder's permissions and free space."
                ) from exc
            self._entries, self._signature = entries, file_signature(self.path)


@dataclass(frozen=True)
class _Session:
    key_id: str
    expires: int
    nonce: str


class SessionSigner:
    """Signs and checks web-UI session tokens with a per-workspace secret (0600 file),
    and ends them on sign-out through the shared ``RevokedSessions`` list."""

    def __init__(self, home: Path, lifetime_s: float):
        self.path = home / "auth" / "session.key"
        self.lifetime_s = lifetime_s
        self.revoked = RevokedSessions(home / "auth")
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

    def _open(self, token: str) -> _Session | None:
        """The fields of a genuine, unexpired token; None for anything else."""
        body, _, mac = token.rpartition(".")
        if not body or not hmac.compare_digest(mac, self._mac("session:" + body)):
            return None
        parts = body.split(".")
        if len(parts) != 3 or not parts[1].isdigit() or int(parts[1]) < time.time():
            return None
        return _Session(parts[0], int(parts[1]), parts[2])

    def key_id_of(self, token: str) -> str | None:
        """The key id of a valid, unexpired, not signed-out token; None for anything else."""
        session = self._open(token)
        if session is None or self.revoked.contains(session.nonce):
            return None
        return session.key_id

    def revoke(self, token: str) -> bool:
        """Sign a session out in every process; False when the token was no live session."""
        session = self._open(token)
        if session is None:
            return False
        self.revoked.add(session.nonce, session.expires)
        return True

    def csrf_token(self, token: str) -> str:
        return self._mac("csrf:" + token)

    def csrf_ok(self, token: str, given: str) -> bool:
        return bool(given) and hmac.compare_digest(self.csrf_token(token), given)


@dataclass
class RateLimiter:
    """Token buckets by key (or client address): ``per_minute`` refill, ``burst`` capacity."""

    per_minute: int
    burst: int
    _buckets: dict[str, Bucket] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self, who: str, now: float | None = None) -> float:
        """0.0 when the request may go on, else the seconds until a token is available."""
        if self.per_minute <= 0:
            return 0.0
        now = time.monotonic() if now is None else now
        with self._lock:
            bucket = self._buckets.get(who)
            if bucket is None:
                if len(self._buckets) > 10_000:  # forget idle callers rather than grow forever
                    self._buckets.clear()
                bucket = self._buckets[who] = Bucket(float(self.burst), now)
            return bucket.take(now, self.per_minute, self.burst)

    def refund(self, who: str) -> None:
        """Give back a token taken for an attempt that turned out fine (a key that verified)."""
        with self._lock:
            bucket = self._buckets.get(who)
            if bucket is not None:
                bucket.tokens = min(float(self.burst), bucket.tokens + 1.0)

    def first_refusal(self, who: str, window_s: float = 60.0) -> bool:
        """True once per window per caller, so a flood writes one audit line, not thousands."""
        now = time.monotonic()
        with self._lock:
            bucket = self._buckets.get(who)
            if bucket is None or now - bucket.warned_at < window_s:
                return False
            bucket.warned_at = now
            return True


class AuthThrottled(Exception):
    """A key check refused before argon2: a failure budget is spent, or too many checks
    are already running. The guard answers 429 with ``Retry-After``."""

    def __init__(self, retry_after: float, message: str, *, audit: bool = True):
        super().__init__(message)
        self.retry_after = retry_after
        self.audit = audit


class Verifier:
    """Runs argon2 verifications on ``slots`` dedicated threads, admitting at most
    ``queue`` more to wait, so a flood of wrong keys can neither block the event loop nor
    take the shared thread pool that synchronous routes run on, nor pile up forever."""

    def __init__(self, slots: int = VERIFY_SLOTS, queue: int = VERIFY_QUEUE):
        self.limit = slots + queue
        self._pool = ThreadPoolExecutor(max_workers=slots, thread_name_prefix="mmsearch-verify")
        self._pending = 0
        self._lock = threading.Lock()

    def _release(self, _: Future[ApiKey | None]) -> None:
        with self._lock:
            self._pending -= 1

    async def run(self, keys: KeyStore, secret: str) -> ApiKey | None:
        """``keys.verify(secret)`` on a verification thread; ``AuthThrottled`` when full."""
        with self._lock:
            if self._pending >= self.limit:
                raise AuthThrottled(1.0, "Too many key checks are running; retry in 1 s.")
            self._pending += 1
        try:
            future = self._pool.submit(keys.verify, secret)
        except BaseException:
            with self._lock:
                self._pending -= 1
            raise
        # Released when the thread finishes (or the queued job is cancelled), not when the
        # request goes away: the slot is busy for as long as argon2 runs.
        future.add_done_callback(self._release)
        return await asyncio.wrap_future(future)


class AccessControl:
    """Everything the guard needs to decide who a request is and whether it may go on."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.keys = KeyStore(settings.home)
        self.sessions = SessionSigner(settings.home, settings.session_hours * 3600.0)
        # Requests per key (or client): in memory for one worker; with several, in files
        # they all charge, or each worker would grant the whole budget again.
        self.limiter: RateLimiter | SharedTokenBuckets = (
            SharedTokenBuckets(
                settings.home / "auth" / "requests",
                settings.rate_limit_per_minute,
                settings.rate_limit_burst,
            )
            if settings.workers > 1
            else RateLimiter(settings.rate_limit_per_minute, settings.rate_limit_burst)
        )
        burst = max(1, settings.auth_failures_per_minute // 4)
        # Failed key checks per client address and per key id named, charged before argon2,
        # in files every worker shares.
        budgets = settings.home / "auth" / "budgets"
        self.failures = SharedTokenBuckets(budgets, settings.auth_failures_per_minute, burst)
        self.key_failures = SharedTokenBuckets(budgets, settings.auth_failures_per_minute, burst)
        self.verifier = Verifier()

    def enabled(self) -> bool:
        """On, off, or (auto) on as soon as a key exists: keys made while serving count."""
        if self.settings.auth == "auto":
            return self.keys.has_keys()
        return self.settings.auth == "on"

    def _charge(self, client: str, key_id: str | None) -> None:
        """Take one failure from the client's budget and the key id's, before any hashing;
        ``AuthThrottled`` when either is spent.

        The key id's budget stops a guesser who spreads over many addresses from making
        the service hash for one key without end. It can also hold back the key's owner
        while the flood lasts, but only for secrets not verified since the process
        started: remembered ones are answered before any budget is looked at.
        """
        wait = self.failures.take(client)
        if wait > 0:
            raise AuthThrottled(
                wait,
                "Too many failed key checks from this client.",
                audit=self.failures.first_refusal(client),
            )
        if key_id is not None:
            who = f"key:{key_id}"
            wait = self.key_failures.take(who)
            if wait > 0:
                raise AuthThrottled(
                    wait,
                    "Too many failed checks of this key.",
                    audit=self.key_failures.first_refusal(who),
                )

    async def from_bearer(self, secret: str, client: str) -> Caller | None:
        """The caller a bearer secret (or a sign-in's key) belongs to; None when it is
        wrong (the failure stays charged). ``AuthThrottled`` when refused before argon2.

        ``client`` is the address budget's name (``ip:<address>``)."""
        check = self.keys.precheck(secret)
        if check.key is not None:
            return caller_of(check.key, "bearer")
        self._charge(client, check.key_id)
        if check.settled:  # malformed, or a remembered secret whose key ended: no hashing
            return None
        key = await self.verifier.run(self.keys, secret)
        if key is None:
            return None
        self.failures.refund(client)
        self.key_failures.refund(f"key:{key.key_id}")
        return caller_of(key, "bearer")

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
