"""Moderation as a service: the request body, its bounds, and one evaluation per request.

``POST /v1/moderate`` takes untrusted images and text from callers who may upload
content (the ``ingest`` permission: who may submit content may ask whether it would
pass). Everything is bounded before work starts: the body by the service's upload
limit (``max_upload_bytes``, in the middleware), the number of images by
``MAX_IMAGES``, each image by ``max_image_bytes`` and its decode by the process-wide
pixel budget that query images share (``query_images.QUERY_DECODES``), text by field
count and length. Policies come from the workspace (``moderation/store.py``), kept in
memory while their installed files are unchanged.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from mmsearch.config import Settings
from mmsearch.errors import QueryError
from mmsearch.media.images import ImageLimits, decode_pixels
from mmsearch.moderation.evaluate import Report, moderate
from mmsearch.moderation.fingerprints import FINGERPRINT_SIDE
from mmsearch.moderation.policy import MAX_TEXT_CHARS, NAME_PATTERN
from mmsearch.moderation.store import InstalledPolicy, PolicyStore
from mmsearch.service.errors import PayloadTooLarge
from mmsearch.service.query_images import QUERY_DECODES

MAX_IMAGES = 16
MAX_FIELDS = 50
MAX_ATTRIBUTES = 100
MAX_POLICY_CHARS = 2_000_000  # a long word list or hash list, still far under the body limit

FieldName = Annotated[str, Field(min_length=1, max_length=100)]
Scalar = str | int | float | bool | None


class ModerateImage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, max_length=200, description="shown in the evidence")
    data: str = Field(description="the image, base64 (or a data: URL)")


class ModerateBody(BaseModel):
    """Images and/or text and attributes to check against the workspace's policies."""

    model_config = ConfigDict(extra="forbid")

    images: list[ModerateImage] = Field(default_factory=list, max_length=MAX_IMAGES)
    text: dict[FieldName, Annotated[str, Field(max_length=MAX_TEXT_CHARS)]] = Field(
        default_factory=dict, max_length=MAX_FIELDS
    )
    attributes: dict[FieldName, Scalar] | None = Field(default=None, max_length=MAX_ATTRIBUTES)
    policies: list[Annotated[str, Field(pattern=NAME_PATTERN.pattern)]] | None = Field(
        default=None, max_length=50, description="policy names; default: every installed one"
    )


class PolicyBody(BaseModel):
    """A policy file's content for ``PUT /v1/admin/policies/{policy_name}``."""

    model_config = ConfigDict(extra="forbid")

    text: str = Field(max_length=MAX_POLICY_CHARS, description="the policy file's content")
    format: Literal["toml", "yaml"] = "toml"


def limits_of(settings: Settings) -> ImageLimits:
    return ImageLimits(settings.max_image_bytes, settings.max_image_pixels)


def decode_base64(encoded: str, limit: int, what: str) -> bytes:
    """Base64 (or a ``data:`` URL) to bytes, refused before decoding when over ``limit``."""
    if encoded.startswith("data:"):
        encoded = encoded.partition(",")[2]
    if len(encoded) * 3 // 4 > limit:
        raise PayloadTooLarge(f"{what} is over the limit of {limit} bytes.")
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise QueryError(f"{what} is not valid base64.") from None


def list_policies(settings: Settings) -> list[dict[str, Any]]:
    store = PolicyStore(settings.home)
    return [
        {"name": name, "version": policy.version, "rules": [r.id for r in policy.rules]}
        for name, policy in ((n, store.read(n)) for n in store.names())
    ]


def install_policy(
    settings: Settings, name: str, body: PolicyBody, check_folder: Callable[[Path], Path]
) -> dict[str, Any]:
    installed = PolicyStore(settings.home, limits_of(settings)).install_text(
        name, body.text, body.format, check_folder
    )
    return {
        "name": name,
        "version": installed.version,
        "rules": [r.id for r in installed.policy.rules],
        "banned_images": sum(len(b) for b in installed.banned.values()),
    }


def run_moderation(
    settings: Settings,
    images: list[tuple[str, bytes]],
    text: dict[str, str],
    attributes: dict[str, Any] | None,
    names: list[str] | None,
) -> dict[str, Any]:
    """Evaluate the named (or all) installed policies; the report as JSON."""
    if not images and not text and attributes is None:
        raise QueryError("Send images, text or attributes to check.")
    if len(images) > MAX_IMAGES:
        raise PayloadTooLarge(f"At most {MAX_IMAGES} images per request.")
    limits = limits_of(settings)
    store = PolicyStore(settings.home, limits)
    chosen = names or store.names()
    if not chosen:
        raise QueryError("No moderation policies are installed (mmsearch policy add NAME FILE).")
    policies: list[InstalledPolicy] = [store.load_cached(name) for name in chosen]
    report = Report(policies=[f"{p.name} v{p.version}" for p in policies])
    for source, data in images:
        pixels = decode_pixels(data, FINGERPRINT_SIDE)
        if 0 < pixels <= limits.max_pixels:
            with QUERY_DECODES.hold(pixels):
                one = moderate(policies, [(source, data)], limits=limits)
        else:  # refused from its header by the bounded loader: nothing to hold
            one = moderate(policies, [(source, data)], limits=limits)
        report.decisions.extend(one.decisions)
        report.images.extend(one.images)
    rest = moderate(policies, (), text or None, attributes, limits=limits)
    report.decisions.extend(rest.decisions)
    return report.as_json()
