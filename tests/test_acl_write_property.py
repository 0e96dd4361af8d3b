"""Property: a writer key bound by ACL groups writes only inside its groups, on every path.

A seeded loop builds collections of items in random groups (none, empty, one or two of
three groups) under a random default access, then lets random restricted writers (random
group sets, the empty set included) write through every API write path: an ingest job
from an uploaded file or a server path, with and without ``sync``, item PUT and item
DELETE. Rows name stored ids of every group and new ids, with acls inside and outside
the writer's groups or none. After each write the unrestricted view of the store (the
table itself, no access node) is compared with an oracle evaluated in Python: no item
the writer could not see was changed or removed, no item it cannot see was created, and
every refused row reads the same whether its id is a hidden item or a new one.

The three attacks reported against the ingest path (overwriting a hidden id, planting
an item in another group, ``sync`` removing the other groups' items) have their own
tests below.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from mmsearch.catalog.mapping import FieldMapping
from mmsearch.config import Settings
from mmsearch.governance.keys import KeyStore
from mmsearch.index.open import open_build_index
from mmsearch.ingest import IngestOptions, Ingestor
from mmsearch.ingest.write_access import NOT_WRITABLE
from mmsearch.service.app import create_app
from mmsearch.workspace import Workspace

from conftest import by_profile

GROUPS = ("g1", "g2", "g3")
WORDS = ("mug", "lamp", "chair", "kettle", "vase", "desk")
COLLECTIONS = by_profile(full=6, light=3)
WRITERS_PER_COLLECTION = 3
CASES = dict.fromkeys(
    ("collections", "writers", "writes", "rows", "refused", "hidden", "new_refused", "removed"), 0
)
Acl = list[str] | None
Stored = dict[str, tuple[str, Acl]]  # id -> (title, acl)


def visible(acl: Acl, groups: frozenset[str], default_public: bool) -> bool:
    """The ACL rule, as the read paths apply it."""
    return default_public if acl is None else bool(set(acl) & groups)


def stamped(acl: Acl, groups: frozenset[str]) -> Acl:
    """What a restricted writer's row is stored with: its own groups when it names none."""
    return sorted(groups) if acl is None and groups else acl


def may_store(acl: Acl, groups: frozenset[str], default_public: bool) -> bool:
    """Only the writer's groups, and the item stays visible to the writer."""
    return (acl is None or set(acl) <= groups) and visible(acl, groups, default_public)


@dataclass
class Site:
    """One collection served by a fresh app, with the catalogs' folder it may read."""

    client: TestClient
    settings: Settings
    folder: Path
    default_public: bool

    def stored(self) -> Stored:
        """The unrestricted view: every row of the live build, read without an access node."""
        collection = Workspace(self.settings.home).collection("c")
        manifest = collection.live_manifest()
        index = open_build_index(collection, manifest, self.settings)
        table = index.scan(["id", "title", "acl"]).to_pylist()
        return {row["id"]: (row["title"], row["acl"]) for row in table}

    def key(self, groups: frozenset[str]) -> dict[str, str]:
        secret = KeyStore(self.settings.home).create("writer", groups=sorted(groups))[1]
        return {"authorization": f"Bearer {secret}"}


@contextmanager
def site(home: Path, rows: list[dict[str, Any]], default: str) -> Iterator[Site]:
    folder = home.parent / f"{home.name}-catalogs"
    folder.mkdir(parents=True)
    catalog = folder / "seed.jsonl"
    catalog.write_text("".join(json.dumps(row) + "\n" for row in rows))
    settings = Settings(
        home=home,
        text_encoder="fake-text",
        image_encoder="fake-image",
        write_batch_rows=64,
        allowed_roots=[folder],
        allowed_hosts=["testserver"],
        auth="auto",
        rate_limit_per_minute=0,
    )
    Ingestor(settings).run(IngestOptions(catalog, "c", FieldMapping(acl="acl")))
    Workspace(home).collection("c").set_default_access(default)
    with TestClient(create_app(settings)) as client:
        yield Site(client, settings, folder, default == "public")


