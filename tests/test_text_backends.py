"""MiniLM on onnxruntime against MiniLM on torch: the real shipped weights, a real
export into a temporary model cache (once for the module), real collections on disk."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from mmsearch.config import Settings
from mmsearch.encoders import base
from mmsearch.encoders.base import create_encoder, resolve_spec
from mmsearch.encoders.onnx_export import MODEL_CACHE_ENV, MODEL_FILE, RECORD_FILE, OnnxExport
from mmsearch.encoders.onnx_text import OnnxTextEncoder
from mmsearch.ingest import IngestOptions, Ingestor
from mmsearch.ingest.builds import SchemaMismatch
from mmsearch.search.request import SearchRequest
from mmsearch.search.searcher import Searcher

from conftest import write_jsonl

pytestmark = [pytest.mark.integration, pytest.mark.onnx]

TEXTS = [
    "",
    "boots",
    "Waterproof leather hiking boots with a deep lugged sole for wet mountain trails.",
    "Café crème, naïve façade: accents and ünïcödé survive tokenisation.",
    # Past MiniLM's 256-token limit: both backends must cut it at the same place.
    " ".join(f"the supersonic boundary layer over a flat plate number {i}" for i in range(60)),
    "A stainless steel kettle that boils a litre of water in three minutes.",
]

CATALOG: list[dict[str, object] | str] = [
    {"id": "boots", "title": "Hiking boots", "text": "waterproof leather boots for trails"},
    {"id": "kettle", "title": "Electric kettle", "text": "boils water for tea in minutes"},
    {"id": "tent", "title": "Two-person tent", "text": "a light shelter for camping trips"},
    {"id": "lamp", "title": "Desk lamp", "text": "a warm light for reading at night"},
]


@pytest.fixture(scope="module")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A private model cache for the module; encoders made elsewhere are forgotten."""
    cache = tmp_path_factory.mktemp("model-cache")
    saved = os.environ.get(MODEL_CACHE_ENV)
    os.environ[MODEL_CACHE_ENV] = str(cache)
    for spec in ("minilm:onnx", "minilm:onnx-int8", "minilm:auto"):
        base._CACHE.pop(spec, None)
    yield cache
    for spec in ("minilm:onnx", "minilm:onnx-int8", "minilm:auto"):
        base._CACHE.pop(spec, None)
    if saved is None:
        os.environ.pop(MODEL_CACHE_ENV, None)
    else:
        os.environ[MODEL_CACHE_ENV] = saved


@pytest.fixture(scope="module")
def torch_vectors() -> np.ndarray:
    return create_encoder("minilm").encode_texts(TEXTS)


def onnx_encoder(spec: str) -> OnnxTextEncoder:
    encoder = create_encoder(spec)
    assert isinstance(encoder, OnnxTextEncoder)
    return encoder


def test_onnx_vectors_equal_torch_vectors(model_cache: Path, torch_vectors: np.ndarray) -> None:
    vectors = onnx_encoder("minilm:onnx").encode_texts(TEXTS)
    assert vectors.shape == torch_vectors.shape
    assert vectors.dtype == np.float32
    cosines = (vectors * torch_vectors).sum(axis=1)
    assert cosines.min() >= 0.999, cosines


def test_int8_vectors_agree_with_torch(model_cache: Path, torch_vectors: np.ndarray) -> None:
    vectors = onnx_encoder("minilm:onnx-int8").encode_texts(TEXTS)
    cosines = (vectors * torch_vectors).sum(axis=1)
    assert cosines.mean() >= 0.99, cosines
    assert cosines.min() >= 0.97, cosines
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("spec", ["minilm:onnx", "minilm:onnx-int8"])
def test_a_batch_keeps_its_order(model_cache: Path, spec: str) -> None:
    """Texts are batched longest first; each vector must still land on its own text."""
    encoder = onnx_encoder(spec)
    together = encoder.encode_texts(TEXTS)
    alone = np.stack([encoder.encode_texts([text])[0] for text in TEXTS])
    similarity = together @ alone.T
    assert (similarity.argmax(axis=1) == np.arange(len(TEXTS))).all(), similarity
    if spec == "minilm:onnx":
        np.testing.assert_allclose(together, alone, atol=1e-4)
    else:
        # int8 activations are quantized with one scale per batch: a text's vector moves
        # a little with the texts batched beside it (docs/BENCHMARKS.md).
        assert np.diag(similarity).min() >= 0.97, np.diag(similarity)
    assert encoder.encode_texts([]).shape == (0, encoder.dim)


