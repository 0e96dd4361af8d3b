"""API keys on real files: hashing, checking, revocation and expiry across store instances."""

from __future__ import annotations

import json
import multiprocessing
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from argon2 import PasswordHasher

from mmsearch.errors import MMSearchError
from mmsearch.governance.keys import (
    ApiKey,
    KeyStore,
    KeyStoreError,
    bearer_secret,
    parse_duration,
    secret_key_id,
)
from mmsearch.governance.roles import Permission, Role, RoleError, allows, permissions

# Cheap argon2id parameters keep the suite fast; one test checks the real defaults.
FAST = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


class CountingHasher(PasswordHasher):
    """Counts verifications, to see when the cache answers instead of argon2."""

    def __init__(self) -> None:
        super().__init__(time_cost=1, memory_cost=8, parallelism=1)
        self.verifications = 0

    def verify(self, hash, password):  # type: ignore[override]
        self.verifications += 1
        return super().verify(hash, password)


@pytest.fixture
def store(tmp_path: Path) -> KeyStore:
    return KeyStore(tmp_path, hasher=FAST)


def test_roles_are_ordered_by_power_and_grant_supersets():
    assert Role.READER < Role.WRITER < Role.ADMIN
    assert max([Role.ADMIN, Role.READER, Role.WRITER]) is Role.ADMIN
    assert sorted(["admin", "reader", "writer"], key=Role) == ["reader", "writer", "admin"]
    assert permissions("reader") == {
        Permission.SEARCH,
        Permission.READ_ITEMS,
        Permission.FACETS,
        Permission.READ_COLLECTIONS,
    }
    assert permissions(Role.READER) < permissions(Role.WRITER) < permissions(Role.ADMIN)
    assert permissions(Role.ADMIN) == set(Permission)
    assert allows(Role.WRITER, "ingest") and allows("writer", Permission.FEEDBACK)
    assert not allows(Role.WRITER, Permission.ADMIN)
    assert not allows(Role.READER, Permission.WRITE_ITEMS)
    assert not allows(Role.ADMIN, "no-such-permission")
    with pytest.raises(RoleError, match="reader, writer, admin"):
        Role.parse("root")


def test_create_authenticate_and_describe(store: KeyStore):
    key, secret = store.create(
        "writer", collections=["shop", "shop"], groups="staff, eu", name="loader"
    )
    assert key.key_id.startswith("k_") and len(key.key_id) == 12
    assert secret.startswith(f"mms_{key.key_id}_") and len(secret.rsplit("_", 1)[-1]) >= 1
    assert len(secret) == len("mms_") + 12 + 1 + 43
    assert secret_key_id(secret) == key.key_id
    found = store.authenticate(secret)
    assert found is not None
    assert (found.key_id, found.role, found.collections, found.groups, found.name) == (
        key.key_id,
        Role.WRITER,
        ["shop"],
        ["eu", "staff"],
        "loader",
    )
    assert found.can_access("shop") and not found.can_access("other")
    assert found.allows(Permission.INGEST) and not found.allows(Permission.ADMIN)
    everywhere, _ = store.create(Role.READER, groups=None)
    assert everywhere.collections is None and everywhere.can_access("anything")
    assert everywhere.groups == []


def test_default_hasher_is_argon2id_and_hashes_only(tmp_path: Path, monkeypatch):
    from mmsearch.governance import keys

    # The product's own default, not the cheap parameters conftest gives other tests.
    monkeypatch.setattr(keys, "PasswordHasher", PasswordHasher)
    store = KeyStore(tmp_path)
    key, secret = store.create(Role.ADMIN)
    defaults = PasswordHasher()
    assert key.hash.startswith(
        f"$argon2id$v=19$m={defaults.memory_cost},t={defaults.time_cost},p={defaults.parallelism}$"
    )
    assert defaults.memory_cost >= 65536 and defaults.time_cost >= 2
    assert store.authenticate(secret) is not None
    text = (tmp_path / "auth" / "keys.json").read_text()
    random_part = secret.removeprefix(f"mms_{key.key_id}_")  # may itself hold "_"
    assert len(random_part) == 43 and secret not in text and random_part not in text
    assert json.loads(text)["keys"][0]["hash"] == key.hash


def test_key_file_is_private(store: KeyStore, tmp_path: Path):
    store.create(Role.READER)
    keys_file = tmp_path / "auth" / "keys.json"
    assert stat.S_IMODE(keys_file.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "auth").stat().st_mode) == 0o700
    assert not [p for p in (tmp_path / "auth").iterdir() if p.name.startswith(".keys.json")]


def test_wrong_malformed_and_unknown_secrets_are_refused(tmp_path: Path):
    hasher = CountingHasher()
    store = KeyStore(tmp_path, hasher=hasher)
    _, secret = store.create(Role.READER)
    prefix, random_part = secret[:-43], secret[-43:]
    wrong = prefix + ("A" if random_part[0] != "A" else "B") + random_part[1:]
    assert store.authenticate(wrong) is None
    for malformed in ["", "secret", secret + "x", secret[:-1], "mms_k_zz_" + random_part, None]:
        assert store.authenticate(malformed) is None  # type: ignore[arg-type]
    before = hasher.verifications
    unknown = f"mms_k_{'0' * 10}_{random_part}"
    assert store.authenticate(unknown) is None
    # An unknown id still costs an argon2 verification (against a dummy hash).
    assert hasher.verifications == before + 1
    assert store.authenticate(secret) is not None


