from __future__ import annotations

from pathlib import Path

import pytest

from mmsearch.catalog.item import Item, RawRecord, RowError
from mmsearch.catalog.mapping import FieldMapping
from mmsearch.catalog.normalise import (
    AttributeSpec,
    infer_attribute_specs,
    normalise_record,
)

MAPPING = FieldMapping(id="id", title="title", text=["description"], images=["image"])


def _normalise(
    data: dict[str, object],
    mapping: FieldMapping = MAPPING,
    specs: list[AttributeSpec] | None = None,
    images_root: Path = Path("/catalog"),
) -> Item | RowError:
    return normalise_record(RawRecord("c.jsonl", 7, data), mapping, specs or [], images_root)


def _item(result: Item | RowError) -> Item:
    assert isinstance(result, Item), result
    return result


def _error(result: Item | RowError) -> RowError:
    assert isinstance(result, RowError), result
    return result


def _kind(values: list[object]) -> str:
    [spec] = infer_attribute_specs([{"a": v} for v in values], ["a"])
    return spec.kind


# --- attribute kind inference ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "kind"),
    [
        ([True, False], "bool"),
        ([1, 2, 30], "int"),
        ([1, 2.5], "float"),
        ([1.0, 2.0], "float"),
        (["3", " 12 ", "-4"], "int"),
        (["1.5", "2"], "float"),
        (["1e3", "7"], "float"),
        (["1", "x"], "string"),
        ([True, 1], "string"),
        (["red", "blue"], "string"),
        (["true", "false"], "bool"),  # CSV spells booleans as text
        (["Yes", "NO", "yes"], "bool"),
        (["1", "0"], "bool"),
        (["1", "1"], "int"),  # 1/0 needs both values
        (["yes", "false"], "string"),  # one spelling per column
        ([], "string"),
    ],
)
def test_attribute_kind_inference(values: list[object], kind: str) -> None:
    assert _kind(values) == kind


def test_mostly_json_numbers_stay_numeric_despite_odd_text() -> None:
    assert _kind([1, 2, 3, "n/a"]) == "int"
    assert _kind([1.5, 2, "n/a"]) == "float"


def test_mostly_numeric_csv_text_without_json_numbers_is_a_string() -> None:
    assert _kind(["1", "2", "3", "n/a"]) == "string"


def test_half_numeric_json_values_are_a_string() -> None:
    assert _kind([1, "x"]) == "string"


def _warning(item: Item) -> RowError:
    [warning] = item.warnings
    assert warning.severity == "warning"
    return warning


def test_odd_text_in_an_inferred_number_column_is_a_warning() -> None:
    sample = [{"id": 1, "stock": 1}, {"id": 2, "stock": 2}, {"id": 3, "stock": "n/a"}]
    specs = infer_attribute_specs(sample, ["stock"])
    item = _item(_normalise({"id": 3, "title": "Mug", "stock": "n/a"}, specs=specs))
    assert item.attributes == {"stock": None}
    warning = _warning(item)
    assert (warning.field, warning.item_id, warning.row) == ("stock", "3", 7)


def test_huge_integer_does_not_break_kind_inference() -> None:
    [spec] = infer_attribute_specs([{"a": 10**400}, {"a": 1}], ["a"])
    assert spec.kind in {"int", "float", "string"}


def test_huge_integer_in_a_float_column_is_a_warning() -> None:
    specs = [AttributeSpec("price", "price", "float")]
    item = _item(_normalise({"id": "p1", "title": "Mug", "price": 10**400}, specs=specs))
    assert item.attributes == {"price": None}
    assert _warning(item).field == "price"


def test_integer_past_int64_in_an_int_column_is_a_warning() -> None:
    specs = [AttributeSpec("stock", "stock", "int")]
    item = _item(_normalise({"id": "p1", "title": "Mug", "stock": 2**63}, specs=specs))
    assert item.attributes == {"stock": None}
    assert "64-bit" in _warning(item).reason


def test_whole_float_in_an_int_column_is_kept() -> None:
    specs = [AttributeSpec("stock", "stock", "int")]
    item = _item(_normalise({"id": "p1", "title": "Mug", "stock": 3.0}, specs=specs))
    assert item.attributes == {"stock": 3}
    assert item.warnings == []


