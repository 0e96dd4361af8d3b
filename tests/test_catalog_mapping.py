from __future__ import annotations

from pathlib import Path

import pytest

from mmsearch.catalog.mapping import (
    RESERVED_COLUMNS,
    FieldMapping,
    attribute_column,
    guess_mapping,
    load_mapping_file,
    merge_mappings,
    validate_mapping,
)
from mmsearch.errors import CatalogError


def _product() -> dict[str, object]:
    return {
        "id": "p1",
        "name": "Red running shoe",
        "description": "Light shoe for road running.",
        "tags": ["shoe", "running"],
        "image": "shoes/red.jpg",
        "price": 59.9,
        "brand": "Acme",
        "in_stock": True,
        "variants": [{"size": 42}],
        "meta": {"source": "feed"},
    }


# --- guess_mapping ---------------------------------------------------------------------------


def test_guess_picks_roles_from_common_names() -> None:
    mapping = guess_mapping([_product()], FieldMapping())
    assert mapping.id == "id"
    assert mapping.title == "name"
    assert mapping.text == ["description", "tags"]
    assert mapping.images == ["image"]


def test_guess_makes_scalar_leftovers_attributes_in_field_order() -> None:
    mapping = guess_mapping([_product()], FieldMapping())
    assert mapping.attributes == ["price", "brand", "in_stock"]


def test_guess_never_makes_list_or_dict_fields_attributes() -> None:
    mapping = guess_mapping([_product()], FieldMapping())
    assert mapping.attributes is not None
    assert "variants" not in mapping.attributes
    assert "meta" not in mapping.attributes


def test_guess_matches_names_case_insensitively_and_keeps_original_spelling() -> None:
    sample = [{"SKU": "a1", "Title": "Mug", "Description": "Blue mug", "Image_Path": "m.png"}]
    mapping = guess_mapping(sample, FieldMapping())
    assert mapping.id == "SKU"
    assert mapping.title == "Title"
    assert mapping.text == ["Description"]
    assert mapping.images == ["Image_Path"]


def test_guess_prefers_title_over_name_and_keeps_name_as_attribute() -> None:
    sample = [{"id": 1, "title": "Mug", "name": "mug-blue"}]
    mapping = guess_mapping(sample, FieldMapping())
    assert mapping.title == "title"
    assert mapping.attributes == ["name"]


def test_guess_sees_fields_from_every_sample_row() -> None:
    sample = [{"id": 1, "title": "A"}, {"id": 2, "title": "B", "colour": "red"}]
    mapping = guess_mapping(sample, FieldMapping())
    assert mapping.attributes == ["colour"]


def test_guess_ignores_fields_that_are_always_null_for_attributes() -> None:
    sample = [{"id": 1, "title": "A", "discount": None}]
    mapping = guess_mapping(sample, FieldMapping())
    assert mapping.attributes == []


def test_given_values_win_over_guesses() -> None:
    given = FieldMapping(id="sku", title="brand", text=["tags"], images=["thumb"])
    sample = [{**_product(), "sku": "S-1", "thumb": "t.jpg"}]
    del sample[0]["id"]
    mapping = guess_mapping(sample, given)
    assert mapping.id == "sku"
    assert mapping.title == "brand"
    assert mapping.text == ["tags"]
    assert mapping.images == ["thumb"]


def test_guess_leaves_reserved_names_out_of_guessed_attributes() -> None:
    # The user picked "sku" as the id; the catalog's own "id" field must not become an
    # attribute that then clashes with the index's id column.
    sample = [{"sku": "S-1", "id": 17, "title": "Mug", "colour": "blue"}]
    mapping = guess_mapping(sample, FieldMapping(id="sku"))
    assert mapping.id == "sku"
    assert mapping.attributes == ["colour"]


