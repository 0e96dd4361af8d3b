"""Moderation policies: loading with named errors, installing with versions, evaluating
images (exact / near through flips and borders), text and attributes, the strongest
action; and the ``policy`` / ``moderate`` commands."""

from __future__ import annotations

import base64
import io
import json
import shutil
import time
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from mmsearch.cli import app
from mmsearch.moderation.evaluate import moderate, strongest
from mmsearch.moderation.policy import PolicyError, load_policy_file
from mmsearch.moderation.store import PolicyStore
from mmsearch.sample_data import SAMPLE_EMOJI_DIR

EMOJI = SAMPLE_EMOJI_DIR / "images"  # shipped with the package: no data set needed
BANNED = "1f600.png"  # grinning face
OTHERS = ("1f680.png", "1f34e.png")  # rocket, apple: also banned, to make a list
DIFFERENT = "1f436.png"  # dog face: never banned


def flipped_with_border(data: bytes, fmt: str = "PNG") -> bytes:
    """The image mirrored, on a white canvas with an 8-pixel frame."""
    image = Image.open(io.BytesIO(data)).convert("RGBA").transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    canvas = Image.new("RGBA", (image.width + 16, image.height + 16), (255, 255, 255, 255))
    canvas.alpha_composite(image, (8, 8))
    out = io.BytesIO()
    canvas.convert("RGB").save(out, fmt)
    return out.getvalue()


POLICY = """
version = 1
description = "test policy"

[[rules]]
id = "banned-faces"
action = "block"
[rules.banned_images]
folder = "banned"
strictness = "strict"

[[rules]]
id = "weapons-words"
action = "quarantine"
[rules.text]
fields = ["title"]
words = ["gun", "rifle"]

[[rules]]
id = "drugs-anywhere"
action = "flag"
[rules.text]
patterns = ['\\bco+caine\\b']

[[rules]]
id = "cheap-knives"
action = "hide"
[rules.attribute]
where = "category = 'knife' AND price < 10"
types = { category = "string", price = "float" }
"""


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    folder = tmp_path / "src" / "banned"
    folder.mkdir(parents=True)
    for name in (BANNED, *OTHERS):
        shutil.copy(EMOJI / name, folder / name)
    path = tmp_path / "src" / "shop.toml"
    path.write_text(POLICY, encoding="utf-8")
    return path


@pytest.fixture
def store(tmp_path: Path) -> PolicyStore:
    return PolicyStore(tmp_path / "home")


