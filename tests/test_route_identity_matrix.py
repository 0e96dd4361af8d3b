"""Every route by every kind of caller, over real HTTP, and what a key's scope bounds.

The identities: no key, a wrong key, an expired session, readers, writers and admins,
each unrestricted, with ACL groups, or limited to a collection (this one or another).
Expectations are written out here from the documented roles, not computed by the code
under test: a route that answers a caller it should refuse fails the matrix.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import httpx
import pytest

from mmsearch.governance.keys import KeyStore
from mmsearch.governance.registry import Registry
from mmsearch.service.access import SESSION_COOKIE, SessionSigner
from mmsearch.service.app import create_app
from mmsearch.service.permissions import PAGES, ROUTE_PERMISSIONS
from mmsearch.service.routers.session import same_origin_path
from service_support import PARAMS, concrete, ingest_shop, running_server

READER = {"search", "read_items", "facets", "read_collections"}
WRITER = READER | {"write_items", "ingest", "feedback"}
ADMIN = WRITER | {"admin", "moderate", "global_admin"}
GLOBAL_ONLY = {"global_admin"}  # never held by a key limited to collections


@dataclass(frozen=True)
class Identity:
    role: str
    collections: list[str] | None = None
    groups: tuple[str, ...] = ()


IDENTITIES = {
    "reader": Identity("reader"),
    "reader-groups": Identity("reader", groups=("sales",)),
    "reader-shop": Identity("reader", ["shop"], ("sales",)),
    "writer": Identity("writer"),
    "writer-groups": Identity("writer", groups=("sales",)),
    "writer-shop": Identity("writer", ["shop"], ("sales",)),
    "admin": Identity("admin"),
    "admin-shop": Identity("admin", ["shop"], ("sales",)),
    "admin-other": Identity("admin", ["other"]),
}
CALLERS = ("none", "bad", "expired", *IDENTITIES)


def expected(path: str, permission: str | None, who: str) -> str:
    """'open' when the guard should let the request through, else the refusal."""
    if who == "bad":
        return "401"  # a key that does not authenticate is refused even on public routes
    if permission is None:
        return "open"
    if who in ("none", "expired"):
        return "401"
    identity = IDENTITIES[who]
    held = {"reader": READER, "writer": WRITER, "admin": ADMIN}[identity.role]
    if identity.collections is not None:
        held = held - GLOBAL_ONLY
        names_collection = "{name}" in path or "{collection}" in path
        if names_collection and PARAMS["name"] not in identity.collections:
            return "403"
    return "open" if permission in held else "403"


@pytest.fixture
def secured(settings, make_catalog, tmp_path):
    catalog = make_catalog(
        [
            {"id": "secret-1", "title": "red secret mug", "acl": ["finance"], "category": "x"},
            {"id": "team-1", "title": "red team mug", "acl": "sales", "category": "x"},
        ]
    )
    ingest_shop(settings, catalog)
    ingest_shop(settings, catalog, name="other")
    keys = KeyStore(settings.home)
    secrets = {"bad": "mms_k_0000000000_" + "x" * 43}
    ids = {}
    for who, identity in IDENTITIES.items():
        key, secrets[who] = keys.create(
            identity.role, collections=identity.collections, groups=identity.groups
        )
        ids[who] = key.key_id
    settings = settings.model_copy(
        update={
            "allowed_roots": [tmp_path / "cat"],
            "auth": "auto",
            "rate_limit_per_minute": 0,
            "auth_failures_per_minute": 100_000,  # the matrix sends many bad keys on purpose
        }
    )
    expired = SessionSigner(settings.home, -60.0).issue(ids["admin"])
    app = create_app(settings)
    with running_server(app) as base:
        yield base, secrets, ids, expired, settings


def send(client, method, url, who, secrets, expired, body=None):
    headers = {"content-type": "application/json"}
    client.cookies.clear()
    if who == "expired":
        client.cookies.set(SESSION_COOKIE, expired)
    elif who in secrets:
        headers["authorization"] = f"Bearer {secrets[who]}"
    return client.request(method, url, content=body, headers=headers)


def test_route_identity_matrix(secured):
    base, secrets, _, expired, _ = secured
    cells = refused = 0
    with httpx.Client(base_url=base, timeout=60, follow_redirects=False) as client:
        for (method, path), permission in sorted(ROUTE_PERMISSIONS.items(), key=str):
            for who in CALLERS:
                want = expected(path, permission, who)
                body = json.dumps({}) if method in ("POST", "PUT") else None
                response = send(client, method, concrete(path), who, secrets, expired, body)
                got = response.status_code
                cells += 1
                if want == "open":
                    assert got not in (401, 403), (method, path, who, got, response.text)
                    assert got < 500, (method, path, who, got, response.text)
                    continue
                refused += 1
                if want == "401" and method == "GET" and path in PAGES:
                    assert got == 303 and response.headers["location"].startswith("/login")
                    continue
                assert str(got) == want, (method, path, who, got, response.text)
                message = response.json()["error"]["message"]
                assert "mms_" not in message and "secret" not in message
    assert cells == len(ROUTE_PERMISSIONS) * len(CALLERS) and len(CALLERS) >= 12
    assert refused > cells // 3


def _post_key(client, secret, **body):
    return client.post("/v1/admin/keys", json=body, headers={"authorization": f"Bearer {secret}"})


def test_a_collection_admin_cannot_make_itself_a_full_admin(secured):
    base, secrets, _, _, _ = secured
    scoped = secrets["admin-shop"]
    with httpx.Client(base_url=base, timeout=30) as client:
        for body in (
            {"role": "admin"},  # the reported escalation: an unrestricted admin
            {"role": "reader"},  # any key without a collection limit is broader
            {"role": "admin", "collections": ["other"]},
            {"role": "reader", "collections": ["shop", "other"]},
            {"role": "reader", "collections": ["shop"], "groups": ["finance"]},
        ):
            response = _post_key(client, scoped, **body)
            assert response.status_code == 403, (body, response.text)
        made = _post_key(client, scoped, role="reader", collections=["shop"], groups=["sales"])
        assert made.status_code == 201, made.text
        new = {"authorization": f"Bearer {made.json()['secret']}"}
        assert client.get("/v1/collections/shop", headers=new).status_code == 200
        assert client.get("/v1/collections/other", headers=new).status_code == 403
        hits = client.post(
            "/v1/collections/shop/search", json={"text": "red mug", "k": 50}, headers=new
        ).json()["hits"]
        assert "secret-1" not in {hit["id"] for hit in hits}
        # Another limited admin for the same collection is allowed, and stays limited.
        peer = _post_key(client, scoped, role="admin", collections=["shop"])
        assert peer.status_code == 201
        peer_auth = {"authorization": f"Bearer {peer.json()['secret']}"}
        assert _post_key(client, peer.json()["secret"], role="admin").status_code == 403
        assert client.get("/v1/admin/rules", headers=peer_auth).status_code == 403


def test_a_collection_admin_sees_and_revokes_only_keys_in_its_scope(secured):
    base, secrets, ids, _, _ = secured
    scoped = {"authorization": f"Bearer {secrets['admin-shop']}"}
    with httpx.Client(base_url=base, timeout=30) as client:
        listed = {k["key_id"] for k in client.get("/v1/admin/keys", headers=scoped).json()["keys"]}
        assert ids["reader-shop"] in listed and ids["writer-shop"] in listed
        assert ids["admin"] not in listed and ids["reader"] not in listed
        assert ids["admin-other"] not in listed
        outside = client.delete(f"/v1/admin/keys/{ids['admin']}", headers=scoped)
        unknown = client.delete("/v1/admin/keys/k_0123456789", headers=scoped)
        assert outside.status_code == unknown.status_code == 404
        assert outside.json()["error"]["message"].replace(ids["admin"], "X") == unknown.json()[
            "error"
        ]["message"].replace("k_0123456789", "X")
        full = {"authorization": f"Bearer {secrets['admin']}"}
        assert client.get("/v1/collections", headers=full).status_code == 200  # still works
        assert client.delete(f"/v1/admin/keys/{ids['reader-shop']}", headers=scoped).is_success
        gone = {"authorization": f"Bearer {secrets['reader-shop']}"}
        assert client.get("/v1/collections/shop", headers=gone).status_code == 401


def test_a_collection_admin_reads_only_its_collections_audit_and_no_global_pages(secured):
    base, secrets, _, _, _ = secured
    scoped = {"authorization": f"Bearer {secrets['admin-shop']}"}
    full = {"authorization": f"Bearer {secrets['admin']}"}
    with httpx.Client(base_url=base, timeout=30) as client:
        for name in ("shop", "other"):  # an audited act in each collection
            response = client.put(
                f"/v1/admin/collections/{name}/default-rules", json={"rules": None}, headers=full
            )
            assert response.status_code == 200, response.text
        events = client.get("/v1/admin/audit?limit=1000", headers=scoped).json()["events"]
        assert events and {e.get("collection") for e in events} == {"shop"}
        everything = client.get("/v1/admin/audit?limit=1000", headers=full).json()["events"]
        assert {"shop", "other"} <= {e.get("collection") for e in everything}
        assert client.get("/v1/admin/audit?collection=other", headers=scoped).status_code == 403
        for method, url in (
            ("GET", "/metrics"),
            ("GET", "/v1/admin/audit/verify"),
            ("PUT", "/v1/admin/rules/global"),
            ("GET", "/admin/reports/x.md"),
        ):
            body = {"text": "version: 1\n"} if method == "PUT" else None
            assert client.request(method, url, json=body, headers=scoped).status_code == 403
        page = client.get("/admin", headers=scoped)
        assert page.status_code == 200
        assert "/?collection=shop" in page.text and "/?collection=other" not in page.text
        assert 'href="/metrics"' not in page.text and "Evaluation reports" not in page.text
        assert 'href="/metrics"' in client.get("/admin", headers=full).text
        reader_page = client.get("/", headers={"authorization": f"Bearer {secrets['reader']}"})
        assert 'href="/admin"' not in reader_page.text and 'href="/metrics"' not in reader_page.text


RULES_BLOCK = "version: '1'\nblocks:\n  - name: recall\n    ids: [item-0]\n"
RULES_EMPTY = "version: '2'\n"
RULES_BOOST = (
    "version: '3'\nboosts:\n  - name: office\n    conditions:\n"
    "      - {attribute: category, op: '=', value: office}\n    multiply: 2.0\n"
)


def test_default_rules_bind_every_caller_but_a_full_admin(secured):
    base, secrets, _, _, settings = secured
    registry = Registry(settings.home)
    registry.add_rules_text("recall", RULES_BLOCK, "yaml")
    registry.add_rules_text("empty", RULES_EMPTY, "yaml")
    registry.add_rules_text("office", RULES_BOOST, "yaml")
    registry.set_default_rules("shop", "recall")

    def ids(who, **extra):
        body = {"text": "red ceramic mug", "k": 50, **extra}
        auth = {"authorization": f"Bearer {secrets[who]}"}
        response = httpx.post(f"{base}/v1/collections/shop/search", json=body, headers=auth)
        assert response.status_code == 200, response.text
        return [hit["id"] for hit in response.json()["hits"]]

    for who in ("reader", "writer-groups", "admin-shop"):
        assert "item-0" not in ids(who)
        assert "item-0" not in ids(who, rules="empty"), who  # another set cannot lift it
        stacked = ids(who, rules="office")
        assert "item-0" not in stacked and stacked, who
        refused = httpx.post(
            f"{base}/v1/collections/shop/search",
            json={"text": "red", "rules": "none"},
            headers={"authorization": f"Bearer {secrets[who]}"},
        )
        assert refused.status_code == 403
    assert "item-0" in ids("admin", rules="empty")
    assert "item-0" in ids("admin", rules="none")


def test_responses_under_an_acl_are_never_kept_by_shared_caches(secured):
    base, secrets, _, _, _ = secured
    reader = {"authorization": f"Bearer {secrets['reader-groups']}"}
    with httpx.Client(base_url=base, timeout=30) as client:
        image = client.get("/v1/collections/shop/items/item-1/images/0", headers=reader)
        assert image.status_code == 200
        assert image.headers["cache-control"].startswith("private")
        assert "Authorization" in image.headers["vary"] and "Cookie" in image.headers["vary"]
        for response in (
            client.post("/v1/collections/shop/search", json={"text": "mug"}, headers=reader),
            client.get("/v1/collections/shop/items/team-1", headers=reader),
            client.get("/v1/collections/shop", headers=reader),
        ):
            assert response.headers["cache-control"] == "private, no-store"
            assert "Authorization" in response.headers["vary"]
        assert "private" not in client.get("/healthz").headers.get("cache-control", "")


def test_host_header_must_be_a_host_name(secured):
    base = secured[0]
    port = base.rsplit(":", 1)[1]
    with httpx.Client(base_url=base, timeout=30) as client:
        for host in (f"localhost:{port}@evil.example", "[localhost]", f"[localhost]:{port}"):
            response = client.get("/healthz", headers={"host": host})
            assert response.status_code == 400, host
        for host in (f"localhost:{port}", f"127.0.0.1:{port}", "localhost"):
            assert client.get("/healthz", headers={"host": host}).status_code == 200, host


def test_more_like_this_answers_its_largest_k(secured):
    base, secrets, _, _, _ = secured
    reader = {"authorization": f"Bearer {secrets['reader']}"}
    response = httpx.get(
        f"{base}/v1/collections/shop/items/item-1/similar?by=meaning&k=100", headers=reader
    )
    assert response.status_code == 200, response.text
    assert "item-1" not in {hit["id"] for hit in response.json()["hits"]}


@pytest.mark.parametrize(
    "target",
    [
        "/\\evil.example",
        "/\t/evil.example",
        "/\n/evil.example",
        "//evil.example",
        "/%5Cevil.example",
        "/%09/evil.example",
        "/%2F/evil.example",
        "https://evil.example/",
        "javascript:alert(1)",
        " /x",
        "",
    ],
)
def test_sign_in_redirects_only_to_this_origin(target):
    assert same_origin_path(target) == "/"


@pytest.mark.parametrize("target", ["/", "/admin", "/?collection=shop&q=red%20mug", "/items/a/b"])
def test_sign_in_keeps_a_path_on_this_origin(target):
    assert same_origin_path(target) == target


def test_moderation_is_for_those_who_may_submit_content():
    """Written out so the table cannot quietly widen it: writers and admins (scoped keys
    too, since no collection is named); readers and anonymous callers are refused."""
    assert ROUTE_PERMISSIONS[("POST", "/v1/moderate")] == "ingest"
    # The policies themselves are the workspace's: only full admins list or install them.
    assert ROUTE_PERMISSIONS[("GET", "/v1/admin/policies")] == "global_admin"
    assert ROUTE_PERMISSIONS[("PUT", "/v1/admin/policies/{policy_name}")] == "global_admin"
    assert {who for who in IDENTITIES if expected("/v1/moderate", "ingest", who) == "open"} == {
        "writer",
        "writer-groups",
        "writer-shop",
        "admin",
        "admin-shop",
        "admin-other",
    }