def test_given_text_leaves_unpicked_text_fields_as_attributes() -> None:
    sample = [{"id": 1, "title": "A", "description": "d", "summary": "s"}]
    mapping = guess_mapping(sample, FieldMapping(text=["summary"]))
    assert mapping.text == ["summary"]
    assert mapping.attributes == ["description"]


def test_given_attributes_are_used_as_is() -> None:
    mapping = guess_mapping([_product()], FieldMapping(attributes=["brand"]))
    assert mapping.attributes == ["brand"]


def test_given_empty_attributes_means_no_attributes() -> None:
    mapping = guess_mapping([_product()], FieldMapping(attributes=[]))
    assert mapping.attributes == []


def test_guess_without_id_field_raises_and_names_the_option() -> None:
    with pytest.raises(CatalogError, match="--id-field"):
        guess_mapping([{"title": "Mug", "colour": "blue"}], FieldMapping())


def test_guess_with_empty_sample_and_no_id_raises() -> None:
    with pytest.raises(CatalogError, match="--id-field"):
        guess_mapping([], FieldMapping())


def test_attribute_named_like_reserved_title_raises() -> None:
    sample = [{"id": 1, "title": "Mug", "colour": "blue"}]
    with pytest.raises(CatalogError, match="title"):
        guess_mapping(sample, FieldMapping(attributes=["title"]))


@pytest.mark.parametrize("name", ["search_text", "Search Text", "ID", "record_sha256"])
def test_attribute_whose_column_is_reserved_raises(name: str) -> None:
    with pytest.raises(CatalogError, match="clash"):
        validate_mapping(FieldMapping(id="sku", attributes=[name]))


def test_validate_accepts_ordinary_attributes() -> None:
    validate_mapping(FieldMapping(id="sku", attributes=["colour", "Unit Price"]))


def test_validate_rejects_mapping_without_id() -> None:
    with pytest.raises(CatalogError, match="--id-field"):
        validate_mapping(FieldMapping(title="name"))


def test_attributes_sharing_one_column_raise() -> None:
    # "Unit Price" and "unit_price" both become the column "unit_price"; one would be lost.
    with pytest.raises(CatalogError):
        validate_mapping(FieldMapping(id="sku", attributes=["Unit Price", "unit_price"]))


@pytest.mark.parametrize("name", ["vector_text", "vector_image"])
def test_attribute_clashing_with_a_vector_column_raises(name: str) -> None:
    # The index stores embeddings in vector_<role> columns next to the attributes.
    with pytest.raises(CatalogError):
        validate_mapping(FieldMapping(id="sku", attributes=[name]))


def test_reserved_columns_cover_the_index_owned_names() -> None:
    assert {"id", "title", "search_text", "images", "record_sha256"} <= RESERVED_COLUMNS


# --- mapping files ---------------------------------------------------------------------------


def test_toml_mapping_file_loads_and_promotes_strings_to_lists(tmp_path: Path) -> None:
    path = tmp_path / "mapping.toml"
    path.write_text(
        'id = "sku"\ntitle = "name"\ntext = "description"\n'
        'attributes = "brand"\nimages = "photo"\n',
        encoding="utf-8",
    )
    mapping = load_mapping_file(path)
    assert mapping == FieldMapping(
        id="sku", title="name", text=["description"], attributes=["brand"], images=["photo"]
    )


def test_toml_mapping_file_keeps_lists(tmp_path: Path) -> None:
    path = tmp_path / "mapping.toml"
    path.write_text('id = "sku"\ntext = ["description", "tags"]\n', encoding="utf-8")
    mapping = load_mapping_file(path)
    assert mapping.text == ["description", "tags"]
    assert mapping.attributes is None


