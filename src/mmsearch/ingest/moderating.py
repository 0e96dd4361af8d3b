"""The collection's moderation policy, applied to each item as it is ingested.

A collection bound to a policy (``mmsearch policy bind``) has every item it ingests
evaluated with that policy: its images by the fingerprints computed from the pixels
the encoders are given anyway (no second decode), its title, text fields and OCR
text by the text rules, its attributes by the attribute rules. The decision goes into
the item's row (``moderation/decisions.py``); ``block`` is a row error naming the
record, the rule and the match instead, so a blocked item is never indexed and is
counted like any other failed row.

Images are fingerprinted as decoded for the encoders (at most
``ingest_image_max_side`` on a side): PDQ reads a 64x64 reduction, so its hash is the
same, and "same bytes" holds whatever the size; only "same pixels" is judged on the
reduced image for pictures larger than that side.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from PIL import Image

from mmsearch.catalog.item import Item, RowError
from mmsearch.config import Settings
from mmsearch.errors import MMSearchError
from mmsearch.media.images import ImageLimits
from mmsearch.moderation.decisions import (
    DECISION_COLUMN,
    FINGERPRINTS_COLUMN,
    ItemDecision,
    decide,
    fingerprints_json,
    row_values,
)
from mmsearch.moderation.evaluate import moderate
from mmsearch.moderation.fingerprints import Fingerprint, fingerprint_image
from mmsearch.moderation.store import InstalledPolicy, PolicyStore
from mmsearch.workspace import CollectionDir


@dataclass(frozen=True)
class IngestModeration:
    """The bound policy, loaded once per run."""

    policy: InstalledPolicy

    def fingerprints(self, images: list[Image.Image], sha256: list[str]) -> list[Fingerprint]:
        return [
            fingerprint_image(image, digest) for image, digest in zip(images, sha256, strict=True)
        ]

    def decide(self, item: Item, fingerprints: list[Fingerprint], at: str) -> ItemDecision | None:
        report = moderate(
            [self.policy],
            text=item_texts(item),
            attributes=item.attributes,
            fingerprints=list(zip(item.images, fingerprints, strict=True)),
        )
        return decide(report, at)

    def check_columns(self, collection: str, schema_names: list[str]) -> None:
        """Refuse a build made before items could store decisions."""
        if DECISION_COLUMN not in schema_names:
            raise MMSearchError(
                f"Collection '{collection}' enforces policy '{self.policy.name}', but its "
                "live build was made before items could store moderation decisions. "
                "Re-ingest the catalog with --new-build, or unbind the policy: "
                f"mmsearch policy unbind -c {collection}"
            )

    def columns(
        self, fingerprints: list[Fingerprint], decision: ItemDecision | None
    ) -> dict[str, Any]:
        """The row's moderation columns for this decision."""
        return {FINGERPRINTS_COLUMN: fingerprints_json(fingerprints), **row_values(decision)}


def item_texts(item: Item) -> dict[str, str]:
    """The fields text rules read: ``title``, each text field, ``image_text`` (OCR)."""
    return {"title": item.title, **item.texts, "image_text": item.image_text}


def blocked(item: Item, decision: ItemDecision) -> RowError:
    """The row error of an item a ``block`` rule keeps out of the index."""
    evidence = decision.evidence[0] if decision.evidence else None
    why = ""
    if evidence is not None and evidence.condition == "banned_images":
        distance = f", distance {evidence.distance}" if evidence.distance is not None else ""
        why = (
            f": image {evidence.image} matches banned {evidence.banned} ({evidence.kind}{distance})"
        )
    elif evidence is not None and evidence.condition == "text":
        why = f": field {evidence.field} matches {evidence.pattern!r} ({evidence.matched!r})"
    elif evidence is not None and evidence.where:
        why = f": attributes match {evidence.where!r}"
    reason = f"blocked by policy {decision.policy_label}, rule {decision.rule}{why}"
    return RowError(item.source, item.row, reason, "policy", item.id)


def bound_moderation(collection: CollectionDir, settings: Settings) -> IngestModeration | None:
    """The collection's bound policy, loaded, or None when it enforces none."""
    binding = collection.state().moderation
    if binding is None:
        return None
    limits = ImageLimits(settings.max_image_bytes, settings.max_image_pixels)
    return IngestModeration(PolicyStore(settings.home, limits).load(binding.policy))