def test_kind_inference_ignores_missing_and_null_values() -> None:
    sample = [{"a": None}, {}, {"a": 4}]
    [spec] = infer_attribute_specs(sample, ["a"])
    assert spec.kind == "int"


def test_attribute_with_only_nulls_is_a_string() -> None:
    [spec] = infer_attribute_specs([{"a": None}, {"a": None}], ["a"])
    assert spec.kind == "string"


def test_non_finite_numbers_do_not_turn_a_float_column_into_text() -> None:
    # A NaN is how many tools write a missing float; the column is still numeric.
    assert _kind([1.5, float("nan"), 2.0]) == "float"


def test_specs_keep_attribute_order_and_sanitise_columns() -> None:
    specs = infer_attribute_specs([{"Unit Price": "9.5", "2nd": "x"}], ["Unit Price", "2nd"])
    assert specs == [
        AttributeSpec("Unit Price", "unit_price", "float"),
        AttributeSpec("2nd", "a_2nd", "string"),
    ]


def test_specs_can_be_inferred_from_a_one_shot_iterator() -> None:
    sample = iter([{"a": 1, "b": "x"}, {"a": 2, "b": "y"}])
    specs = infer_attribute_specs(sample, ["a", "b"])
    assert [s.kind for s in specs] == ["int", "string"]


# --- attribute coercion ----------------------------------------------------------------------


def test_csv_numeric_strings_are_coerced_to_numbers() -> None:
    specs = [AttributeSpec("price", "price", "float"), AttributeSpec("stock", "stock", "int")]
    item = _item(
        _normalise({"id": "p1", "title": "Mug", "price": "9.50", "stock": " 3 "}, specs=specs)
    )
    assert item.attributes == {"price": 9.5, "stock": 3}
    assert type(item.attributes["stock"]) is int


def test_attribute_values_are_stored_under_their_column() -> None:
    specs = [AttributeSpec("Unit Price", "unit_price", "float")]
    item = _item(_normalise({"id": "p1", "title": "Mug", "Unit Price": 2}, specs=specs))
    assert item.attributes == {"unit_price": 2.0}


def test_missing_attribute_is_none() -> None:
    specs = [AttributeSpec("price", "price", "float")]
    item = _item(_normalise({"id": "p1", "title": "Mug"}, specs=specs))
    assert item.attributes == {"price": None}


def test_non_number_in_float_column_is_a_warning_and_the_row_lands() -> None:
    specs = [AttributeSpec("price", "price", "float")]
    item = _item(_normalise({"id": "p1", "title": "Mug", "price": "abc"}, specs=specs))
    assert item.attributes == {"price": None}
    warning = _warning(item)
    assert warning.field == "price"
    assert warning.item_id == "p1"
    assert warning.row == 7
    assert warning.source == "c.jsonl"
    assert warning.reason == "expected a number, got 'abc'; stored as missing"
    assert warning.as_dict()["severity"] == "warning"


def test_fraction_in_int_column_is_a_warning() -> None:
    specs = [AttributeSpec("stock", "stock", "int")]
    item = _item(_normalise({"id": "p1", "title": "Mug", "stock": "2.5"}, specs=specs))
    warning = _warning(item)
    assert warning.field == "stock"
    assert "whole number" in warning.reason


def test_bool_column_accepts_words_and_rejects_others() -> None:
    specs = [AttributeSpec("sale", "sale", "bool")]
    yes = _item(_normalise({"id": "p1", "title": "Mug", "sale": "Yes"}, specs=specs))
    no = _item(_normalise({"id": "p2", "title": "Mug", "sale": "0"}, specs=specs))
    assert yes.attributes == {"sale": True}
    assert no.attributes == {"sale": False}
    maybe = _item(_normalise({"id": "p3", "title": "Mug", "sale": "maybe"}, specs=specs))
    assert maybe.attributes == {"sale": None}
    assert (_warning(maybe).field, _warning(maybe).item_id) == ("sale", "p3")


