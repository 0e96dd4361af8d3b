"""``mmsearch policy apply``: judge a collection's stored items again by its policy.

After a policy changes (a new version, a new banned image, an approved false match),
items already indexed still carry the decisions of the old rules. Applying reads each
live item's stored texts, attributes and image fingerprints (computed at ingest, so
nothing is decoded again; an item ingested before the policy was bound has its images
read back once and its fingerprints stored), evaluates the bound policy, and writes
the decisions that changed as one new table version.

What each outcome means for an item already in the index:

* a new ``block`` cannot un-index it: it is stored as hidden and pending review, so
  search leaves it out until a reviewer rejects it (it stays out) or approves it;
* ``quarantine`` and ``hide`` hide it, ``flag`` marks it; pending review;
* a decision that is the same finding as before (same action and rule) keeps its
  review: an approved item is not sent back to the queue;
* an item no rule matches any more is cleared (visible, no decision).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from mmsearch.clock import utc_now
from mmsearch.config import Settings
from mmsearch.errors import ImageError, MMSearchError
from mmsearch.ingest.moderating import IngestModeration, bound_moderation
from mmsearch.ingest.moderation_writes import (
    DecisionChange,
    Lock,
    live_for_moderation,
    write_decisions,
)
from mmsearch.ingest.stored_images import StoredImages
from mmsearch.media.images import ImageLimits
from mmsearch.moderation.decisions import (
    DECISION_COLUMN,
    FINGERPRINTS_COLUMN,
    ItemDecision,
    carry_review,
    decide,
    fingerprints_json,
    read_decision,
    read_fingerprints,
)
from mmsearch.moderation.evaluate import moderate
from mmsearch.moderation.fingerprints import Fingerprint, fingerprint_bytes
from mmsearch.workspace import CollectionDir
from mmsearch.writer_lock import collection_writer

SCAN_BATCH_ROWS = 2_000
OUTCOMES = ("blocked", "quarantined", "hidden", "flagged", "cleared")
_OUTCOME = {"block": "blocked", "quarantine": "quarantined", "hide": "hidden", "flag": "flagged"}
IDS_IN_REPORT = 100


@dataclass
class ApplyReport:
    collection: str
    policy: str
    build_id: str
    items: int = 0
    fingerprinted: int = 0  # items whose images were read because no fingerprint was stored
    image_errors: list[str] = field(default_factory=list)
    # outcome → ids newly in it (``blocked``: a block rule now matches the stored item)
    changed: dict[str, list[str]] = field(default_factory=lambda: {k: [] for k in OUTCOMES})
    written: int = 0
    table_version: int | None = None
    seconds: float = 0.0

    def as_json(self) -> dict[str, Any]:
        return {
            "collection": self.collection,
            "policy": self.policy,
            "build_id": self.build_id,
            "items": self.items,
            "fingerprinted": self.fingerprinted,
            "image_errors": self.image_errors[:IDS_IN_REPORT],
            "changed": {k: len(v) for k, v in self.changed.items()},
            "changed_ids": {k: v[:IDS_IN_REPORT] for k, v in self.changed.items()},
            "written": self.written,
            "table_version": self.table_version,
            "seconds": round(self.seconds, 3),
        }


def apply_policy(
    collection: CollectionDir,
    settings: Settings,
    *,
    actor: str,
    dry_run: bool = False,
    fetch: bool = False,
    lock: Lock | None = None,
) -> ApplyReport:
    """Re-evaluate every live item by the bound policy; write what changed."""
    started = time.perf_counter()
    moderation = bound_moderation(collection, settings)
    if moderation is None:
        raise MMSearchError(
            f"Collection '{collection.name}' enforces no policy; bind one first: "
            f"mmsearch policy bind -c {collection.name} POLICY"
        )
    hold = lock or (lambda: collection_writer(collection.folder, purpose="mmsearch policy apply"))
    with hold():
        manifest, index = live_for_moderation(collection, settings)
        report = ApplyReport(collection.name, moderation.policy.name, manifest.build_id)
        attributes = [a.column for a in manifest.attributes]
        columns = [
            "id",
            "title",
            "texts_json",
            "image_text",
            "images",
            "image_sha256",
            FINGERPRINTS_COLUMN,
            DECISION_COLUMN,
            *attributes,
        ]
        at = utc_now()
        limits = ImageLimits(settings.max_image_bytes, settings.max_image_pixels)
        changes: dict[str, DecisionChange] = {}
        images = StoredImages(settings, fetch=fetch)
        try:
            table = index.scan(columns)
            for start in range(0, table.num_rows, SCAN_BATCH_ROWS):
                for row in table.slice(start, SCAN_BATCH_ROWS).to_pylist():
                    report.items += 1
                    change = _judge(row, attributes, moderation, images, report, at, limits)
                    if change is not None:
                        changes[row["id"]] = change
        finally:
            images.close()
        report.written = len(changes)
        if not dry_run:
            report.table_version = write_decisions(
                collection, manifest, index, changes, actor=actor
            )
    report.seconds = time.perf_counter() - started
    return report


def _judge(
    row: dict[str, Any],
    attributes: list[str],
    moderation: IngestModeration,
    images: StoredImages,
    report: ApplyReport,
    at: str,
    limits: ImageLimits,
) -> DecisionChange | None:
    """The item's change, or None when its stored decision stands."""
    item_id = row["id"]
    fingerprints = read_fingerprints(row.get(FINGERPRINTS_COLUMN))
    fresh: str | None = None
    paths = list(row.get("images") or [])
    # Fewer stored than images: the list was capped (``fingerprints_json``), so the
    # item is fingerprinted again rather than judged on its first images only.
    if (fingerprints is None or len(fingerprints) < len(paths)) and paths:
        try:
            capped = fingerprints is not None
            fingerprints = _fingerprint(images, row, limits)
            fresh = None if capped else fingerprints_json(fingerprints)
            report.fingerprinted += 1
        except ImageError as exc:
            report.image_errors.append(f"{item_id}: {exc}")
            fingerprints = []
    texts = {"title": row.get("title") or "", **json.loads(row.get("texts_json") or "{}")}
    texts["image_text"] = row.get("image_text") or ""
    evaluation = moderate(
        [moderation.policy],
        text=texts,
        attributes={name: row.get(name) for name in attributes},
        fingerprints=list(zip(paths, fingerprints or [], strict=False)),
    )
    old = read_decision(row, item_id)
    new = carry_review(decide(evaluation, at), old)
    if _key(new) == _key(old):
        return DecisionChange(old, fresh) if fresh is not None else None
    if new is None:
        report.changed["cleared"].append(item_id)
    elif old is None or not new.same_finding(old):
        report.changed[_OUTCOME[new.action]].append(item_id)
    return DecisionChange(new, fresh)


def _key(decision: ItemDecision | None) -> tuple[str, str, str, str] | None:
    if decision is None:
        return None
    return (decision.action, decision.rule, decision.policy_label, decision.state)


def _fingerprint(
    images: StoredImages, row: dict[str, Any], limits: ImageLimits
) -> list[Fingerprint]:
    paths = list(row.get("images") or [])
    return [
        fingerprint_bytes(data, source=path, limits=limits)
        for path, data in zip(paths, images.load(row), strict=True)
    ]