@pytest.mark.parametrize("suffix", [".yaml", ".yml", ".YAML"])
def test_yaml_mapping_file_loads_and_promotes_strings_to_lists(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"mapping{suffix}"
    path.write_text(
        "id: sku\ntitle: name\ntext: description\nattributes: brand\nimages:\n  - a\n  - b\n",
        encoding="utf-8",
    )
    mapping = load_mapping_file(path)
    assert mapping == FieldMapping(
        id="sku", title="name", text=["description"], attributes=["brand"], images=["a", "b"]
    )


def test_empty_yaml_mapping_file_gives_the_default_mapping(tmp_path: Path) -> None:
    path = tmp_path / "mapping.yaml"
    path.write_text("", encoding="utf-8")
    assert load_mapping_file(path) == FieldMapping()


@pytest.mark.parametrize(
    ("name", "content"),
    [("mapping.toml", 'id = "sku"\ncolour = "c"\n'), ("mapping.yaml", "id: sku\ncolour: c\n")],
)
def test_unknown_key_in_mapping_file_raises(tmp_path: Path, name: str, content: str) -> None:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(CatalogError, match="colour"):
        load_mapping_file(path)


def test_mapping_file_with_bad_suffix_raises(tmp_path: Path) -> None:
    path = tmp_path / "mapping.json"
    path.write_text('{"id": "sku"}', encoding="utf-8")
    with pytest.raises(CatalogError, match=r"\.toml"):
        load_mapping_file(path)


def test_invalid_toml_raises_catalog_error(tmp_path: Path) -> None:
    path = tmp_path / "mapping.toml"
    path.write_text('id = "sku\ntitle = \n', encoding="utf-8")
    with pytest.raises(CatalogError, match="not valid"):
        load_mapping_file(path)


def test_invalid_yaml_raises_catalog_error(tmp_path: Path) -> None:
    path = tmp_path / "mapping.yaml"
    path.write_text("id: [unclosed\n", encoding="utf-8")
    with pytest.raises(CatalogError, match="not valid"):
        load_mapping_file(path)


def test_yaml_mapping_file_that_is_not_a_table_raises(tmp_path: Path) -> None:
    path = tmp_path / "mapping.yaml"
    path.write_text("- id\n- title\n", encoding="utf-8")
    with pytest.raises(CatalogError, match="table"):
        load_mapping_file(path)


def test_mapping_file_with_wrong_value_type_raises(tmp_path: Path) -> None:
    path = tmp_path / "mapping.toml"
    path.write_text("text = 3\n", encoding="utf-8")
    with pytest.raises(CatalogError):
        load_mapping_file(path)


def test_missing_mapping_file_raises(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="does not exist"):
        load_mapping_file(tmp_path / "absent.toml")


# --- merge_mappings --------------------------------------------------------------------------


def _base() -> FieldMapping:
    return FieldMapping(
        id="sku", title="name", text=["description"], attributes=["brand"], images=["photo"]
    )


def test_merge_override_fields_win() -> None:
    merged = merge_mappings(_base(), FieldMapping(title="label", text=["summary", "tags"]))
    assert merged.title == "label"
    assert merged.text == ["summary", "tags"]


def test_merge_keeps_base_fields_the_override_leaves_unset() -> None:
    merged = merge_mappings(_base(), FieldMapping(id="uid"))
    assert merged == FieldMapping(
        id="uid", title="name", text=["description"], attributes=["brand"], images=["photo"]
    )


def test_merge_ignores_explicit_none_and_empty_lists() -> None:
    override = FieldMapping(id=None, text=[], attributes=None, images=[])
    assert merge_mappings(_base(), override) == _base()


def test_merge_fills_roles_missing_from_base() -> None:
    merged = merge_mappings(FieldMapping(), FieldMapping(id="sku", attributes=["brand"]))
    assert merged.id == "sku"
    assert merged.attributes == ["brand"]
    assert merged.text == []


def test_merge_does_not_modify_its_inputs() -> None:
    base = _base()
    merge_mappings(base, FieldMapping(title="label"))
    assert base == _base()


# --- attribute_column ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "column"),
    [
        ("Unit Price", "unit_price"),
        ("2nd", "a_2nd"),
        ("colour", "colour"),
        ("  Colour  ", "colour"),
        ("size (cm)", "size_cm"),
        ("weight-kg", "weight_kg"),
        ("__x__", "x"),
        ("!!!", "attribute"),
        ("", "attribute"),
        ("9 lives", "a_9_lives"),
    ],
)
def test_attribute_column_sanitises_names(name: str, column: str) -> None:
    assert attribute_column(name) == column