def test_string_column_stringifies_scalars_and_warns_about_lists() -> None:
    specs = [AttributeSpec("size", "size", "string")]
    item = _item(_normalise({"id": "p1", "title": "Mug", "size": 42}, specs=specs))
    assert item.attributes == {"size": "42"}
    listed = _item(_normalise({"id": "p2", "title": "Mug", "size": ["S", "M"]}, specs=specs))
    assert listed.attributes == {"size": None}
    assert _warning(listed).field == "size"
    assert "list" in _warning(listed).reason


def test_bool_in_a_number_column_is_a_warning() -> None:
    specs = [AttributeSpec("price", "price", "float")]
    item = _item(_normalise({"id": "p1", "title": "Mug", "price": True}, specs=specs))
    assert item.attributes == {"price": None}
    assert _warning(item).field == "price"


# --- ids -------------------------------------------------------------------------------------


@pytest.mark.parametrize("data", [{"title": "Mug"}, {"id": None, "title": "Mug"}, {"id": "  "}])
def test_missing_id_is_a_row_error(data: dict[str, object]) -> None:
    error = _error(_normalise(data))
    assert error.field == "id"
    assert error.reason == "missing id"
    assert error.item_id is None


def test_missing_id_without_a_mapped_id_field_names_id() -> None:
    error = _error(_normalise({"title": "Mug"}, mapping=FieldMapping(title="title")))
    assert (error.field, error.reason) == ("id", "missing id")


def test_missing_id_names_the_mapped_id_field() -> None:
    error = _error(_normalise({"title": "Mug"}, mapping=FieldMapping(id="sku", title="title")))
    assert (error.field, error.reason) == ("sku", "missing id")


@pytest.mark.parametrize("value", [{"a": 1}, ["a"], True, 3.5, float("nan")])
def test_id_that_is_not_text_or_whole_number_is_a_row_error(value: object) -> None:
    error = _error(_normalise({"id": value, "title": "Mug"}))
    assert error.field == "id"
    assert "id must be text or a whole number" in error.reason


def test_dict_id_error_says_object() -> None:
    error = _error(_normalise({"id": {"a": 1}, "title": "Mug"}))
    assert "an object" in error.reason


@pytest.mark.parametrize(("value", "expected"), [(3.0, "3"), (7, "7"), (" a1 ", "a1"), (0, "0")])
def test_id_is_normalised_to_text(value: object, expected: str) -> None:
    assert _item(_normalise({"id": value, "title": "Mug"})).id == expected


def test_overlong_id_is_a_row_error() -> None:
    error = _error(_normalise({"id": "x" * 513, "title": "Mug"}))
    assert error.field == "id"
    assert "longer" in error.reason


# --- text ------------------------------------------------------------------------------------


def test_list_of_strings_text_is_joined_with_commas() -> None:
    item = _item(_normalise({"id": "p1", "title": "Mug", "description": ["blue", "ceramic"]}))
    assert item.texts == {"description": "blue, ceramic"}


def test_list_title_is_joined_and_numbers_become_text() -> None:
    item = _item(_normalise({"id": "p1", "title": ["Mug", 2]}))
    assert item.title == "Mug, 2"


def test_dict_text_is_a_row_error_naming_the_field() -> None:
    error = _error(_normalise({"id": "p1", "title": "Mug", "description": {"en": "blue"}}))
    assert error.field == "description"
    assert error.item_id == "p1"
    assert "an object" in error.reason


def test_bool_title_is_a_row_error() -> None:
    error = _error(_normalise({"id": "p1", "title": True}))
    assert error.field == "title"


def test_texts_are_stripped_and_empty_ones_dropped() -> None:
    mapping = FieldMapping(id="id", title="title", text=["description", "tags"])
    item = _item(
        _normalise({"id": "p1", "title": " Mug ", "description": "  ", "tags": "a"}, mapping)
    )
    assert item.title == "Mug"
    assert item.texts == {"tags": "a"}
    assert item.search_text == "Mug\na"


def test_row_with_no_title_text_or_image_is_a_row_error() -> None:
    error = _error(_normalise({"id": "p1", "title": "", "description": None, "image": ""}))
    assert error.item_id == "p1"
    assert error.field is None
    assert "no title, text or image" in error.reason


def test_row_with_only_text_is_an_item() -> None:
    item = _item(_normalise({"id": "p1", "description": "blue mug"}))
    assert item.title == ""
    assert item.texts == {"description": "blue mug"}