def write(tmp_path: Path, text: str, name: str = "p.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# --- loading -------------------------------------------------------------------------


def test_bad_regex_names_file_and_rule(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        'version = 1\n[[rules]]\nid = "r1"\naction = "flag"\n[rules.text]\npatterns = ["(oops"]\n',
    )
    with pytest.raises(PolicyError) as caught:
        load_policy_file(path)
    message = str(caught.value)
    assert str(path) in message and "rule 'r1'" in message and "not a valid regex" in message


def test_pathological_regex_is_refused(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        'version = 1\n[[rules]]\nid = "slow"\naction = "flag"\n'
        '[rules.text]\npatterns = ["(a+)+$"]\n',
    )
    with pytest.raises(PolicyError, match=r"rule 'slow'.*exponential"):
        load_policy_file(path)


def test_unknown_action_names_file_and_rule(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        'version = 1\n[[rules]]\nid = "r2"\naction = "delete"\n[rules.text]\nwords = ["x"]\n',
    )
    with pytest.raises(PolicyError) as caught:
        load_policy_file(path)
    assert str(path) in str(caught.value) and "rule 'r2', action" in str(caught.value)


def test_missing_folder_names_file_and_rule(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        'version = 1\n[[rules]]\nid = "r3"\naction = "block"\n'
        '[rules.banned_images]\nfolder = "nowhere"\n',
    )
    with pytest.raises(PolicyError) as caught:
        load_policy_file(path)
    message = str(caught.value)
    assert str(path) in message and "rule 'r3'" in message and "nowhere" in message


def test_two_conditions_and_bad_where_are_refused(tmp_path: Path) -> None:
    both = write(
        tmp_path,
        'version = 1\n[[rules]]\nid = "r4"\naction = "flag"\n[rules.text]\nwords = ["x"]\n'
        '[rules.banned_images]\nhashes = ["' + "0" * 64 + '"]\n',
    )
    with pytest.raises(PolicyError, match=r"rule 'r4'.*exactly one condition"):
        load_policy_file(both)
    where = write(
        tmp_path,
        'version = 1\n[[rules]]\nid = "r5"\naction = "flag"\n[rules.attribute]\n'
        'where = "colour = \'red\'"\ntypes = { price = "float" }\n',
        "w.toml",
    )
    with pytest.raises(PolicyError, match=r"rule 'r5'.*colour"):
        load_policy_file(where)


def test_install_bumps_version_and_caches_fingerprints(
    policy_file: Path, store: PolicyStore
) -> None:
    first = store.install("shop", policy_file)
    assert first.version == 1 and len(first.banned["banned-faces"]) == 3
    assert store.cache_path("shop").is_file()
    second = store.install("shop", policy_file)
    assert second.version == 2
    assert store.names() == ["shop"] and store.read("shop").version == 2
    with pytest.raises(PolicyError, match="No policy named 'nope'"):
        store.read("nope")
    with pytest.raises(PolicyError, match="Policy name"):
        store.install("../escape", policy_file)


# --- evaluating ----------------------------------------------------------------------


def test_flipped_bordered_copy_is_near_with_distance_and_rule(
    policy_file: Path, store: PolicyStore
) -> None:
    policy = store.install("shop", policy_file)
    altered = flipped_with_border((EMOJI / BANNED).read_bytes())
    report = moderate([policy], images=[("upload.jpg", altered)])
    [decision] = report.decisions
    assert (decision.rule, decision.policy, decision.version) == ("banned-faces", "shop", 1)
    assert decision.kind == "near" and decision.banned == BANNED and decision.image == "upload.jpg"
    assert decision.distance is not None and decision.distance <= 39
    assert report.action == "block" and report.images[0].ms > 0


def test_exact_copy_is_exact(policy_file: Path, store: PolicyStore) -> None:
    policy = store.install("shop", policy_file)
    report = moderate([policy], images=[("same.png", (EMOJI / BANNED).read_bytes())])
    assert [(d.kind, d.banned, d.distance) for d in report.decisions] == [("exact", BANNED, 0)]


def test_different_emoji_is_not_matched_at_strict(policy_file: Path, store: PolicyStore) -> None:
    policy = store.install("shop", policy_file)
    report = moderate([policy], images=[("dog.png", (EMOJI / DIFFERENT).read_bytes())])
    assert report.decisions == [] and report.action is None


def test_listed_hash_matches_near(tmp_path: Path, store: PolicyStore) -> None:
    banned = moderate([], images=[("x", (EMOJI / BANNED).read_bytes())]).images[0].pdq
    assert banned is not None
    path = write(
        tmp_path,
        f'version = 4\n[[rules]]\nid = "list"\naction = "flag"\n[rules.banned_images]\n'
        f'hashes = ["{banned.upper()}"]\nmax_distance = 20\n',
    )
    policy = store.install("hashes", path)
    assert policy.version == 4
    report = moderate([policy], images=[("f", flipped_with_border((EMOJI / BANNED).read_bytes()))])
    assert [(d.kind, d.banned) for d in report.decisions] == [("near", "hash #1")]


def test_undecodable_image_is_an_error_not_a_crash(policy_file: Path, store: PolicyStore) -> None:
    policy = store.install("shop", policy_file)
    report = moderate([policy], images=[("junk.png", b"not an image")])
    assert report.decisions == [] and report.images[0].error


def test_text_words_and_patterns_with_field(policy_file: Path, store: PolicyStore) -> None:
    policy = store.install("shop", policy_file)
    report = moderate(
        [policy],
        text={
            "title": "Vintage RIFLE scope",
            "description": "no cooocaine here",
            "body": "gunsmith",
        },
    )
    found = {(d.rule, d.field, d.pattern, d.matched) for d in report.decisions}
    assert found == {
        ("weapons-words", "title", "words", "RIFLE"),
        ("drugs-anywhere", "description", "\\bco+caine\\b", "cooocaine"),
    }
    # A word inside another word, or in a field the rule does not read, is no match.
    quiet = moderate([policy], text={"title": "gunsmith tools", "body": "gun"})
    assert quiet.decisions == []
    assert report.action == "quarantine"


def test_a_pattern_that_backtracks_is_stopped_and_reported(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        'version = 1\n[[rules]]\nid = "slow"\naction = "flag"\n'
        "[rules.text]\npatterns = ['(a|aa)*\\d']\n",
    )
    store = PolicyStore(tmp_path / "home")
    policy = store.install("slow", path)
    started = time.perf_counter()
    report = moderate([policy], text={"title": "a" * 20_000})
    assert time.perf_counter() - started < 2  # exponential without the time limit
    assert report.decisions == []
    assert len(report.errors) == 1 and "rule slow" in report.errors[0]
    assert "title" in report.errors[0]
    assert moderate([policy], text={"title": "aa7"}).decisions[0].matched == "aa7"


def test_attribute_condition(policy_file: Path, store: PolicyStore) -> None:
    policy = store.install("shop", policy_file)
    hit = moderate([policy], attributes={"category": "knife", "price": "4.5"})
    assert [(d.rule, d.action, d.condition) for d in hit.decisions] == [
        ("cheap-knives", "hide", "attribute")
    ]
    assert moderate([policy], attributes={"category": "knife", "price": 40}).decisions == []
    assert moderate([policy], attributes={"category": "knife"}).decisions == []


def test_strongest_action_wins(policy_file: Path, store: PolicyStore) -> None:
    policy = store.install("shop", policy_file)
    report = moderate(
        [policy],
        images=[("a.png", (EMOJI / BANNED).read_bytes())],
        text={"title": "gun"},
        attributes={"category": "knife", "price": 1},
    )
    assert {d.action for d in report.decisions} == {"block", "quarantine", "hide"}
    assert report.action == "block"
    assert (
        strongest(["flag", "hide"]) == "hide" and strongest(["flag", "quarantine"]) == "quarantine"
    )
    assert strongest([]) is None


# --- commands ------------------------------------------------------------------------


def test_cli_policy_add_list_show_test(policy_file: Path, tmp_path: Path) -> None:
    home = str(tmp_path / "home")
    runner = CliRunner()
    added = runner.invoke(app, ["policy", "add", "shop", str(policy_file), "--home", home])
    assert added.exit_code == 0, added.output
    assert "shop v1" in added.output and "3 banned" in added.output
    again = runner.invoke(app, ["policy", "add", "shop", str(policy_file), "--home", home])
    assert "shop v2" in again.output
    listed = runner.invoke(app, ["policy", "list", "--json", "--home", home])
    assert json.loads(listed.output) == [{"name": "shop", "version": 2, "rules": 4}]
    shown = runner.invoke(app, ["policy", "show", "shop", "--home", home])
    assert "banned-faces" in shown.output and "cheap-knives" in shown.output
    tested = runner.invoke(
        app,
        ["policy", "test", "shop", str(EMOJI / BANNED), "--text", "title=a gun", "--home", home],
    )
    assert tested.exit_code == 0, tested.output
    assert "exact match of banned 1f600.png" in tested.output
    assert "words matched 'gun'" in tested.output and "Decision: block" in tested.output


def test_cli_bad_policy_file_is_one_error_line(tmp_path: Path) -> None:
    bad = write(
        tmp_path,
        'version = 1\n[[rules]]\nid = "r1"\naction = "nuke"\n[rules.text]\nwords = ["x"]\n',
    )
    result = CliRunner().invoke(app, ["policy", "add", "p", str(bad), "--home", str(tmp_path)])
    assert result.exit_code != 0 and "rule 'r1'" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "policies" / "p.yaml").exists()


