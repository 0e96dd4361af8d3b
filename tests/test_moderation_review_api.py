"""The moderation flows over real HTTP: a policy installed and bound through the admin
API, an item blocked by an item PUT, quarantine then approve, a policy change then
apply; who may review; every decision in the audit trail."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import httpx
import pytest

from mmsearch.governance.audit import AuditLog
from mmsearch.governance.keys import KeyStore
from mmsearch.ingest import IngestOptions, Ingestor
from mmsearch.service.app import create_app
from service_support import running_server
from test_moderation_enforcement import EMOJI, ITEMS, POLICY_V1, POLICY_V2


@pytest.fixture
def served(settings, tmp_path: Path):
    """A keyed server over collection "shop" (the catalog of the CLI flows, not yet
    moderated), banned folders under the allowed root, and a key per role."""
    root = tmp_path / "root"
    for folder, names in (("banned", ["1f600.png"]), ("dogs", ["1f436.png"])):
        (root / folder).mkdir(parents=True)
        for name in names:
            shutil.copy(EMOJI / name, root / folder / name)
    (root / "img").mkdir()
    rows = []
    for item_id, title, category, emoji in ITEMS:
        shutil.copy(EMOJI / emoji, root / "img" / emoji)
        rows.append({"id": item_id, "title": title, "category": category, "image": f"img/{emoji}"})
    catalog = root / "catalog.jsonl"
    catalog.write_text("".join(json.dumps(r) + "\n" for r in rows[1:]), encoding="utf-8")
    Ingestor(settings).run(IngestOptions(catalog, "shop"))  # all but the banned smiley
    keys = KeyStore(settings.home)
    secrets = {role: keys.create(role)[1] for role in ("reader", "writer", "admin")}
    secrets["admin-other"] = keys.create("admin", collections=["other"])[1]
    settings = settings.model_copy(
        update={"auth": "auto", "rate_limit_per_minute": 0, "allowed_roots": [root]}
    )
    app = create_app(settings)
    with running_server(app) as base, httpx.Client(base_url=base, timeout=60) as client:
        yield client, secrets, root, settings


def call(client: httpx.Client, secret: str, method: str, url: str, **kwargs: Any) -> httpx.Response:
    return client.request(method, url, headers={"authorization": f"Bearer {secret}"}, **kwargs)


def policy_text(text: str, root: Path) -> str:
    """The policy with its banned folders made absolute (the API refuses relative ones)."""
    return text.replace('folder = "banned"', f'folder = "{root / "banned"}"').replace(
        'folder = "dogs"', f'folder = "{root / "dogs"}"'
    )


def searched(client: httpx.Client, secret: str, text: str) -> list[str]:
    response = call(
        client, secret, "POST", "/v1/collections/shop/search", json={"text": text, "k": 20}
    )
    assert response.status_code == 200, response.text
    return [hit["id"] for hit in response.json()["hits"]]


def test_moderation_flows_over_http(served) -> None:
    client, secrets, root, settings = served
    admin, reader = secrets["admin"], secrets["reader"]
    installed = call(
        client,
        admin,
        "PUT",
        "/v1/admin/policies/shop",
        json={"text": policy_text(POLICY_V1, root), "format": "toml"},
    )
    assert installed.status_code == 200, installed.text
    # Binding is an admin act; a writer may not.
    body = {"policy": "shop"}
    assert (
        call(
            client, secrets["writer"], "PUT", "/v1/admin/collections/shop/policy", json=body
        ).status_code
        == 403
    )
    bound = call(client, admin, "PUT", "/v1/admin/collections/shop/policy", json=body)
    assert bound.status_code == 200, bound.text

    # Block at ingest: an item PUT of the banned picture is refused, naming the rule.
    record = {
        "id": "smiley",
        "title": "happy",
        "category": "toys",
        "image": str(root / "img" / "1f600.png"),
    }
    put = call(
        client,
        secrets["writer"],
        "PUT",
        "/v1/collections/shop/items/smiley",
        json={"record": record},
    )
    assert put.status_code == 400 and "rule banned-faces" in put.text, put.text
    assert call(client, admin, "GET", "/v1/collections/shop/review/smiley").status_code == 404

    # Quarantine: the items already stored are judged by apply.
    applied = call(client, admin, "POST", "/v1/collections/shop/moderation/apply", json={})
    assert applied.status_code == 200, applied.text
    assert applied.json()["changed_ids"]["quarantined"] == ["rifle"]
    assert "rifle" not in searched(client, reader, "rifle")
    assert call(client, reader, "GET", "/v1/collections/shop/items/rifle").status_code == 404
    assert (
        call(client, reader, "GET", "/v1/collections/shop/items/rifle/lineage").status_code == 404
    )
    facets = call(client, reader, "GET", "/v1/collections/shop/facets")
    assert facets.status_code == 200 and "sport" not in facets.text  # the rifle's category
    # Only reviewers see the queue, the item and its image.
    assert call(client, reader, "GET", "/v1/collections/shop/review").status_code == 403
    assert (
        call(client, secrets["admin-other"], "GET", "/v1/collections/shop/review").status_code
        == 403
    )
    queue = call(client, admin, "GET", "/v1/collections/shop/review").json()["items"]
    assert {e["id"] for e in queue} == {"rifle", "powder", "promo"}
    shown = call(client, admin, "GET", "/v1/collections/shop/review/rifle").json()
    assert shown["decision"]["rule"] == "weapons" and str(root) not in json.dumps(shown["images"])
    image = call(client, admin, "GET", shown["image_urls"][0])
    assert image.status_code == 200 and image.content == (root / "img" / "1f680.png").read_bytes()
    # A verdict needs a reason; then the item is back in search.
    empty = call(
        client,
        admin,
        "POST",
        "/v1/collections/shop/review/rifle",
        json={"decision": "approve", "reason": ""},
    )
    assert empty.status_code == 422
    approved = call(
        client,
        admin,
        "POST",
        "/v1/collections/shop/review/rifle",
        json={"decision": "approve", "reason": "a toy"},
    )
    assert approved.status_code == 200 and approved.json()["state"] == "approved", approved.text
    assert "rifle" in searched(client, reader, "rifle")
    assert call(client, reader, "GET", "/v1/collections/shop/items/rifle").status_code == 200
    assert "sport" in call(client, reader, "GET", "/v1/collections/shop/facets").text

    # A policy change, then apply: the dog is blocked now (hidden, pending), powder cleared.
    v2 = policy_text(POLICY_V2, root)
    assert (
        call(
            client, admin, "PUT", "/v1/admin/policies/shop", json={"text": v2, "format": "toml"}
        ).status_code
        == 200
    )
    again = call(client, admin, "POST", "/v1/collections/shop/moderation/apply", json={}).json()
    assert again["changed_ids"]["blocked"] == ["dog"] and again["changed_ids"]["cleared"] == [
        "powder"
    ]
    assert "dog" not in searched(client, reader, "dog") and "powder" in searched(
        client, reader, "cocaine"
    )
    # The review page shows the item beside the banned image it matched, with the distance.
    page = call(client, admin, "GET", "/review/shop/dog")
    assert page.status_code == 200 and "banned-dogs" in page.text and "verdict-form" in page.text
    assert "PDQ distance" in page.text and "/v1/collections/shop/review/dog/banned/0" in page.text
    banned = call(client, admin, "GET", "/v1/collections/shop/review/dog/banned/0")
    assert banned.content == (root / "dogs" / "1f436.png").read_bytes()
    assert call(client, reader, "GET", "/review/shop/dog").status_code == 403
    assert "dog" in call(client, admin, "GET", "/review/shop").text
    rejected = call(
        client,
        admin,
        "POST",
        "/v1/collections/shop/review/dog",
        json={"decision": "reject", "reason": "banned dog"},
    )
    assert rejected.status_code == 200 and rejected.json()["hidden"] is True

    events = AuditLog(settings.home).read(collection="shop", limit=1000)
    done = [(e["action"], e["outcome"], e.get("items")) for e in events]
    assert ("policy.bind", "ok", None) in done
    assert [a for a, _, _ in done].count("policy.apply") == 2
    assert ("review.approve", "ok", ["rifle"]) in done
    assert ("review.reject", "ok", ["dog"]) in done
    assert ("item.put", "failed", ["smiley"]) in done
    review = next(e for e in events if e["action"] == "review.approve")
    assert review["key_id"] != "anonymous" and "a toy" in review["detail"]
