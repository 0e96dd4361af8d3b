"""The review routes' work: the queue, one item, a verdict, a policy applied, a binding.

Reviewers hold the ``moderate`` permission (admins have it). Everything they read is
restricted by their ACL groups inside the store query, like search; unlike search,
they see the items moderation hides, which is what they are there to judge. Writes
hold the collection's writer lock for at most ``REVIEW_WRITE_WAIT_S`` (a prompt 409
beats a request that hangs behind an ingest) and are audited, failed ones too.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from mmsearch.clock import utc_now
from mmsearch.collection_state import CollectionState, PolicyBinding
from mmsearch.errors import MMSearchError
from mmsearch.ingest.policy_apply import apply_policy
from mmsearch.ingest.review import (
    MAX_REASON_CHARS,
    ReviewNotFound,
    record_verdict,
    review_item,
    review_queue,
)
from mmsearch.media.paths import display_path
from mmsearch.moderation.store import PolicyStore
from mmsearch.service.access import Caller
from mmsearch.service.errors import NotFound, WriterBusy
from mmsearch.service.state import ServiceState
from mmsearch.writer_lock import CollectionBusy

REVIEW_WRITE_WAIT_S = 30.0


class VerdictBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    decision: Literal["approve", "reject"]
    reason: str = Field(min_length=1, max_length=MAX_REASON_CHARS)


class ApplyBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dry_run: bool = False


class BindBody(BaseModel):
    """The installed policy the collection enforces; null to enforce none."""

    model_config = ConfigDict(extra="forbid")
    policy: str | None = Field(default=None, max_length=64)


@contextlib.contextmanager
def _not_found() -> Iterator[None]:
    try:
        yield
    except ReviewNotFound as exc:
        raise NotFound(str(exc)) from None


def _lock(state: ServiceState, collection: str, purpose: str) -> Callable[[], Any]:
    @contextlib.contextmanager
    def hold() -> Iterator[None]:
        try:
            with state.writer(collection, purpose=purpose, timeout_s=REVIEW_WRITE_WAIT_S):
                yield
        except CollectionBusy:
            raise WriterBusy(
                f"Collection '{collection}' is being written by another writer; waited "
                f"{REVIEW_WRITE_WAIT_S:g} s. Retry when it finishes."
            ) from None

    return hold


def queue(
    state: ServiceState, collection: str, caller: Caller, review_state: str | None
) -> dict[str, Any]:
    folder = state.workspace.collection(collection)
    access = state.access_filter(caller, collection)
    entries = review_queue(folder, state.settings, review_state, access)
    return {
        "collection": collection,
        "state": review_state or "all",
        "items": [entry.as_json() for entry in entries],
    }


def show(state: ServiceState, collection: str, item_id: str, caller: Caller) -> dict[str, Any]:
    folder = state.workspace.collection(collection)
    access = state.access_filter(caller, collection)
    with _not_found():
        row = review_item(folder, state.settings, item_id, access)
    images = list(row.get("images") or [])
    row["image_urls"] = [
        f"/v1/collections/{collection}/review/{item_id}/images/{n}" for n in range(len(images))
    ]
    roots = [*state.allowed_roots(), *state.settings.image_roots, state.uploads_dir]
    if row.get("source_file"):
        roots.insert(0, Path(row["source_file"]).parent)
        row["source_file"] = Path(row["source_file"]).name
    row["images"] = [display_path(p, roots) for p in images]
    return row


def image_path(state: ServiceState, collection: str, item_id: str, n: int, caller: Caller) -> Path:
    """The n-th image of an item under review (hidden items included)."""
    folder = state.workspace.collection(collection)
    access = state.access_filter(caller, collection)
    with _not_found():
        row = review_item(folder, state.settings, item_id, access)
    images = list(row.get("images") or [])
    if not 0 <= n < len(images):
        raise NotFound(f"Item '{item_id}' has {len(images)} image(s); there is no image {n}.")
    path = Path(images[n])
    if not path.is_file():
        raise NotFound(f"Image {n} of item '{item_id}' is not a local file that still exists.")
    return path


def banned_image_path(
    state: ServiceState, collection: str, item_id: str, n: int, caller: Caller
) -> Path:
    """The banned image the item's n-th piece of evidence matched, for a reviewer to
    compare: only a file inside that rule's banned folder, as the installed policy
    names it (a listed hash has no image)."""
    folder = state.workspace.collection(collection)
    access = state.access_filter(caller, collection)
    with _not_found():
        row = review_item(folder, state.settings, item_id, access)
    evidence = row["decision"].get("evidence", [])
    if not 0 <= n < len(evidence) or evidence[n].get("condition") != "banned_images":
        raise NotFound(f"Evidence {n} of item '{item_id}' is not a banned-image match.")
    found = evidence[n]
    try:
        policy = PolicyStore(state.settings.home).read(row["decision"]["policy"])
    except MMSearchError:
        raise NotFound(f"The policy of item '{item_id}' is no longer installed.") from None
    rule = next((r for r in policy.rules if r.id == found["rule"]), None)
    banned = rule.banned_images if rule is not None else None
    if banned is None or banned.folder is None or not found.get("banned"):
        raise NotFound(f"Evidence {n} of item '{item_id}' has no banned image file.")
    root = Path(banned.folder).resolve()
    path = (root / found["banned"]).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        raise NotFound(f"The banned image of evidence {n} of item '{item_id}' is not there.")
    return path


def verdict(
    state: ServiceState, collection: str, item_id: str, body: VerdictBody, caller: Caller
) -> dict[str, Any]:
    folder = state.workspace.collection(collection)
    access = state.access_filter(caller, collection)
    action = f"review.{body.decision}"
    try:
        with _not_found():
            decision, allowed = record_verdict(
                folder,
                state.settings,
                item_id,
                body.decision,
                body.reason,
                reviewer=caller.key_id,
                access=access,
                lock=_lock(state, collection, f"review {item_id}"),
            )
    except MMSearchError as exc:
        state.audit(
            caller.key_id,
            action,
            collection=collection,
            items=[item_id],
            outcome="failed",
            detail=str(exc)[:300],
        )
        raise
    state.forget(collection)
    state.audit(
        caller.key_id,
        action,
        collection=collection,
        items=[item_id],
        counts={"allow_listed": allowed} if allowed else None,
        detail=f"{decision.policy_label} rule {decision.rule} ({decision.action}): {body.reason}",
    )
    return {
        "id": item_id,
        "state": decision.state,
        "hidden": decision.hidden,
        "allow_listed": allowed,
        "decision": decision.model_dump(mode="json", exclude_none=True),
    }


def apply(state: ServiceState, collection: str, body: ApplyBody, caller: Caller) -> dict[str, Any]:
    folder = state.workspace.collection(collection)
    try:
        report = apply_policy(
            folder,
            state.settings,
            actor=caller.key_id,
            dry_run=body.dry_run,
            lock=_lock(state, collection, "policy apply"),
        )
    except MMSearchError as exc:
        state.audit(
            caller.key_id,
            "policy.apply",
            collection=collection,
            outcome="failed",
            detail=str(exc)[:300],
        )
        raise
    result = report.as_json()
    state.forget(collection)
    state.audit(
        caller.key_id,
        "policy.apply",
        collection=collection,
        counts={"items": report.items, "written": report.written, **result["changed"]},
        detail=f"policy {report.policy}" + (" (dry run)" if body.dry_run else ""),
    )
    return result


def bind(state: ServiceState, collection: str, body: BindBody, caller: Caller) -> dict[str, Any]:
    folder = state.workspace.collection(collection)
    if body.policy is not None:
        PolicyStore(state.settings.home).read(body.policy)  # it must be installed

    def change(current: CollectionState) -> None:
        if body.policy is None:
            current.clear("moderation")
        else:
            current.moderation = PolicyBinding(
                policy=body.policy, set_at=utc_now(), set_by=caller.key_id
            )

    folder.update_state(change)
    state.forget(collection)
    action = "policy.bind" if body.policy is not None else "policy.unbind"
    state.audit(caller.key_id, action, collection=collection, detail=body.policy)
    return {"collection": collection, "policy": body.policy}
