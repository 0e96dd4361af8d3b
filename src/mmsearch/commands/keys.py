"""``mmsearch keys create|list|revoke``: the API keys the service accepts.

The local operator (whoever can run the CLI on the workspace) manages keys; the
secret of a new key is printed once and only its hash is kept. Creating and revoking
keys are audited acts.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from mmsearch.governance.roles import Role  # light (an enum), and typer needs it now
from mmsearch.terminal import HomeOption, JsonOption, console, print_json, user_errors

if TYPE_CHECKING:
    from mmsearch.governance.keys import ApiKey


NOT_SHOWN_AGAIN = "This secret will not be shown again: store it now (only its hash is kept)."


def _describe(key: ApiKey) -> str:
    collections = ", ".join(key.collections) if key.collections is not None else "all"
    groups = ", ".join(key.groups) or "none"
    expires = key.expires_at.isoformat(timespec="seconds") if key.expires_at else "never"
    return (
        f"role {key.role.value}, collections: {collections}, groups: {groups}, expires: {expires}"
    )


def _short(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d")


def register(app: typer.Typer) -> None:
    keys_app = typer.Typer(help="API keys for the HTTP service (create, list, revoke).")
    app.add_typer(keys_app, name="keys")

    keys_app.command("create")(create)
    keys_app.command("list")(list_keys)
    keys_app.command("revoke")(revoke)


def create(
    role: Annotated[Role, typer.Option("--role", help="reader, writer or admin.")],
    collections: Annotated[
        list[str] | None,
        typer.Option(
            "--collection", "-c", help="Limit the key to this collection; repeat for several."
        ),
    ] = None,
    groups: Annotated[
        str | None,
        typer.Option("--groups", help="ACL groups of the key, comma-separated: g1,g2."),
    ] = None,
    expires: Annotated[
        str | None, typer.Option("--expires", help="Lifetime: 90m, 12h, 30d or 1w.")
    ] = None,
    name: Annotated[str | None, typer.Option("--name", help="A label for the key.")] = None,
    home: HomeOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create an API key and print its secret (once)."""
    from mmsearch.commands.operator_audit import operator_act
    from mmsearch.config import load_settings
    from mmsearch.governance.keys import KeyStore, parse_duration

    workspace = load_settings(home).home
    with user_errors(), operator_act(workspace, "keys.create") as act:
        key, secret = KeyStore(workspace).create(
            role,
            collections=collections or None,
            groups=(groups or "").split(","),
            expires_in=parse_duration(expires) if expires else None,
            name=name,
        )
        act.detail = f"{key.key_id}: {_describe(key)}"
    if as_json:
        print_json({"key": key.public_dict(), "secret": secret, "note": NOT_SHOWN_AGAIN})
        return
    label = f" '{escape(key.name)}'" if key.name else ""
    console.print(
        f"Created API key [bold]{key.key_id}[/]{label} ({escape(_describe(key))}).",
        highlight=False,
    )
    console.print(secret, markup=False, highlight=False, soft_wrap=True)
    console.print(f"[yellow]{NOT_SHOWN_AGAIN}[/]", highlight=False)


def list_keys(home: HomeOption = None, as_json: JsonOption = False) -> None:
    """List keys with their role, scope and status (never secrets or hashes)."""
    from mmsearch.config import load_settings
    from mmsearch.governance.keys import KeyStore

    with user_errors():
        keys = KeyStore(load_settings(home).home).list()
    if as_json:
        print_json([k.public_dict() for k in keys])
        return
    if not keys:
        console.print("no API keys; create one with `mmsearch keys create --role admin`")
        return
    table = Table(caption="times in UTC; --json for the exact ones")
    table.add_column("id", no_wrap=True, min_width=12)
    # wrapped at 80 columns, never cut: a name or a group is what a person looks for
    table.add_column("name", overflow="fold")
    table.add_column("role", no_wrap=True)
    table.add_column("collections", overflow="fold")
    table.add_column("groups", overflow="fold")
    for column in ("created", "expires", "status"):
        table.add_column(column, no_wrap=True)
    for key in keys:
        status = key.status()
        colour = {"active": "green", "revoked": "red"}.get(status, "yellow")
        table.add_row(
            key.key_id,
            escape(key.name or "-"),
            key.role.value,
            escape(", ".join(key.collections)) if key.collections is not None else "all",
            escape(", ".join(key.groups)) or "-",
            _short(key.created_at),
            _short(key.expires_at) if key.expires_at else "never",
            f"[{colour}]{status}[/]",
        )
    console.print(table)


def revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id (k_...), see `keys list`.")],
    home: HomeOption = None,
    as_json: JsonOption = False,
) -> None:
    """Revoke a key; a running service refuses it from its next request on."""
    from mmsearch.commands.operator_audit import operator_act
    from mmsearch.config import load_settings
    from mmsearch.governance.keys import KeyStore

    workspace = load_settings(home).home
    with user_errors(), operator_act(workspace, "keys.revoke") as act:
        key = KeyStore(workspace).revoke(key_id)
        act.detail = f"{key.key_id} ({key.role.value})"
    if as_json:
        print_json(key.public_dict())
        return
    console.print(f"revoked {key.key_id} at {key.public_dict()['revoked_at']}")
