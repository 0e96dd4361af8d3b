"""``mmsearch policy bind|unbind|apply`` and ``mmsearch review``: policies enforced.

A collection bound to an installed policy has it applied to every item it ingests
(``ingest/moderating.py``), ``policy apply`` re-judges its stored items after a policy
change, and ``review`` lists, shows, approves and rejects the decisions. Binding,
applying and each verdict are operator acts in the audit trail (``operator_audit``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mmsearch.commands.operator_audit import operator_act
from mmsearch.terminal import (
    CollectionOption,
    HomeOption,
    JsonOption,
    console,
    print_json,
    user_errors,
)

ReasonOption = Annotated[
    str, typer.Option("--reason", help="Why (kept with the decision and in the audit trail).")
]
ItemArgument = Annotated[str, typer.Argument(help="The item id.")]


def register(app: typer.Typer) -> None:
    review_app = typer.Typer(
        help="Review moderation decisions: list the queue, show an item with its evidence, "
        "approve (visible again; a banned-image match is allow-listed) or reject (kept out)."
    )
    app.add_typer(review_app, name="review")
    review_app.command("list")(review_list)
    review_app.command("show")(review_show)
    review_app.command("approve")(review_approve)
    review_app.command("reject")(review_reject)


def register_policy_commands(policy_app: typer.Typer) -> None:
    """``policy bind|unbind|apply``, added to the ``policy`` group by ``moderation``."""
    policy_app.command("bind")(bind)
    policy_app.command("unbind")(unbind)
    policy_app.command("apply")(apply)


def bind(
    policy: Annotated[str, typer.Argument(help="An installed policy (mmsearch policy list).")],
    collection: CollectionOption,
    home: HomeOption = None,
) -> None:
    """Make COLLECTION enforce POLICY at ingest and search (then run policy apply)."""
    from mmsearch.clock import utc_now
    from mmsearch.collection_state import CollectionState, PolicyBinding
    from mmsearch.config import load_settings
    from mmsearch.governance.audit import cli_actor
    from mmsearch.moderation.store import PolicyStore
    from mmsearch.workspace import Workspace

    with user_errors():
        settings = load_settings(home)
        with operator_act(settings.home, "policy.bind", collection=collection) as act:
            installed = PolicyStore(settings.home).read(policy)  # it must exist
            folder = Workspace(settings.home).collection(collection)

            def change(state: CollectionState) -> None:
                state.moderation = PolicyBinding(
                    policy=policy, set_at=utc_now(), set_by=cli_actor()
                )

            folder.update_state(change)
            act.detail = f"policy {policy} (v{installed.version} now)"
    console.print(
        f"Collection {collection} enforces policy {policy}: new items are judged at ingest. "
        f"Judge the items already stored with: mmsearch policy apply -c {collection}",
        highlight=False,
    )


def unbind(collection: CollectionOption, home: HomeOption = None) -> None:
    """Stop enforcing a policy on COLLECTION; stored decisions stay until changed."""
    from mmsearch.collection_state import CollectionState
    from mmsearch.config import load_settings
    from mmsearch.workspace import Workspace

    with user_errors():
        settings = load_settings(home)
        with operator_act(settings.home, "policy.unbind", collection=collection):
            folder = Workspace(settings.home).collection(collection)

            def change(state: CollectionState) -> None:
                state.clear("moderation")

            folder.update_state(change)
    console.print(f"Collection {collection} enforces no policy now.", highlight=False)


def apply(
    collection: CollectionOption,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Report what would change; write nothing.")
    ] = False,
    fetch: Annotated[
        bool,
        typer.Option("--fetch", help="Download URL images not in the cache (no fingerprint)."),
    ] = False,
    home: HomeOption = None,
    as_json: JsonOption = False,
) -> None:
    """Judge COLLECTION's stored items by its bound policy again; report what changed.

    Uses the image fingerprints stored at ingest (no decoding). An item a block rule
    now matches cannot be un-indexed: it is hidden and pending review.
    """
    from mmsearch.config import load_settings
    from mmsearch.governance.audit import cli_actor
    from mmsearch.ingest.policy_apply import apply_policy
    from mmsearch.workspace import Workspace

    with user_errors():
        settings = load_settings(home)
        with operator_act(settings.home, "policy.apply", collection=collection) as act:
            folder = Workspace(settings.home).collection(collection)
            report = apply_policy(folder, settings, actor=cli_actor(), dry_run=dry_run, fetch=fetch)
            result = report.as_json()
            act.counts = {"items": report.items, "written": report.written, **result["changed"]}
            act.detail = f"policy {report.policy}" + (" (dry run)" if dry_run else "")
    if as_json:
        print_json(result)
        return
    changed = ", ".join(f"{n} {k}" for k, n in result["changed"].items() if n) or "nothing"
    verb = "would change" if dry_run else "changed"
    console.print(
        f"Applied policy {report.policy} to {report.items} items of {collection} in "
        f"{report.seconds:.2f} s: {verb} {changed}; {report.written} decisions "
        f"{'to write' if dry_run else 'written'}.",
        highlight=False,
    )
    if report.fingerprinted:
        console.print(
            f"Fingerprinted {report.fingerprinted} items stored without.", highlight=False
        )
    for message in report.image_errors[:20]:
        console.print(f"  image not read: {message}", highlight=False)


def review_list(
    collection: CollectionOption,
    state: Annotated[
        str, typer.Option("--state", help="pending, approved, rejected or all.")
    ] = "pending",
    home: HomeOption = None,
    as_json: JsonOption = False,
) -> None:
    """The review queue: items with a decision in STATE, oldest first."""
    from mmsearch.config import load_settings
    from mmsearch.errors import MMSearchError
    from mmsearch.ingest.review import REVIEW_STATES, review_queue
    from mmsearch.workspace import Workspace

    with user_errors():
        if state != "all" and state not in REVIEW_STATES:
            raise MMSearchError(f"--state must be one of {', '.join(REVIEW_STATES)} or all.")
        settings = load_settings(home)
        folder = Workspace(settings.home).collection(collection)
        entries = review_queue(folder, settings, None if state == "all" else state)
    if as_json:
        print_json([entry.as_json() for entry in entries])
        return
    if not entries:
        console.print(f"No {state} decisions in {collection}.", highlight=False)
    for entry in entries:
        d = entry.decision
        shown = "hidden" if d.hidden else "visible"
        console.print(
            f"{entry.id}  {d.action}  {d.state}  {shown}  {d.policy_label} rule {d.rule}  "
            f"{entry.title}",
            highlight=False,
        )


def review_show(
    item: ItemArgument,
    collection: CollectionOption,
    home: HomeOption = None,
    as_json: JsonOption = False,
) -> None:
    """One item under review: its fields, the decision, the evidence, past reviews."""
    from mmsearch.config import load_settings
    from mmsearch.ingest.review import review_item
    from mmsearch.workspace import Workspace

    with user_errors():
        settings = load_settings(home)
        row = review_item(Workspace(settings.home).collection(collection), settings, item)
    if as_json:
        print_json(row)
        return
    decision = row["decision"]
    console.print(f"{row['id']}  {row.get('title') or ''}", highlight=False)
    console.print(
        f"  {decision['action']} by {decision['policy']} v{decision['version']} rule "
        f"{decision['rule']}; {decision['state']}; decided {decision['decided_at']}",
        highlight=False,
    )
    for path in row.get("images") or []:
        console.print(f"  image: {path}", highlight=False)
    for e in decision.get("evidence", []):
        console.print(f"  evidence: {_evidence(e)}", highlight=False)
    for r in decision.get("reviews", []):
        console.print(
            f"  review: {r['verdict']} by {r['reviewer']} at {r['at']}: {r['reason']}",
            highlight=False,
        )


def _evidence(e: dict) -> str:
    head = f"{e['action']} rule {e['rule']}"
    if e["condition"] == "banned_images":
        distance = f", PDQ distance {e['distance']}" if e.get("distance") is not None else ""
        banned = f"{e.get('kind')} match of banned {e.get('banned')}{distance}"
        return f"{head}: image {e.get('image')} {banned}"
    if e["condition"] == "text":
        matched = f"{e.get('pattern')!r} ({e.get('matched')!r})"
        return f"{head}: field {e.get('field')} matched {matched}"
    return f"{head}: attributes match {e.get('where')!r}"


def review_approve(
    item: ItemArgument, collection: CollectionOption, reason: ReasonOption, home: HomeOption = None
) -> None:
    """Approve ITEM: visible in search again; a banned-image match is allow-listed."""
    _verdict(item, collection, "approve", reason, home)


def review_reject(
    item: ItemArgument, collection: CollectionOption, reason: ReasonOption, home: HomeOption = None
) -> None:
    """Reject ITEM: the decision stands and the item stays out of search."""
    _verdict(item, collection, "reject", reason, home)


def _verdict(item: str, collection: str, verdict: str, reason: str, home: Path | None) -> None:
    from mmsearch.config import load_settings
    from mmsearch.governance.audit import cli_actor
    from mmsearch.ingest.review import record_verdict
    from mmsearch.workspace import Workspace

    with user_errors():
        settings = load_settings(home)
        with operator_act(settings.home, f"review.{verdict}", collection=collection) as act:
            act.items = [item]
            folder = Workspace(settings.home).collection(collection)
            decision, allowed = record_verdict(
                folder,
                settings,
                item,
                "approve" if verdict == "approve" else "reject",
                reason,
                reviewer=cli_actor(),
            )
            act.detail = (
                f"{decision.policy_label} rule {decision.rule} ({decision.action}): {reason}"
            )
            act.counts = {"allow_listed": allowed} if allowed else None
    shown = "visible in search" if not decision.hidden else "kept out of search"
    extra = f"; {allowed} banned-image pair(s) allow-listed" if allowed else ""
    done = "Approved" if verdict == "approve" else "Rejected"
    console.print(f"{done} {item}: {shown}{extra}.", highlight=False)