def test_describe_lists_every_role() -> None:
    text = _base().describe()
    assert "id=sku" in text
    assert "title=name" in text
    assert "text=[description]" in text
    assert "attributes=[brand]" in text
    assert "images=[photo]" in text


# --- pinned types and required attributes ----------------------------------------------------


def test_attribute_with_a_kind_suffix_is_pinned() -> None:
    mapping = FieldMapping(id="sku", attributes=["price:float", "stock: INT", "brand", "a:b"])
    assert mapping.attributes == ["price", "stock", "brand", "a:b"]
    assert mapping.types == {"price": "float", "stock": "int"}
    assert "attributes=[price:float, stock:int, brand, a:b]" in mapping.describe()


def test_pinned_mapping_validates_again_unchanged() -> None:
    mapping = FieldMapping(id="sku", attributes=["size:int:string"])
    assert (mapping.attributes, mapping.types) == (["size:int"], {"size:int": "string"})
    assert FieldMapping.model_validate(mapping.model_dump()) == mapping


def test_two_kinds_for_one_attribute_are_refused() -> None:
    with pytest.raises(ValueError, match="keep one"):
        FieldMapping(id="sku", attributes=["price:float"], types={"price": "int"})


def test_describe_lists_required_attributes() -> None:
    mapping = FieldMapping(id="sku", attributes=["price"], required=["price"])
    assert "required=[price]" in mapping.describe()


def test_types_and_required_must_name_attributes() -> None:
    with pytest.raises(CatalogError, match="types names 'colour'"):
        validate_mapping(FieldMapping(id="sku", attributes=["price"], types={"colour": "string"}))
    with pytest.raises(CatalogError, match="required names 'title'"):
        guess_mapping([_product()], FieldMapping(required=["title"], attributes=["price"]))


def test_guess_makes_declared_fields_attributes_even_without_sample_values() -> None:
    mapping = guess_mapping(
        [{"id": 1, "title": "Mug"}],
        FieldMapping(types={"price": "float"}, required=["stock"]),
    )
    assert mapping.attributes == ["price", "stock"]
    assert (mapping.types, mapping.required) == ({"price": "float"}, ["stock"])


def test_merge_adds_up_types_and_required() -> None:
    base = FieldMapping(
        id="sku", attributes=["price", "stock"], types={"price": "int"}, required=["price"]
    )
    override = FieldMapping(attributes=["price:float", "stock"], required=["stock"])
    merged = merge_mappings(base, override)
    assert merged.types == {"price": "float"}
    assert merged.required == ["price", "stock"]
    assert merge_mappings(base, FieldMapping(title="name")).types == {"price": "int"}


def test_mapping_file_pins_types_and_requires(tmp_path: Path) -> None:
    path = tmp_path / "mapping.toml"
    path.write_text(
        'id = "sku"\nattributes = ["price", "stock:int"]\nrequired = "price"\n'
        '[types]\nprice = "float"\n',
        encoding="utf-8",
    )
    mapping = load_mapping_file(path)
    assert mapping.types == {"price": "float", "stock": "int"}
    assert mapping.required == ["price"]


def test_mapping_file_with_an_unknown_kind_raises(tmp_path: Path) -> None:
    path = tmp_path / "mapping.toml"
    path.write_text('id = "sku"\n[types]\nprice = "money"\n', encoding="utf-8")
    with pytest.raises(CatalogError, match="not valid"):
        load_mapping_file(path)