def test_cli_moderate_json(policy_file: Path, tmp_path: Path) -> None:
    home = str(tmp_path / "home")
    runner = CliRunner()
    assert (
        runner.invoke(app, ["policy", "add", "shop", str(policy_file), "--home", home]).exit_code
        == 0
    )
    altered = tmp_path / "altered.png"
    altered.write_bytes(flipped_with_border((EMOJI / BANNED).read_bytes()))
    result = runner.invoke(
        app,
        [
            "moderate",
            str(altered),
            str(EMOJI / DIFFERENT),
            str(tmp_path / "missing.png"),
            "--policy",
            "shop",
            "--attribute",
            "category=knife",
            "--attribute",
            "price=3",
            "--json",
            "--home",
            home,
        ],
    )
    assert result.exit_code == 0, result.output
    body = json.loads(result.output)
    assert body["action"] == "block" and body["policies"] == ["shop v1"]
    by_rule = {d["rule"]: d for d in body["decisions"]}
    assert by_rule["banned-faces"]["image"] == str(altered)
    assert by_rule["banned-faces"]["kind"] == "near" and by_rule["banned-faces"]["banned"] == BANNED
    assert by_rule["cheap-knives"]["action"] == "hide"
    assert [i["source"] for i in body["images"]] == [str(altered), str(EMOJI / DIFFERENT)]
    assert all(i["ms"] > 0 for i in body["images"])
    assert "does not exist" in body["unreadable"][str(tmp_path / "missing.png")]


