"""ACL group lists as operators type them (``--groups g1,g2``)."""

from __future__ import annotations

import re

from mmsearch.filters.parse import FilterError

_SEPARATORS = re.compile(r"[,\s]+")


def parse_groups(text: str | None) -> frozenset[str] | None:
    """``"g1, g2"`` → {"g1", "g2"}; None stays None (unrestricted), "" is no group at all."""
    if text is None:
        return None
    groups = frozenset(g for g in _SEPARATORS.split(text.strip()) if g)
    if any(len(g) > 200 for g in groups):
        raise FilterError("An ACL group name is longer than 200 characters.")
    return groups
