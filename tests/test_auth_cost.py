"""Authentication costs nothing before it is earned, and signing out ends the session.

Argon2 verification is the expensive step, so these tests count calls to
``PasswordHasher.verify``: a malformed secret, and any secret once a failure budget
(per client address, per key id) is spent, must be refused without one. Verification
must run off the event loop (``/healthz`` answers while one is blocked) with bounded
concurrency. A signed-out session's cookie and CSRF token must stop working, in every
app sharing the workspace, and an expired one must be refused.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from argon2 import PasswordHasher

from mmsearch.config import Settings
from mmsearch.governance.keys import KeyStore
from mmsearch.service.access import (
    SESSION_COOKIE,
    AccessControl,
    AuthThrottled,
    RevokedSessions,
    SessionSigner,
    Verifier,
)
from mmsearch.service.app import create_app
from service_support import running_server

# Cheap argon2id parameters: verification reads them from the stored hash.
FAST = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
TAIL = "A" * 43


class VerifySpy:
    """Replaces ``PasswordHasher.verify``: counts calls and can hold them until released."""

    def __init__(self) -> None:
        self.calls = 0
        self.entered = threading.Event()
        self.release = threading.Event()
        self.release.set()
        self._real = PasswordHasher.verify

    def __call__(self, hasher: PasswordHasher, stored: str, secret: str | bytes) -> bool:
        self.calls += 1
        self.entered.set()
        assert self.release.wait(30), "the test never released the verification"
        return self._real(hasher, stored, secret)


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> VerifySpy:
    spy = VerifySpy()

    def verify(hasher: PasswordHasher, stored: str, secret: str | bytes) -> bool:
        return spy(hasher, stored, secret)  # a function, so it binds like the method

    monkeypatch.setattr(PasswordHasher, "verify", verify)
    return spy


def make_settings(settings: Settings, **update: Any) -> Settings:
    return settings.model_copy(
        update={"auth": "on", "rate_limit_per_minute": 0, "auth_failures_per_minute": 8, **update}
    )


def wrong_secret(secret: str) -> str:
    """Same (real) key id, a different well-shaped random tail."""
    tail = secret[-43:]
    return secret[:-43] + ("B" if tail[0] == "A" else "A") + tail[1:]


def bearer(secret: str) -> dict[str, str]:
    return {"authorization": f"Bearer {secret}"}


# --- the cost of a key check --------------------------------------------------------


def test_malformed_secrets_are_refused_without_hashing(settings: Settings, spy: VerifySpy):
    keys = KeyStore(settings.home, hasher=FAST)
    _, secret = keys.create("admin")
    malformed = ["", "nope", secret + "x", secret[:-1], "mms_k_zz_" + TAIL, secret.upper()]
    for candidate in malformed:
        check = keys.precheck(candidate)
        assert check.settled and check.key is None and check.key_id is None
        assert keys.authenticate(candidate) is None
    assert spy.calls == 0
    app = create_app(make_settings(settings, auth_failures_per_minute=1000))
    with running_server(app) as base, httpx.Client(base_url=base, timeout=30) as client:
        for candidate in malformed[1:]:
            response = client.get("/v1/admin/keys", headers=bearer(candidate))
            assert response.status_code == 401
        assert client.post("/v1/session", json={"key": "mms_not_a_key"}).status_code == 401
        assert spy.calls == 0
        assert client.get("/v1/admin/keys", headers=bearer(secret)).status_code == 200
        assert spy.calls == 1  # the well-formed right key is the first thing hashed


def test_key_id_budget_refuses_before_hashing(settings: Settings, spy: VerifySpy):
    """Guesses at one key id from many addresses: the key id's budget stops the hashing."""
    access = AccessControl(make_settings(settings))  # 8 a minute: a burst of 2
    _, secret = KeyStore(settings.home, hasher=FAST).create("reader")
    wrong = wrong_secret(secret)
    assert asyncio.run(access.from_bearer(wrong, "ip:10.0.0.1")) is None
    assert asyncio.run(access.from_bearer(wrong, "ip:10.0.0.2")) is None
    assert spy.calls == 2
    with pytest.raises(AuthThrottled) as refused:
        asyncio.run(access.from_bearer(wrong, "ip:10.0.0.3"))
    assert refused.value.retry_after > 0 and spy.calls == 2
    # Another key id from a fresh address is not held back by this key's budget.
    other = f"mms_k_{'0' * 10}_{TAIL}"
    assert asyncio.run(access.from_bearer(other, "ip:10.0.0.4")) is None
    assert spy.calls == 3


def test_address_budget_refuses_before_hashing(settings: Settings, spy: VerifySpy):
    """Guesses at many key ids from one address: the address's budget stops the hashing."""
    access = AccessControl(make_settings(settings))
    ids = [f"mms_k_{n:010d}_{TAIL}" for n in range(3)]
    assert asyncio.run(access.from_bearer(ids[0], "ip:10.0.0.9")) is None
    assert asyncio.run(access.from_bearer(ids[1], "ip:10.0.0.9")) is None
    with pytest.raises(AuthThrottled):
        asyncio.run(access.from_bearer(ids[2], "ip:10.0.0.9"))
    assert spy.calls == 2


