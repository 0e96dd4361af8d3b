"""CLIP-family encoders run by transformers: ``hf:<model-id-or-local-folder>``.

Works with any checkpoint whose model has ``get_text_features`` and
``get_image_features`` (CLIPModel, SiglipModel and their relatives), loaded with
AutoModel, AutoTokenizer and AutoImageProcessor on the CPU in eval mode.

Offline: ``hf:/path/to/folder`` where the folder was written by
``model.save_pretrained(folder)`` and ``processor.save_pretrained(folder)`` (config,
weights, tokenizer and image-processor files). A hub id (``hf:openai/clip-vit-base-patch32``)
downloads on first use when online, and is read from the Hugging Face cache
(``HF_HOME``) otherwise. The version is the model id plus the sha256 of the weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmsearch.encoders.base import register
from mmsearch.encoders.clip_common import DualEncoder, features_tensor, weight_files
from mmsearch.encoders.device import device_from_env
from mmsearch.errors import EncoderError

if TYPE_CHECKING:
    import torch
    from PIL import Image

# SigLIP was trained on texts padded to the full length; shorter padding changes its vectors.
PAD_TO_MAX_LENGTH = {"siglip"}


class HFClipEncoder(DualEncoder):
    """A transformers dual encoder with its tokenizer and image processor."""

    def __init__(
        self,
        *,
        name: str,
        model_id: str,
        model: Any,
        tokenizer: Any,
        image_processor: Any,
        dim: int,
        weights: list[Path],
        batch_size: int | None = None,
        num_threads: int | None = None,
    ) -> None:
        super().__init__(
            name=name,
            model_id=model_id,
            dim=dim,
            weights=weights,
            batch_size=batch_size,
            num_threads=num_threads,
        )
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        text_config = getattr(model.config, "text_config", model.config)
        self.max_length = int(getattr(text_config, "max_position_embeddings", 77))
        self.padding: str | bool = (
            "max_length" if model.config.model_type in PAD_TO_MAX_LENGTH else True
        )

    def _image_features(self, images: list[Image.Image]) -> torch.Tensor:
        inputs = self.image_processor(images=images, return_tensors="pt")
        pixels = inputs["pixel_values"].to(self.device)
        return features_tensor(self.model.get_image_features(pixel_values=pixels))

    def _text_features(self, texts: list[str]) -> torch.Tensor:
        inputs = self.tokenizer(
            texts,
            padding=self.padding,
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        )
        wanted = ("input_ids", "attention_mask")
        if self.padding == "max_length":  # SigLIP's text tower takes no attention mask
            wanted = ("input_ids",)
        return features_tensor(
            self.model.get_text_features(
                **{key: inputs[key].to(self.device) for key in wanted if key in inputs}
            )
        )


@register("hf")
def create_hf_encoder(argument: str | None) -> HFClipEncoder:
    if not argument:
        raise EncoderError(
            "Use hf:<model-id-or-local-folder>, e.g. hf:/models/clip-vit-base-patch32."
        )
    local = Path(argument).expanduser()
    if argument.startswith(("/", "./", "../", "~")) and not local.is_dir():
        raise EncoderError(
            f"Model folder {local} does not exist; it should hold what "
            "model.save_pretrained() and processor.save_pretrained() write."
        )
    source = str(local.resolve()) if local.is_dir() else argument
    model, tokenizer, image_processor = _load(argument, source)
    for method in ("get_text_features", "get_image_features"):
        if not hasattr(model, method):
            raise EncoderError(
                f"'{argument}' is a {type(model).__name__}, which does not embed both images "
                "and texts; use a CLIP or SigLIP checkpoint."
            )
    weights = weight_files(local) if local.is_dir() else _cached_weights(argument)
    model_id = f"hf:{model.config.model_type}:{local.name if local.is_dir() else argument}"
    return HFClipEncoder(
        name=f"hf:{argument}",
        model_id=model_id,
        model=model,
        tokenizer=tokenizer,
        image_processor=image_processor,
        dim=_embedding_dim(model),
        weights=weights,
    )


def _load(argument: str, source: str) -> tuple[Any, Any, Any]:
    from transformers import AutoImageProcessor, AutoModel, AutoTokenizer
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    transformers_logging.set_verbosity_error()
    try:
        model = AutoModel.from_pretrained(source, device_map=None)
        tokenizer = AutoTokenizer.from_pretrained(source)
        image_processor = AutoImageProcessor.from_pretrained(source)
    except Exception as exc:  # OSError when missing/offline, ValueError for unknown types
        raise EncoderError(
            f"Cannot load transformers model '{argument}': {type(exc).__name__}: {exc}. "
            "Offline, give a local folder written by model.save_pretrained() and "
            "processor.save_pretrained() (hf:/path/to/folder), or download the model once "
            "on a connected machine and copy its Hugging Face cache (HF_HOME) here."
        ) from exc
    return model.to(device_from_env()), tokenizer, image_processor


def _embedding_dim(model: Any) -> int:
    config = model.config
    projection = getattr(config, "projection_dim", None)
    if projection:
        return int(projection)
    text_config = getattr(config, "text_config", None)
    size = getattr(text_config, "projection_size", None) or getattr(
        text_config, "hidden_size", None
    )
    if not size:
        raise EncoderError(f"Cannot tell the embedding size of '{config.model_type}' models.")
    return int(size)


def _cached_weights(model_id: str) -> list[Path]:
    """The weight files of a hub model in the local cache, to hash them for the version."""
    try:
        from huggingface_hub import snapshot_download

        folder = Path(
            snapshot_download(
                model_id,
                local_files_only=True,
                allow_patterns=["*.safetensors", "*.bin", "*.json", "*.txt"],
            )
        )
    except Exception:  # not in the cache layout (e.g. a custom cache); version says unknown
        return []
    return weight_files(folder)
