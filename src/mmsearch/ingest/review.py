"""Human review of moderation decisions: the queue, one item, a verdict.

The queue is read from the live build itself (rows with a decision in a given review
state), so it cannot disagree with what search hides. A verdict is stored in the item's
row (``ingest/moderation_writes.py``): ``approve`` makes the item visible and keeps it
so while the same finding stands (``policy apply`` carries the review over);
``reject`` confirms the decision and keeps the item out of search. Every verdict names
the reviewer, the time and a reason, is kept in the decision's ``reviews``, and is
audited by the caller (the CLI and the service audit their own acts).

An approved banned-image match is a false match: its pairs (the rule, the item image's
PDQ hash, the banned image's) go on the policy's allow list (``moderation/store.py``),
so neither ``policy apply`` nor a later ingest of the same picture reports it again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from mmsearch.clock import utc_now
from mmsearch.config import Settings
from mmsearch.errors import MMSearchError, QueryError
from mmsearch.filters.expr import Filter, InList, IsNull, all_of
from mmsearch.index.base import BuildReader
from mmsearch.index.open import open_build_index
from mmsearch.ingest.moderation_writes import (
    DecisionChange,
    Lock,
    live_for_moderation,
    write_decisions,
)
from mmsearch.media.images import ImageLimits
from mmsearch.moderation.decisions import (
    ACTION_COLUMN,
    DECISION_COLUMN,
    FINGERPRINTS_COLUMN,
    MAX_REVIEWS,
    STATE_COLUMN,
    ItemDecision,
    Review,
    ReviewState,
    Verdict,
    read_decision,
)
from mmsearch.moderation.store import AllowedPair, PolicyStore
from mmsearch.workspace import CollectionDir
from mmsearch.writer_lock import collection_writer

MAX_REASON_CHARS = 2_000
MAX_QUEUE = 1_000
REVIEW_STATES: tuple[ReviewState, ...] = ("pending", "approved", "rejected")


class ReviewNotFound(MMSearchError):
    """No item with a moderation decision by that id (or none at all)."""


@dataclass(frozen=True)
class QueueEntry:
    id: str
    title: str
    decision: ItemDecision

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "action": self.decision.action,
            "rule": self.decision.rule,
            "policy": self.decision.policy_label,
            "state": self.decision.state,
            "hidden": self.decision.hidden,
            "decided_at": self.decision.decided_at,
        }


def _reader(collection: CollectionDir, settings: Settings) -> BuildReader:
    return open_build_index(collection, collection.live_manifest(), settings)


def review_queue(
    collection: CollectionDir,
    settings: Settings,
    state: str | None = "pending",
    access: Filter | None = None,
    limit: int = MAX_QUEUE,
) -> list[QueueEntry]:
    """Items with a decision in ``state`` (any state for None), oldest decision first;
    ``access`` restricts them to what the reviewer may see."""
    if state is not None and state not in REVIEW_STATES:
        raise QueryError(f"A review state is one of {', '.join(REVIEW_STATES)}, not {state!r}.")
    index = _reader(collection, settings)
    if DECISION_COLUMN not in index.schema.names:
        return []
    where = all_of(
        IsNull(ACTION_COLUMN, negated=True),
        InList(STATE_COLUMN, (state,)) if state is not None else None,
        access,
    )
    rows = index.scan(["id", "title", DECISION_COLUMN], where).to_pylist()
    found = [
        QueueEntry(row["id"], row.get("title") or "", decision)
        for row in rows
        if (decision := read_decision(row, row["id"])) is not None
    ]
    found.sort(key=lambda entry: (entry.decision.decided_at, entry.id))
    return found[:limit]


def review_item(
    collection: CollectionDir, settings: Settings, item_id: str, access: Filter | None = None
) -> dict[str, Any]:
    """Everything a reviewer needs about one item: its stored fields (no vectors), the
    decision with its evidence and past reviews."""
    index = _reader(collection, settings)
    columns = [
        f.name
        for f in index.schema
        if not f.name.startswith("vector_") and f.name != FINGERPRINTS_COLUMN
    ]
    rows = index.get([item_id], columns, access) if DECISION_COLUMN in index.schema.names else []
    decision = read_decision(rows[0], item_id) if rows else None
    if not rows or decision is None:
        raise ReviewNotFound(
            f"No item '{item_id}' with a moderation decision in collection '{collection.name}'."
        )
    row = rows[0]
    row["texts"] = json.loads(row.pop("texts_json", None) or "{}")
    row.pop(DECISION_COLUMN, None)
    row["decision"] = decision.model_dump(mode="json", exclude_none=True)
    return row


def record_verdict(
    collection: CollectionDir,
    settings: Settings,
    item_id: str,
    verdict: Verdict,
    reason: str,
    *,
    reviewer: str,
    access: Filter | None = None,
    lock: Lock | None = None,
) -> tuple[ItemDecision, int]:
    """Store ``verdict`` on the item's decision; returns it and the allow-listed pairs
    added (approvals of banned-image matches)."""
    reason = reason.strip()
    if not reason:
        raise QueryError("A review needs a reason (--reason): say why, for the audit trail.")
    if len(reason) > MAX_REASON_CHARS:
        raise QueryError(f"A review reason is at most {MAX_REASON_CHARS} characters.")
    hold = lock or (lambda: collection_writer(collection.folder, purpose="mmsearch review"))
    with hold():
        manifest, index = live_for_moderation(collection, settings)
        rows = index.get([item_id], ["id", DECISION_COLUMN], access)
        old = read_decision(rows[0], item_id) if rows else None
        if old is None:
            raise ReviewNotFound(
                f"No item '{item_id}' with a moderation decision in collection '{collection.name}'."
            )
        review = Review(reviewer=reviewer, at=utc_now(), verdict=verdict, reason=reason)
        state: ReviewState = "approved" if verdict == "approve" else "rejected"
        new = old.model_copy(
            update={"state": state, "reviews": [*old.reviews, review][-MAX_REVIEWS:]}
        )
        allowed = 0
        if verdict == "approve":
            allowed = _allow(settings, collection, item_id, new, review)
        write_decisions(collection, manifest, index, {item_id: DecisionChange(new)}, actor=reviewer)
    return new, allowed


def _allow(
    settings: Settings,
    collection: CollectionDir,
    item_id: str,
    decision: ItemDecision,
    review: Review,
) -> int:
    """Put the approved decision's banned-image matches on its policy's allow list."""
    pairs = [
        AllowedPair(
            rule=e.rule,
            item_pdq=e.item_pdq,
            banned_pdq=e.banned_pdq,
            banned=e.banned,
            item=f"{collection.name}/{item_id}",
            by=review.reviewer,
            at=review.at,
            reason=review.reason,
        )
        for e in decision.evidence
        if e.condition == "banned_images" and e.item_pdq and e.banned_pdq
    ]
    if not pairs:
        return 0
    store = PolicyStore(settings.home, ImageLimits(settings.max_image_bytes))
    if not store.path(decision.policy).is_file():
        return 0  # the policy was removed since: there is nothing to allow in
    return store.allow(decision.policy, pairs)