def test_cli_moderate_without_policies_says_how_to_add_one(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["moderate", str(EMOJI / BANNED), "--home", str(tmp_path)])
    assert result.exit_code != 0 and "mmsearch policy add" in result.output


# --- the API -------------------------------------------------------------------------


@pytest.fixture
def api(settings, policy_file: Path):
    """A keyed server with the test policy installed, and a key per role."""
    from fastapi.testclient import TestClient

    from mmsearch.governance.keys import KeyStore
    from mmsearch.service.app import create_app

    PolicyStore(settings.home).install("shop", policy_file)
    keys = KeyStore(settings.home)
    secrets = {
        "reader": keys.create("reader")[1],
        "writer": keys.create("writer")[1],
        "writer-scoped": keys.create("writer", collections=["shop"])[1],
        "admin": keys.create("admin")[1],
    }
    settings = settings.model_copy(
        update={
            "auth": "auto",
            "rate_limit_per_minute": 0,
            "max_upload_bytes": 400_000,
            "allowed_roots": [policy_file.parent],
        }
    )
    with TestClient(create_app(settings)) as client:
        yield client, secrets


def bearer(secret: str) -> dict[str, str]:
    return {"authorization": f"Bearer {secret}"}


def test_api_moderate_json_with_evidence(api) -> None:
    client, secrets = api
    altered = base64.b64encode(flipped_with_border((EMOJI / BANNED).read_bytes())).decode()
    body = {
        "images": [{"name": "upload.png", "data": altered}],
        "text": {"title": "new rifle"},
        "attributes": {"category": "knife", "price": 2},
    }
    for who in ("writer", "writer-scoped", "admin"):
        response = client.post("/v1/moderate", json=body, headers=bearer(secrets[who]))
        assert response.status_code == 200, (who, response.text)
    result = response.json()
    assert result["action"] == "block" and result["policies"] == ["shop v1"]
    by_rule = {d["rule"]: d for d in result["decisions"]}
    assert set(by_rule) == {"banned-faces", "weapons-words", "cheap-knives"}
    face = by_rule["banned-faces"]
    assert (face["kind"], face["banned"], face["image"]) == ("near", BANNED, "upload.png")
    assert face["distance"] <= 39 and face["version"] == 1
    assert by_rule["weapons-words"]["field"] == "title"
    assert result["images"][0]["ms"] > 0