def record(item_id: str, title: str, acl: Acl) -> dict[str, Any]:
    return {"id": item_id, "title": title, **({"acl": acl} if acl is not None else {})}


def ingest(
    place: Site, headers: dict[str, str], rows: list[dict[str, Any]], *, sync: bool, upload: bool
) -> dict[str, Any]:
    """One ingest job through the API, from an uploaded file or a server path; its job."""
    data = "".join(json.dumps(row) + "\n" for row in rows)
    if upload:
        started = place.client.post(
            "/v1/collections/c/ingest",
            files={"file": ("w.jsonl", data.encode(), "application/json")},
            data={"mapping": json.dumps({"acl": "acl"}), "sync": str(sync).lower()},
            headers=headers,
        )
    else:
        path = place.folder / f"w-{time.monotonic_ns()}.jsonl"
        path.write_text(data)
        body = {"catalog": str(path), "mapping": {"acl": "acl"}, "sync": sync}
        started = place.client.post("/v1/collections/c/ingest", json=body, headers=headers)
    assert started.status_code == 202, started.text
    for _ in range(600):
        job = place.client.get(started.json()["url"], headers=headers).json()
        if job["status"] in ("succeeded", "failed"):
            assert job["status"] == "succeeded", job
            return job
        time.sleep(0.02)
    raise AssertionError(f"the ingest job did not finish: {job}")


def acl_choice(rng: random.Random, mine: frozenset[str] = frozenset()) -> Acl:
    """None, empty, or one or two groups; ``mine``: half the time, the writer's own."""
    if mine and rng.random() < 0.5:
        return sorted(rng.sample(sorted(mine), rng.randint(1, len(mine))))
    roll = rng.random()
    if roll < 0.3:
        return None
    if roll < 0.4:
        return []
    return sorted(rng.sample(GROUPS, rng.randint(1, 2)))


def check_ingest(
    place: Site,
    groups: frozenset[str],
    headers: dict[str, str],
    rng: random.Random,
    fresh: list[str],
    *,
    sync: bool,
) -> None:
    """A random catalog of stored ids (every group) and new ids, ingested by this writer."""
    before = place.stored()
    pool = sorted(set(before) | set(fresh))
    ids = rng.sample(pool, rng.randint(1, min(len(pool), 8)))
    rows = []
    for item_id in ids:
        if item_id in before and rng.random() < 0.25:  # exactly as stored: "unchanged"
            title, acl = before[item_id]
        else:
            title, acl = f"{rng.choice(WORDS)} {rng.randint(0, 99)}", acl_choice(rng, groups)
        rows.append(record(item_id, title, acl))
    job = ingest(place, headers, rows, sync=sync, upload=rng.random() < 0.5)
    after = place.stored()
    report = job["report"]

    def writable(item_id: str) -> bool:
        return item_id not in before or visible(before[item_id][1], groups, place.default_public)

    expected = dict(before)
    refused = set()
    for row in rows:
        acl = stamped(row.get("acl"), groups)
        if writable(row["id"]) and may_store(acl, groups, place.default_public):
            expected[row["id"]] = (row["title"], acl)
        else:
            refused.add(row["id"])
    if sync:
        catalog = {row["id"] for row in rows}
        for item_id in [i for i in before if i not in catalog and writable(i)]:
            del expected[item_id]
            CASES["removed"] += 1
    assert after == expected, (groups, place.default_public, rows, report)
    # Nothing outside the writer's groups changed, went or came (implied; said plainly).
    for item_id, (title, acl) in before.items():
        if not visible(acl, groups, place.default_public):
            assert after.get(item_id) == (title, acl)
    for item_id in set(after) - set(before):
        assert visible(after[item_id][1], groups, place.default_public)
    errors = report["errors"]
    assert {e["item_id"] for e in errors} == refused, (errors, rows)
    assert report["counts"]["failed"] == len(refused)

    # One refusal whatever the reason: a hidden stored id reads as a disallowed new row.
    def shown(error: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in error.items() if k not in ("source", "row", "item_id")}

    hidden = [shown(e) for e in errors if not writable(e["item_id"])]
    new = [shown(e) for e in errors if e["item_id"] not in before]
    assert all(e == shown(errors[0]) for e in hidden + new), errors
    assert {(e["reason"], e["field"]) for e in errors} <= {(NOT_WRITABLE, None)}
    CASES["hidden"] += len(hidden)
    CASES["new_refused"] += len(new)
    assert report["counts"]["items"] == sum(
        visible(acl, groups, place.default_public) for _title, acl in after.values()
    )
    CASES["writes"] += 1
    CASES["rows"] += len(rows)
    CASES["refused"] += len(refused)


