"""``mmsearch policy add|list|show|test`` and ``mmsearch moderate``.

Policies are installed per workspace (``moderation/store.py``) and evaluated here and
by ``POST /v1/moderate`` without changing anything; a collection bound to one enforces
it (``commands/enforcement.py``: ``policy bind|unbind|apply``, ``review``). Everything
heavy (Pillow, NumPy, pdqhash) is imported inside the commands, so ``--help`` stays
light.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from mmsearch.terminal import HomeOption, JsonOption, console, print_json, user_errors

if TYPE_CHECKING:
    from mmsearch.moderation.evaluate import Report
    from mmsearch.moderation.store import InstalledPolicy, PolicyStore

TextOption = Annotated[
    list[str] | None,
    typer.Option(
        "--text",
        help="Text to check: FIELD=VALUE (e.g. title=...), or plain text (field 'text'). "
        "Repeatable.",
    ),
]
AttributeOption = Annotated[
    list[str] | None,
    typer.Option("--attribute", help="An attribute for attribute rules: NAME=VALUE. Repeatable."),
]
FilesArgument = Annotated[
    list[Path] | None, typer.Argument(help="Image files to check.", show_default=False)
]


def register(app: typer.Typer) -> None:
    from mmsearch.commands import enforcement

    policy_app = typer.Typer(
        help="Moderation policies: banned images, text and attribute rules (add, list, "
        "show, test), enforced by the collections bound to them (bind, unbind, apply)."
    )
    app.add_typer(policy_app, name="policy")
    policy_app.command("add")(add)
    policy_app.command("list")(list_policies)
    policy_app.command("show")(show)
    policy_app.command("test")(test_policy)
    enforcement.register_policy_commands(policy_app)
    app.command("moderate")(moderate_command)


def _store(home: Path | None) -> PolicyStore:
    from mmsearch.config import load_settings
    from mmsearch.media.images import ImageLimits
    from mmsearch.moderation.store import PolicyStore

    settings = load_settings(home)
    return PolicyStore(
        settings.home, ImageLimits(settings.max_image_bytes, settings.max_image_pixels)
    )


def add(
    name: Annotated[str, typer.Argument(help="Policy name (a-z, 0-9, '-', '_').")],
    file: Annotated[Path, typer.Argument(help="The policy file (.toml, .yaml or .yml).")],
    home: HomeOption = None,
    as_json: JsonOption = False,
) -> None:
    """Validate a policy file and install it as NAME's next version."""
    with user_errors():
        installed = _store(home).install(name, file)
    banned = sum(len(b) for b in installed.banned.values())
    if as_json:
        print_json({"name": name, "version": installed.version, "banned_images": banned})
        return
    console.print(
        f"Installed policy {name} v{installed.version}: {len(installed.policy.rules)} rules, "
        f"{banned} banned images/hashes.",
        highlight=False,
    )


def list_policies(home: HomeOption = None, as_json: JsonOption = False) -> None:
    """List installed policies with their versions and rule counts."""
    with user_errors():
        store = _store(home)
        rows = [(name, store.read(name)) for name in store.names()]
    if as_json:
        print_json([{"name": n, "version": p.version, "rules": len(p.rules)} for n, p in rows])
        return
    if not rows:
        console.print("No policies yet. Install one with: mmsearch policy add NAME FILE")
    for name, policy in rows:
        console.print(f"{name}  v{policy.version}  {len(policy.rules)} rules", highlight=False)


