"""Which retrievers answer a request, given what the build holds.

A retriever is a (query modality → store column) pair: the keyword retriever runs
BM25 over ``search_text``; a vector retriever embeds the query with the encoder of a
role and searches that role's vector column. Planning is separate from running so
that evaluation can compare subsets of signals on equal terms.

When the build's ``image`` encoder is CLIP-family (it embeds texts too, in the same
space as its image vectors), the build is *cross-modal* and two more retrievers
exist: ``text_to_image`` (the text query, embedded by the image encoder, against the
image vectors) and, for a text+image query, ``text_image`` (the normalised blend
``(1 - w) * text + w * image`` of both query embeddings, against the image vectors).
The blend asks for "this picture, but in the colour / style the words say", which
separate per-signal lists cannot express.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from mmsearch.errors import QueryError
from mmsearch.index.schema import vector_column
from mmsearch.manifest import EncoderDescription

KEYWORD, TEXT_VECTOR, IMAGE_VECTOR = "keyword", "text_vector", "image_vector"
TEXT_TO_IMAGE, TEXT_IMAGE = "text_to_image", "text_image"
SIGNALS = (KEYWORD, TEXT_VECTOR, TEXT_TO_IMAGE, IMAGE_VECTOR, TEXT_IMAGE)
DEFAULT_IMAGE_WEIGHT = 0.5
QueryModality = Literal["text", "image", "text+image"]
EmbeddingKey = tuple[str, str]  # (encoder role, query modality)


@dataclass(frozen=True)
class RetrieverPlan:
    name: str
    kind: Literal["keyword", "vector"]
    query_modality: QueryModality
    role: str | None = None  # encoder role whose vectors are searched

    @property
    def column(self) -> str | None:
        return vector_column(self.role) if self.role else None

    @property
    def embeddings(self) -> tuple[EmbeddingKey, ...]:
        """The query embeddings this retriever's vector is made from (embed each once)."""
        if self.kind != "vector" or self.role is None:
            return ()
        if self.query_modality == "text+image":
            return ((self.role, "text"), (self.role, "image"))
        return ((self.role, self.query_modality),)

    def query_vector(self, parts: Sequence[np.ndarray], image_weight: float) -> np.ndarray:
        """The vector to search with, from the embeddings named by ``embeddings``."""
        if self.query_modality == "text+image":
            text, image = parts
            return blend_query_vectors(text, image, image_weight)
        return parts[0]


def blend_query_vectors(text: np.ndarray, image: np.ndarray, image_weight: float) -> np.ndarray:
    """L2-normalised ``(1 - w) * text + w * image``: w = 0 is the text, w = 1 the image."""
    mixed = (1.0 - image_weight) * np.asarray(text, dtype=np.float32) + image_weight * np.asarray(
        image, dtype=np.float32
    )
    norm = float(np.linalg.norm(mixed))
    if norm <= 1e-12:  # opposite unit vectors at w = 0.5: no direction is preferred
        raise QueryError(
            "The text and image of this query cancel out at this image_weight; "
            "choose a weight closer to 0 or 1."
        )
    return (mixed / norm).astype(np.float32)


def is_cross_modal(encoders: dict[str, EncoderDescription]) -> bool:
    """True when the build's image encoder also embeds text into the image vector space."""
    image = encoders.get("image")
    return image is not None and "text" in image.modalities


def check_image_weight(image_weight: float, encoders: dict[str, EncoderDescription]) -> None:
    if not (math.isfinite(image_weight) and 0.0 <= image_weight <= 1.0):
        raise QueryError(f"image_weight must be between 0 and 1, got {image_weight}.")
    if image_weight != DEFAULT_IMAGE_WEIGHT and not is_cross_modal(encoders):
        raise QueryError(
            "image_weight blends text and image embeddings in one space, which needs a "
            "CLIP-family image encoder (open_clip:... or hf:..., chosen at ingest). "
            "This collection's image encoder embeds images only; weigh the signals in "
            "fusion instead (per-signal fusion weights)."
        )


def plan_retrievers(
    *,
    has_text: bool,
    has_image: bool,
    encoders: dict[str, EncoderDescription],
    only: list[str] | None = None,
    image_weight: float = DEFAULT_IMAGE_WEIGHT,
) -> list[RetrieverPlan]:
    """Every retriever the query and the build allow, optionally narrowed to ``only``."""
    check_image_weight(image_weight, encoders)
    cross_modal = is_cross_modal(encoders)
    plans: list[RetrieverPlan] = []
    if has_text:
        plans.append(RetrieverPlan(KEYWORD, "keyword", "text"))
        if "text" in encoders:
            plans.append(RetrieverPlan(TEXT_VECTOR, "vector", "text", "text"))
        if cross_modal:
            plans.append(RetrieverPlan(TEXT_TO_IMAGE, "vector", "text", "image"))
    if has_image:
        if "image" not in encoders:
            raise QueryError("This collection has no image vectors; search it by text.")
        plans.append(RetrieverPlan(IMAGE_VECTOR, "vector", "image", "image"))
        if has_text and cross_modal:
            plans.append(RetrieverPlan(TEXT_IMAGE, "vector", "text+image", "image"))
    if only is not None:
        known = {plan.name for plan in plans}
        unknown = [name for name in only if name not in known]
        if unknown:
            raise QueryError(
                f"Signal(s) {', '.join(unknown)} cannot answer this query; "
                f"available: {', '.join(sorted(known)) or 'none'}."
            )
        plans = [plan for plan in plans if plan.name in only]
    return plans
