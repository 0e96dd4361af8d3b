"""Policies enforced: block at ingest, quarantine then review, policy change then apply.

Each flow runs through the CLI against a real LanceDB workspace (fake encoders), and the
audit trail is read back for every decision.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from mmsearch.cli import app
from mmsearch.governance.audit import AuditLog
from mmsearch.moderation.decisions import DECISION_COLUMN, FINGERPRINTS_COLUMN, HIDDEN_COLUMN
from mmsearch.sample_data import SAMPLE_EMOJI_DIR
from mmsearch.workspace import Workspace

EMOJI = SAMPLE_EMOJI_DIR / "images"
FAKE = {"MMSEARCH_TEXT_ENCODER": "fake-text", "MMSEARCH_IMAGE_ENCODER": "fake-image"}
runner = CliRunner(env=FAKE)

POLICY_V1 = """
[[rules]]
id = "banned-faces"
action = "block"
[rules.banned_images]
folder = "banned"
strictness = "strict"

[[rules]]
id = "weapons"
action = "quarantine"
[rules.text]
fields = ["title"]
words = ["rifle"]

[[rules]]
id = "drugs"
action = "hide"
[rules.text]
patterns = ['\\bcocaine\\b']

[[rules]]
id = "promo"
action = "flag"
[rules.attribute]
where = "category = 'promo'"
types = { category = "string" }
"""

# v2: the drugs rule is gone, and dogs are banned (blocked).
POLICY_V2 = (
    POLICY_V1.replace(
        """[[rules]]
id = "drugs"
action = "hide"
[rules.text]
patterns = ['\\bcocaine\\b']
""",
        "",
    )
    + """