def show(
    name: Annotated[str, typer.Argument(help="Policy name.")],
    home: HomeOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show an installed policy's rules."""
    with user_errors():
        store = _store(home)
        policy = store.read(name)
        allowed = store.allow_list(name).pairs
    if as_json:
        print_json(
            {
                "name": name,
                **policy.model_dump(mode="json", exclude_none=True),
                "allowed": [pair.model_dump(mode="json") for pair in allowed],
            }
        )
        return
    console.print(f"{name} v{policy.version}  {policy.description}", highlight=False)
    for rule in policy.rules:
        if rule.banned_images is not None:
            b = rule.banned_images
            what = (
                f"banned images: {b.folder or ''} {len(b.hashes)} hashes, "
                f"max distance {b.threshold}"
                + (
                    f" or visual cosine ≥ {b.min_visual_cosine}"
                    if b.min_visual_cosine is not None
                    else ""
                )
            )
        elif rule.text is not None:
            fields = ", ".join(rule.text.fields) or "any field"
            counts = f"{len(rule.text.patterns)} patterns, {len(rule.text.words)} words"
            what = f"text in {fields}: {counts}"
        else:
            assert rule.attribute is not None
            what = f"attribute: {rule.attribute.where}"
        console.print(f"  {rule.id}  {rule.action}  {what}", highlight=False)
    for pair in allowed:
        console.print(
            f"  allowed: rule {pair.rule} item {pair.item or pair.item_pdq[:12]} vs banned "
            f"{pair.banned or pair.banned_pdq[:12]} (by {pair.by}: {pair.reason})",
            highlight=False,
        )


def test_policy(
    name: Annotated[str, typer.Argument(help="Policy name.")],
    files: FilesArgument = None,
    text: TextOption = None,
    attribute: AttributeOption = None,
    home: HomeOption = None,
    as_json: JsonOption = False,
) -> None:
    """Evaluate one installed policy against image files and/or text."""
    _run([name], files or [], text or [], attribute or [], home, as_json)


def moderate_command(
    files: FilesArgument = None,
    policy: Annotated[
        list[str] | None,
        typer.Option("--policy", "-p", help="Policy to apply (repeatable; default: all)."),
    ] = None,
    text: TextOption = None,
    attribute: AttributeOption = None,
    home: HomeOption = None,
    as_json: JsonOption = False,
) -> None:
    """Check images and text against moderation policies; print decisions with evidence.

    Nothing is ingested or changed: the answer says which rules match (block,
    quarantine, hide, flag), the banned image and PDQ distance or the text matched, and
    the time per image.
    """
    _run(policy, files or [], text or [], attribute or [], home, as_json)


def _run(
    names: list[str] | None,
    files: list[Path],
    text: list[str],
    attribute: list[str],
    home: Path | None,
    as_json: bool,
) -> None:
    from mmsearch.errors import ImageError, MMSearchError
    from mmsearch.media.images import read_image_bytes
    from mmsearch.moderation.evaluate import moderate

    with user_errors():
        if not files and not text and not attribute:
            raise MMSearchError("Give image files, --text or --attribute to check.")
        fields = _pairs(text, "--text", default_key="text")
        attributes = _pairs(attribute, "--attribute", default_key=None)
        store = _store(home)
        chosen = names or store.names()
        if not chosen:
            raise MMSearchError("No policies yet. Install one with: mmsearch policy add NAME FILE")
        policies: list[InstalledPolicy] = [store.load(name) for name in chosen]
        images: list[tuple[str, bytes]] = []
        unreadable: dict[str, str] = {}
        for path in files:
            try:
                images.append((str(path), read_image_bytes(path, store.limits)))
            except ImageError as exc:
                unreadable[str(path)] = str(exc)
        report = moderate(policies, images, fields or None, attributes or None, limits=store.limits)
    if as_json:
        print_json({**report.as_json(), "unreadable": unreadable})
    else:
        _print(report, unreadable)


def _pairs(values: list[str], option: str, default_key: str | None) -> dict[str, str]:
    from mmsearch.errors import MMSearchError

    found: dict[str, str] = {}
    for value in values:
        key, sep, rest = value.partition("=")
        if sep and key.strip() and key.strip().replace("_", "").isalnum():
            found[key.strip()] = rest
        elif default_key is not None:
            found[default_key] = f"{found[default_key]}\n{value}" if default_key in found else value
        else:
            raise MMSearchError(f"{option} takes NAME=VALUE (got {value!r}).")
    return found


def _print(report: Report, unreadable: dict[str, str]) -> None:
    from mmsearch.moderation.evaluate import strongest

    console.print(f"Policies: {', '.join(report.policies)}", highlight=False)
    for image in report.images:
        decisions = report.for_image(image.source)
        verdict = strongest(d.action for d in decisions) or "no match"
        note = f"  (not decoded: {image.error})" if image.error else ""
        console.print(f"{image.source}: {verdict}  {image.ms:.1f} ms{note}", highlight=False)
        for d in decisions:
            console.print(
                f"  {d.action}  {d.policy} v{d.version} rule {d.rule}: {d.kind} match of "
                f"banned {d.banned}"
                + (f" by {d.method}" if d.method is not None else "")
                + (f", PDQ distance {d.distance}" if d.distance is not None else "")
                + (f", visual cosine {d.cosine:.4f}" if d.cosine is not None else ""),
                highlight=False,
            )
    for path, message in unreadable.items():
        console.print(f"{path}: not read: {message}", highlight=False)
    for d in report.decisions:
        if d.condition == "text":
            console.print(
                f"text {d.field}: {d.action}  {d.policy} v{d.version} rule {d.rule}: "
                f"{d.pattern} matched {d.matched!r}",
                highlight=False,
            )
        elif d.condition == "attribute":
            console.print(
                f"attributes: {d.action}  {d.policy} v{d.version} rule {d.rule}: {d.where}",
                highlight=False,
            )
    for message in report.errors:
        console.print(f"not evaluated: {message}", highlight=False)
    console.print(f"Decision: {report.action or 'no match'}", highlight=False)
