"""Access control over real HTTP: every route by every role, the guard's browser checks,
sessions with CSRF, rate limits, ingest roots, the registry and the audit trail."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from mmsearch.governance.audit import AuditLog
from mmsearch.governance.keys import KeyStore
from mmsearch.governance.registry import Registry
from mmsearch.service.app import create_app
from mmsearch.service.permissions import PAGES, ROUTE_PERMISSIONS
from mmsearch.workspace import Workspace
from service_support import concrete, ingest_shop, running_server

from conftest import write_jsonl

ROLES = ("none", "bad", "reader", "writer", "admin", "other")


@pytest.fixture
def secured(settings, make_catalog, tmp_path):
    """A collection with per-item ACLs, keys of every role, and a running server."""
    catalog = make_catalog(
        [
            {
                "id": "secret-1",
                "title": "red secret mug",
                "acl": ["finance"],
                "category": "x",
                "price": 1.0,
                "in_stock": True,
                "image": "img/red.png",
            },
            {
                "id": "team-1",
                "title": "red team mug",
                "acl": "sales",
                "category": "x",
                "price": 2.0,
                "in_stock": True,
                "image": "img/red.png",
            },
        ]
    )
    ingest_shop(settings, catalog)
    ingest_shop(settings, catalog, name="other")
    keys = KeyStore(settings.home)
    secrets = {"bad": "mms_k_0000000000_" + "x" * 43}
    for role in ("reader", "writer", "admin"):
        secrets[role] = keys.create(role, groups=["sales"])[1]
    secrets["other"] = keys.create("admin", collections=["other"])[1]
    settings = settings.model_copy(
        update={
            "allowed_roots": [tmp_path / "cat"],
            "auth": "auto",
            "rate_limit_per_minute": 0,
            "auth_failures_per_minute": 100_000,  # the matrix sends many bad keys on purpose
        }
    )
    app = create_app(settings)
    with running_server(app) as base:
        yield base, secrets, settings, app


def headers(secrets, role, **extra):
    out = dict(extra)
    if role in secrets:
        out["authorization"] = f"Bearer {secrets[role]}"
    return out


def expected(permission, role: str) -> str:
    """'open' when the guard lets the request through, else the refusal status."""
    if role == "bad":
        return "401"  # a key that does not authenticate is refused even on public routes
    if permission is None:
        return "open"
    if role == "none":
        return "401"
    if role == "other":
        return "403"  # a key limited to another collection; routes without {name} differ
    allowed = {
        "reader": {"search", "read_items", "facets", "read_collections"},
        "writer": {
            "search",
            "read_items",
            "facets",
            "read_collections",
            "write_items",
            "ingest",
            "feedback",
        },
        "admin": None,
    }[role]
    return "open" if allowed is None or str(permission) in allowed else "403"


def test_every_route_has_an_access_rule(secured):
    _, _, _, app = secured
    routes = {
        (method, route.path)
        for route in app.state.routes
        for method in (route.methods or set()) - {"HEAD"}
    }
    assert len(routes) > 30
    assert routes == set(ROUTE_PERMISSIONS), routes ^ set(ROUTE_PERMISSIONS)


def test_route_role_matrix(secured):
    base, secrets, _, _ = secured
    seen = 0
    with httpx.Client(base_url=base, timeout=30, follow_redirects=False) as client:
        for (method, path), permission in sorted(ROUTE_PERMISSIONS.items(), key=str):
            url = concrete(path)
            for role in ROLES:
                want = expected(permission, role)
                if role == "other" and not any(p in path for p in ("{name}", "{collection}")):
                    # an admin key limited to 'other' is still an admin, but not of what
                    # every collection shares (test_route_identity_matrix.py has the rest)
                    want = "403" if str(permission) == "global_admin" else "open"
                body = json.dumps({}) if method in ("POST", "PUT") else None
                response = client.request(
                    method,
                    url,
                    content=body,
                    headers=headers(secrets, role, **{"content-type": "application/json"}),
                )
                seen += 1
                got = response.status_code
                page = method == "GET" and path in PAGES
                if want == "open":
                    assert got not in (401, 403), (method, path, role, got, response.text)
                    assert got < 500, (method, path, role, got, response.text)
                elif want == "401" and page:
                    assert got == 303 and response.headers["location"].startswith("/login")
                else:
                    assert str(got) == want, (method, path, role, got, response.text)
                    error = response.json()["error"]
                    assert "mms_" not in error["message"]
    assert seen == len(ROUTE_PERMISSIONS) * len(ROLES)


def test_readers_see_only_their_groups_and_public_items(secured):
    base, secrets, _, _ = secured
    with httpx.Client(base_url=base, timeout=30) as client:
        reader = headers(secrets, "reader")
        hits = client.post(
            "/v1/collections/shop/search", json={"text": "red mug", "k": 50}, headers=reader
        ).json()["hits"]
        ids = {hit["id"] for hit in hits}
        assert "team-1" in ids and "secret-1" not in ids
        assert client.get("/v1/collections/shop/items/secret-1", headers=reader).status_code == 404
        missing = client.get("/v1/collections/shop/items/nope", headers=reader)
        hidden = client.get("/v1/collections/shop/items/secret-1", headers=reader)
        assert hidden.json()["error"]["message"].replace("secret-1", "X") == missing.json()[
            "error"
        ]["message"].replace("nope", "X")
        assert (
            client.get("/v1/collections/shop/items/secret-1/images/0", headers=reader).status_code
            == 404
        )
        summary = client.get("/v1/collections/shop", headers=reader).json()
        assert summary["items"] == 6  # 5 public + team-1, not secret-1
        admin = client.get("/v1/collections/shop", headers=headers(secrets, "admin")).json()
        assert admin["items"] == 7
        similar = client.get(
            "/v1/collections/shop/items/team-1/similar?by=look&k=20", headers=reader
        ).json()
        assert "secret-1" not in {hit["id"] for hit in similar["hits"]}


def test_text_plain_json_cannot_start_an_ingest(settings, make_catalog, tmp_path):
    ingest_shop(settings, make_catalog())
    home = settings.home.resolve()
    settings = settings.model_copy(update={"allowed_roots": [tmp_path]})
    with running_server(create_app(settings)) as base, httpx.Client(base_url=base) as client:
        attack = json.dumps({"catalog": str(home / "logs" / "queries.jsonl")})
        response = client.post(
            "/v1/collections/stolen/ingest",
            content=attack,
            headers={"content-type": "text/plain", "origin": "http://evil.example"},
        )
        assert response.status_code == 403  # a foreign origin may not write
        response = client.post(
            "/v1/collections/stolen/ingest", content=attack, headers={"content-type": "text/plain"}
        )
        assert response.status_code == 415
        # Even as JSON, the workspace itself is never an ingest source.
        response = client.post(
            "/v1/collections/stolen/ingest",
            content=attack,
            headers={"content-type": "application/json"},
        )
        assert response.status_code == 403
        message = response.json()["error"]["message"]
        given = str(home / "logs" / "queries.jsonl")
        assert str(tmp_path) not in message.replace(given, "")  # the roots stay unnamed
        assert client.get("/v1/collections/stolen").status_code == 404


def test_host_and_origin_checks(secured):
    base, secrets, _, _ = secured
    with httpx.Client(base_url=base, timeout=30) as client:
        evil_host = client.get("/healthz", headers={"host": "evil.example"})
        assert evil_host.status_code == 400 and "Host" in evil_host.json()["error"]["message"]
        same = client.post(
            "/v1/collections/shop/search",
            json={"text": "mug"},
            headers=headers(secrets, "reader", origin=base),
        )
        assert same.status_code == 200
        cross = client.post(
            "/v1/collections/shop/search",
            json={"text": "mug"},
            headers=headers(secrets, "reader", origin="http://evil.example"),
        )
        assert cross.status_code == 403


def test_session_cookie_needs_csrf_for_writes_and_ends_with_the_key(secured):
    base, secrets, settings, _ = secured
    with httpx.Client(base_url=base, timeout=30) as client:
        wrong = client.post("/v1/session", json={"key": "mms_nope"})
        assert wrong.status_code == 401
        login = client.post("/v1/session", json={"key": secrets["reader"]})
        assert login.status_code == 200
        cookie = login.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie
        csrf = login.json()["csrf_token"]
        assert client.get("/v1/collections").status_code == 200
        page = client.get("/")
        assert page.status_code == 200 and csrf in page.text
        no_token = client.post("/v1/collections/shop/search", json={"text": "mug"})
        assert no_token.status_code == 403 and no_token.json()["error"]["type"] == "CsrfFailed"
        with_token = client.post(
            "/v1/collections/shop/search", json={"text": "mug"}, headers={"x-csrf-token": csrf}
        )
        assert with_token.status_code == 200
        key_id = login.json()["key_id"]
        KeyStore(settings.home).revoke(key_id)
        assert client.get("/v1/collections").status_code == 401


def test_guessing_keys_is_rate_limited(settings, make_catalog):
    ingest_shop(settings, make_catalog())
    KeyStore(settings.home).create("reader")
    settings = settings.model_copy(update={"auth_failures_per_minute": 8})
    with running_server(create_app(settings)) as base, httpx.Client(base_url=base) as client:
        bad = {"authorization": "Bearer mms_k_0123456789_" + "y" * 43}
        statuses = [client.get("/v1/collections", headers=bad).status_code for _ in range(6)]
        assert statuses[0] == 401 and statuses[-1] == 429


def test_rate_limit_answers_429_with_retry_after(settings, make_catalog):
    ingest_shop(settings, make_catalog())
    settings = settings.model_copy(update={"rate_limit_per_minute": 6, "rate_limit_burst": 3})
    with running_server(create_app(settings)) as base, httpx.Client(base_url=base) as client:
        statuses = [client.get("/v1/collections").status_code for _ in range(5)]
        assert statuses[:3] == [200, 200, 200] and statuses[-1] == 429
        refused = client.get("/v1/collections")
        assert int(refused.headers["retry-after"]) >= 1


def test_rules_come_from_the_registry_only(secured, tmp_path):
    base, secrets, settings, _ = secured
    rules = tmp_path / "rules.yaml"
    rules.write_text('version: "1"\nblocks:\n  - name: hide\n    ids: [item-0]\n')
    Registry(settings.home).add_rules("hide-first", rules)
    with httpx.Client(base_url=base, timeout=30) as client:
        reader = headers(secrets, "reader")
        search = "/v1/collections/shop/search"
        server_file = client.post(
            search, json={"text": "mug", "rules": "/etc/passwd"}, headers=reader
        )
        assert server_file.status_code == 400
        assert "root:" not in server_file.text
        assert (
            client.post(search, json={"text": "mug", "rules": 5}, headers=reader).status_code == 422
        )
        named = client.post(search, json={"text": "mug", "rules": "hide-first"}, headers=reader)
        assert named.status_code == 200
        assert "item-0" not in {hit["id"] for hit in named.json()["hits"]}
        Registry(settings.home).set_default_rules("shop", "hide-first")
        off = client.post(search, json={"text": "mug", "rules": "none"}, headers=reader)
        assert off.status_code == 403
        admin_off = client.post(
            search,
            json={"text": "mug", "k": 20, "rules": "none"},
            headers=headers(secrets, "admin"),
        )
        assert admin_off.status_code == 200
        assert "item-0" in {hit["id"] for hit in admin_off.json()["hits"]}
        default = client.post(search, json={"text": "mug", "k": 20}, headers=reader)
        assert "item-0" not in {hit["id"] for hit in default.json()["hits"]}


def test_writes_and_refusals_are_audited(secured):
    base, secrets, settings, _ = secured
    with httpx.Client(base_url=base, timeout=30) as client:
        writer = headers(secrets, "writer")
        put = client.put(
            "/v1/collections/shop/items/new-1",
            json={
                "record": {
                    "title": "new mug",
                    "acl": ["sales"],
                    "category": "x",
                    "price": 3.0,
                    "in_stock": True,
                }
            },
            headers=writer,
        )
        assert put.status_code == 200, put.text
        planted = client.put(
            "/v1/collections/shop/items/new-2",
            json={
                "record": {
                    "title": "planted",
                    "acl": ["finance"],
                    "category": "x",
                    "price": 3.0,
                    "in_stock": True,
                }
            },
            headers=writer,
        )
        assert planted.status_code == 403
        assert client.delete("/v1/collections/shop/items/new-1", headers=writer).status_code == 200
        assert (
            client.delete("/v1/collections/shop/items/secret-1", headers=writer).status_code == 404
        )
        assert client.get("/v1/admin/keys", headers=writer).status_code == 403
    events = AuditLog(settings.home).read(limit=100)
    actions = [(e["action"], e["outcome"]) for e in events]
    assert ("item.put", "ok") in actions and ("item.delete", "ok") in actions
    assert ("item.put", "failed") in actions
    assert ("request.refused", "refused") in actions
    assert all("mms_" not in json.dumps(e) for e in events)
    assert AuditLog(settings.home).verify().ok


def test_malformed_bodies_are_client_errors(settings, make_catalog, tmp_path):
    ingest_shop(settings, make_catalog())
    settings = settings.model_copy(update={"allowed_roots": [tmp_path / "cat"]})
    with running_server(create_app(settings)) as base, httpx.Client(base_url=base) as client:
        nul = client.post(
            "/v1/collections/shop/ingest",
            content=b"\x00",
            headers={"content-type": "application/json"},
        )
        assert nul.status_code == 400 and "JSON" in nul.json()["error"]["message"]
        form = client.post(
            "/v1/collections/shop/ingest",
            files={"file": ("c.jsonl", b'{"id": 1, "title": "x"}\n')},
            data={"mapping": "{bad"},
        )
        assert form.status_code == 400 and "mapping" in form.json()["error"]["message"]
        not_object = client.post("/v1/collections/shop/search", json=[1, 2])
        assert not_object.status_code == 400


def test_readyz_ignores_a_collection_without_a_live_build(settings, make_catalog, tmp_path):
    ingest_shop(settings, make_catalog())
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"id": "x"}, {"id": "y", "title": ""}])
    ingest_shop(settings, bad, name="broken")  # every row fails: no collection is left behind
    Workspace(settings.home).create_or_open("pending")  # e.g. a first ingest still running
    with running_server(create_app(settings)) as base, httpx.Client(base_url=base) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert "broken" not in ready.json()["collections"]
        assert ready.json()["collections"]["pending"]["status"] == "empty"


def test_item_get_shows_paths_relative_to_the_catalog(settings, make_catalog):
    ingest_shop(settings, make_catalog())
    with running_server(create_app(settings)) as base, httpx.Client(base_url=base) as client:
        item = client.get("/v1/collections/shop/items/item-0").json()
    assert item["images"] == ["img/red.png"]
    assert item["source_file"] == "catalog.jsonl"
    shown = json.dumps(item)
    assert str(Path(settings.home).resolve().parent) not in shown


def test_serve_refuses_a_network_address_without_an_admin_key(settings):
    from typer.testing import CliRunner

    from mmsearch.cli import app
    from mmsearch.commands.serve import auth_mode

    home = settings.home
    result = CliRunner().invoke(app, ["serve", "--host", "0.0.0.0", "--home", str(home)])
    assert result.exit_code == 2 and "admin key" in result.output
    assert auth_mode("127.0.0.1", home, insecure_no_auth=False) == "auto"
    assert auth_mode("0.0.0.0", home, insecure_no_auth=True) == "off"
    KeyStore(home).create("reader")
    with pytest.raises(Exception, match="admin key"):
        auth_mode("10.1.2.3", home, insecure_no_auth=False)
    KeyStore(home).create("admin")
    assert auth_mode("10.1.2.3", home, insecure_no_auth=False) == "on"


def test_workers_share_one_request_budget(settings, make_catalog):
    """Two servers on one workspace stand for two worker processes of ``serve --workers
    2``: the caller's burst is granted once between them, not once by each; with one
    worker each (the in-memory budget) both grant it, which is what sharing prevents."""
    ingest_shop(settings, make_catalog())
    limited = settings.model_copy(
        update={"rate_limit_per_minute": 1, "rate_limit_burst": 3, "workers": 2}
    )

    def statuses(config):
        with running_server(create_app(config)) as one, running_server(create_app(config)) as two:
            return [httpx.get(f"{base}/v1/collections").status_code for base in (one, two) * 3]

    shared = statuses(limited)
    assert shared.count(200) == 3 and shared[-1] == 429, shared
    assert any((settings.home / "auth" / "requests").iterdir())
    apart = statuses(limited.model_copy(update={"workers": 1, "home": settings.home}))
    assert apart.count(200) == 6, apart
