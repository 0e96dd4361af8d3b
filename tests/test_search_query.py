"""The one search request model: SearchQuery → SearchRequest, shared by CLI, API and evaluation."""

from __future__ import annotations

import pytest
from PIL import Image

from mmsearch.errors import EvaluationError, QueryError
from mmsearch.evaluation.configs import config_fields, make_config
from mmsearch.filters.expr import Compare, Visible
from mmsearch.manifest import AttributeDescription
from mmsearch.retrieval.planner import DEFAULT_IMAGE_WEIGHT
from mmsearch.search.query import SearchQuery, build_request, parse_query
from mmsearch.service.schemas import SearchBody

ATTRIBUTES = [AttributeDescription(field="price", column="price", kind="float")]


def test_the_api_body_is_the_shared_query_plus_transport_fields():
    assert issubclass(SearchBody, SearchQuery)
    extra = set(SearchBody.model_fields) - set(SearchQuery.model_fields)
    assert extra == {"image", "mode"}


def test_api_narrows_page_size_and_names_while_local_callers_keep_theirs():
    assert parse_query(text="x", k=1000).k == 1000  # the CLI's --k allows 1000
    with pytest.raises(ValueError):
        SearchBody(text="x", k=101)
    long_path = "/models/" + "r" * 100
    assert parse_query(text="x", reranker=long_path).reranker == long_path
    with pytest.raises(ValueError):
        SearchBody(text="x", reranker=long_path)


def test_invalid_fields_are_one_query_error_naming_them():
    with pytest.raises(QueryError, match=r"Invalid search: k: .*; rrf_k"):
        parse_query(text="x", k=0, rrf_k=0)


def test_build_request_resolves_filters_offset_image_and_defaults():
    image = Image.new("RGB", (4, 4))
    access = Visible(frozenset({"staff"}), default_public=False)
    query = SearchQuery(text="mug", k=5, offset=3, filters={"price": {"max": 9}})
    request = build_request(query, ATTRIBUTES, image=image, image_sha256="ab", access=access)
    assert request.k == 8  # k + offset: the caller slices
    assert request.filter == Compare("price", "<=", 9.0)
    assert request.image is image and request.image_sha256 == "ab"
    assert request.access is access
    assert request.image_weight == DEFAULT_IMAGE_WEIGHT
    assert request.fusion is None and request.candidates is None


def test_mode_keeps_one_part_of_the_query():
    image = Image.new("RGB", (4, 4))
    query = SearchQuery(text="mug")
    text_only = build_request(query, image=image, image_sha256="ab", mode="text")
    assert text_only.image is None and text_only.image_sha256 is None
    image_only = build_request(query, image=image, mode="image")
    assert image_only.text is None and image_only.image is image
    with pytest.raises(QueryError, match="needs a query image"):
        build_request(query, mode="image")
    with pytest.raises(QueryError, match="offset \\+ k"):
        build_request(SearchQuery(text="mug", k=1000, offset=1))


def test_evaluation_configs_validate_through_the_same_model():
    assert "session" not in config_fields() and "offset" not in config_fields()
    assert {"fusion", "weights", "reranker", "rules", "image_weight"} <= set(config_fields())
    config = make_config("w", {"fusion": "weighted", "weights": {"keyword": 1}})
    request = config.request(text="mug", k=7)
    assert request.fusion == "weighted" and request.weights == {"keyword": 1.0}
    with pytest.raises(EvaluationError, match=r"not valid.*rrf_k"):
        make_config("bad", {"rrf_k": 0})
    with pytest.raises(EvaluationError, match="unknown key\\(s\\) session"):
        make_config("bad", {"session": "s"})
