"""Choosing MiniLM's backend where the onnx extra may be missing: ``minilm:auto`` falls
back to torch and says why, and an explicit ONNX backend is a clear error, before any
model loads. These tests need no extra, so they run in the light test run too."""

from __future__ import annotations

import sys

import pytest

from mmsearch.builds.lineage import encoder_lineage
from mmsearch.config import Settings
from mmsearch.encoders.base import create_encoder, resolve_spec
from mmsearch.errors import EncoderError
from mmsearch.ingest.encoders import EncoderSet
from mmsearch.manifest import BuildManifest


@pytest.fixture
def without_onnxruntime(monkeypatch: pytest.MonkeyPatch) -> None:
    """As on a machine without the onnx extra: importing onnxruntime fails."""
    monkeypatch.setitem(sys.modules, "onnxruntime", None)


def test_new_collections_ask_for_the_automatic_backend() -> None:
    assert Settings().text_encoder == "minilm:auto"


@pytest.mark.usefixtures("without_onnxruntime")
def test_auto_falls_back_to_torch_and_says_why() -> None:
    spec, note = resolve_spec("minilm:auto")
    assert spec == "minilm"
    assert note is not None
    assert "torch" in note
    assert "mmsearch[onnx]" in note


@pytest.mark.usefixtures("without_onnxruntime")
@pytest.mark.parametrize("spec", ["minilm:onnx", "minilm:onnx-int8"])
def test_an_onnx_backend_without_the_extra_names_the_spec_and_the_fix(spec: str) -> None:
    with pytest.raises(EncoderError) as error:
        create_encoder(spec)
    assert spec in str(error.value)
    assert "onnxruntime" in str(error.value)
    assert "pip install 'mmsearch[onnx]'" in str(error.value)


@pytest.mark.usefixtures("without_onnxruntime")
def test_an_ingest_without_the_extra_loads_nothing_it_cannot_run() -> None:
    with pytest.raises(EncoderError, match="minilm:onnx"):
        EncoderSet.load({"text": "minilm:onnx"})


@pytest.mark.parametrize("spec", ["minilm", "minilm:onnx", "minilm:onnx-int8", "visual"])
def test_a_concrete_spec_resolves_to_itself_without_a_note(spec: str) -> None:
    assert resolve_spec(spec) == (spec, None)


@pytest.mark.parametrize("spec", ["minilm:onnx8", "minilm:torch", "minilm:ONNX"])
def test_an_unknown_minilm_backend_lists_the_valid_ones(spec: str) -> None:
    with pytest.raises(EncoderError) as error:
        create_encoder(spec)
    message = str(error.value)
    assert spec in message
    for valid in ("'minilm'", "'minilm:onnx'", "'minilm:onnx-int8'", "'minilm:auto'"):
        assert valid in message


def test_lineage_shows_the_weights_and_the_backend_apart() -> None:
    digest = "cd" * 32
    note = "minilm:auto ran on onnx-int8"
    manifest = BuildManifest.model_validate(
        {
            "build_id": "build-1",
            "table": "build_1",
            "encoders": {
                "text": {
                    "spec": "minilm:onnx-int8",
                    "version": f"all-MiniLM-L6-v2@sha256:{digest}+onnx-int8-r1",
                    "dim": 384,
                    "note": note,
                },
                "torch": {"spec": "minilm", "version": f"m@sha256:{digest}", "dim": 384},
            },
        }
    )
    encoders = encoder_lineage(manifest)
    assert encoders["text"]["weights_sha256"] == digest
    assert encoders["text"]["backend"] == "onnx-int8-r1"
    assert encoders["text"]["note"] == note
    assert encoders["torch"]["weights_sha256"] == digest
    assert (encoders["torch"]["backend"], encoders["torch"]["note"]) == (None, None)