def check_item_writes(
    place: Site,
    groups: frozenset[str],
    headers: dict[str, str],
    rng: random.Random,
    fresh: list[str],
) -> None:
    """Item PUT and DELETE on stored ids of every group and on new ids."""
    for _ in range(3):
        before = place.stored()
        item_id = rng.choice(sorted(set(before) | set(fresh)))
        hidden = item_id in before and not visible(before[item_id][1], groups, place.default_public)
        acl = acl_choice(rng, groups)
        body = {"record": record(item_id, f"{rng.choice(WORDS)} put", acl)}
        put = place.client.put(f"/v1/collections/c/items/{item_id}", json=body, headers=headers)
        after = place.stored()
        final = stamped(acl, groups)
        if hidden:
            assert put.status_code == 404, put.text
        if hidden or not may_store(final, groups, place.default_public):
            assert put.status_code in (400, 403, 404), put.text
            assert after == before
        else:
            assert put.status_code == 200, put.text
            assert after == {**before, item_id: (body["record"]["title"], final)}
        CASES["writes"] += 1

        before = after
        item_id = rng.choice(sorted(set(before) | set(fresh)))
        gone = place.client.delete(f"/v1/collections/c/items/{item_id}", headers=headers)
        after = place.stored()
        if item_id in before and visible(before[item_id][1], groups, place.default_public):
            assert gone.status_code == 200, gone.text
            assert after == {k: v for k, v in before.items() if k != item_id}
        else:
            assert gone.status_code == 404, gone.text
            assert after == before
        CASES["writes"] += 1


def test_no_write_path_changes_an_item_outside_the_writers_groups(tmp_path):
    CASES.update(dict.fromkeys(CASES, 0))
    rng = random.Random(20261207)
    for number in range(COLLECTIONS):
        size = rng.randint(4, 10)
        rows = [record(f"i{n}", f"{rng.choice(WORDS)} {n}", acl_choice(rng)) for n in range(size)]
        default = rng.choice(["public", "private"])
        with site(tmp_path / f"home{number}", rows, default) as place:
            CASES["collections"] += 1
            for writer in range(WRITERS_PER_COLLECTION):
                groups = frozenset(rng.sample(GROUPS, rng.randint(0, 2)))
                fresh = [f"new{number}-{writer}-{n}" for n in range(3)]
                headers = place.key(groups)  # a key costs a slow hash: one per writer
                check_ingest(place, groups, headers, rng, fresh, sync=False)
                check_ingest(place, groups, headers, rng, fresh, sync=True)
                check_item_writes(place, groups, headers, rng, fresh)
                CASES["writers"] += 1
    print(f"ACL write property cases: {CASES}")
    assert CASES["writes"] >= by_profile(full=100, light=50) and CASES["removed"] >= 1
    assert CASES["refused"] >= by_profile(full=10, light=5)
    assert CASES["hidden"] >= by_profile(full=5, light=2)
    assert CASES["new_refused"] >= by_profile(full=5, light=2)


# -- the three reported attacks ------------------------------------------------------------

SEED = [
    record("a1", "alpha mug", ["A"]),
    record("b1", "bravo lamp", ["B"]),
    record("b2", "bravo chair", ["B"]),
]


@pytest.fixture
def shop(tmp_path) -> Iterator[Site]:
    with site(tmp_path / "home", SEED, "private") as place:
        yield place