def test_api_moderate_multipart(api) -> None:
    client, secrets = api
    response = client.post(
        "/v1/moderate",
        files=[
            ("images", ("same.png", (EMOJI / BANNED).read_bytes(), "image/png")),
            ("images", ("dog.png", (EMOJI / DIFFERENT).read_bytes(), "image/png")),
        ],
        data={"request": json.dumps({"policies": ["shop"]})},
        headers=bearer(secrets["writer"]),
    )
    assert response.status_code == 200, response.text
    decisions = response.json()["decisions"]
    assert [(d["image"], d["kind"]) for d in decisions] == [("same.png", "exact")]
    assert [i["source"] for i in response.json()["images"]] == ["same.png", "dog.png"]


def test_api_moderate_refuses_callers_and_oversized_bodies(api) -> None:
    client, secrets = api
    body = {"text": {"title": "gun"}}
    assert client.post("/v1/moderate", json=body).status_code == 401
    reader = client.post("/v1/moderate", json=body, headers=bearer(secrets["reader"]))
    assert reader.status_code == 403
    huge = {"images": [{"data": "A" * 500_000}]}
    too_big = client.post("/v1/moderate", json=huge, headers=bearer(secrets["writer"]))
    assert too_big.status_code == 413
    many = {"images": [{"data": "AAAA"}] * 17}
    assert (
        client.post("/v1/moderate", json=many, headers=bearer(secrets["writer"])).status_code == 422
    )
    empty = client.post("/v1/moderate", json={}, headers=bearer(secrets["writer"]))
    assert empty.status_code == 400 and "Send images" in empty.text
    unknown = client.post(
        "/v1/moderate",
        json={"text": {"a": "b"}, "policies": ["nope"]},
        headers=bearer(secrets["writer"]),
    )
    assert unknown.status_code == 400 and "No policy named 'nope'" in unknown.text


def test_api_admin_installs_and_lists_policies(api, policy_file: Path, tmp_path: Path) -> None:
    client, secrets = api
    admin = bearer(secrets["admin"])
    folder = policy_file.parent / "banned"
    text = (
        'version = 1\n[[rules]]\nid = "faces"\naction = "flag"\n'
        f'[rules.banned_images]\nfolder = "{folder}"\n'
    )
    put = client.put("/v1/admin/policies/faces", json={"text": text}, headers=admin)
    assert put.status_code == 200, put.text
    assert put.json() == {"name": "faces", "version": 1, "rules": ["faces"], "banned_images": 3}
    again = client.put("/v1/admin/policies/faces", json={"text": text}, headers=admin)
    assert again.json()["version"] == 2
    listed = client.get("/v1/admin/policies", headers=admin).json()["policies"]
    assert {(p["name"], p["version"]) for p in listed} == {("shop", 1), ("faces", 2)}
    used = client.post(
        "/v1/moderate",
        json={"images": [{"data": base64.b64encode((EMOJI / BANNED).read_bytes()).decode()}]},
        headers=bearer(secrets["writer"]),
    )
    assert {(d["policy"], d["version"]) for d in used.json()["decisions"]} == {
        ("shop", 1),
        ("faces", 2),
    }
    # Folders outside the allowed roots, relative folders and bad rules are refused.
    outside = text.replace(str(folder), str(tmp_path / "workspace"))
    refused = client.put("/v1/admin/policies/x", json={"text": outside}, headers=admin)
    assert refused.status_code == 403
    relative = text.replace(str(folder), "banned")
    assert (
        client.put("/v1/admin/policies/x", json={"text": relative}, headers=admin).status_code
        == 400
    )
    bad = text.replace('action = "flag"', 'action = "nuke"')
    wrong = client.put("/v1/admin/policies/x", json={"text": bad}, headers=admin)
    assert wrong.status_code == 400 and "rule 'faces'" in wrong.text
    assert not (tmp_path / "workspace" / "policies" / "x.yaml").exists()
    for who in ("writer", "writer-scoped"):
        assert client.get("/v1/admin/policies", headers=bearer(secrets[who])).status_code == 403
        assert (
            client.put(
                "/v1/admin/policies/faces", json={"text": text}, headers=bearer(secrets[who])
            ).status_code
            == 403
        )