# --- images ----------------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["http://x.test/a.jpg", "HTTPS://x.test/a.jpg"])
def test_image_url_is_kept_as_given_for_the_fetcher(url: str) -> None:
    item = _item(_normalise({"id": "p1", "title": "Mug", "image": url}))
    assert item.images == [url]


def test_overlong_image_url_is_a_row_error() -> None:
    url = "https://x.test/" + "a" * 3000
    error = _error(_normalise({"id": "p1", "title": "Mug", "image": url}))
    assert error.field == "image"
    assert "URL" in error.reason


def test_relative_image_paths_resolve_against_images_root(tmp_path: Path) -> None:
    item = _item(
        _normalise({"id": "p1", "image": ["shoes/a.jpg", " b.png "]}, images_root=tmp_path)
    )
    assert item.images == [
        str((tmp_path / "shoes" / "a.jpg").resolve()),
        str((tmp_path / "b.png").resolve()),
    ]


def test_absolute_image_path_inside_the_root_is_kept(tmp_path: Path) -> None:
    absolute = tmp_path / "elsewhere" / "a.jpg"
    item = _item(_normalise({"id": "p1", "image": str(absolute)}, images_root=tmp_path))
    assert item.images == [str(absolute.resolve())]


def test_absolute_image_path_outside_the_root_is_a_row_error(tmp_path: Path) -> None:
    absolute = tmp_path / "elsewhere" / "a.jpg"
    error = _error(_normalise({"id": "p1", "image": str(absolute)}, images_root=Path("/nowhere")))
    assert error.field == "image"
    assert "outside the allowed image roots" in error.reason


def test_images_from_several_fields_keep_catalog_order(tmp_path: Path) -> None:
    mapping = FieldMapping(id="id", images=["image", "extra"])
    data = {"id": "p1", "image": "a.jpg", "extra": ["b.jpg", "", "c.jpg"]}
    item = _item(_normalise(data, mapping, images_root=tmp_path))
    assert [Path(p).name for p in item.images] == ["a.jpg", "b.jpg", "c.jpg"]


def test_image_field_that_is_not_a_path_is_a_row_error() -> None:
    error = _error(_normalise({"id": "p1", "title": "Mug", "image": {"src": "a.jpg"}}))
    assert error.field == "image"


def test_item_keeps_provenance() -> None:
    item = _item(_normalise({"id": "p1", "title": "Mug"}))
    assert (item.source, item.row) == ("c.jsonl", 7)


# --- content hash ----------------------------------------------------------------------------


def _hash_item(**changes: object) -> Item:
    fields: dict[str, object] = {
        "id": "p1",
        "title": "Mug",
        "texts": {"description": "blue", "tags": "kitchen"},
        "attributes": {"price": 9.5, "colour": "blue"},
        "images": ["/c/a.jpg"],
        "source": "c.jsonl",
        "row": 1,
        "image_sha256": ["aa" * 32],
    }
    fields.update(changes)
    return Item(**fields)  # type: ignore[arg-type]


def test_content_hash_is_stable_for_equal_content() -> None:
    assert _hash_item().content_sha256() == _hash_item().content_sha256()


def test_content_hash_ignores_dict_order_and_provenance() -> None:
    reordered = _hash_item(
        texts={"tags": "kitchen", "description": "blue"},
        attributes={"colour": "blue", "price": 9.5},
        source="other.jsonl",
        row=99,
    )
    assert reordered.content_sha256() == _hash_item().content_sha256()


@pytest.mark.parametrize(
    "change",
    [
        {"title": "Cup"},
        {"texts": {"description": "red", "tags": "kitchen"}},
        {"attributes": {"price": 9.0, "colour": "blue"}},
        {"attributes": {"price": 9.5, "colour": "blue", "size": None}},
        {"images": ["/c/b.jpg"]},
        {"image_sha256": ["bb" * 32]},
        {"id": "p2"},
    ],
)
def test_content_hash_changes_with_indexed_content(change: dict[str, object]) -> None:
    assert _hash_item(**change).content_sha256() != _hash_item().content_sha256()


def test_content_hash_is_a_sha256_hex_digest() -> None:
    digest = _hash_item().content_sha256()
    assert len(digest) == 64
    int(digest, 16)
