"""Evaluate installed policies against images, text fields and attributes.

The answer is a list of decisions, each with the evidence a reviewer needs to trust or
overturn it: the rule, the policy name and version, the action, and for an image the
banned file or hash it matched, the PDQ distance and whether it was exact or near; for
text the field and the pattern or word. Images are decoded once, through the bounded
loader (``media/images.py`` limits), and fingerprinted once for every rule. When rules
disagree the strongest action wins the summary: block > quarantine > hide > flag.

Nothing here applies an action: it answers ``mmsearch moderate``, ``policy test`` and
``POST /v1/moderate``, and gives ingest and ``policy apply`` the decisions they store
(``moderation/decisions.py``). Those pass ``fingerprints`` computed from images they
already decoded (or stored), so nothing is decoded twice. A banned-image match that a
reviewer approved is on the policy's allow list (the rule, the item's PDQ and the
banned PDQ) and is not reported again.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from mmsearch.errors import ImageError
from mmsearch.filters.evaluate import matches
from mmsearch.media.images import ImageLimits
from mmsearch.moderation.banned import BannedList
from mmsearch.moderation.fingerprints import Fingerprint, fingerprint_bytes
from mmsearch.moderation.policy import (
    ACTION_ORDER,
    MAX_TEXT_CHARS,
    PATTERN_TIMEOUT_S,
    Action,
    Rule,
)
from mmsearch.moderation.store import InstalledPolicy


@dataclass(frozen=True)
class Decision:
    """One rule that matched, and why."""

    rule: str
    policy: str
    version: int
    action: Action
    condition: Literal["banned_images", "text", "attribute"]
    # banned_images
    image: str | None = None  # which input image
    item_pdq: str | None = None  # its PDQ hash
    banned: str | None = None  # the banned file or "hash #N"
    banned_pdq: str | None = None
    distance: int | None = None  # PDQ bits of 256
    kind: Literal["exact", "near"] | None = None
    method: Literal["exact", "pdq", "visual"] | None = None  # which comparison matched
    cosine: float | None = None  # visual descriptor cosine, when both sides have one
    # text
    field: str | None = None
    pattern: str | None = None
    matched: str | None = None
    # attribute
    where: str | None = None


@dataclass(frozen=True)
class ImageResult:
    source: str
    ms: float  # decode + fingerprint + lookups, per image
    sha256: str
    pdq: str | None = None
    pdq_quality: int | None = None
    error: str | None = None


@dataclass
class Report:
    decisions: list[Decision] = field(default_factory=list)
    images: list[ImageResult] = field(default_factory=list)
    policies: list[str] = field(default_factory=list)  # "name v3"
    errors: list[str] = field(default_factory=list)  # patterns that ran out of time

    @property
    def action(self) -> Action | None:
        """The strongest action among the decisions; None when nothing matched."""
        return strongest(d.action for d in self.decisions)

    def for_image(self, source: str) -> list[Decision]:
        return [d for d in self.decisions if d.image == source]

    def as_json(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "policies": self.policies,
            "decisions": [
                {k: v for k, v in asdict(d).items() if v is not None} for d in self.decisions
            ],
            "images": [{k: v for k, v in asdict(i).items() if v is not None} for i in self.images],
            "errors": self.errors,
        }


def strongest(actions: Any) -> Action | None:
    seen = set(actions)
    return next((action for action in ACTION_ORDER if action in seen), None)


def moderate(
    policies: Sequence[InstalledPolicy],
    images: Sequence[tuple[str, bytes]] = (),
    text: Mapping[str, str] | None = None,
    attributes: Mapping[str, Any] | None = None,
    limits: ImageLimits = ImageLimits(),
    fingerprints: Sequence[tuple[str, Fingerprint]] = (),
) -> Report:
    """Every matching rule of ``policies`` for these inputs (images as (source, bytes)).

    An image that cannot be decoded is reported with its error and matches nothing but
    an exact byte match is still checked for it: a banned file is banned even if it no
    longer decodes here.
    """
    report = Report(policies=[f"{p.name} v{p.version}" for p in policies])
    for source, data in images:
        started = time.perf_counter()
        try:
            fingerprint = fingerprint_bytes(data, source=source, limits=limits)
        except ImageError as exc:
            sha256 = hashlib.sha256(data).hexdigest()
            report.decisions.extend(_byte_decisions(policies, source, sha256))
            report.images.append(ImageResult(source, _ms(started), sha256, error=str(exc)))
            continue
        report.decisions.extend(_image_decisions(policies, source, fingerprint))
        report.images.append(
            ImageResult(
                source, _ms(started), fingerprint.sha256, fingerprint.pdq, fingerprint.pdq_quality
            )
        )
    for source, fingerprint in fingerprints:
        started = time.perf_counter()
        report.decisions.extend(_image_decisions(policies, source, fingerprint))
        report.images.append(
            ImageResult(
                source, _ms(started), fingerprint.sha256, fingerprint.pdq, fingerprint.pdq_quality
            )
        )
    if text:
        report.decisions.extend(_text_decisions(policies, text, report.errors))
    if attributes is not None:
        report.decisions.extend(_attribute_decisions(policies, attributes))
    return report


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)


def _decision(
    installed: InstalledPolicy,
    rule: Rule,
    condition: Literal["banned_images", "text", "attribute"],
    **evidence: Any,
) -> Decision:
    """A matched rule, named by its policy and version, with the evidence for it."""
    return Decision(rule.id, installed.name, installed.version, rule.action, condition, **evidence)


def _banned_rules(
    policies: Sequence[InstalledPolicy],
) -> Iterator[tuple[InstalledPolicy, Rule, BannedList]]:
    """Each banned-images rule with its banned fingerprints."""
    for installed in policies:
        for rule in installed.policy.rules:
            banned = installed.banned.get(rule.id)
            if rule.banned_images is not None and banned is not None:
                yield installed, rule, banned


def _image_decisions(
    policies: Sequence[InstalledPolicy], source: str, fingerprint: Fingerprint
) -> list[Decision]:
    return [
        _decision(
            installed,
            rule,
            "banned_images",
            image=source,
            item_pdq=fingerprint.pdq,
            banned=hit.label,
            banned_pdq=hit.pdq,
            distance=hit.distance,
            kind=hit.kind,
            method=hit.method,
            cosine=hit.cosine,
        )
        for installed, rule, banned in _banned_rules(policies)
        for hit in banned.match(fingerprint)
        if (rule.id, fingerprint.pdq, hit.pdq) not in installed.allowed
    ]


def _byte_decisions(
    policies: Sequence[InstalledPolicy], source: str, sha256: str
) -> list[Decision]:
    """Exact byte matches of an image that did not decode."""
    found: list[Decision] = []
    for installed, rule, banned in _banned_rules(policies):
        row = banned.by_sha256.get(sha256)
        if row is not None:
            found.append(
                _decision(
                    installed,
                    rule,
                    "banned_images",
                    image=source,
                    banned=banned.labels[row],
                    banned_pdq=banned.pdq[row],
                    kind="exact",
                )
            )
    return found


def _text_decisions(
    policies: Sequence[InstalledPolicy], text: Mapping[str, str], errors: list[str]
) -> list[Decision]:
    found: list[Decision] = []
    for installed in policies:
        for rule in installed.policy.rules:
            if rule.text is None:
                continue
            names = rule.text.fields or list(text)
            for name in names:
                value = text.get(name)
                if not value:
                    continue
                value = value[:MAX_TEXT_CHARS]
                for said, pattern in rule.text.compiled():
                    try:
                        hit = pattern.search(value, timeout=PATTERN_TIMEOUT_S)
                    except TimeoutError:
                        errors.append(
                            f"{installed.name} v{installed.version} rule {rule.id}: pattern "
                            f"{said!r} ran past {PATTERN_TIMEOUT_S * 1000:.0f} ms on field {name}"
                        )
                        continue
                    if hit is None:
                        continue
                    found.append(
                        _decision(
                            installed,
                            rule,
                            "text",
                            field=name,
                            pattern=said,
                            matched=hit.group(0)[:200],
                        )
                    )
                    break  # one piece of evidence per rule and field is enough
    return found


def _attribute_decisions(
    policies: Sequence[InstalledPolicy], attributes: Mapping[str, Any]
) -> list[Decision]:
    found: list[Decision] = []
    for installed in policies:
        for rule in installed.policy.rules:
            condition = rule.attribute
            if condition is None:
                continue
            row = {
                name: _coerce(attributes.get(name), kind) for name, kind in condition.types.items()
            }
            if matches(condition.to_filter(), row):
                found.append(_decision(installed, rule, "attribute", where=condition.where))
    return found


def _coerce(value: Any, kind: str) -> Any:
    """An attribute value as the declared kind, or None (unknown) when it is not one."""
    if value is None:
        return None
    try:
        if kind == "string":
            return value if isinstance(value, str) else str(value)
        if kind == "bool":
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            return {"true": True, "false": False, "1": True, "0": False}.get(text)
        if isinstance(value, bool):
            return None
        if kind == "int":
            number = float(value)
            return int(number) if number.is_integer() else None
        number = float(value)
        return number if number == number and abs(number) != float("inf") else None
    except (TypeError, ValueError):
        return None