[[rules]]
id = "banned-dogs"
action = "block"
[rules.banned_images]
folder = "dogs"
strictness = "strict"
"""
)

ITEMS = [
    # id, title, category, emoji
    ("smiley", "happy sticker", "toys", "1f600.png"),  # the banned face itself: blocked
    ("rifle", "hunting rifle sticker", "sport", "1f680.png"),  # quarantined
    ("powder", "cocaine joke sticker", "toys", "1f34e.png"),  # hidden
    ("promo", "sale sticker", "promo", "1f004.png"),  # flagged, visible
    ("dog", "dog sticker", "pets", "1f436.png"),  # nothing under v1; blocked by v2
    ("cat", "cat sticker", "pets", "1f431.png"),  # nothing, ever
]


def run(*args: str) -> Any:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result


def run_json(*args: str) -> Any:
    return json.loads(run(*args, "--json").output)


@pytest.fixture
def shop(tmp_path: Path) -> dict[str, str]:
    """A workspace with policy "shop" v1 installed and bound to collection "shop", and the
    catalog above, not yet ingested."""
    home = str(tmp_path / "ws")
    source = tmp_path / "policy"
    for folder, names in (("banned", ["1f600.png"]), ("dogs", ["1f436.png"])):
        (source / folder).mkdir(parents=True)
        for name in names:
            shutil.copy(EMOJI / name, source / folder / name)
    (source / "v1.toml").write_text(POLICY_V1, encoding="utf-8")
    (source / "v2.toml").write_text(POLICY_V2, encoding="utf-8")
    catalog_dir = tmp_path / "catalog"
    (catalog_dir / "img").mkdir(parents=True)
    rows = []
    for item_id, title, category, emoji in ITEMS:
        shutil.copy(EMOJI / emoji, catalog_dir / "img" / emoji)
        rows.append({"id": item_id, "title": title, "category": category, "image": f"img/{emoji}"})
    catalog = catalog_dir / "catalog.jsonl"
    catalog.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    run("policy", "add", "shop", str(source / "v1.toml"), "--home", home)
    # A first ingest makes the collection; an empty one cannot be bound yet.
    return {"home": home, "catalog": str(catalog), "v2": str(source / "v2.toml")}


def ingest_bound(shop: dict[str, str]) -> dict[str, Any]:
    """Ingest the catalog, bind the policy, apply it: the path of a collection that
    existed before it enforced a policy."""
    home = shop["home"]
    first = runner.invoke(app, ["ingest", shop["catalog"], "-c", "shop", "--home", home])
    assert first.exit_code == 0, first.output
    run("policy", "bind", "shop", "-c", "shop", "--home", home)
    return run_json("policy", "apply", "-c", "shop", "--home", home)


def search_ids(home: str, query: str) -> list[str]:
    payload = run_json("search", query, "-c", "shop", "--home", home, "--local", "--k", "20")
    return [hit["id"] for hit in payload["hits"]]


def stored(home: str, item_id: str) -> dict[str, Any]:
    from mmsearch.config import Settings
    from mmsearch.index.open import open_build_index

    folder = Workspace(Path(home)).collection("shop")
    index = open_build_index(folder, folder.live_manifest(), Settings(home=Path(home)))
    rows = index.get([item_id], ["id", HIDDEN_COLUMN, DECISION_COLUMN, FINGERPRINTS_COLUMN])
    return rows[0] if rows else {}


def audit_actions(home: str) -> list[tuple[str, str, list[str] | None]]:
    return [(e["action"], e["outcome"], e.get("items")) for e in AuditLog(Path(home)).read()]


def test_block_at_ingest_is_a_row_error_naming_the_rule(shop: dict[str, str]) -> None:
    home = shop["home"]
    # Bound before the catalog comes in: the collection is made by one harmless item.
    seed = Path(shop["catalog"]).parent / "seed.jsonl"
    row = {"id": "seed", "title": "seed sticker", "category": "pets", "image": "img/1f431.png"}
    seed.write_text(json.dumps(row) + "\n", encoding="utf-8")
    run("ingest", str(seed), "-c", "shop", "--home", home)
    run("policy", "bind", "shop", "-c", "shop", "--home", home)
    result = runner.invoke(app, ["ingest", shop["catalog"], "-c", "shop", "--home", home, "--json"])
    report = json.loads(result.stdout[result.stdout.index("{") :])
    assert report["counts"]["failed"] == 1, report
    assert report["counts"]["added"] == 5
    errors = report["errors"]
    assert len(errors) == 1 and errors[0]["item_id"] == "smiley"
    assert "rule banned-faces" in errors[0]["reason"] and "shop v1" in errors[0]["reason"]
    assert "exact" in errors[0]["reason"]
    assert stored(home, "smiley") == {}  # never indexed
    # The others carry their decisions; fingerprints are stored for every item.
    assert json.loads(stored(home, "rifle")[DECISION_COLUMN])["action"] == "quarantine"
    assert stored(home, "cat")[DECISION_COLUMN] is None
    assert json.loads(stored(home, "cat")[FINGERPRINTS_COLUMN])[0]["pdq"]
    ids = search_ids(home, "sticker")
    assert "rifle" not in ids and "powder" not in ids  # quarantined, hidden
    assert {"promo", "dog", "cat", "seed"} <= set(ids)  # flagged stays visible
    assert ("policy.bind", "ok", None) in audit_actions(home)
    # dupes reads the fingerprints stored at ingest: the image files are not needed.
    shutil.rmtree(Path(shop["catalog"]).parent / "img")
    dupes = run_json("dupes", "-c", "shop", "--home", home)
    assert dupes["items"] == 6 and dupes["images"] == 5  # the seed had none stored
    assert len(dupes["unreadable"]) == 1 and dupes["unreadable"][0].startswith("seed")


def test_quarantine_then_approve_through_the_cli(shop: dict[str, str]) -> None:
    home = shop["home"]
    applied = ingest_bound(shop)
    assert applied["changed"]["quarantined"] == 1 and applied["changed"]["blocked"] == 1
    assert applied["changed"]["hidden"] == 1 and applied["changed"]["flagged"] == 1
    assert applied["fingerprinted"] == 6  # ingested before the binding: read once
    # An indexed item that a block rule matches is hidden, pending review.
    assert stored(home, "smiley")[HIDDEN_COLUMN] is True
    queue = run_json("review", "list", "-c", "shop", "--home", home)
    assert {e["id"] for e in queue} == {"smiley", "rifle", "powder", "promo"}
    assert "rifle" not in search_ids(home, "rifle")
    shown = run_json("review", "show", "rifle", "-c", "shop", "--home", home)
    assert shown["decision"]["evidence"][0]["matched"].lower() == "rifle"
    # No reason: refused, nothing changes.
    refused = runner.invoke(
        app, ["review", "approve", "rifle", "-c", "shop", "--home", home, "--reason", " "]
    )
    assert refused.exit_code != 0 and "reason" in refused.output
    run("review", "approve", "rifle", "-c", "shop", "--home", home, "--reason", "a toy")
    assert "rifle" in search_ids(home, "rifle")
    run("review", "reject", "promo", "-c", "shop", "--home", home, "--reason", "spam")
    assert "promo" not in search_ids(home, "sticker")
    approved = run_json("review", "list", "-c", "shop", "--home", home, "--state", "approved")
    assert [e["id"] for e in approved] == ["rifle"]
    decision = run_json("review", "show", "rifle", "-c", "shop", "--home", home)["decision"]
    assert decision["state"] == "approved"
    assert decision["reviews"][0]["reason"] == "a toy"
    assert decision["reviews"][0]["reviewer"].startswith("cli:")
    # Applying the same policy again keeps the reviews.
    again = run_json("policy", "apply", "-c", "shop", "--home", home)
    assert sum(again["changed"].values()) == 0 and again["fingerprinted"] == 0
    assert "rifle" in search_ids(home, "rifle")
    actions = audit_actions(home)
    assert ("review.approve", "ok", ["rifle"]) in actions
    assert ("review.reject", "ok", ["promo"]) in actions
    assert ("review.approve", "failed", ["rifle"]) in actions  # the refused attempt
    assert [a for a, _, _ in actions].count("policy.apply") == 2


def test_policy_change_then_apply_and_allow_listed_false_match(shop: dict[str, str]) -> None:
    home = shop["home"]
    ingest_bound(shop)
    assert "dog" in search_ids(home, "dog")
    run("policy", "add", "shop", shop["v2"], "--home", home)
    preview = run_json("policy", "apply", "-c", "shop", "--home", home, "--dry-run")
    assert preview["changed_ids"]["blocked"] == ["dog"] and "dog" in search_ids(home, "dog")
    applied = run_json("policy", "apply", "-c", "shop", "--home", home)
    assert applied["changed_ids"]["blocked"] == ["dog"]
    assert applied["changed_ids"]["cleared"] == ["powder"]  # the drugs rule is gone
    assert applied["fingerprinted"] == 0  # fingerprints stored by the first apply
    assert "dog" not in search_ids(home, "dog")
    assert "powder" in search_ids(home, "cocaine")
    # The dog is a false match: approving it allow-lists the pair in the policy ...
    run("review", "approve", "dog", "-c", "shop", "--home", home, "--reason", "not that dog")
    shown = run_json("policy", "show", "shop", "--home", home)
    assert [p["rule"] for p in shown["allowed"]] == ["banned-dogs"]
    assert shown["allowed"][0]["item"] == "shop/dog"
    # ... so applying again no longer matches it at all.
    again = run_json("policy", "apply", "-c", "shop", "--home", home)
    assert again["changed_ids"]["cleared"] == ["dog"]
    assert "dog" in search_ids(home, "dog")
    test = run_json("policy", "test", "shop", str(EMOJI / "1f436.png"), "--home", home)
    assert test["action"] is None  # the same picture, checked directly, is allowed too


def test_unbound_collection_has_no_filter_and_apply_says_how_to_bind(
    shop: dict[str, str],
) -> None:
    home = shop["home"]
    run("ingest", shop["catalog"], "-c", "shop", "--home", home)
    assert len(search_ids(home, "sticker")) == 6
    failed = runner.invoke(app, ["policy", "apply", "-c", "shop", "--home", home])
    assert failed.exit_code != 0 and "policy bind -c shop" in failed.output
    assert stored(home, "smiley")[FINGERPRINTS_COLUMN] is None  # not computed when unbound


def test_a_build_made_before_the_columns_is_refused_with_the_fix(
    shop: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A live build without the moderation columns (made by an older mmsearch) still
    searches, but a bound policy cannot be enforced on it: ingest and apply say how."""
    import pyarrow as pa

    from mmsearch.ingest import builds
    from mmsearch.moderation.decisions import MODERATION_COLUMNS

    made = builds.build_schema

    def older(*args: Any, **kwargs: Any) -> pa.Schema:
        schema = made(*args, **kwargs)
        dropped = {*MODERATION_COLUMNS, FINGERPRINTS_COLUMN}
        return pa.schema([field for field in schema if field.name not in dropped])

    home = shop["home"]
    monkeypatch.setattr(builds, "build_schema", older)
    run("ingest", shop["catalog"], "-c", "shop", "--home", home)
    monkeypatch.undo()
    assert len(search_ids(home, "sticker")) == 6
    run("policy", "bind", "shop", "-c", "shop", "--home", home)
    again = runner.invoke(app, ["ingest", shop["catalog"], "-c", "shop", "--home", home])
    assert again.exit_code != 0 and "--new-build" in again.output
    applied = runner.invoke(app, ["policy", "apply", "-c", "shop", "--home", home])
    assert applied.exit_code != 0 and "--new-build" in applied.output
    assert len(search_ids(home, "sticker")) == 6  # searching is unaffected


