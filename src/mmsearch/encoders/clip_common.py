"""What every CLIP-family encoder shares, whichever library runs the model.

A CLIP-family model embeds images and texts into one space, so one encoder object
serves both the ``image`` role of a build and text queries against its image vectors
(cross-modal search). The two library wrappers (``clip_open``: open_clip,
``clip_hf``: transformers) only say how to turn a batch of images or texts into
feature tensors; batching, thread control, RGB conversion, normalisation and the
version string live here so the two behave identically.

Device: ``MMSEARCH_DEVICE`` picks where torch models run: ``cpu`` (the default),
``cuda``, ``cuda:N`` or ``auto`` (a GPU when torch sees one). Vectors come back to the
CPU as float32 whatever the device, so builds made on a GPU and on a CPU are alike.

Threads: torch's global thread count is left alone unless ``MMSEARCH_TORCH_THREADS``
is set, in which case it applies while an encoder runs (and is restored after), so a
service can keep model inference from taking every core.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mmsearch.encoders.base import l2_normalise, sha256_of_files
from mmsearch.encoders.device import device_from_env
from mmsearch.errors import EncoderError
from mmsearch.media.images import to_rgb

if TYPE_CHECKING:
    import torch
    from PIL import Image

THREADS_ENV = "MMSEARCH_TORCH_THREADS"
BATCH_ENV = "MMSEARCH_CLIP_BATCH_SIZE"
DEFAULT_BATCH_SIZE = 32
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


def threads_from_env() -> int | None:
    """The thread count asked for in ``MMSEARCH_TORCH_THREADS``; None leaves torch's own."""
    raw = os.environ.get(THREADS_ENV, "").strip()
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise EncoderError(f"{THREADS_ENV} must be a whole number of at least 1 (got {raw!r}).")
    return value


def batch_size_from_env() -> int:
    raw = os.environ.get(BATCH_ENV, "").strip()
    if not raw:
        return DEFAULT_BATCH_SIZE
    if not raw.isdigit() or int(raw) < 1:
        raise EncoderError(f"{BATCH_ENV} must be a whole number of at least 1 (got {raw!r}).")
    return int(raw)


def weights_digest(files: Sequence[Path]) -> str:
    """sha256 of the weights: of the file's bytes when there is one file (so that
    ``sha256sum`` on the file shows the same digest), else over all shards in name order."""
    if not files:
        return "unknown-weights"
    if len(files) == 1:
        digest = hashlib.sha256()
        with files[0].open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        return digest.hexdigest()
    return sha256_of_files(files)


def weight_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in WEIGHT_SUFFIXES)


@contextlib.contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """Run with ``count`` intra-op threads, then restore what the process had."""
    import torch

    if count is None or count == torch.get_num_threads():
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def features_tensor(output: Any) -> torch.Tensor:
    """Library calls return either a tensor or a model output whose pooled field is it."""
    pooled = getattr(output, "pooler_output", None)
    if pooled is not None:
        return pooled
    if isinstance(output, tuple):
        return output[1 if len(output) > 1 else 0]
    return output


class DualEncoder:
    """Base of the CLIP-family encoders: one model, two modalities, one vector space.

    Subclasses implement ``_image_features`` (a list of RGB images → a tensor) and
    ``_text_features`` (a list of strings → a tensor); both run under ``no_grad``.
    """

    modalities = frozenset({"text", "image"})

    def __init__(
        self,
        *,
        name: str,
        model_id: str,
        dim: int,
        weights: Sequence[Path],
        batch_size: int | None = None,
        num_threads: int | None = None,
    ) -> None:
        self.name = name
        self.model_id = model_id
        self.dim = int(dim)
        self._weights = list(weights)
        self.batch_size = batch_size or batch_size_from_env()
        self.num_threads = num_threads if num_threads is not None else threads_from_env()
        self.device = device_from_env()
        self._version: str | None = None

    @property
    def version(self) -> str:
        """Model id plus the sha256 of the weight files: a changed checkpoint means a new build.

        Computed once (hashing the weights is slow), then kept.
        """
        if self._version is None:
            self._version = f"{self.model_id}@sha256:{weights_digest(self._weights)}"
        return self._version

    def encode_images(self, images: list[Image.Image]) -> np.ndarray:
        if not images:
            return np.zeros((0, self.dim), dtype=np.float32)
        rgb = [to_rgb(image) for image in images]
        return self._run(rgb, self._image_features)

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self._run(list(texts), self._text_features)

    def _run(self, inputs: list[Any], embed: Any) -> np.ndarray:
        import torch

        blocks: list[np.ndarray] = []
        with torch_threads(self.num_threads), torch.inference_mode():
            for start in range(0, len(inputs), self.batch_size):
                features = embed(inputs[start : start + self.batch_size])
                blocks.append(features.detach().to(torch.float32).cpu().numpy())
        return l2_normalise(np.concatenate(blocks, axis=0))

    def _image_features(self, images: list[Image.Image]) -> torch.Tensor:
        raise NotImplementedError

    def _text_features(self, texts: list[str]) -> torch.Tensor:
        raise NotImplementedError
