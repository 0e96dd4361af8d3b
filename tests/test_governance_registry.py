"""The registry of named rules files and reranker models, on real files."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import numpy as np
import pytest

from mmsearch.governance.registry import Registry, RegistryError
from mmsearch.ranking.model import RankerError, RankerMeta, RankerModel, fit_lambdamart
from mmsearch.ranking.rules import RulesError, load_rules

RULES_YAML = """\
version: "2024-06-shop-1"
blocks:
  - name: recalled
    ids: [SKU-9]
"""
RULES_TOML = """\
version = "2024-07-shop-2"

[[blocks]]
name = "recalled"
ids = ["SKU-9", "SKU-10"]
"""


def save_tiny_ranker(folder: Path, collection: str = "shop") -> Path:
    """A real LightGBM LambdaMART model on 3 features, trained in well under a second."""
    rng = np.random.default_rng(7)
    x = rng.random((60, 3))
    y = (x[:, 0] > 0.5).astype(np.int32) + (x[:, 1] > 0.8).astype(np.int32)
    booster = fit_lambdamart(x, y, [10] * 6, params={"n_estimators": 5})
    meta = RankerMeta(
        features=["keyword", "text_vector", "image_vector"],
        encoders={"text": "fake-text@v1"},
        collection=collection,
        build_id="b1",
        training_sha256="0" * 64,
    )
    return RankerModel(booster, meta).save(folder)


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    return Registry(tmp_path / "home")


@pytest.fixture
def rules_file(tmp_path: Path) -> Path:
    path = tmp_path / "promo.yaml"
    path.write_text(RULES_YAML)
    return path


def test_add_list_resolve_and_remove_rules(registry: Registry, rules_file: Path, tmp_path: Path):
    entry = registry.add_rules("promo", rules_file)
    assert entry["version"] == "2024-06-shop-1" and entry["format"] == "yaml"
    path = registry.rules_path("promo")
    assert path.is_relative_to(registry.folder / "rules" / "promo")
    assert path.name == f"{entry['sha256'][:12]}.yaml"
    assert path.read_text() == RULES_YAML
    assert load_rules(path).blocked(None) == {"SKU-9"}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # The registered copy does not follow later edits of the original.
    rules_file.write_text(RULES_YAML.replace("SKU-9", "SKU-1"))
    assert load_rules(registry.rules_path("promo")).blocked(None) == {"SKU-9"}

    listed = registry.rules()
    assert [(r["name"], r["version"], r["default_for"]) for r in listed] == [
        ("promo", "2024-06-shop-1", [])
    ]
    assert str(tmp_path) not in json.dumps(listed)  # no server paths in what the API may show

    removed = registry.remove_rules("promo")
    assert removed["sha256"] == entry["sha256"]
    assert registry.rules() == []
    assert not (registry.folder / "rules" / "promo").exists()
    with pytest.raises(RegistryError, match="No rules named 'promo' are registered"):
        registry.rules_path("promo")


def test_re_adding_a_name_replaces_it(registry: Registry, rules_file: Path, tmp_path: Path):
    first = registry.add_rules("promo", rules_file)
    toml = tmp_path / "promo.toml"
    toml.write_text(RULES_TOML)
    second = registry.add_rules("promo", toml)
    assert second["sha256"] != first["sha256"] and second["version"] == "2024-07-shop-2"
    path = registry.rules_path("promo")
    assert path.suffix == ".toml" and load_rules(path).blocked(None) == {"SKU-9", "SKU-10"}
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # the old copy is gone
    assert len(registry.rules()) == 1


def test_uploaded_rules_text(registry: Registry, tmp_path: Path):
    entry = registry.add_rules_text("uploaded", RULES_TOML, "toml")
    assert entry["version"] == "2024-07-shop-2"
    assert registry.rules_path("uploaded").read_text() == RULES_TOML
    with pytest.raises(RulesError) as caught:
        registry.add_rules_text("broken", 'version: "1"\nbogus: 1\n', "yaml")
    message = str(caught.value)
    assert message.startswith("The uploaded rules") and "bogus" in message
    assert "/tmp" not in message and "rules.yaml" not in message
    with pytest.raises(RegistryError, match="'yaml' or 'toml'"):
        registry.add_rules_text("x", RULES_YAML, "json")  # type: ignore[arg-type]
    assert [r["name"] for r in registry.rules()] == ["uploaded"]


def test_invalid_rules_files_are_refused_with_their_message(registry: Registry, tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text('version: "1"\nboosts:\n  - conditions: [{attribute: "no such", value: 1}]\n')
    with pytest.raises(RulesError, match="is not valid") as caught:
        registry.add_rules("bad", bad)
    assert str(bad) in str(caught.value)  # the operator's own file is named
    unparsable = tmp_path / "worse.toml"
    unparsable.write_text("version = [unclosed")
    with pytest.raises(RulesError, match="cannot be parsed"):
        registry.add_rules("worse", unparsable)
    other = tmp_path / "rules.json"
    other.write_text("{}")
    with pytest.raises(RegistryError, match=r"\.yaml, \.yml or \.toml"):
        registry.add_rules("json", other)
    with pytest.raises(RegistryError, match="does not exist"):
        registry.add_rules("missing", tmp_path / "missing.yaml")
    assert registry.rules() == []
    assert not (registry.folder / "rules").exists() or not any(
        (registry.folder / "rules").iterdir()
    )


@pytest.mark.parametrize("name", ["", "../etc", ".hidden", "a/b", "x" * 65, "sp ace", "-dash"])
def test_bad_names_are_refused(registry: Registry, rules_file: Path, name: str):
    with pytest.raises(RegistryError, match="Invalid rules name"):
        registry.add_rules(name, rules_file)
    with pytest.raises(RegistryError, match="No rules named"):
        registry.rules_path(name)


def test_unknown_names_do_not_reveal_server_paths(registry: Registry, rules_file: Path):
    registry.add_rules("promo", rules_file)
    for call in (registry.rules_path, registry.ranker_path, registry.remove_rules):
        with pytest.raises(RegistryError) as caught:
            call("nope")
        assert str(registry.folder) not in str(caught.value)
        assert "'nope'" in str(caught.value)


def test_default_rules_per_collection(registry: Registry, rules_file: Path):
    registry.add_rules("promo", rules_file)
    assert registry.default_rules("shop") is None
    assert registry.set_default_rules("shop", "promo") is None
    assert registry.default_rules("shop") == "promo"
    assert registry.default_rules("books") is None
    assert registry.rules()[0]["default_for"] == ["shop"]
    with pytest.raises(RegistryError, match="rules default --off --collection shop"):
        registry.remove_rules("promo")
    with pytest.raises(RegistryError, match="No rules named 'other'"):
        registry.set_default_rules("books", "other")
    with pytest.raises(RegistryError, match="Invalid collection"):
        registry.set_default_rules("../x", "promo")
    assert registry.set_default_rules("shop", None) == "promo"
    assert registry.default_rules("shop") is None
    registry.remove_rules("promo")
    assert registry.rules() == []


def test_add_resolve_and_remove_rankers(registry: Registry, tmp_path: Path):
    source = save_tiny_ranker(tmp_path / "model")
    entry = registry.add_ranker("shop-ltr", source)
    assert entry["features"] == ["keyword", "text_vector", "image_vector"]
    assert entry["collection"] == "shop" and entry["build_id"] == "b1"
    folder = registry.ranker_path("shop-ltr")
    assert folder.is_dir() and folder.parent == registry.folder / "rankers" / "shop-ltr"
    assert folder.name == entry["sha256"][:12]
    loaded = RankerModel.load(folder)
    x = np.random.default_rng(1).random((5, 3))
    assert np.allclose(loaded.predict(x), RankerModel.load(source).predict(x))
    assert [r["name"] for r in registry.rankers()] == ["shop-ltr"]

    retrained = save_tiny_ranker(tmp_path / "model2", collection="books")
    second = registry.add_ranker("shop-ltr", retrained)
    assert second["collection"] == "books" and second["sha256"] != entry["sha256"]
    assert not folder.exists() and registry.ranker_path("shop-ltr").is_dir()

    registry.remove_ranker("shop-ltr")
    assert registry.rankers() == []
    with pytest.raises(RegistryError, match="No ranker named 'shop-ltr' is registered"):
        registry.ranker_path("shop-ltr")


def test_a_folder_without_a_model_is_refused(registry: Registry, tmp_path: Path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(RankerError, match="is not a reranker model"):
        registry.add_ranker("empty", empty)
    broken = save_tiny_ranker(tmp_path / "broken")
    (broken / "model.txt").write_text("not a model")
    with pytest.raises(RankerError, match="cannot be read"):
        registry.add_ranker("broken", broken)
    with pytest.raises(RegistryError, match="Invalid ranker name"):
        registry.add_ranker("../up", save_tiny_ranker(tmp_path / "good"))
    assert registry.rankers() == []


def test_a_registry_written_by_one_instance_is_read_by_another(
    registry: Registry, rules_file: Path
):
    registry.add_rules("promo", rules_file)
    registry.set_default_rules("shop", "promo")
    other = Registry(registry.folder.parent)
    assert other.default_rules("shop") == "promo"
    assert other.rules_path("promo") == registry.rules_path("promo")
    assert stat.S_IMODE(registry.path.stat().st_mode) == 0o600


def test_a_damaged_registry_file_is_a_clear_error(registry: Registry):
    registry.folder.mkdir(parents=True)
    registry.path.write_text("[1, 2]")
    with pytest.raises(RegistryError, match="is not a registry"):
        registry.rules()
    registry.path.write_text("{broken")
    with pytest.raises(RegistryError, match="restore it from a backup"):
        registry.rules_path("promo")
