"""Roles and permissions: what an API key's role lets it do.

Three roles, each a superset of the one below, so a route only needs to name the
permission it requires and ``allows`` answers for any caller. Permissions are named
after what they protect rather than after HTTP verbs, so the same table serves the
CLI, the service and any future transport.
"""

from __future__ import annotations

from enum import StrEnum

from mmsearch.errors import MMSearchError


class RoleError(MMSearchError):
    """An unknown role name was given."""


class Role(StrEnum):
    """A key's role; ordered ``reader < writer < admin`` (not alphabetically)."""

    READER = "reader"
    WRITER = "writer"
    ADMIN = "admin"

    @property
    def level(self) -> int:
        return _LEVELS[self]

    @classmethod
    def parse(cls, value: str | Role) -> Role:
        """The role named ``value``, or a ``RoleError`` listing the valid names."""
        try:
            return cls(str(value).strip().lower())
        except ValueError:
            names = ", ".join(r.value for r in cls)
            raise RoleError(f"Unknown role {value!r}; use one of: {names}.") from None

    # str's own comparisons would order the names alphabetically (admin < reader).
    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Role):
            return NotImplemented
        return self.level < other.level

    def __le__(self, other: object) -> bool:
        if not isinstance(other, Role):
            return NotImplemented
        return self.level <= other.level

    def __gt__(self, other: object) -> bool:
        if not isinstance(other, Role):
            return NotImplemented
        return self.level > other.level

    def __ge__(self, other: object) -> bool:
        if not isinstance(other, Role):
            return NotImplemented
        return self.level >= other.level


_LEVELS = {Role.READER: 0, Role.WRITER: 1, Role.ADMIN: 2}


class Permission(StrEnum):
    """What a request needs; see ``ROLE_PERMISSIONS`` for who has it."""

    SEARCH = "search"
    READ_ITEMS = "read_items"  # item GET, item images, "more like this"
    FACETS = "facets"
    READ_COLLECTIONS = "read_collections"
    WRITE_ITEMS = "write_items"  # item PUT / DELETE
    INGEST = "ingest"
    FEEDBACK = "feedback"
    # a collection's builds, canaries, publishes, default rules, lineage, drift, KPIs;
    # keys and audit events within the key's own scope
    ADMIN = "admin"
    # a collection's moderation: the review queue (items a policy hides included),
    # verdicts, re-applying its policy; admins hold it, within their collections
    MODERATE = "moderate"
    # what spans collections: the rules/rankers registry, /metrics, stored reports, the
    # whole audit trail; never held by a key limited to collections (``allows``)
    GLOBAL_ADMIN = "global_admin"


_READER = frozenset(
    {Permission.SEARCH, Permission.READ_ITEMS, Permission.FACETS, Permission.READ_COLLECTIONS}
)
_WRITER = _READER | {Permission.WRITE_ITEMS, Permission.INGEST, Permission.FEEDBACK}

ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.READER: _READER,
    Role.WRITER: _WRITER,
    Role.ADMIN: frozenset(Permission),
}


def permissions(role: Role | str) -> frozenset[Permission]:
    """Every permission ``role`` has."""
    return ROLE_PERMISSIONS[Role.parse(role)]


SCOPED_OUT = frozenset({Permission.GLOBAL_ADMIN})
"""Permissions a key limited to some collections never has, whatever its role: they act
on what every collection shares, which a limited key must not reach."""


def allows(role: Role | str, permission: Permission | str, *, scoped: bool = False) -> bool:
    """Whether ``role`` may do what ``permission`` protects (unknown permission: no);
    ``scoped``: the key is limited to some collections."""
    try:
        wanted = Permission(permission)
    except ValueError:
        return False
    if scoped and wanted in SCOPED_OUT:
        return False
    return wanted in permissions(role)
