"""A moderation decision as stored with an item: the columns, the saved model, the states.

Policies are enforced where items are stored, so search can exclude what a policy
hides inside the store query (as it does for ACLs), before any top-k cut. Each item
row carries:

* ``moderation_action``: block, quarantine, hide or flag (NULL: no rule matched);
* ``moderation_rule`` and ``moderation_policy`` (``"name v3"``): what decided it;
* ``moderation_state``: pending until a reviewer approves or rejects it;
* ``moderation_hidden``: TRUE when search must not return the item, else NULL, so
  the store filter is one ``IS NULL`` test and a build where nothing is hidden
  needs no filter at all (``Searcher.moderation_filter``);
* ``moderation_json``: the ``ItemDecision`` (evidence and reviews) for reviewers.

What is hidden (``is_hidden``): an approved item never is; a rejected one always is;
otherwise ``block``, ``quarantine`` and ``hide`` are, ``flag`` is not. ``block`` at
ingest is a row error and never stored; ``block`` met by an item already stored
(``policy apply`` after a policy change) is stored as hidden and pending, for a
reviewer to confirm (reject) or overturn (approve).

``image_fingerprints`` holds each image's ``Fingerprint`` (JSON, catalog order),
computed at ingest from the decoded image, so ``policy apply`` re-evaluates an item
without decoding it again.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mmsearch.errors import MMSearchError
from mmsearch.moderation.evaluate import Report
from mmsearch.moderation.fingerprints import Fingerprint
from mmsearch.moderation.policy import ACTION_ORDER, Action

ACTION_COLUMN = "moderation_action"
RULE_COLUMN = "moderation_rule"
POLICY_COLUMN = "moderation_policy"
STATE_COLUMN = "moderation_state"
HIDDEN_COLUMN = "moderation_hidden"
DECISION_COLUMN = "moderation_json"
FINGERPRINTS_COLUMN = "image_fingerprints"
MODERATION_COLUMNS = (
    ACTION_COLUMN,
    RULE_COLUMN,
    POLICY_COLUMN,
    STATE_COLUMN,
    HIDDEN_COLUMN,
    DECISION_COLUMN,
)
# Evidence kept per item: the closest matches; a reviewer needs a few, not all.
MAX_EVIDENCE = 10
MAX_REVIEWS = 20
# The stored fingerprints' JSON (ASCII) stays under Milvus's VARCHAR limit (65,535 bytes).
MAX_FINGERPRINTS_CHARS = 60_000

ReviewState = Literal["pending", "approved", "rejected"]
Verdict = Literal["approve", "reject"]


class _Saved(BaseModel):
    model_config = ConfigDict(extra="ignore")


class Evidence(_Saved):
    """One matched rule: what ``moderation.evaluate.Decision`` said, minus empty fields."""

    rule: str
    action: Action
    condition: str
    image: str | None = None
    banned: str | None = None
    banned_pdq: str | None = None
    item_pdq: str | None = None  # the item's image hash that matched (for allow-listing)
    distance: int | None = None
    kind: str | None = None
    method: str | None = None  # "exact", "pdq" or "visual": which comparison matched
    cosine: float | None = None
    field: str | None = None
    pattern: str | None = None
    matched: str | None = None
    where: str | None = None


class Review(_Saved):
    reviewer: str
    at: str
    verdict: Verdict
    reason: str


class ItemDecision(_Saved):
    """What a policy decided about one item, and what reviewers said about it."""

    action: Action
    rule: str
    policy: str
    version: int
    state: ReviewState = "pending"
    decided_at: str
    evidence: list[Evidence] = Field(default_factory=list)
    reviews: list[Review] = Field(default_factory=list)

    @property
    def policy_label(self) -> str:
        return f"{self.policy} v{self.version}"

    @property
    def hidden(self) -> bool:
        return is_hidden(self.action, self.state)

    def same_finding(self, other: ItemDecision | None) -> bool:
        """The same action by the same rule: a review of one stands for the other."""
        return other is not None and (other.action, other.rule) == (self.action, self.rule)


def decide(report: Report, at: str) -> ItemDecision | None:
    """The item's decision from an evaluation: the strongest action's first rule, with
    the evidence of every matching rule (closest first, at most ``MAX_EVIDENCE``)."""
    if not report.decisions:
        return None
    ranked = sorted(
        report.decisions,
        key=lambda d: (ACTION_ORDER.index(d.action), d.distance if d.distance is not None else -1),
    )
    top = ranked[0]
    evidence = [
        Evidence.model_validate({k: v for k, v in asdict(d).items() if v is not None})
        for d in ranked[:MAX_EVIDENCE]
    ]
    return ItemDecision(
        action=top.action,
        rule=top.rule,
        policy=top.policy,
        version=top.version,
        decided_at=at,
        evidence=evidence,
    )


def carry_review(new: ItemDecision | None, old: ItemDecision | None) -> ItemDecision | None:
    """``new``, keeping ``old``'s reviews and state when it is the same finding: a
    re-evaluation must not send an item a reviewer settled back to the queue."""
    if new is None or old is None or not new.same_finding(old):
        return new
    return new.model_copy(update={"state": old.state, "reviews": old.reviews})


def is_hidden(action: str | None, state: str | None) -> bool:
    """Whether search must leave the item out (see the module docstring)."""
    if action is None or state == "approved":
        return False
    return state == "rejected" or action in ("block", "quarantine", "hide")


def row_values(decision: ItemDecision | None) -> dict[str, Any]:
    """The moderation columns of a row holding ``decision`` (all NULL for none)."""
    if decision is None:
        return dict.fromkeys(MODERATION_COLUMNS)
    return {
        ACTION_COLUMN: decision.action,
        RULE_COLUMN: decision.rule,
        POLICY_COLUMN: decision.policy_label,
        STATE_COLUMN: decision.state,
        HIDDEN_COLUMN: True if decision.hidden else None,
        DECISION_COLUMN: decision.model_dump_json(exclude_none=True),
    }


def read_decision(row: dict[str, Any], item_id: str) -> ItemDecision | None:
    """The decision stored in a row, or None; a damaged one names the item."""
    text = row.get(DECISION_COLUMN)
    if not text:
        return None
    try:
        return ItemDecision.model_validate_json(text)
    except ValidationError as exc:
        raise MMSearchError(
            f"The moderation decision stored with item '{item_id}' is not valid ({exc}); "
            "run mmsearch policy apply to decide it again."
        ) from None


def fingerprints_json(fingerprints: Sequence[Fingerprint]) -> str:
    """The stored fingerprints: those of the item's first images that fit in
    ``MAX_FINGERPRINTS_CHARS``.

    About 1,700 characters an image (the colour layout is 384 of them, the visual
    descriptor 401), so an item with more than about 35 images keeps the fingerprints of
    its first ones only: a string
    column on Milvus holds at most 65,535 bytes, and one oversized value would fail the
    whole write. Readers tell a
    short list by its length (fewer entries than images): ``policy apply`` then
    fingerprints the item's images again and ``dupes`` reads them, so nothing goes
    unchecked."""
    parts: list[str] = []
    size = 2  # the brackets
    for fingerprint in fingerprints:
        part = json.dumps(asdict(fingerprint), separators=(",", ":"))
        size += len(part) + (1 if parts else 0)
        if size > MAX_FINGERPRINTS_CHARS:
            break
        parts.append(part)
    return "[" + ",".join(parts) + "]"


def read_fingerprints(text: str | None) -> list[Fingerprint] | None:
    """The stored fingerprints, or None when there are none (or they cannot be read)."""
    if not text:
        return None
    try:
        data = json.loads(text)
        return [
            Fingerprint(**{**entry, "pdq_variants": tuple(entry["pdq_variants"])}) for entry in data
        ]
    except (ValueError, TypeError, KeyError):
        return None