def test_the_version_names_the_weights_and_the_backend(model_cache: Path) -> None:
    torch_version = create_encoder("minilm").version
    onnx = onnx_encoder("minilm:onnx")
    int8 = onnx_encoder("minilm:onnx-int8")
    assert len({torch_version, onnx.version, int8.version}) == 3
    assert onnx.version.startswith(torch_version + "+onnx-")
    assert int8.version.startswith(torch_version + "+onnx-int8-")
    assert (onnx.name, int8.name) == ("minilm:onnx", "minilm:onnx-int8")


def test_the_export_is_recorded_and_reused(model_cache: Path) -> None:
    onnx = onnx_encoder("minilm:onnx")
    folders = sorted(p for p in model_cache.rglob(MODEL_FILE))
    assert [p.parent.name for p in folders] == ["onnx", "onnx-int8"]
    record = OnnxExport.model_validate_json((folders[0].parent / RECORD_FILE).read_text())
    assert record == onnx.export
    assert record.source_sha256 in onnx.version
    assert not [p for p in model_cache.rglob(".*") if p.is_dir()], "a staging folder was left"
    written = {p: p.stat().st_mtime_ns for p in folders}
    base._CACHE.pop("minilm:onnx", None)
    again = onnx_encoder("minilm:onnx")
    assert again is not onnx
    assert {p: p.stat().st_mtime_ns for p in folders} == written  # not exported again


def test_auto_picks_the_onnx_backend_where_it_is_installed(model_cache: Path) -> None:
    spec, note = resolve_spec("minilm:auto")
    assert spec.startswith("minilm:onnx")
    assert note is not None and spec.removeprefix("minilm:") in note
    assert create_encoder("minilm:auto") is create_encoder(spec)


def manifest_of(settings: Settings, collection: str) -> dict:
    searcher = Searcher(settings, collection)
    return json.loads(searcher.manifest.model_dump_json())


def test_a_new_collection_records_the_backend_that_ran(model_cache: Path, tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home")  # the default: minilm:auto
    catalog = write_jsonl(tmp_path / "catalog.jsonl", list(CATALOG))
    Ingestor(settings).run(IngestOptions(catalog, "shop"))
    text = manifest_of(settings, "shop")["encoders"]["text"]
    concrete, note = resolve_spec("minilm:auto")
    assert text["spec"] == concrete
    assert text["version"] == create_encoder(concrete).version
    assert text["note"] == note
    request = SearchRequest(text="something to make tea with", signals=["text_vector"])
    assert Searcher(settings, "shop").search(request).hits[0].id == "kettle"


def test_a_torch_collection_stays_on_torch(model_cache: Path, tmp_path: Path) -> None:
    """Built before the ONNX backends: updates and searches keep using torch."""
    settings = Settings(home=tmp_path / "home")
    catalog = write_jsonl(tmp_path / "catalog.jsonl", list(CATALOG))
    Ingestor(settings).run(IngestOptions(catalog, "old", text_encoder="minilm"))
    before = manifest_of(settings, "old")["encoders"]["text"]

    mug: dict[str, object] = {"id": "mug", "title": "Tea mug", "text": "a large mug for hot drinks"}
    more = write_jsonl(tmp_path / "more.jsonl", [*CATALOG, mug])
    report = Ingestor(settings).run(IngestOptions(more, "old"))  # default settings: auto
    assert report.counts["added"] == 1
    after = manifest_of(settings, "old")["encoders"]["text"]
    assert (after["spec"], after["version"]) == ("minilm", before["version"])
    assert "+onnx" not in after["version"]

    request = SearchRequest(text="hot drinks", signals=["text_vector"])
    hits = Searcher(settings, "old").search(request).hits
    assert hits[0].id == "mug"

    with pytest.raises(SchemaMismatch, match="minilm:onnx"):
        Ingestor(settings).run(IngestOptions(more, "old", text_encoder="minilm:onnx"))