def test_spent_budget_answers_429_over_http_without_hashing(settings: Settings, spy: VerifySpy):
    _, secret = KeyStore(settings.home, hasher=FAST).create("admin")
    app = create_app(make_settings(settings))
    wrong = bearer(wrong_secret(secret))
    with running_server(app) as base, httpx.Client(base_url=base, timeout=30) as client:
        statuses = [client.get("/v1/admin/keys", headers=wrong).status_code for _ in range(2)]
        assert statuses == [401, 401] and spy.calls == 2
        refused = client.get("/v1/admin/keys", headers=wrong)
        assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
        login = client.post("/v1/session", json={"key": wrong_secret(secret)})
        assert login.status_code == 429 and int(login.headers["retry-after"]) >= 1
        assert spy.calls == 2


def test_a_verified_key_is_not_charged_and_skips_the_budgets(settings: Settings, spy: VerifySpy):
    access = AccessControl(make_settings(settings))
    _, secret = KeyStore(settings.home, hasher=FAST).create("reader")
    for _ in range(6):  # more than the burst of 2: successes refund their charge
        assert asyncio.run(access.from_bearer(secret, "ip:10.0.0.5")) is not None
    assert spy.calls == 1  # then remembered


def test_a_cached_secret_stops_working_right_after_revoke(settings: Settings, spy: VerifySpy):
    access = AccessControl(make_settings(settings))
    cli = KeyStore(settings.home, hasher=FAST)  # another process: the operator's CLI
    key, secret = cli.create("writer")
    assert asyncio.run(access.from_bearer(secret, "ip:10.0.0.6")) is not None
    assert asyncio.run(access.from_bearer(secret, "ip:10.0.0.6")) is not None
    assert spy.calls == 1 and access.keys.precheck(secret).key is not None
    cli.revoke(key.key_id)
    assert access.keys.precheck(secret).key is None
    assert asyncio.run(access.from_bearer(secret, "ip:10.0.0.6")) is None
    assert access.keys._verified == {}  # the remembered verification was dropped


def test_revoking_in_process_empties_the_cache(settings: Settings):
    keys = KeyStore(settings.home, hasher=FAST)
    key, secret = keys.create("reader")
    other_key, other = keys.create("reader")
    assert keys.authenticate(secret) is not None and keys.authenticate(other) is not None
    assert len(keys._verified) == 2
    keys.revoke(key.key_id)
    assert [v[0] for v in keys._verified.values()] == [other_key.key_id]
    assert keys.authenticate(secret) is None


def test_the_cache_is_keyed_per_process(settings: Settings):
    """The cache never holds the secret or its plain SHA-256, and two stores differ."""
    first = KeyStore(settings.home, hasher=FAST)
    second = KeyStore(settings.home, hasher=FAST)
    _, secret = first.create("reader")
    assert first.authenticate(secret) and second.authenticate(secret)
    (tag_one,) = first._verified
    (tag_two,) = second._verified
    assert tag_one != tag_two and secret.encode() not in tag_one


def test_verification_runs_off_the_event_loop(settings: Settings, spy: VerifySpy):
    _, secret = KeyStore(settings.home, hasher=FAST).create("admin")
    app = create_app(make_settings(settings))
    spy.release.clear()
    with running_server(app) as base, httpx.Client(base_url=base, timeout=10) as client:
        result: dict[str, int] = {}

        def signed_request() -> None:
            with httpx.Client(base_url=base, timeout=30) as other:
                result["status"] = other.get("/v1/admin/keys", headers=bearer(secret)).status_code

        worker = threading.Thread(target=signed_request)
        worker.start()
        try:
            assert spy.entered.wait(10), "the verification never started"
            # argon2 is held: on the event loop, these would hang until the client times out.
            assert client.get("/healthz").status_code == 200
            assert client.get("/v1/admin/keys").status_code == 401  # anonymous: no hashing
        finally:
            spy.release.set()
            worker.join(30)
        assert result == {"status": 200} and spy.calls == 1


def test_a_full_verifier_refuses_instead_of_queueing(settings: Settings, spy: VerifySpy):
    keys = KeyStore(settings.home, hasher=FAST)
    _, first = keys.create("reader")
    _, second = keys.create("reader")
    app = create_app(make_settings(settings, auth_failures_per_minute=1000))
    app.state.access.verifier = Verifier(slots=1, queue=0)
    spy.release.clear()
    with running_server(app) as base, httpx.Client(base_url=base, timeout=10) as client:
        worker = threading.Thread(
            target=lambda: httpx.get(f"{base}/v1/collections", headers=bearer(first), timeout=30)
        )
        worker.start()
        try:
            assert spy.entered.wait(10)
            busy = client.get("/v1/collections", headers=bearer(second))
            assert busy.status_code == 429 and busy.headers["retry-after"] == "1"
            assert spy.calls == 1  # the refused check never reached argon2
        finally:
            spy.release.set()
            worker.join(30)
        assert client.get("/v1/collections", headers=bearer(second)).status_code == 200