def test_ingest_cannot_overwrite_a_hidden_item_nor_tell_it_exists(shop):
    writer = shop.key(frozenset({"A"}))
    hidden = ingest(shop, writer, [record("b1", "taken over", None)], sync=False, upload=True)
    new = ingest(shop, writer, [record("zz", "planted", ["B"])], sync=False, upload=False)
    counts = hidden["report"]["counts"]
    assert counts["updated"] == counts["added"] == 0 and counts["failed"] == 1
    assert shop.stored()["b1"] == ("bravo lamp", ["B"])

    def refusal(job: dict[str, Any]) -> tuple[str, str | None]:
        (error,) = job["report"]["errors"]
        return error["reason"], error["field"]

    assert refusal(hidden) == refusal(new) == (NOT_WRITABLE, None)
    assert "exist" not in NOT_WRITABLE
    # Not even a row identical to the hidden item says "unchanged".
    same = ingest(shop, writer, [record("b1", "bravo lamp", ["B"])], sync=False, upload=True)
    assert same["report"]["counts"]["unchanged"] == 0 and refusal(same) == refusal(new)


def test_ingest_cannot_plant_an_item_in_another_group(shop):
    writer = shop.key(frozenset({"A"}))
    rows = [record("p1", "planted", ["B"]), record("p2", "shared", ["A", "B"])]
    rows.append(record("p3", "mine", None))
    job = ingest(shop, writer, rows, sync=False, upload=True)
    assert job["report"]["counts"]["failed"] == 2 and job["report"]["counts"]["added"] == 1
    stored = shop.stored()
    assert "p1" not in stored and "p2" not in stored
    assert stored["p3"] == ("mine", ["A"])  # an unlabelled row gets the writer's groups


def test_sync_removes_only_items_the_writer_can_see(shop):
    writer = shop.key(frozenset({"A"}))
    job = ingest(shop, writer, [record("a2", "alpha lamp", ["A"])], sync=True, upload=True)
    assert job["report"]["counts"]["removed"] == 1
    assert job["report"]["counts"]["items"] == 1  # the total would count group B's items
    assert set(shop.stored()) == {"a2", "b1", "b2"}


def test_a_restricted_writer_may_not_start_a_new_or_staged_build(shop):
    writer = shop.key(frozenset({"A"}))
    for flag in ("new_build", "stage"):
        refused = shop.client.post(
            "/v1/collections/c/ingest",
            files={"file": ("w.jsonl", b'{"id": "a9", "title": "x"}\n', "application/json")},
            data={flag: "true"},
            headers=writer,
        )
        assert refused.status_code == 403, refused.text
    with pytest.raises(Exception, match="new or staged build"):
        catalog = shop.folder / "one.jsonl"
        catalog.write_text('{"id": "a9", "title": "x"}\n')
        options = IngestOptions(catalog, "c", new_build=True, writer_groups=frozenset({"A"}))
        Ingestor(shop.settings).run(options)
    assert set(shop.stored()) == {"a1", "b1", "b2"}


def test_a_writer_bound_by_groups_sees_only_its_own_jobs(shop):
    """A job's report names the rows it refused: another writer must not read it."""
    writer_a = shop.key(frozenset({"A"}))
    writer_b = shop.key(frozenset({"B"}))
    job = ingest(shop, writer_a, [record("a9", "mine", ["A"])], sync=False, upload=True)
    listed_b = shop.client.get("/v1/jobs", headers=writer_b).json()["jobs"]
    assert job["id"] not in {j["id"] for j in listed_b}
    assert shop.client.get(f"/v1/jobs/{job['id']}", headers=writer_b).status_code == 404
    listed_a = shop.client.get("/v1/jobs", headers=writer_a).json()["jobs"]
    assert job["id"] in {j["id"] for j in listed_a}
    secret = KeyStore(shop.settings.home).create("admin")[1]
    admin = {"authorization": f"Bearer {secret}"}
    assert job["id"] in {j["id"] for j in shop.client.get("/v1/jobs", headers=admin).json()["jobs"]}
