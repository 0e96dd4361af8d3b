"""``mmsearch rules ...`` and ``mmsearch rankers ...``: the named rules files and reranker
models that API requests may choose from (they name these, never a server path)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from mmsearch.terminal import HomeOption, JsonOption, console, print_json, user_errors

if TYPE_CHECKING:
    from mmsearch.governance.registry import Registry


NameArgument = Annotated[str, typer.Argument(help="Registered name (letters, digits, _ . -).")]


def _registry(home: Path | None) -> tuple[Path, Registry]:
    from mmsearch.config import load_settings
    from mmsearch.governance.registry import Registry

    workspace = load_settings(home).home
    return workspace, Registry(workspace)


def register_rules(app: typer.Typer) -> None:
    rules_app = typer.Typer(help="Business-rules files the API may use, by name.")
    app.add_typer(rules_app, name="rules")

    @rules_app.command("add")
    def add(
        name: NameArgument,
        file: Annotated[Path, typer.Argument(help="Rules file (.yaml, .yml or .toml).")],
        home: HomeOption = None,
        as_json: JsonOption = False,
    ) -> None:
        """Validate a rules file and register a copy of it as NAME (replacing an older one)."""
        from mmsearch.commands.operator_audit import operator_act

        workspace, registry = _registry(home)
        with user_errors(), operator_act(workspace, "rules.add") as act:
            act.detail = f"{name} from {file}"
            entry = registry.add_rules(name, file)
            act.detail = f"{name} version {entry['version']} sha256 {entry['sha256'][:12]}"
        if as_json:
            print_json(entry)
            return
        console.print(
            f"registered rules [bold]{escape(name)}[/] (version {escape(entry['version'])}, "
            f"sha256 {entry['sha256'][:12]})",
            highlight=False,
        )

    @rules_app.command("list")
    def list_rules(home: HomeOption = None, as_json: JsonOption = False) -> None:
        """List registered rules with their version, hash and the collections using them."""
        with user_errors():
            entries = _registry(home)[1].rules()
        if as_json:
            print_json(entries)
            return
        if not entries:
            console.print("no rules registered; add some with `mmsearch rules add NAME FILE`")
            return
        table = Table()
        for column in ("name", "version", "format", "sha256", "added", "default for"):
            table.add_column(column)
        for entry in entries:
            table.add_row(
                escape(entry["name"]),
                escape(str(entry["version"])),
                entry["format"],
                entry["sha256"][:12],
                entry["added_at"],
                ", ".join(entry["default_for"]) or "-",
            )
        console.print(table)

    @rules_app.command("remove")
    def remove(name: NameArgument, home: HomeOption = None) -> None:
        """Unregister rules (refused while a collection uses them by default)."""
        from mmsearch.commands.operator_audit import operator_act

        workspace, registry = _registry(home)
        with user_errors(), operator_act(workspace, "rules.remove") as act:
            act.detail = name
            registry.remove_rules(name)
        console.print(f"removed rules {escape(name)}", highlight=False)

    @rules_app.command("default")
    def default(
        collection: Annotated[str, typer.Option("--collection", "-c", help="Collection name.")],
        name: Annotated[
            str | None, typer.Argument(help="Registered rules to apply by default.")
        ] = None,
        off: Annotated[
            bool, typer.Option("--off", help="Apply no rules by default any more.")
        ] = False,
        home: HomeOption = None,
    ) -> None:
        """Set (NAME) or switch off (--off) the rules a collection's searches use by default."""
        from mmsearch.commands.operator_audit import operator_act
        from mmsearch.governance.registry import RegistryError

        workspace, registry = _registry(home)
        with user_errors(), operator_act(workspace, "rules.default", collection=collection) as act:
            if (name is None) == (not off):
                raise RegistryError(
                    "Give either the name of registered rules or --off, not both or neither."
                )
            act.detail = f"default rules {name}" if name else "default rules off"
            previous = registry.set_default_rules(collection, name)
            if previous:
                act.detail += f" (was {previous})"
        if name:
            console.print(f"{escape(collection)} now uses rules {escape(name)} by default")
        else:
            console.print(f"{escape(collection)} uses no rules by default")


def register_rankers(app: typer.Typer) -> None:
    rankers_app = typer.Typer(help="Reranker models the API may use, by name.")
    app.add_typer(rankers_app, name="rankers")

    @rankers_app.command("add")
    def add(
        name: NameArgument,
        folder: Annotated[Path, typer.Argument(help="Model folder from `mmsearch train-ranker`.")],
        home: HomeOption = None,
        as_json: JsonOption = False,
    ) -> None:
        """Validate a reranker model and register a copy of it as NAME."""
        from mmsearch.commands.operator_audit import operator_act

        workspace, registry = _registry(home)
        with user_errors(), operator_act(workspace, "rankers.add") as act:
            act.detail = f"{name} from {folder}"
            entry = registry.add_ranker(name, folder)
            act.detail = f"{name} sha256 {entry['sha256'][:12]}"
        if as_json:
            print_json(entry)
            return
        console.print(
            f"registered ranker [bold]{escape(name)}[/] ({len(entry['features'])} features, "
            f"trained on {escape(str(entry['collection']))}, sha256 {entry['sha256'][:12]})",
            highlight=False,
        )

    @rankers_app.command("list")
    def list_rankers(home: HomeOption = None, as_json: JsonOption = False) -> None:
        """List registered reranker models."""
        with user_errors():
            entries = _registry(home)[1].rankers()
        if as_json:
            print_json(entries)
            return
        if not entries:
            console.print("no rankers registered; add one with `mmsearch rankers add NAME DIR`")
            return
        table = Table()
        for column in ("name", "features", "trained on", "sha256", "added"):
            table.add_column(column)
        for entry in entries:
            table.add_row(
                escape(entry["name"]),
                str(len(entry["features"])),
                escape(f"{entry['collection']} / {entry['build_id']}"),
                entry["sha256"][:12],
                entry["added_at"],
            )
        console.print(table)

    @rankers_app.command("remove")
    def remove(name: NameArgument, home: HomeOption = None) -> None:
        """Unregister a reranker model."""
        from mmsearch.commands.operator_audit import operator_act

        workspace, registry = _registry(home)
        with user_errors(), operator_act(workspace, "rankers.remove") as act:
            act.detail = name
            registry.remove_ranker(name)
        console.print(f"removed ranker {escape(name)}", highlight=False)


def register(app: typer.Typer) -> None:
    register_rules(app)
    register_rankers(app)
