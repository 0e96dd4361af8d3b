"""The Encoder protocol and the registry that builds encoders from spec strings.

A spec is ``family`` or ``family:argument`` (``minilm``, ``visual``,
``sentence-transformers:/models/e5``). The spec, the encoder's ``name`` and its
``version`` are written into every build manifest so that a build can be reopened
later with the very same model, and a changed model is detected instead of silently
mixing vectors from two models in one index.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from mmsearch.errors import EncoderError

if TYPE_CHECKING:
    from PIL import Image

Modality = str  # "text" or "image"


@runtime_checkable
class Encoder(Protocol):
    """Turns texts and/or images into float32, L2-normalised row vectors."""

    name: str
    dim: int
    modalities: frozenset[Modality]

    @property
    def version(self) -> str:
        """Model id and weights digest; read-only (implementations may cache it)."""
        ...

    def encode_texts(self, texts: list[str]) -> np.ndarray: ...

    def encode_images(self, images: list[Image.Image]) -> np.ndarray: ...


EncoderFactory = Callable[[str | None], Encoder]
# A spec that lets the machine choose (``minilm:auto``) resolves to the spec that builds
# the same encoder again (``minilm:onnx``), plus why it was chosen: manifests record the
# resolved spec, never the choice, so a build reopens with the model that made it.
SpecResolver = Callable[[str | None], tuple[str, str | None]]

_REGISTRY: dict[str, EncoderFactory] = {}
_RESOLVERS: dict[str, SpecResolver] = {}
_CACHE: dict[str, Encoder] = {}
# One load at a time: the service warms its models in a background thread while the
# first requests may ask for the same ones, and a model loaded twice costs its time and
# memory twice. Reentrant, for factories that build on other encoders.
_LOADING = threading.RLock()


def register(family: str) -> Callable[[EncoderFactory], EncoderFactory]:
    """Register a factory that builds an encoder from the argument part of a spec."""

    def decorator(factory: EncoderFactory) -> EncoderFactory:
        _REGISTRY[family] = factory
        return factory

    return decorator


def register_resolver(family: str) -> Callable[[SpecResolver], SpecResolver]:
    """Register how a family's specs that leave a choice open resolve to concrete ones."""

    def decorator(resolver: SpecResolver) -> SpecResolver:
        _RESOLVERS[family] = resolver
        return resolver

    return decorator


def resolve_spec(spec: str) -> tuple[str, str | None]:
    """The concrete spec for ``spec`` and a note saying why, or ``spec`` itself and None."""
    _load_builtin_families()
    family, argument = parse_spec(spec)
    resolver = _RESOLVERS.get(family)
    return resolver(argument) if resolver is not None else (spec.strip(), None)


def registered_families() -> list[str]:
    _load_builtin_families()
    return sorted(_REGISTRY)


def registered_module(family: str) -> str | None:
    """The module whose factory is registered for ``family`` (``None`` if none is).

    A process that must build the same encoders elsewhere (a Ray actor) imports this
    module first, so that a plug-in family registers itself there too. Built-in families
    are not loaded by this call: only families already registered in this process count.
    """
    factory = _REGISTRY.get(family)
    module = getattr(factory, "__module__", None) if factory is not None else None
    return module or None


def parse_spec(spec: str) -> tuple[str, str | None]:
    spec = spec.strip()
    if not spec:
        raise EncoderError("An encoder spec is empty; use e.g. 'minilm' or 'visual'.")
    family, _, argument = spec.partition(":")
    return family, (argument or None)


def create_encoder(spec: str) -> Encoder:
    """Build (or reuse) the encoder for a spec; models are loaded once per process."""
    if spec in _CACHE:
        return _CACHE[spec]
    with _LOADING:
        if spec in _CACHE:  # loaded by another thread while this one waited
            return _CACHE[spec]
        _load_builtin_families()
        family, argument = parse_spec(spec)
        factory = _REGISTRY.get(family)
        if factory is None:
            known = ", ".join(sorted(_REGISTRY))
            raise EncoderError(f"Unknown encoder '{spec}'. Known encoder families: {known}.")
        encoder = factory(argument)
        _CACHE[spec] = encoder
        return encoder


def clear_encoder_cache() -> None:
    _CACHE.clear()


def _load_builtin_families() -> None:
    # Imported lazily so that importing mmsearch does not import torch.
    from mmsearch.encoders import clip_hf, clip_open, text, visual  # noqa: F401


def l2_normalise(matrix: np.ndarray) -> np.ndarray:
    """Row-normalise to unit length; all-zero rows stay zero instead of becoming NaN."""
    matrix = np.asarray(matrix, dtype=np.float32)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return (matrix / np.maximum(norms, 1e-12)).astype(np.float32)


def sha256_of_files(paths: Iterable[Path]) -> str:
    """One digest over several weight files, in name order, so a model's version is stable."""
    digest = hashlib.sha256()
    for path in sorted(paths, key=lambda p: p.as_posix()):
        digest.update(path.name.encode())
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def unsupported_modality(encoder: Encoder, modality: Modality) -> EncoderError:
    return EncoderError(
        f"Encoder '{encoder.name}' does not embed {modality}s "
        f"(it embeds: {', '.join(sorted(encoder.modalities))})."
    )
