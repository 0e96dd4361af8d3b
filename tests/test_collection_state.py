"""collection.json as a typed model: old files load and round-trip, bad files say where."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from mmsearch.builds import lifecycle
from mmsearch.builds.canary import CanaryGuards
from mmsearch.builds.publishing import clear_default_gate, default_gate_info
from mmsearch.collection_state import (
    SCHEMA_VERSION,
    CollectionState,
    load_state,
    migrate_state,
)
from mmsearch.errors import MMSearchError
from mmsearch.workspace import CollectionDir, Workspace

LIVE = "build-20261126T090000-a1b2c3"
PREVIOUS = "build-20261125T090000-d4e5f6"
CANARY = "build-20261127T090000-0a0b0c"
STAGED = "build-20261128T090000-1a2b3c"

# Every key the release before the model wrote, as it wrote them: the skeleton's name,
# created_at and aliases, then default access (ingest --default-access), canary guards
# (all six, CanaryGuards.model_dump), the staged candidate, the default gate and the
# running canary (asdict(Canary), percent always a float).
OLD_STATE: dict[str, Any] = {
    "name": "shop",
    "created_at": "2026-11-26T09:00:00+00:00",
    "aliases": {"live": LIVE, "previous": PREVIOUS},
    "default_access": "private",
    "canary_guards": {
        "min_searches": 50,
        "max_zero_rate_increase": 0.05,
        "max_p95_ratio": 2.0,
        "max_encoder_failure_rate": 0.05,
        "ctr_alpha": 0.05,
        "ctr_min_impressions": 1000,
    },
    "staged": STAGED,
    "gate": {
        "path": "gate/gate.toml",
        "source": "/srv/gates/shop.toml",
        "source_sha256": "ab" * 32,
        "set_at": "2026-11-27T08:00:00+00:00",
        "set_by": "ops",
    },
    "canary": {
        "build_id": CANARY,
        "percent": 5.0,
        "started_at": "2026-11-27T09:00:00+00:00",
        "started_by": "ops",
    },
}
# What the walking skeleton wrote for a new collection, before any switch.
SKELETON_STATE: dict[str, Any] = {
    "name": "shop",
    "created_at": "2026-11-26T09:00:00+00:00",
    "aliases": {},
}


def _collection(tmp_path: Path, data: Any) -> CollectionDir:
    folder = tmp_path / "collections" / "shop"
    folder.mkdir(parents=True)
    (folder / "collection.json").write_text(json.dumps(data, indent=2), encoding="utf-8")
    return Workspace(tmp_path).collection("shop")


def _on_disk(collection: CollectionDir) -> Any:
    return json.loads((collection.folder / "collection.json").read_text(encoding="utf-8"))


def test_a_file_of_the_previous_release_loads_with_every_key(tmp_path):
    collection = _collection(tmp_path, OLD_STATE)
    state = collection.state()
    assert isinstance(state, CollectionState)
    assert (state.name, state.created_at) == ("shop", "2026-11-26T09:00:00+00:00")
    assert (state.aliases.live, state.aliases.previous) == (LIVE, PREVIOUS)
    assert state.default_access == "private" and collection.default_access() == "private"
    assert state.staged == STAGED
    assert state.gate is not None and state.gate.path == "gate/gate.toml"
    assert state.gate.set_by == "ops" and state.gate.source_sha256 == "ab" * 32
    assert state.canary is not None and state.canary.percent == 5.0
    assert lifecycle.canary_of(state) == lifecycle.Canary(
        CANARY, 5.0, "2026-11-27T09:00:00+00:00", "ops"
    )
    assert CanaryGuards.of(state).min_searches == 50
    assert lifecycle.protected_builds(state) == {LIVE, PREVIOUS, CANARY}
    assert state.schema_version == SCHEMA_VERSION  # absent: layout 1
    assert collection.aliases() == {"live": LIVE, "previous": PREVIOUS}
    assert default_gate_info(collection) == OLD_STATE["gate"]


@pytest.mark.parametrize("data", [OLD_STATE, SKELETON_STATE, {}], ids=["full", "skeleton", "{}"])
def test_old_files_round_trip_unchanged(tmp_path, data):
    collection = _collection(tmp_path, data)
    assert collection.state().as_json() == data
    collection.update_state(lambda state: None)  # a rewrite that changes nothing
    assert _on_disk(collection) == data  # no key added (schema_version neither)


def test_an_unrelated_change_keeps_every_other_key(tmp_path):
    collection = _collection(tmp_path, OLD_STATE)
    collection.set_default_access("public")
    assert _on_disk(collection) == {**OLD_STATE, "default_access": "public"}
    CanaryGuards(min_searches=20).store(collection)
    guards = {**OLD_STATE["canary_guards"], "min_searches": 20}
    assert _on_disk(collection) == {
        **OLD_STATE,
        "default_access": "public",
        "canary_guards": guards,
    }


def test_switches_change_only_their_keys(tmp_path):
    collection = _collection(tmp_path, OLD_STATE)
    event = lifecycle.stop_canary(collection, "ops", "done")
    assert event is not None and event.before["canary"] == CANARY
    assert event.after == {"live": LIVE, "previous": PREVIOUS}
    expected = {k: v for k, v in OLD_STATE.items() if k != "canary"}
    assert _on_disk(collection) == expected  # popped, as before, not written as null
    assert clear_default_gate(collection) and not clear_default_gate(collection)
    del expected["gate"]
    assert _on_disk(collection) == expected
    collection.update_state(lambda state: state.clear("staged"))
    del expected["staged"]
    assert _on_disk(collection) == expected


def test_a_skeleton_file_gains_only_what_a_switch_sets(tmp_path):
    collection = _collection(tmp_path, {"name": "shop", "created_at": "2026-11-26T09:00:00"})
    collection.set_live(LIVE)  # no "aliases" key at all: it is added, as setdefault did
    collection.set_live(CANARY)
    assert _on_disk(collection) == {
        "name": "shop",
        "created_at": "2026-11-26T09:00:00",
        "aliases": {"live": CANARY, "previous": LIVE},
    }


def test_a_canary_that_goes_live_ends(tmp_path):
    collection = _collection(tmp_path, OLD_STATE)
    collection.set_live(CANARY)
    state = collection.state()
    assert state.canary is None and "canary" not in _on_disk(collection)
    assert (state.aliases.live, state.aliases.previous) == (CANARY, LIVE)


def test_unknown_keys_survive_a_read_modify_write(tmp_path):
    data = copy.deepcopy(OLD_STATE)
    data["owner"] = {"team": "search", "pager": ["a", "b"]}  # a newer mmsearch's keys
    data["aliases"]["blue"] = STAGED
    data["canary"]["ramp"] = [1, 5, 25]
    data["gate"]["signed_by"] = "ops-key"
    collection = _collection(tmp_path, data)
    collection.set_default_access("public")
    assert _on_disk(collection) == {**data, "default_access": "public"}
    lifecycle.stop_canary(collection, "ops")
    assert _on_disk(collection) == {
        k: v for k, v in {**data, "default_access": "public"}.items() if k != "canary"
    }


def test_a_new_collection_is_written_with_its_layout(tmp_path):
    collection = Workspace(tmp_path).create_or_open("fresh")
    written = _on_disk(collection)
    assert written["schema_version"] == SCHEMA_VERSION and written["aliases"] == {}
    assert written["name"] == "fresh" and written["created_at"]
    assert collection.state().as_json() == written


def test_the_migration_of_layout_1_is_a_no_op(tmp_path):
    path = tmp_path / "collection.json"
    for data in (OLD_STATE, {**OLD_STATE, "schema_version": 1}, SKELETON_STATE):
        before = copy.deepcopy(data)
        assert migrate_state(copy.deepcopy(data), collection="shop", path=path) == before
        assert load_state(copy.deepcopy(data), collection="shop", path=path).as_json() == before


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda d: d["canary"].pop("percent"), "canary.percent"),
        (lambda d: d["aliases"].__setitem__("live", 7), "aliases.live"),
        (lambda d: d["canary_guards"].__setitem__("min_searches", "many"), "min_searches"),
        (lambda d: d.__setitem__("gate", {"set_by": "ops"}), "gate.path"),
        (lambda d: d.__setitem__("staged", ["b1"]), "staged"),
        (lambda d: d.__setitem__("schema_version", "one"), "schema_version"),
    ],
)
def test_a_malformed_file_names_the_collection_the_file_and_the_field(tmp_path, change, field):
    data = copy.deepcopy(OLD_STATE)
    change(data)
    collection = _collection(tmp_path, data)
    path = collection.folder / "collection.json"
    with pytest.raises(MMSearchError) as caught:
        collection.state()
    message = str(caught.value)
    assert "'shop'" in message and str(path) in message and field in message
    with pytest.raises(MMSearchError):  # a switch refuses too, and writes nothing
        collection.set_default_access("public")
    assert _on_disk(collection) == data


def test_a_file_that_is_no_object_or_from_a_newer_layout_is_refused(tmp_path):
    collection = _collection(tmp_path, ["live", LIVE])
    with pytest.raises(MMSearchError, match="JSON object"):
        collection.state()
    newer = _collection(tmp_path / "other", {**OLD_STATE, "schema_version": SCHEMA_VERSION + 1})
    with pytest.raises(MMSearchError, match="newer mmsearch"):
        newer.state()