@pytest.mark.milvus
def test_quarantine_hides_on_milvus_until_approved(
    shop: dict[str, str], milvus_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The moderation columns on the Milvus store: a bound policy's decisions are stored
    there, a quarantined item is left out of search, and approving it shows it."""
    monkeypatch.setenv("MMSEARCH_BACKEND", "milvus")
    monkeypatch.setenv("MMSEARCH_MILVUS_URI", milvus_uri)
    monkeypatch.setenv("MMSEARCH_MILVUS_INDEX", "flat")
    home = shop["home"]
    applied = ingest_bound(shop)
    assert applied["changed"]["quarantined"] == 1 and applied["changed"]["hidden"] == 1
    manifest = Workspace(Path(home)).collection("shop").live_manifest()
    assert manifest is not None and manifest.store.backend == "milvus"
    assert stored(home, "rifle")[HIDDEN_COLUMN] is True
    assert json.loads(stored(home, "cat")[FINGERPRINTS_COLUMN])[0]["pdq"]
    ids = search_ids(home, "sticker")
    assert "rifle" not in ids and "powder" not in ids and "smiley" not in ids
    assert {"promo", "dog", "cat"} <= set(ids)
    run("review", "approve", "rifle", "-c", "shop", "--home", home, "--reason", "a toy")
    assert stored(home, "rifle")[HIDDEN_COLUMN] is None  # NULL: visible
    assert "rifle" in search_ids(home, "rifle")
    queue = run_json("review", "list", "-c", "shop", "--home", home, "--state", "approved")
    assert [e["id"] for e in queue] == ["rifle"]
    # An item with more images than fit in one Milvus string: stored with the
    # fingerprints of its first images; apply fingerprints it again and still finds it.
    album = Path(shop["catalog"]).parent / "album.jsonl"
    row: dict[str, Any] = {"id": "album", "title": "sticker album", "category": "toys"}
    row["image"] = ["img/1f431.png"] * 79 + ["img/1f680.png"]
    album.write_text(json.dumps(row) + "\n", encoding="utf-8")
    run("ingest", str(album), "-c", "shop", "--home", home)
    kept = json.loads(stored(home, "album")[FINGERPRINTS_COLUMN])
    assert 0 < len(kept) < 80
    again = run_json("policy", "apply", "-c", "shop", "--home", home)
    assert again["fingerprinted"] == 1 and sum(again["changed"].values()) == 0


def test_graph_counts_leave_out_hidden_items(shop: dict[str, str]) -> None:
    """The entity graph, as ``mmsearch graph`` reports it, counts what search returns:
    an entity whose only items a policy hides is not listed until a reviewer approves."""
    home = shop["home"]
    base = ["-c", "shop", "--home", home]
    run("ingest", shop["catalog"], *base, "--entity-field", "category")

    def counts() -> dict[str, int]:
        found = run_json("graph", *base, "entities", "--limit", "50")["entities"]
        return {entry["entity"]: entry["items"] for entry in found}

    before = {"category=toys": 2, "category=sport": 1, "category=promo": 1, "category=pets": 2}
    assert counts() == before
    run("policy", "bind", "shop", *base)
    run("policy", "apply", *base)
    # smiley (a banned face) and powder (toys) and rifle (sport) are hidden now.
    assert counts() == {"category=promo": 1, "category=pets": 2}
    missing = runner.invoke(app, ["graph", *base, "entity", "category=sport"])
    assert missing.exit_code != 0
    assert run_json("graph", *base, "stats")["entities"] == 2
    run("review", "approve", "rifle", *base, "--reason", "a toy")
    assert counts() == {"category=promo": 1, "category=pets": 2, "category=sport": 1}
