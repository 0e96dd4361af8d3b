"""CLIP-family encoders run by open_clip (``pip install 'mmsearch[clip]'``).

Three spec forms, all embedding images and texts into one space:

``open_clip:<arch>:<pretrained-tag>``
    A built-in architecture with one of open_clip's published weights, e.g.
    ``open_clip:ViT-B-32:laion2b_s34b_b79k``. open_clip downloads them on first use
    into the Hugging Face cache (``HF_HOME``); offline, they must already be there.
``open_clip:<arch>:<path/to/weights.safetensors|.bin|.pt|.pth>``
    A built-in architecture with a checkpoint file on disk (no network).
``open_clip:<folder>`` (or ``open_clip:local-dir:<folder>``)
    A folder holding ``open_clip_config.json`` (``{"model_cfg": {...},
    "preprocess_cfg": {...}}``, the layout open_clip's ``local-dir:`` schema and the
    Hugging Face hub use) next to one checkpoint (``open_clip_model.safetensors`` is
    preferred). This is how a custom architecture is supplied, and how any model
    is moved to an offline machine: download once, copy the folder.

A model is never created with random weights: a missing checkpoint is an error that
says how to supply one. The version is the model id plus the sha256 of the weights.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmsearch.encoders.base import register
from mmsearch.encoders.clip_common import WEIGHT_SUFFIXES, DualEncoder
from mmsearch.encoders.device import device_from_env
from mmsearch.errors import EncoderError

if TYPE_CHECKING:
    import torch
    from PIL import Image

CONFIG_FILE = "open_clip_config.json"
LOCAL_DIR_PREFIX = "local-dir:"
HOW_TO_SUPPLY = (
    "To use it offline, supply the weights yourself: "
    "open_clip:<arch>:/path/to/open_clip_model.safetensors (a checkpoint file), or "
    "open_clip:/path/to/folder (a folder with open_clip_config.json and the checkpoint), "
    "or download the tag once on a connected machine and copy its Hugging Face cache "
    "(HF_HOME) here."
)


class OpenClipEncoder(DualEncoder):
    """An open_clip model with its eval transform and tokenizer."""

    def __init__(
        self,
        *,
        name: str,
        model_id: str,
        model: Any,
        preprocess: Any,
        tokenizer: Any,
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
        self.preprocess = preprocess
        self.tokenizer = tokenizer

    def _image_features(self, images: list[Image.Image]) -> torch.Tensor:
        import torch

        pixels = torch.stack([self.preprocess(image) for image in images])
        return self.model.encode_image(pixels.to(self.device))

    def _text_features(self, texts: list[str]) -> torch.Tensor:
        return self.model.encode_text(self.tokenizer(texts).to(self.device))


@register("open_clip")
def create_open_clip_encoder(argument: str | None) -> OpenClipEncoder:
    if not argument:
        raise EncoderError(
            "Use open_clip:<arch>:<pretrained-tag-or-weights-file> "
            "(e.g. open_clip:ViT-B-32:laion2b_s34b_b79k) or open_clip:<folder>."
        )
    open_clip = _import_open_clip()
    spec = f"open_clip:{argument}"
    folder = _as_folder(argument)
    if folder is not None:
        return _from_folder(open_clip, spec, folder)
    arch, _, source = argument.partition(":")
    if not source:
        raise EncoderError(
            f"'{spec}' names no weights. Use open_clip:{arch}:<pretrained-tag> or "
            f"open_clip:{arch}:/path/to/weights (random weights are never used)."
        )
    config = open_clip.get_model_config(arch)
    if config is None:
        raise EncoderError(
            f"open_clip has no architecture '{arch}' (see open_clip.list_models()); for a "
            f"custom one use open_clip:<folder> with {CONFIG_FILE} and the weights."
        )
    if _looks_like_path(source):
        return _from_file(open_clip, spec, arch, Path(source).expanduser(), config)
    return _from_tag(open_clip, spec, arch, source, config)


def _import_open_clip() -> Any:
    try:
        import open_clip
    except ImportError as exc:
        raise EncoderError(
            "open_clip encoders need the 'clip' extra: pip install 'mmsearch[clip]' "
            "(open_clip_torch and torchvision)."
        ) from exc
    return open_clip


def _as_folder(argument: str) -> Path | None:
    explicit = argument.startswith(LOCAL_DIR_PREFIX)
    path = Path(argument.removeprefix(LOCAL_DIR_PREFIX)).expanduser()
    if path.is_dir():
        return path.resolve()
    if explicit or argument.startswith(("/", "./", "../", "~")):
        raise EncoderError(
            f"open_clip model folder {path} does not exist; it should hold {CONFIG_FILE} "
            "and the checkpoint (e.g. open_clip_model.safetensors)."
        )
    return None


def _looks_like_path(source: str) -> bool:
    return "/" in source or "\\" in source or source.endswith(WEIGHT_SUFFIXES)


def _from_folder(open_clip: Any, spec: str, folder: Path) -> OpenClipEncoder:
    config_path = folder / CONFIG_FILE
    if not config_path.is_file():
        raise EncoderError(
            f"{folder} has no {CONFIG_FILE}; write one with the model's 'model_cfg' "
            "(and optional 'preprocess_cfg'), as open_clip's local-dir layout expects."
        )
    try:
        raw = config_path.read_bytes()
        model_cfg = json.loads(raw)["model_cfg"]
        dim = int(model_cfg["embed_dim"])
    except (ValueError, KeyError, TypeError) as exc:
        raise EncoderError(
            f"{config_path} is not a valid open_clip config (needs model_cfg.embed_dim): {exc}"
        ) from exc
    checkpoint = _folder_checkpoint(open_clip, folder)
    config_digest = hashlib.sha256(raw).hexdigest()[:12]
    model_id = f"open_clip:{LOCAL_DIR_PREFIX}{folder.name}#config-{config_digest}"
    return _build(open_clip, spec, f"{LOCAL_DIR_PREFIX}{folder}", None, model_id, dim, checkpoint)


def _folder_checkpoint(open_clip: Any, folder: Path) -> Path:
    """The checkpoint open_clip will load from the folder (same preference order)."""
    from open_clip.factory import _find_checkpoint_in_dir

    found = _find_checkpoint_in_dir(folder)
    if not found:
        raise EncoderError(
            f"{folder} has {CONFIG_FILE} but no weights (*.safetensors, *.bin or *.pth); "
            "copy the model's checkpoint into it (random weights are never used)."
        )
    return Path(found)


def _from_file(
    open_clip: Any, spec: str, arch: str, path: Path, config: dict[str, Any]
) -> OpenClipEncoder:
    if not path.is_file():
        raise EncoderError(f"open_clip weights file {path} does not exist. {HOW_TO_SUPPLY}")
    dim = int(config["embed_dim"])
    return _build(open_clip, spec, arch, str(path), f"open_clip:{arch}", dim, path)


def _from_tag(
    open_clip: Any, spec: str, arch: str, tag: str, config: dict[str, Any]
) -> OpenClipEncoder:
    tag_cfg = open_clip.get_pretrained_cfg(arch, tag)
    if not tag_cfg:
        tags = ", ".join(open_clip.list_pretrained_tags_by_model(arch)) or "none"
        raise EncoderError(
            f"'{tag}' is neither an open_clip pretrained tag for {arch} (known: {tags}) "
            "nor a weights file path."
        )
    try:
        from open_clip.pretrained import download_pretrained

        checkpoint = download_pretrained(tag_cfg)
    except Exception as exc:  # hub errors, offline mode, HTTP errors: all mean "no weights"
        raise EncoderError(
            f"Cannot get the weights of open_clip model {arch} ({tag}): they are not in the "
            f"local cache and could not be downloaded ({type(exc).__name__}: {exc}). "
            f"{HOW_TO_SUPPLY}"
        ) from exc
    if not checkpoint:
        raise EncoderError(f"open_clip has no download location for {arch} ({tag}).")
    dim = int(config["embed_dim"])
    return _build(open_clip, spec, arch, tag, f"open_clip:{arch}:{tag}", dim, Path(checkpoint))


def _build(
    open_clip: Any,
    spec: str,
    name: str,
    pretrained: str | None,
    model_id: str,
    dim: int,
    checkpoint: Path,
) -> OpenClipEncoder:
    """Model, transform and tokenizer for ``name``, wrapped; ``checkpoint`` is what gets hashed."""
    model, preprocess = _create(open_clip, spec, name, pretrained)
    return OpenClipEncoder(
        name=spec,
        model_id=model_id,
        model=model,
        preprocess=preprocess,
        tokenizer=_tokenizer(open_clip, spec, name),
        dim=dim,
        weights=[checkpoint],
    )


def _create(open_clip: Any, spec: str, name: str, pretrained: str | None) -> tuple[Any, Any]:
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(
            name, pretrained=pretrained, device=device_from_env()
        )
    except Exception as exc:  # open_clip raises RuntimeError, ValueError, OSError...
        raise EncoderError(
            f"Cannot load open_clip model '{spec}': {type(exc).__name__}: {exc}. "
            "Check that the checkpoint matches the architecture."
        ) from exc
    return model, preprocess


def _tokenizer(open_clip: Any, spec: str, name: str) -> Any:
    try:
        return open_clip.get_tokenizer(name)
    except Exception as exc:  # a hub-hosted tokenizer that is not cached, offline
        raise EncoderError(
            f"Cannot load the tokenizer of open_clip model '{spec}': {exc}. Models with a "
            "Hugging Face tokenizer need it in the local cache (HF_HOME) or in the model folder."
        ) from exc
