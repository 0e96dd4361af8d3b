"""CLIP-family encoders, loaded from disk through the same specs users write.

Every model here is tiny, randomly initialised and saved to tmp_path first, so the
tests need no network; vectors are compared with what the library itself computes.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")

pytestmark = pytest.mark.clip
open_clip = pytest.importorskip("open_clip")

import torch  # noqa: E402

from mmsearch.encoders.base import Encoder, clear_encoder_cache, create_encoder  # noqa: E402
from mmsearch.encoders.clip_common import THREADS_ENV, threads_from_env, torch_threads  # noqa: E402
from mmsearch.errors import EncoderError  # noqa: E402
from mmsearch.media.images import to_rgb  # noqa: E402
from tiny_clip import TINY_OPEN_CLIP_CFG, save_hf_model, save_open_clip_folder  # noqa: E402

TEXTS = ["a red mug", "blue bottle", "green", "zebra 42"]


def _images() -> list[Image.Image]:
    rng = np.random.default_rng(7)
    rgb = [Image.fromarray(rng.integers(0, 255, (40, 30, 3), dtype=np.uint8)) for _ in range(4)]
    rgba = Image.new("RGBA", (24, 24), (0, 0, 200, 0))
    rgba.paste((200, 20, 20, 255), (4, 4, 20, 20))
    return [*rgb, rgba, Image.new("L", (33, 33), 90)]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(autouse=True)
def _fresh_cache():
    clear_encoder_cache()
    yield
    clear_encoder_cache()


@pytest.fixture(scope="module")
def oc_folder(tmp_path_factory) -> Path:
    return save_open_clip_folder(tmp_path_factory.mktemp("oc") / "tiny-oc", seed=0)


@pytest.fixture(scope="module", params=["clip", "siglip"])
def hf_folder(request, tmp_path_factory) -> Path:
    return save_hf_model(tmp_path_factory.mktemp("hf") / f"tiny-{request.param}", request.param)


def _check_vectors(encoder: Encoder, dim: int) -> tuple[np.ndarray, np.ndarray]:
    images = encoder.encode_images(_images())
    texts = encoder.encode_texts(TEXTS)
    assert images.shape == (6, dim) and texts.shape == (4, dim)
    assert images.dtype == np.float32 and texts.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(images, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(texts, axis=1), 1.0, atol=1e-5)
    assert encoder.encode_images([]).shape == (0, dim)
    assert encoder.encode_texts([]).shape == (0, dim)
    return images, texts


# --- open_clip ------------------------------------------------------------------------


def test_open_clip_folder_embeds_both_modalities(oc_folder):
    encoder = create_encoder(f"open_clip:{oc_folder}")
    assert encoder.modalities == frozenset({"text", "image"})
    assert encoder.dim == TINY_OPEN_CLIP_CFG["embed_dim"]
    images, texts = _check_vectors(encoder, encoder.dim)
    # Different inputs get different vectors (a constant output would pass the norm checks).
    assert np.linalg.norm(images[0] - images[1]) > 1e-3
    assert np.linalg.norm(texts[0] - texts[1]) > 1e-3


def test_open_clip_matches_the_library(oc_folder):
    encoder = create_encoder(f"open_clip:{oc_folder}")
    model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{oc_folder}")
    tokenizer = open_clip.get_tokenizer(f"local-dir:{oc_folder}")
    model.eval()
    images = _images()
    with torch.no_grad():
        pixels = torch.stack([preprocess(to_rgb(image)) for image in images])
        expected_images = model.encode_image(pixels, normalize=True).numpy()
        expected_texts = model.encode_text(tokenizer(TEXTS), normalize=True).numpy()
    np.testing.assert_allclose(encoder.encode_images(images), expected_images, atol=1e-5)
    np.testing.assert_allclose(encoder.encode_texts(TEXTS), expected_texts, atol=1e-5)


def test_open_clip_is_deterministic_across_loads_and_batch_sizes(oc_folder):
    first = create_encoder(f"open_clip:{oc_folder}")
    clear_encoder_cache()
    second = create_encoder(f"open_clip:local-dir:{oc_folder}")
    assert first is not second
    np.testing.assert_array_equal(first.encode_images(_images()), second.encode_images(_images()))
    np.testing.assert_array_equal(first.encode_texts(TEXTS), second.encode_texts(TEXTS))
    second.batch_size = 2  # type: ignore[attr-defined]
    np.testing.assert_allclose(
        first.encode_images(_images()), second.encode_images(_images()), atol=1e-5
    )


def test_open_clip_version_is_the_sha256_of_the_weights(oc_folder, tmp_path):
    encoder = create_encoder(f"open_clip:{oc_folder}")
    weights = oc_folder / "open_clip_model.safetensors"
    assert encoder.version.endswith(f"@sha256:{_sha256(weights)}")
    assert encoder.version.startswith("open_clip:local-dir:tiny-oc#config-")
    retrained = save_open_clip_folder(tmp_path / "tiny-oc", seed=1)
    other = create_encoder(f"open_clip:{retrained}")
    assert other.version.split("@")[0] == encoder.version.split("@")[0]
    assert other.version != encoder.version


def test_open_clip_arch_with_a_weights_file(oc_folder, tmp_path):
    """``open_clip:<arch>:<file>``: a registered architecture plus a checkpoint on disk."""
    (tmp_path / "mmsearch-tiny-test.json").write_text(json.dumps(TINY_OPEN_CLIP_CFG))
    open_clip.add_model_config(tmp_path / "mmsearch-tiny-test.json")
    weights = oc_folder / "open_clip_model.safetensors"
    encoder = create_encoder(f"open_clip:mmsearch-tiny-test:{weights}")
    assert encoder.version == f"open_clip:mmsearch-tiny-test@sha256:{_sha256(weights)}"
    folder_encoder = create_encoder(f"open_clip:{oc_folder}")
    np.testing.assert_allclose(
        encoder.encode_texts(TEXTS), folder_encoder.encode_texts(TEXTS), atol=1e-5
    )


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("open_clip", "open_clip:<arch>:<pretrained-tag-or-weights-file>"),
        ("open_clip:ViT-B-32", "names no weights"),
        ("open_clip:ViT-B-32:/no/such/weights.safetensors", "does not exist"),
        ("open_clip:No-Such-Arch:openai", "no architecture 'No-Such-Arch'"),
        ("open_clip:ViT-B-32:not-a-tag", "known: .*laion2b_s34b_b79k"),
        ("open_clip:/no/such/folder", "does not exist"),
    ],
)
def test_open_clip_spec_errors_say_what_to_do(spec, message):
    with pytest.raises(EncoderError, match=message):
        create_encoder(spec)


def test_open_clip_folder_without_weights_is_refused(oc_folder, tmp_path):
    folder = tmp_path / "config-only"
    folder.mkdir()
    (folder / "open_clip_config.json").write_text((oc_folder / "open_clip_config.json").read_text())
    with pytest.raises(EncoderError, match="no weights"):
        create_encoder(f"open_clip:{folder}")


def test_open_clip_tag_offline_without_cache_explains_how_to_supply_weights(tmp_path, monkeypatch):
    import huggingface_hub.constants as hub_constants

    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(EncoderError) as caught:
        create_encoder("open_clip:ViT-B-32:laion2b_s34b_b79k")
    message = str(caught.value)
    assert "ViT-B-32 (laion2b_s34b_b79k)" in message
    assert "open_clip:<arch>:/path/to/open_clip_model.safetensors" in message
    assert "open_clip_config.json" in message and "HF_HOME" in message


# --- transformers ---------------------------------------------------------------------


def test_hf_model_embeds_both_modalities_and_matches_the_library(hf_folder):
    from transformers import AutoImageProcessor, AutoModel, AutoTokenizer

    encoder = create_encoder(f"hf:{hf_folder}")
    assert encoder.modalities == frozenset({"text", "image"})
    images, texts = _check_vectors(encoder, encoder.dim)
    assert np.linalg.norm(texts[0] - texts[1]) > 1e-3

    model = AutoModel.from_pretrained(hf_folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(hf_folder)
    processor = AutoImageProcessor.from_pretrained(hf_folder)
    siglip = model.config.model_type == "siglip"
    tokens = tokenizer(
        TEXTS,
        padding="max_length" if siglip else True,
        truncation=True,
        max_length=16,
        return_tensors="pt",
    )
    with torch.no_grad():
        pixels = processor(images=[to_rgb(i) for i in _images()], return_tensors="pt")
        image_out = model.get_image_features(pixel_values=pixels["pixel_values"])
        if siglip:
            text_out = model.get_text_features(input_ids=tokens["input_ids"])
        else:
            text_out = model.get_text_features(**tokens)
    expected_images = torch.nn.functional.normalize(image_out.pooler_output, dim=-1).numpy()
    expected_texts = torch.nn.functional.normalize(text_out.pooler_output, dim=-1).numpy()
    np.testing.assert_allclose(images, expected_images, atol=1e-5)
    np.testing.assert_allclose(texts, expected_texts, atol=1e-5)


def test_hf_model_version_and_determinism(hf_folder, tmp_path):
    encoder = create_encoder(f"hf:{hf_folder}")
    clear_encoder_cache()
    again = create_encoder(f"hf:{hf_folder}")
    assert encoder is not again
    np.testing.assert_array_equal(encoder.encode_texts(TEXTS), again.encode_texts(TEXTS))
    np.testing.assert_array_equal(encoder.encode_images(_images()), again.encode_images(_images()))
    weights = hf_folder / "model.safetensors"
    kind = "siglip" if "siglip" in hf_folder.name else "clip"
    assert encoder.version == f"hf:{kind}:{hf_folder.name}@sha256:{_sha256(weights)}"
    retrained = save_hf_model(tmp_path / hf_folder.name, kind, seed=3)
    assert create_encoder(f"hf:{retrained}").version != encoder.version


def test_hf_missing_folder_and_offline_hub_id_are_encoder_errors(tmp_path, monkeypatch):
    import huggingface_hub.constants as hub_constants

    with pytest.raises(EncoderError, match="does not exist"):
        create_encoder(f"hf:{tmp_path / 'nothing-here'}")
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(EncoderError, match=r"save_pretrained\(\).*HF_HOME"):
        create_encoder("hf:openai/clip-vit-base-patch32")


def test_hf_text_only_model_is_refused(tmp_path):
    from transformers import BertConfig, BertModel

    from tiny_clip import char_tokenizer

    folder = tmp_path / "bert"
    BertModel(
        BertConfig(
            vocab_size=80,
            hidden_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=16,
        )
    ).save_pretrained(folder)
    char_tokenizer().save_pretrained(folder)
    from transformers import CLIPImageProcessor

    CLIPImageProcessor().save_pretrained(folder)
    with pytest.raises(EncoderError, match="does not embed both images and texts"):
        create_encoder(f"hf:{folder}")


# --- threads --------------------------------------------------------------------------


def test_thread_count_is_applied_while_encoding_and_restored(monkeypatch):
    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    monkeypatch.setenv(THREADS_ENV, "1")
    assert threads_from_env() == 1
    monkeypatch.setenv(THREADS_ENV, "zero")
    with pytest.raises(EncoderError, match=THREADS_ENV):
        threads_from_env()
    monkeypatch.delenv(THREADS_ENV)
    assert threads_from_env() is None


def test_encoder_runs_with_the_configured_threads(oc_folder, monkeypatch):
    monkeypatch.setenv(THREADS_ENV, "1")
    encoder = create_encoder(f"open_clip:{oc_folder}")
    seen: list[int] = []
    original = encoder._image_features  # type: ignore[attr-defined]

    def spy(images):
        seen.append(torch.get_num_threads())
        return original(images)

    monkeypatch.setattr(encoder, "_image_features", spy)
    before = torch.get_num_threads()
    encoder.encode_images(_images()[:2])
    assert seen == [1] and torch.get_num_threads() == before