def test_cached_verification_still_honours_revocation(tmp_path: Path):
    hasher = CountingHasher()
    store = KeyStore(tmp_path, hasher=hasher)
    key, secret = store.create(Role.WRITER)
    assert store.authenticate(secret) is not None
    assert store.authenticate(secret) is not None
    assert hasher.verifications == 1  # the second call was answered from the cache
    revoked = store.revoke(key.key_id)
    assert revoked.revoked_at is not None and revoked.status() == "revoked"
    assert store.authenticate(secret) is None
    assert store.active(key.key_id) is None
    assert store.revoke(key.key_id).revoked_at == revoked.revoked_at  # first time kept


def test_a_second_store_sees_a_revocation_by_the_first(tmp_path: Path):
    service = KeyStore(tmp_path, hasher=FAST)
    cli = KeyStore(tmp_path, hasher=FAST)
    key, secret = cli.create(Role.READER)
    assert service.authenticate(secret) is not None  # now cached in the service's store
    cli.revoke(key.key_id)
    assert service.authenticate(secret) is None
    assert service.list()[0].status() == "revoked"


def test_expired_keys_are_refused_even_when_cached(store: KeyStore, tmp_path: Path):
    key, secret = store.create(Role.READER, expires_in=parse_duration("1h"))
    assert key.expires_at is not None
    assert timedelta(minutes=59) < key.expires_at - key.created_at <= timedelta(hours=1)
    assert store.authenticate(secret) is not None
    # Another process (or an old backup) writes the key back with a past expiry.
    path = tmp_path / "auth" / "keys.json"
    data = json.loads(path.read_text())
    data["keys"][0]["expires_at"] = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    path.write_text(json.dumps(data))
    assert store.authenticate(secret) is None
    assert store.list()[0].status() == "expired"
    assert not store.has_admin()


def test_has_keys_and_has_admin(store: KeyStore):
    assert not store.has_keys() and not store.has_admin()
    reader, _ = store.create(Role.READER)
    assert store.has_keys() and not store.has_admin()
    admin, _ = store.create(Role.ADMIN)
    assert store.has_admin()
    store.revoke(admin.key_id)
    store.revoke(reader.key_id)
    assert not store.has_admin()
    assert store.has_keys()  # revoking every key must not switch authentication off


def test_list_is_oldest_first_and_never_shows_hashes(store: KeyStore):
    first, _ = store.create(Role.READER, name="one")
    second, _ = store.create(Role.ADMIN, name="two")
    listed = store.list()
    assert [k.key_id for k in listed] == [first.key_id, second.key_id]
    shown = listed[0].public_dict()
    assert "hash" not in shown and shown["status"] == "active" and shown["name"] == "one"
    assert first.hash not in repr(listed[0])
    assert ApiKey.from_record(listed[1].to_record()) == listed[1]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30d", timedelta(days=30)),
        ("12h", timedelta(hours=12)),
        ("90m", timedelta(minutes=90)),
        ("1w", timedelta(weeks=1)),
        (" 2D ", timedelta(days=2)),
    ],
)
def test_parse_duration(text: str, expected: timedelta):
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "30", "d", "0d", "-1d", "5y", "1.5h", "30 days"])
def test_parse_duration_refuses_what_it_cannot_read(text: str):
    with pytest.raises(KeyStoreError, match=r"e\.g\. 30d or 12h"):
        parse_duration(text)


def test_invalid_key_requests_say_what_to_do(store: KeyStore):
    with pytest.raises(KeyStoreError, match="leave the collections out"):
        store.create(Role.READER, collections=[])
    with pytest.raises(KeyStoreError, match="Invalid collection"):
        store.create(Role.READER, collections=["../etc"])
    with pytest.raises(KeyStoreError, match="group"):
        store.create(Role.READER, groups=["has space"])
    with pytest.raises(KeyStoreError, match="positive"):
        store.create(Role.READER, expires_in=timedelta(0))
    with pytest.raises(RoleError):
        store.create("superuser")
    with pytest.raises(KeyStoreError, match="keys list"):
        store.revoke("k_0000000000")
    with pytest.raises(KeyStoreError, match="not its id") as caught:
        store.revoke("mms_k_0000000000_" + "a" * 43)
    assert "aaaa" not in str(caught.value)  # a pasted secret is never echoed
    assert not store.has_keys()
    assert issubclass(KeyStoreError, MMSearchError)


def test_a_corrupt_key_file_is_a_clear_error(store: KeyStore, tmp_path: Path):
    (tmp_path / "auth").mkdir()
    (tmp_path / "auth" / "keys.json").write_text("{not json")
    with pytest.raises(KeyStoreError, match="restore it from a backup"):
        store.list()


def test_bearer_header_parsing():
    assert bearer_secret("Bearer mms_x") == "mms_x"
    assert bearer_secret("bearer   mms_x ") == "mms_x"
    assert bearer_secret("Basic abc") is None
    assert bearer_secret("Bearer ") is None
    assert bearer_secret(None) is None


def _create_keys(home: str, count: int) -> None:
    store = KeyStore(Path(home), hasher=PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
    for _ in range(count):
        store.create(Role.READER)


def test_concurrent_creates_from_two_processes_lose_no_key(tmp_path: Path):
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_create_keys, args=(str(tmp_path), 4)) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    keys = KeyStore(tmp_path, hasher=FAST).list()
    assert len(keys) == 8 and len({k.key_id for k in keys}) == 8