# --- signing out ------------------------------------------------------------------


def sign_in(base: str, secret: str) -> tuple[str, str]:
    """A session cookie value and its CSRF token."""
    response = httpx.post(f"{base}/v1/session", json={"key": secret}, timeout=30)
    assert response.status_code == 200, response.text
    return response.cookies[SESSION_COOKIE], response.json()["csrf_token"]


def with_session(base: str, method: str, path: str, token: str, csrf: str) -> httpx.Response:
    """One request carrying exactly this cookie and CSRF token (no cookie jar)."""
    headers = {"cookie": f"{SESSION_COOKIE}={token}", "x-csrf-token": csrf}
    body = {"role": "reader"} if method == "POST" else None
    return httpx.request(method, f"{base}{path}", headers=headers, json=body, timeout=30)


@pytest.fixture
def admin_secret(settings: Settings) -> str:
    return KeyStore(settings.home, hasher=FAST).create("admin")[1]


@pytest.fixture
def two_servers(settings: Settings, admin_secret: str) -> Iterator[tuple[str, str]]:
    """Two apps (as two worker processes would be) over one workspace."""
    secured = make_settings(settings, auth_failures_per_minute=1000)
    with running_server(create_app(secured)) as one, running_server(create_app(secured)) as two:
        yield one, two


def test_sign_out_ends_the_session_for_reads_writes_and_pages(two_servers, admin_secret):
    base, _ = two_servers
    token, csrf = sign_in(base, admin_secret)
    assert with_session(base, "GET", "/v1/admin/keys", token, csrf).status_code == 200
    assert with_session(base, "POST", "/v1/admin/keys", token, csrf).status_code == 201
    out = httpx.delete(f"{base}/v1/session", headers={"cookie": f"{SESSION_COOKIE}={token}"})
    assert out.status_code == 200 and out.json() == {"signed_out": True}
    assert with_session(base, "GET", "/v1/admin/keys", token, csrf).status_code == 401
    assert with_session(base, "POST", "/v1/admin/keys", token, csrf).status_code == 401
    page = with_session(base, "GET", "/admin", token, csrf)
    assert page.status_code == 303 and page.headers["location"].startswith("/login")
    # A new sign-in with the same key works: only that session ended.
    fresh, fresh_csrf = sign_in(base, admin_secret)
    assert with_session(base, "GET", "/v1/admin/keys", fresh, fresh_csrf).status_code == 200


def test_sign_out_in_one_app_ends_the_session_in_another(two_servers, admin_secret):
    one, two = two_servers
    token, csrf = sign_in(one, admin_secret)
    assert with_session(two, "GET", "/v1/admin/keys", token, csrf).status_code == 200
    other, other_csrf = sign_in(one, admin_secret)
    httpx.delete(f"{two}/v1/session", headers={"cookie": f"{SESSION_COOKIE}={token}"})
    for base in (one, two):
        assert with_session(base, "GET", "/v1/admin/keys", token, csrf).status_code == 401
        assert with_session(base, "POST", "/v1/admin/keys", token, csrf).status_code == 401
        assert with_session(base, "GET", "/v1/admin/keys", other, other_csrf).status_code == 200


def test_an_expired_session_is_refused(settings: Settings, two_servers, admin_secret):
    base, _ = two_servers
    key_id = KeyStore(settings.home).list()[0].key_id
    live = SessionSigner(settings.home, lifetime_s=3600)
    token = live.issue(key_id)
    assert with_session(base, "GET", "/v1/admin/keys", token, live.csrf_token(token)).is_success
    expired = SessionSigner(settings.home, lifetime_s=-1).issue(key_id)
    response = with_session(base, "GET", "/v1/admin/keys", expired, live.csrf_token(expired))
    assert response.status_code == 401


def test_signed_out_sessions_are_pruned_after_expiry(tmp_path: Path):
    revoked = RevokedSessions(tmp_path)
    revoked.add("old", until=1)  # long past: dropped on the next write
    revoked.add("new", until=4_000_000_000)
    stored = json.loads((tmp_path / "revoked_sessions.json").read_text())["revoked"]
    assert stored == {"new": 4_000_000_000}
    assert RevokedSessions(tmp_path).contains("new") and not revoked.contains("old")


def test_an_unreadable_sign_out_list_refuses_every_session(tmp_path: Path):
    signer = SessionSigner(tmp_path, lifetime_s=3600)
    token = signer.issue("k_0123456789")
    assert signer.key_id_of(token) == "k_0123456789"
    (tmp_path / "auth" / "revoked_sessions.json").write_text("{not json")
    assert signer.key_id_of(token) is None
